import RunFiles
import Storage
import Foundation
import NN

/// The trained parameters of a run (`weights.bin` in the run directory), so evaluation can
/// rebuild the model from `config.yaml` and these values, without the data set.
///
/// Layout (little-endian): magic "CTRWGT02", UInt64 arena length, UInt64 FNV-1a 64 checksum of
/// the values, UInt64 length L of the header, L bytes of JSON (`ModelInputs`: the input shape the
/// model was built for), then the arena's Float32 values. Version 1 ("CTRWGT01") has no header
/// (its model's input shape comes from its data set). Written atomically (temporary file, fsync,
/// rename). Sharded, compressed checkpoints with optimizer state are a separate format.
public enum WeightsFile {
    static let magic = Array("CTRWGT02".utf8)
    static let magicVersion1 = Array("CTRWGT01".utf8)

    public static func write(_ arena: ParameterArena, inputs: ModelInputs, to url: URL) throws {
        let values = UnsafeRawBufferPointer(start: arena.parameters.data, count: arena.count * 4)
        // Sorted keys: the same model gives the same bytes in every process (Foundation's key order is not fixed).
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = try encoder.encode(inputs)
        var data = Data(magic)
        withUnsafeBytes(of: UInt64(arena.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: checksum(values).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(header)
        data.append(contentsOf: values)
        try AtomicFile.write(data, to: url)
    }

    /// The file's fixed fields: value count, checksum, where the values start, and the header's inputs (nil in version 1).
    static func layout(_ data: Data, path: String) throws -> (count: Int, checksum: UInt64, valuesAt: Int, inputs: ModelInputs?) {
        let word = { (offset: Int) in data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) } }
        guard data.count >= 24, [magic, magicVersion1].contains(Array(data.prefix(8))) else {
            throw RunDirectory.Failure(description: "\(path) is not a contrast weights file (bad magic number)")
        }
        let count = Int(clamping: word(8)), expected = word(16)
        guard Array(data.prefix(8)) == magic else { return (count, expected, 24, nil) }
        guard data.count >= 32, word(24) <= UInt64(data.count - 32) else {
            throw RunDirectory.Failure(description: "\(path) is truncated: its header does not fit in its \(data.count) bytes")
        }
        let headerLength = Int(word(24))
        let inputs: ModelInputs
        do { inputs = try JSONDecoder().decode(ModelInputs.self, from: data.subdata(in: 32 ..< 32 + headerLength)) } catch {
            throw RunDirectory.Failure(description: "\(path): its header (the model's input shape) is unreadable (\(error)); the file is damaged")
        }
        return (count, expected, 32 + headerLength, inputs)
    }

    /// The input shape recorded in the file, nil for a version 1 file (which has none).
    public static func inputs(at url: URL) throws -> ModelInputs? {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw RunDirectory.Failure(description: "weights file \(url.path) not found; train a run first (contrast train) or check --run")
        }
        return try layout(data, path: url.path).inputs
    }

    public static func read(into arena: ParameterArena, from url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw RunDirectory.Failure(description: "weights file \(url.path) not found; train a run first (contrast train) or check --run")
        }
        let (count, expected, valuesAt, _) = try layout(data, path: url.path)
        guard count == arena.count else {
            throw RunDirectory.Failure(description: "\(url.path) holds \(count) values but the model of config.yaml has \(arena.count); the config does not match these weights")
        }
        guard data.count == valuesAt + count * 4 else {
            throw RunDirectory.Failure(description: "\(url.path) is truncated: expected \(valuesAt + count * 4) bytes, found \(data.count)")
        }
        data.withUnsafeBytes { raw in
            let values = UnsafeRawBufferPointer(rebasing: raw[valuesAt...])
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
