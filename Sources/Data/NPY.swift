import Foundation

/// Reader for NumPy's .npy files (format versions 1.0, 2.0 and 3.0).
///
/// Layout (numpy/lib/format.py): magic "\x93NUMPY", major and minor version bytes, header
/// length (little-endian UInt16 for 1.0, UInt32 for 2.0 and 3.0), then a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }` padded with spaces
/// and a newline, then the elements. Only little-endian numeric arrays in C order are read:
/// u1, <f4, <f8, <i8 (and u1 / i8 with byte order '|' or '=').
public struct NPYArray: Sendable {
    /// Element type as stored in the file.
    public enum DType: String, Sendable {
        case uint8 = "u1", float32 = "f4", float64 = "f8", int64 = "i8"
        var size: Int {
            switch self {
            case .uint8: return 1
            case .float32: return 4
            case .float64, .int64: return 8
            }
        }
    }

    public let path: String
    public let dtype: DType
    public let shape: [Int]
    /// The elements' bytes as stored, little-endian, C order.
    public let bytes: [UInt8]

    /// Number of samples: the first dimension (1 for a 0-d array).
    public var sampleCount: Int { shape.first ?? 1 }
    /// Shape of one sample: every dimension after the first.
    public var sampleShape: [Int] { Array(shape.dropFirst()) }

