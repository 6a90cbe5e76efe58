import Foundation

// TensorBoard event files, encoded by hand (no protobuf dependency).
//
// File: `events.out.tfevents.<seconds, 10 digits>.<hostname>[.<n>]`, TensorBoard's naming
// (tensorflow/core/util/events_writer.cc); TensorBoard reads every file whose name holds
// "tfevents", in name order.
//
// Framing, one TFRecord per Event (tensorflow/core/lib/io/record_writer.cc):
//   uint64 length (little-endian) | uint32 mask(crc32c(length bytes)) | data | uint32 mask(crc32c(data))
//   mask(c) = ((c >> 15) | (c << 17)) &+ 0xa282ead8
//
// Protobuf wire format of the fields written and read; numbers and types checked against
// tensorflow/core/util/event.proto and tensorboard/compat/proto/summary.proto:
//   Event          1 wall_time double (wire type 1), 2 step int64 (varint, 0),
//                  3 file_version string (2), 5 summary Summary (2)
//   Summary        1 value repeated Summary.Value (2)
//   Summary.Value  1 tag string (2), 2 simple_value float (wire type 5)

/// A TensorBoard file problem in one line: the file, the byte offset where known, the problem, the fix.
public struct TensorBoardError: Error, CustomStringConvertible, Sendable {
    /// The event file concerned.
    public var file: String
    /// Byte offset of the record at fault (reading), nil for writing problems.
    public var offset: Int?
    /// What is wrong.
    public var problem: String
    /// What to do about it.
    public var fix: String

    public var description: String {
        "\(file)\(offset.map { " at byte \($0)" } ?? ""): \(problem); \(fix)"
    }
}

/// Scalars of a run as a TensorBoard event file, written by rank 0.
///
/// Each writer opens a new file (never appends to or replaces one), so a resumed run adds a
/// file beside the earlier ones. Every record goes out with one unbuffered write(2), so a
/// reader tailing the file sees whole records, or a partial last one only after a crash.
public final class TensorBoardWriter {
    /// The event file this writer appends to.
    public let file: URL
    private let descriptor: Int32
    private var bytesWritten = 0

    /// Creates `directory` (if needed) and `directory/events.out.tfevents.<seconds>.<hostname>`
    /// (with `.1`, `.2`, ... appended if that name is taken), and writes its first record: an
    /// Event with `wallTime` (seconds since 1970) and file_version "brain.Event:2".
    public init(directory: URL, wallTime: Double = Date().timeIntervalSince1970) throws {
        try RunDirectory.createDirectory(directory)
        let stem = "events.out.tfevents." + String(format: "%010lld", Int64(wallTime.rounded(.down))) + "." + Self.hostname()
        var candidate = directory.appendingPathComponent(stem)
        var counter = 0
        var opened: Int32
        while true {
            // O_EXCL: two writers (or a resumed run in the same second) never share a file.
            opened = open(candidate.path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if opened >= 0 || errno != EEXIST { break }
            counter += 1
            candidate = directory.appendingPathComponent("\(stem).\(counter)")
        }
        guard opened >= 0 else {
            throw TensorBoardError(file: candidate.path, problem: "open failed: \(String(cString: strerror(errno))) (errno \(errno))",
                                   fix: "check that the run directory is writable")
        }
        file = candidate
        descriptor = opened
        var event = ProtobufEncoder()
        event.double(field: 1, wallTime)
        event.bytes(field: 3, Array("brain.Event:2".utf8))
        try append(event.bytes)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Writes one Event: `step`, `wallTime` and a Summary holding one Summary.Value
    /// {tag, simple_value} per scalar. TensorBoard stores simple_value as float32, so values
    /// are rounded to Float here.
    public func add(_ scalars: [(tag: String, value: Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = ProtobufEncoder()
        for scalar in scalars {
            var value = ProtobufEncoder()
            value.bytes(field: 1, Array(scalar.tag.utf8))
            value.float(field: 2, Float(scalar.value))
            summary.bytes(field: 1, value.bytes)
        }
        var event = ProtobufEncoder()
        event.double(field: 1, wallTime)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        event.bytes(field: 5, summary.bytes)
        try append(event.bytes)
    }

    /// Makes what was added durable (fsync). Readers already see every added record without it.
    public func flush() throws {
        guard fsync(descriptor) == 0 else { throw failure("fsync") }
    }

    /// One whole record, written with as few write(2) calls as the kernel allows (one, for
    /// records this small). If a write fails, the file is cut back to its last whole record.
    private func append(_ data: [UInt8]) throws {
        let record = TFRecord.frame(data)
        let start = bytesWritten
        try record.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else {
                    let error = failure("write", written == 0 ? ENOSPC : errno)
                    _ = ftruncate(descriptor, off_t(start))
                    throw error
                }
                offset += written
            }
        }
        bytesWritten += record.count
    }

    private func failure(_ call: String, _ code: Int32 = errno) -> TensorBoardError {
        TensorBoardError(file: file.path, problem: "\(call) failed: \(String(cString: strerror(code))) (errno \(code))",
                         fix: "check free space and permissions of the run directory")
    }

    /// gethostname(2), with '/' replaced so it stays one path component.
    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name.replacingOccurrences(of: "/", with: "_")
    }
}

/// Reads the scalars back from an event file (tests, tools).
public enum TensorBoardReader {
    /// Every Summary.Value with a simple_value, in file order, with its Event's step and wall_time.
    ///
    /// Both CRCs of every record are checked; unknown fields are skipped. A bad CRC or a
    /// malformed record throws `TensorBoardError` naming the file and the record's byte offset.
    /// A truncated last record (the run is still writing, or crashed mid-write) ends the list
    /// without an error.
    public static func scalars(file: URL) throws -> [(step: Int, tag: String, value: Float, wallTime: Double)] {
        try events(file: file).flatMap { event in
            event.values.compactMap { value in
                value.simpleValue.map { (step: event.step, tag: value.tag, value: $0, wallTime: event.wallTime) }
            }
        }
    }

