import RunFiles
import Storage
import Foundation
import NN

/// The trained parameters of a run (`weights.bin` in the run directory), so evaluation can
/// rebuild the model from `config.yaml` and these values.
///
/// Layout (little-endian): magic "CTRWGT01", UInt64 arena length, UInt64 FNV-1a 64 checksum of
/// the values, then the arena's Float32 values. Written atomically (temporary file, fsync, rename).
/// Sharded, compressed checkpoints with optimizer state are a separate format.
public enum WeightsFile {
    static let magic = Array("CTRWGT01".utf8)

    public static func write(_ arena: ParameterArena, to url: URL) throws {
        let values = UnsafeRawBufferPointer(start: arena.parameters.data, count: arena.count * 4)
        var data = Data(magic)
        withUnsafeBytes(of: UInt64(arena.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: checksum(values).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: values)
        try AtomicFile.write(data, to: url)
    }

    public static func read(into arena: ParameterArena, from url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw RunDirectory.Failure(description: "weights file \(url.path) not found; train a run first (contrast train) or check --run")
        }
        guard data.count >= 24, Array(data.prefix(8)) == magic else {
            throw RunDirectory.Failure(description: "\(url.path) is not a contrast weights file (bad magic number)")
        }
        let count = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        let expected = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self)) }
        guard Int(count) == arena.count else {
            throw RunDirectory.Failure(description: "\(url.path) holds \(count) values but the model of config.yaml has \(arena.count); the config does not match these weights")
        }
        guard data.count == 24 + Int(count) * 4 else {
            throw RunDirectory.Failure(description: "\(url.path) is truncated: expected \(24 + Int(count) * 4) bytes, found \(data.count)")
        }
        data.withUnsafeBytes { raw in
            let values = UnsafeRawBufferPointer(rebasing: raw[24...])
            UnsafeMutableRawPointer(arena.parameters.data).copyMemory(from: values.baseAddress!, byteCount: values.count)
        }
        let actual = checksum(UnsafeRawBufferPointer(start: arena.parameters.data, count: arena.count * 4))
        guard actual == expected else {
            throw RunDirectory.Failure(description: "\(url.path) is corrupt: checksum mismatch")
        }
    }

    /// FNV-1a over bytes (for short records such as a config's text).
    public static func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
        bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01b3 }
    }

    /// FNV-1a over 64-bit words (and the tail bytes): cheap, and catches torn or flipped data.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let words = bytes.count / 8
        for i in 0..<words {
            hash = (hash ^ bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x0000_0100_0000_01b3
        }
        for i in (words * 8)..<bytes.count { hash = (hash ^ UInt64(bytes[i])) &* 0x0000_0100_0000_01b3 }
        return hash
    }
}