    /// Reads and checks `path`.
    public init(path: String) throws {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw FileManager.default.fileExists(atPath: path) ? DataError.cannotOpen(path: path, reason: "unreadable")
                                                             : DataError.npyInvalid(path: path, problem: "file not found")
        }
        try self.init(bytes: [UInt8](contents), path: path)
    }

    /// Parses the bytes of a .npy file; `path` names it in errors.
    public init(bytes file: [UInt8], path: String) throws {
        func fail(_ problem: String) -> DataError { .npyInvalid(path: path, problem: problem) }
        let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
        guard file.count >= 10, Array(file[0..<6]) == magic else { throw fail("not a .npy file (no \\x93NUMPY magic)") }
        let major = file[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(file[8]) | Int(file[9]) << 8
            headerStart = 10
        case 2, 3:
            guard file.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(file[8]) | Int(file[9]) << 8 | Int(file[10]) << 16 | Int(file[11]) << 24
            headerStart = 12
        default:
            throw fail("format version \(major).\(file[7]) is not supported (1.0, 2.0 and 3.0 are)")
        }
        guard file.count >= headerStart + headerLength else { throw fail("truncated header (\(headerLength) bytes declared)") }
        guard let header = String(bytes: file[headerStart ..< headerStart + headerLength], encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw fail("header is not text")
        }

        let descr = try Self.value(of: "descr", in: header, fail)
        guard let quote = descr.first, quote == "'" || quote == "\"",
              let end = descr.dropFirst().firstIndex(of: quote) else {
            throw fail("structured dtype is not supported; save a plain numeric array (u1, f4, f8 or i8)")
        }
        let typeString = String(descr[descr.index(after: descr.startIndex) ..< end])
        if typeString.hasSuffix("O") {
            throw fail("object arrays (dtype 'O') hold pickled Python objects and cannot be read; save a numeric array, "
                       + "e.g. np.save(path, np.asarray(x, dtype=np.float32))")
        }
        guard let order = typeString.first, "<>|=".contains(order) else { throw fail("unsupported dtype '\(typeString)'") }
        guard let dtype = DType(rawValue: String(typeString.dropFirst())) else {
            throw fail("dtype '\(typeString)' is not supported; use uint8 (u1), float32 (<f4), float64 (<f8) or int64 (<i8)")
        }
        if order == ">" && dtype != .uint8 {
            throw fail("big-endian dtype '\(typeString)' is not supported; save with x.astype(x.dtype.newbyteorder('<'))")
        }

        let fortran = try Self.value(of: "fortran_order", in: header, fail)
        if fortran.hasPrefix("True") {
            throw fail("Fortran-order (column-major) arrays are not supported; save np.ascontiguousarray(x) instead")
        }
        guard fortran.hasPrefix("False") else { throw fail("fortran_order is '\(fortran)', expected True or False") }

        let shapeText = try Self.value(of: "shape", in: header, fail)
        guard shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else { throw fail("shape '\(shapeText)' is not a tuple") }
        let inner = shapeText[shapeText.index(after: shapeText.startIndex) ..< close]
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let trimmed = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "L", with: "")
            if trimmed.isEmpty { continue }
            guard let dimension = Int(trimmed), dimension >= 0 else { throw fail("shape '\(shapeText)' has a bad dimension '\(trimmed)'") }
            shape.append(dimension)
        }

        let dataStart = headerStart + headerLength
        guard let expected = checkedProduct(shape, times: dtype.size) else {
            throw fail("shape \(shape) of \(typeString) is too large to be a file's contents (its size overflows)")
        }
        let available = file.count - dataStart
        guard available >= expected else {
            throw fail("truncated data: shape \(shape) of \(typeString) needs \(expected) bytes, the file holds \(available)")
        }
        self.path = path
        self.dtype = dtype
        self.shape = shape
        self.bytes = Array(file[dataStart ..< dataStart + expected])
    }

    /// The raw text of the value of `key` in the header dict, up to the end of the header.
    private static func value(of key: String, in header: String, _ fail: (String) -> DataError) throws -> String {
        for quote in ["'", "\""] {
            if let range = header.range(of: quote + key + quote) {
                var rest = header[range.upperBound...].drop(while: { $0 == " " })
                guard rest.first == ":" else { break }
                rest = rest.dropFirst().drop(while: { $0 == " " })
                return String(rest)
            }
        }
        throw fail("header has no '\(key)' entry: \(header.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    /// The elements as uint8; nil unless the file holds u1.
    public func uint8Values() -> [UInt8]? { dtype == .uint8 ? bytes : nil }

    /// The elements as float32: f4 as stored, f8 rounded to nearest, u1 and i8 converted
    /// (exact up to 2^24).
    public func float32Values() -> [Float] {
        bytes.withUnsafeBytes { raw -> [Float] in
            let count = raw.count / dtype.size
            switch dtype {
            case .uint8: return raw.map { Float($0) }
            case .float32: return (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            case .float64: return (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
            case .int64: return (0..<count).map { Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
            }
        }
    }

    /// The elements as int64: i8 as stored, u1 widened; nil for floating-point files.
    public func int64Values() -> [Int64]? {
        switch dtype {
        case .uint8: return bytes.map { Int64($0) }
        case .int64:
            return bytes.withUnsafeBytes { raw in
                (0..<raw.count / 8).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            }
        case .float32, .float64: return nil
        }
    }
}

/// Writer for NumPy's .npy format 1.0: float32 ('<f4') and int64 ('<i8') arrays in C order,
/// the files `np.load` reads without options.
///
/// The header dict is padded with spaces and ends in a newline so that the data starts at a
/// multiple of 64 bytes (numpy/lib/format.py `ARRAY_ALIGN`), as numpy's own writer does.
extension NPYArray {
    /// A .npy file of `values`, shape `shape` (row-major), as '<f4'.
    public static func encode(float32 values: UnsafeBufferPointer<Float>, shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count, "NPY: \(values.count) values are not of shape \(shape)")
        var file = header(descr: "<f4", shape: shape)
        file.reserveCapacity(file.count + values.count * 4)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { file.append(contentsOf: $0) } }
        return file
    }

    public static func encode(float32 values: [Float], shape: [Int]) -> Data {
        values.withUnsafeBufferPointer { encode(float32: $0, shape: shape) }
    }

    /// A .npy file of `values`, shape `shape` (row-major), as '<i8'.
    public static func encode(int64 values: [Int64], shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count, "NPY: \(values.count) values are not of shape \(shape)")
        var file = header(descr: "<i8", shape: shape)
        file.reserveCapacity(file.count + values.count * 8)
        for value in values { withUnsafeBytes(of: value.littleEndian) { file.append(contentsOf: $0) } }
        return file
    }

    /// Magic, version 1.0, the UInt16 header length and the padded dict: a multiple of 64 bytes.
    static func header(descr: String, shape: [Int]) -> Data {
        // Python's tuple syntax: (N,) for one dimension, () for none.
        let dimensions = shape.map(String.init)
        let tuple = "(" + dimensions.joined(separator: ", ") + (dimensions.count == 1 ? ",)" : ")")
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(tuple), }"
        let prefix = 10  // magic (6), version (2), header length (2)
        let total = (prefix + dict.utf8.count + 1 + 63) / 64 * 64
        dict += String(repeating: " ", count: total - prefix - dict.utf8.count - 1) + "\n"
        let length = UInt16(dict.utf8.count)
        var file = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)])
        file.append(contentsOf: Array(dict.utf8))
        return file
    }
}
