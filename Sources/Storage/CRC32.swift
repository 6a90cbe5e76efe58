import CZlib
import Foundation

/// zlib's crc32 (the IEEE 802.3 polynomial, as Python's `zlib.crc32`): the whole-file checksum
/// of checkpoint shards and data-set shards, so that a Python reader can check either.
public enum CRC32 {
    /// crc32 of `bytes`, continuing from `crc` (the checksum of the bytes before them).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return UInt32(crc32_z(UInt(crc), base.assumingMemoryBound(to: UInt8.self), bytes.count))
    }

    /// The crc32 of A followed by B, from crc32(A), crc32(B) and B's length.
    public static func combine(_ first: UInt32, _ second: UInt32, secondLength: Int) -> UInt32 {
        UInt32(crc32_combine(UInt(first), UInt(second), off_t(secondLength)))
    }

    /// Eight lowercase hex digits, as checkpoint manifests write it: "cbf43926".
    public static func hex(_ crc: UInt32) -> String {
        let digits = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// "0x" and eight lowercase hex digits, as data-set manifests write it: "0xcbf43926".
    public static func prefixedHex(_ crc: UInt32) -> String { "0x" + hex(crc) }
}
