import Foundation
import Storage

/// The contents of `manifest.json` (docs/checkpoint-format.md). Its presence is what makes a
/// checkpoint exist.
///
/// `state` holds the trainer's JSON object byte for byte: it is written into the file
/// verbatim under the key "state" and read back as the same bytes, so 64-bit integers such as
/// RNG keys and float literals never pass through a Double. It is not part of the Codable
/// synthesis (JSONEncoder on a manifest alone drops it); `CheckpointStore` writes and reads it.
public struct CheckpointManifest: Codable, Sendable, Equatable {
    /// MAJOR.MINOR. A reader accepts any MINOR of a MAJOR it knows (minors only add fields).
    /// 1.1 added `manifestChecksum`.
    public static let currentFormatVersion = "1.1"
    public static let supportedMajorVersion = 1

    public var formatVersion: String
    public var step: Int
    /// Ranks that wrote it: one shard each.
    public var worldSize: Int
    /// ISO 8601, UTC.
    public var created: String
    public var buffers: [Buffer]
    public var shards: [Shard]
    public var compression: Compression
    /// The trainer's JSON object, verbatim.
    public var state = Data()

    public struct Buffer: Codable, Sendable, Equatable {
        public var name: String
        /// Float32 elements.
        public var count: Int
    }

    public struct Shard: Codable, Sendable, Equatable {
        public var rank: Int
        /// File name inside the checkpoint directory.
        public var file: String
        /// File size.
        public var bytes: Int
        /// zlib crc32 of the whole file, 8 lowercase hex digits.
        public var checksum: String
        /// In file order; they tile the file: byteOffset 0, each starting where the last ended.
        public var frames: [Frame]
    }

    public struct Frame: Codable, Sendable, Equatable {
        public var buffer: String
        public var elementOffset: Int
        public var elementCount: Int
        public var byteOffset: Int
        public var byteCount: Int
        /// "shuffle4+zstd" or "zstd" (`FrameTransform`).
        public var transform: String
        /// elementCount * 4.
        public var uncompressedBytes: Int
    }

    public struct Compression: Codable, Sendable, Equatable {
        public var level: Int32
        public var shuffle: Bool
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion, step, worldSize, created, buffers, shards, compression
    }
}

extension CheckpointManifest {
    /// The key of the manifest's own checksum: crc32 of every byte of the file before the end of
    /// the `state` value, so a flipped bit in `step`, `created` or the trainer's state (which the
    /// shards' checksums do not cover) fails the load instead of loading silently.
    static let checksumKey = "manifestChecksum"

    /// crc32 (8 lowercase hex digits) of `data`'s first `end` bytes.
    static func checksum(of data: Data, end: Int) -> String {
        data.prefix(end).withUnsafeBytes { CRC32.hex(CRC32.checksum($0)) }
    }