    /// An Event as far as contrast writes it.
    struct Event {
        var wallTime = 0.0
        var step = 0
        var fileVersion: String?
        var values: [(tag: String, simpleValue: Float?)] = []
    }

    /// Every complete Event of `file`, in order.
    static func events(file: URL) throws -> [Event] {
        let data: [UInt8]
        do { data = Array(try Data(contentsOf: file)) } catch {
            throw TensorBoardError(file: file.path, problem: "cannot read: \(error.localizedDescription)", fix: "check the path")
        }
        var events: [Event] = []
        var offset = 0
        while let record = try TFRecord.next(in: data, at: offset, file: file.path) {
            do { events.append(try decodeEvent(data[record.data])) } catch let problem as ProtobufDecoder.Malformed {
                throw TensorBoardError(file: file.path, offset: offset, problem: "malformed Event: \(problem.what)",
                                       fix: "the file is not a TensorBoard event file or is damaged")
            }
            offset = record.end
        }
        return events
    }

    static func decodeEvent(_ bytes: ArraySlice<UInt8>) throws -> Event {
        var event = Event()
        var fields = ProtobufDecoder(bytes)
        while let field = try fields.next() {
            switch (field.number, field.value) {
            case (1, .fixed64(let bits)): event.wallTime = Double(bitPattern: bits)
            case (2, .varint(let raw)): event.step = Int(Int64(bitPattern: raw))
            case (3, .bytes(let text)): event.fileVersion = String(decoding: text, as: UTF8.self)
            case (5, .bytes(let summary)):
                var values = ProtobufDecoder(summary)
                while let value = try values.next() {
                    guard value.number == 1, case .bytes(let message) = value.value else { continue }
                    event.values.append(try decodeValue(message))
                }
            default: continue
            }
        }
        return event
    }

    static func decodeValue(_ bytes: ArraySlice<UInt8>) throws -> (tag: String, simpleValue: Float?) {
        var tag = "", simpleValue: Float?
        var fields = ProtobufDecoder(bytes)
        while let field = try fields.next() {
            switch (field.number, field.value) {
            case (1, .bytes(let text)): tag = String(decoding: text, as: UTF8.self)
            case (2, .fixed32(let bits)): simpleValue = Float(bitPattern: bits)
            default: continue
            }
        }
        return (tag, simpleValue)
    }
}

/// TFRecord framing: length, masked CRC32C of the length, data, masked CRC32C of the data.
enum TFRecord {
    static func frame(_ data: [UInt8]) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(data.count + 16)
        littleEndian(UInt64(data.count), into: &record)
        littleEndian(CRC32C.masked(record[0..<8]), into: &record)
        record += data
        littleEndian(CRC32C.masked(data[...]), into: &record)
        return record
    }

