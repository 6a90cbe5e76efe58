import Foundation
import Storage

/// The safetensors format (huggingface/safetensors): float32 tensors by name, for PyTorch and
/// every other framework that reads it without running code.
///
/// Layout: UInt64 (little-endian) header length N; N bytes of UTF-8 JSON
/// `{"name": {"dtype": "F32", "shape": [O, I], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {"key": "string value", ...}}` padded with spaces to a multiple of 8 bytes;
/// then the tensors' little-endian bytes, C order. Offsets count from the end of the header;
/// the tensors fill the data without gaps or overlaps, as the reference reader checks.
public enum Safetensors {
    /// A float32 tensor to write: row-major values of `shape`.
    public struct NamedTensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]

        public init(name: String, shape: [Int], values: [Float]) {
            precondition(shape.reduce(1, *) == values.count, "safetensors: \(name) has \(values.count) values, not \(shape)")
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    /// One tensor as the header describes it; `bytes` counts from the start of the data.
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var bytes: Range<Int>

        public init(name: String, dtype: String, shape: [Int], bytes: Range<Int>) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
    }

    /// A file's header: its tensors in data order, its metadata, and where the data starts.
    public struct Header: Sendable {
        public var entries: [Entry]
        public var metadata: [String: String]
        public var dataStart: Int

        public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }
    }

    /// The file of `tensors` (in this order) and `metadata` (string values only, in this order).
    public static func encode(_ tensors: [NamedTensor], metadata: [(key: String, value: String)]) -> Data {
        var fields: [String] = []
        var offset = 0
        for tensor in tensors {
            let end = offset + tensor.values.count * 4
            fields.append("\(json(tensor.name)):{\"dtype\":\"F32\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],"
                          + "\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        if !metadata.isEmpty {
            fields.append("\"__metadata__\":{" + metadata.map { json($0.key) + ":" + json($0.value) }.joined(separator: ",") + "}")
        }
        var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
        // Spaces to a multiple of 8 bytes keep every tensor's data 8-byte aligned in a mapped file.
        header += [UInt8](repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)
        var file = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: header)
        for tensor in tensors {
            for value in tensor.values { withUnsafeBytes(of: value.bitPattern.littleEndian) { file.append(contentsOf: $0) } }
        }
        return file
    }

    /// A JSON string literal of `text` (see `jsonQuoted`).
    static func json(_ text: String) -> String { jsonQuoted(text) }

    /// Parses and checks the header of `file` (the whole file's bytes): the JSON, every
    /// tensor's dtype, shape and byte range, and that the ranges tile the data exactly.
    public static func readHeader(_ file: Data, path: String) throws -> Header {
        func fail(_ problem: String) -> DataError { .safetensorsInvalid(path: path, problem: problem) }
        guard file.count >= 8 else { throw fail("shorter than the 8-byte header length") }
        let length = file.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= UInt64(file.count - 8) else { throw fail("header of \(length) bytes does not fit in \(file.count) bytes") }
        let dataStart = 8 + Int(length)
        let text = file.subdata(in: file.startIndex + 8 ..< file.startIndex + dataStart)
        guard let object = try? JSONSerialization.jsonObject(with: text), let dictionary = object as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in dictionary {
            if name == "__metadata__" {
                guard let strings = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = strings
                continue
            }
            guard let fields = value as? [String: Any], let dtype = fields["dtype"] as? String,
                  let shape = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("tensor \(name) lacks a dtype, shape or data_offsets pair")
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= file.count, shape.allSatisfy({ $0 >= 0 }), checkedProduct(shape, times: 4) != nil else {
                throw fail("tensor \(name) has a bad shape or range")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: offsets[0] ..< offsets[1]))
        }
        entries.sort { ($0.bytes.lowerBound, $0.bytes.upperBound) < ($1.bytes.lowerBound, $1.bytes.upperBound) }
        var end = 0
        for entry in entries {
            guard entry.bytes.lowerBound == end else { throw fail("tensor \(entry.name) starts at byte \(entry.bytes.lowerBound), not \(end)") }
            if entry.dtype == "F32", entry.bytes.count != checkedProduct(entry.shape, times: 4) {
                throw fail("tensor \(entry.name) of shape \(entry.shape) spans \(entry.bytes.count) bytes")
            }
            end = entry.bytes.upperBound
        }
        guard dataStart + end == file.count else {
            throw fail("the tensors cover \(end) bytes of data, the file holds \(file.count - dataStart)")
        }
        return Header(entries: entries, metadata: metadata, dataStart: dataStart)
    }

    /// The values of an F32 tensor of a file whose header is `header`.
    public static func float32Values(_ entry: Entry, of file: Data, header: Header) -> [Float] {
        precondition(entry.dtype == "F32", "safetensors: \(entry.name) is \(entry.dtype), not F32")
        return file.withUnsafeBytes { raw in
            (0 ..< entry.bytes.count / 4).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: header.dataStart + entry.bytes.lowerBound + 4 * $0,
                                                                         as: UInt32.self)))
            }
        }
    }
}