    /// Pretty JSON with `"state": <the state's bytes>` and then `"manifestChecksum"` as the last keys.
    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
        var json = try encoder.encode(self)
        guard let close = json.lastIndex(of: UInt8(ascii: "}")) else { return json }
        json.removeSubrange(close...)
        while let last = json.last, last == 0x0A || last == 0x20 { json.removeLast() }
        json.append(Data(",\n  \"state\" : ".utf8))
        json.append(state)
        let checksum = Self.checksum(of: json, end: json.count)
        json.append(Data(",\n  \"\(Self.checksumKey)\" : \"\(checksum)\"\n}\n".utf8))
        return json
    }

    /// Parses manifest bytes; `file` names the manifest in errors.
    static func decode(_ data: Data, file: String) throws -> CheckpointManifest {
        struct VersionProbe: Decodable { var formatVersion: String }
        let decoder = JSONDecoder()
        let version: String
        do {
            version = try decoder.decode(VersionProbe.self, from: data).formatVersion
        } catch {
            throw CheckpointError.corrupt(file, "not a checkpoint manifest (no readable \"formatVersion\": \(describe(error)))")
        }
        let major = version.split(separator: ".").first.flatMap { Int($0) }
        guard major == supportedMajorVersion else {
            throw CheckpointError(.unsupportedVersion, file: file,
                                  problem: "format version \(version) is not supported (this build reads \(supportedMajorVersion).x, writes \(currentFormatVersion))",
                                  fix: "read it with the contrast version that wrote it, or a newer one")
        }
        var manifest: CheckpointManifest
        do {
            manifest = try decoder.decode(CheckpointManifest.self, from: data)
        } catch {
            throw CheckpointError.corrupt(file, "manifest does not parse: \(describe(error))")
        }
        guard let range = try JSONScan.valueRange(ofTopLevelKey: "state", in: data) else {
            throw CheckpointError.corrupt(file, "manifest has no \"state\"")
        }
        // From 1.1 on the checksum must be there; wherever it is there (a 1.0 label may be a
        // flipped bit of 1.1), it must match.
        let minor = version.split(separator: ".").dropFirst().first.flatMap { Int($0) } ?? 0
        let start = data.startIndex
        if let stored = try JSONScan.valueRange(ofTopLevelKey: Self.checksumKey, in: data) {
            let computed = Self.checksum(of: data, end: range.upperBound)
            let text = String(decoding: data[(start + stored.lowerBound)..<(start + stored.upperBound)], as: UTF8.self)
            guard stored.lowerBound > range.upperBound, text == "\"\(computed)\"" else {
                throw CheckpointError.corrupt(file, "manifest checksum is \(text), its contents give \"\(computed)\": the manifest was damaged")
            }
        } else if minor >= 1 {
            throw CheckpointError.corrupt(file, "format \(version) manifest has no \"\(Self.checksumKey)\"")
        }
        manifest.state = data.subdata(in: (start + range.lowerBound)..<(start + range.upperBound))
        return manifest
    }

    /// A decoding error in one line: which key path, what was wrong.
    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "missing key '\((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "'\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context):
            return "invalid JSON: \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// Finds the byte range of one top-level value in a JSON object without parsing it into
/// Foundation types (which would round 64-bit integers through Double).
enum JSONScan {
    static func valueRange(ofTopLevelKey key: String, in data: Data) throws -> Range<Int>? {
        let bytes = [UInt8](data)
        var index = 0
        func isSpace(_ byte: UInt8) -> Bool { [0x20, 0x0A, 0x0D, 0x09].contains(byte) }
        func skipSpace() { while index < bytes.count, isSpace(bytes[index]) { index += 1 } }
        func fail() -> Error { DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "malformed JSON at byte \(index)")) }
        /// Index just past the string starting at `index` (a quote).
        func skipString() throws {
            index += 1
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""): index += 1; return
                default: index += 1
                }
            }
            throw fail()
        }
        func skipValue() throws {
            var depth = 0
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    try skipString()
                    if depth == 0 { return }
                    continue
                }
                if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                    depth += 1
                } else if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                    if depth == 0 { return }
                    depth -= 1
                    if depth == 0 { index += 1; return }
                } else if depth == 0, byte == UInt8(ascii: ",") || isSpace(byte) {
                    return
                }
                index += 1
            }
            if depth != 0 { throw fail() }
        }

        skipSpace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw fail() }
        index += 1
        let wanted = Array(key.utf8)
        while true {
            skipSpace()
            guard index < bytes.count else { throw fail() }
            if bytes[index] == UInt8(ascii: "}") { return nil }
            guard bytes[index] == UInt8(ascii: "\"") else { throw fail() }
            let keyStart = index + 1
            try skipString()
            let name = Array(bytes[keyStart..<(index - 1)])
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail() }
            index += 1
            skipSpace()
            let valueStart = index
            try skipValue()
            var valueEnd = index
            while valueEnd > valueStart, isSpace(bytes[valueEnd - 1]) { valueEnd -= 1 }
            if name == wanted { return valueStart..<valueEnd }
            skipSpace()
            guard index < bytes.count else { throw fail() }
            if bytes[index] == UInt8(ascii: ",") { index += 1 }
        }
    }
}