    /// The data range and end of the record at `offset`; nil at the end of the file or when the
    /// last record is cut short (its header or its data and footer are incomplete).
    static func next(in file: [UInt8], at offset: Int, file path: String) throws -> (data: Range<Int>, end: Int)? {
        guard file.count - offset >= 12 else { return nil }
        let length = readLittleEndian(UInt64.self, file, offset)
        guard readLittleEndian(UInt32.self, file, offset + 8) == CRC32C.masked(file[offset..<offset + 8]) else {
            throw corrupt(path, offset, "length crc32c mismatch")
        }
        // The length is now trusted: a record running past the end is an unfinished write.
        let afterHeader = file.count - offset - 12
        guard afterHeader >= 4, length <= UInt64(afterHeader - 4) else { return nil }
        let data = offset + 12..<offset + 12 + Int(length)
        guard readLittleEndian(UInt32.self, file, data.upperBound) == CRC32C.masked(file[data]) else {
            throw corrupt(path, offset, "data crc32c mismatch (record of \(length) bytes)")
        }
        return (data, data.upperBound + 4)
    }

    private static func corrupt(_ path: String, _ offset: Int, _ problem: String) -> TensorBoardError {
        TensorBoardError(file: path, offset: offset, problem: problem,
                         fix: "the event file is damaged; records before this offset are intact")
    }

    private static func littleEndian<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8]) {
        for i in 0..<MemoryLayout<T>.size { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    private static func readLittleEndian<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        (0..<MemoryLayout<T>.size).reduce(T.zero) { $0 | T(bytes[offset + $1]) << (8 * $1) }
    }
}

/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { byte in
        (0..<8).reduce(UInt32(byte)) { crc, _ in crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }

    /// Table-driven, one byte per step.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }

    /// The reference: one bit per step, straight from the polynomial (the test oracle for `checksum`).
    static func checksumBitwise(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    /// TFRecord's mask (tensorflow/core/lib/hash/crc32c.h): a stored CRC is rotated and offset
    /// because the CRC of data that embeds its own CRCs is problematic.
    static func masked(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}

/// Appends protobuf fields (tag = field number << 3 | wire type).
struct ProtobufEncoder {
    private(set) var bytes: [UInt8] = []

    mutating func varint(field: Int, _ value: UInt64) {
        tag(field, 0)
        rawVarint(value)
    }

    mutating func double(field: Int, _ value: Double) {
        tag(field, 1)
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value.bitPattern >> (8 * i))) }
    }

    mutating func float(field: Int, _ value: Float) {
        tag(field, 5)
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value.bitPattern >> (8 * i))) }
    }

    /// A length-delimited field: string, bytes or an embedded message.
    mutating func bytes(field: Int, _ value: [UInt8]) {
        tag(field, 2)
        rawVarint(UInt64(value.count))
        bytes += value
    }

    private mutating func tag(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

    private mutating func rawVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }
}

/// Walks the fields of one protobuf message; groups (wire types 3, 4) are malformed here.
struct ProtobufDecoder {
    struct Malformed: Error { let what: String }

    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    private let bytes: ArraySlice<UInt8>
    private var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
    }

    /// The next field, or nil at the end of the message.
    mutating func next() throws -> (number: Int, value: Value)? {
        guard position < bytes.endIndex else { return nil }
        let key = try varint()
        let number = Int(key >> 3)
        switch key & 7 {
        case 0: return (number, .varint(try varint()))
        case 1: return (number, .fixed64(try fixed(8)))
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.endIndex - position) else { throw Malformed(what: "field \(number) runs past the end") }
            defer { position += Int(length) }
            return (number, .bytes(bytes[position..<position + Int(length)]))
        case 5: return (number, .fixed32(UInt32(try fixed(4))))
        default: throw Malformed(what: "field \(number) has unsupported wire type \(key & 7)")
        }
    }

    private mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard position < bytes.endIndex else { throw Malformed(what: "varint runs past the end") }
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        throw Malformed(what: "varint longer than 10 bytes")
    }

    private mutating func fixed(_ size: Int) throws -> UInt64 {
        guard bytes.endIndex - position >= size else { throw Malformed(what: "fixed-width field runs past the end") }
        defer { position += size }
        return (0..<size).reduce(UInt64(0)) { $0 | UInt64(bytes[position + $1]) << (8 * UInt64($1)) }
    }
}
