import Foundation

/// A Protocol Buffers message in the wire format (protobuf.dev/programming-guides/encoding),
/// written field by field: just enough of the format for the ONNX file (`ONNXExport`), so
/// contrast needs no protobuf library or generated code.
///
/// A field is a key, varint((number << 3) | wire type), then its value: wire type 0 a varint
/// (int32, int64, enums, bools; a negative int is its 64-bit two's complement, ten bytes),
/// 5 a little-endian fixed32 (float), 2 a varint length and that many bytes (strings, bytes,
/// nested messages, packed repeated scalars). Fields are written in the order called; a reader
/// accepts any order. Zero-valued scalars are written when called (proto3 readers accept them).
struct ProtobufMessage {
    private(set) var bytes: [UInt8] = []

    private enum WireType: UInt64 { case varint = 0, fixed32 = 5, lengthDelimited = 2 }

    /// The base-128 varint of `value`: 7 bits a byte, least significant first, the high bit set
    /// on every byte but the last.
    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value, out: [UInt8] = []
        while value >= 0x80 {
            out.append(UInt8(value & 0x7f) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
        return out
    }

    private mutating func key(_ field: Int, _ type: WireType) {
        precondition(field >= 1 && field < 1 << 29, "protobuf field numbers are 1 ..< 2^29, got \(field)")
        bytes += Self.varint(UInt64(field) << 3 | type.rawValue)
    }

    /// An integer field (int32, int64 or enum).
    mutating func int(_ field: Int, _ value: Int) {
        key(field, .varint)
        bytes += Self.varint(UInt64(bitPattern: Int64(value)))
    }

    /// A float field (fixed32).
    mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    /// A bytes field.
    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        key(field, .lengthDelimited)
        bytes += Self.varint(UInt64(value.count))
        bytes += value
    }

    /// A string field (UTF-8).
    mutating func string(_ field: Int, _ value: String) { bytes(field, Array(value.utf8)) }

    /// A nested message field.
    mutating func message(_ field: Int, _ value: ProtobufMessage) { bytes(field, value.bytes) }

    /// A packed repeated int64 field: one length-delimited field of the values' varints.
    mutating func packedInts(_ field: Int, _ values: [Int]) {
        bytes(field, values.flatMap { Self.varint(UInt64(bitPattern: Int64($0))) })
    }

    /// A packed repeated float field: one length-delimited field of the values' fixed32 bytes.
    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        bytes(field, Self.littleEndianBytes(values))
    }

    /// float32 values as little-endian bytes (packed floats, ONNX's raw_data).
    static func littleEndianBytes(_ values: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 4 * values.count)
        for (i, value) in values.enumerated() {
            let bits = value.bitPattern
            for j in 0..<4 { out[4 * i + j] = UInt8(truncatingIfNeeded: bits >> (8 * j)) }
        }
        return out
    }
}
