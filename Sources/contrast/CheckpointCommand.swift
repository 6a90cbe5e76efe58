import Bench
import ArgumentParser
import Checkpoint
import Foundation

/// `contrast checkpoint inspect|verify PATH`.
struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Look into and check checkpoints (docs/checkpoint-format.md).",
        subcommands: [Inspect.self, Verify.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print what a checkpoint holds.")
        @Argument(help: ArgumentHelp(checkpointHelp)) var path: String

        func run() throws {
            try reportingErrors {
                let url = try CheckpointStore.resolve(path)
                let manifest = try CheckpointStore.manifest(at: url)
                var lines = ["checkpoint \(url.path)",
                             "  format \(manifest.formatVersion), step \(manifest.step), written by \(manifest.worldSize) rank(s) at \(manifest.created)",
                             "  compression: zstd level \(manifest.compression.level), byte-plane shuffle \(manifest.compression.shuffle ? "on" : "off")",
                             "  buffers:"]
                for buffer in manifest.buffers { lines.append("    \(buffer.name): \(buffer.count) float32") }
                lines.append("  shards:")
                var stored = 0, raw = 0
                for shard in manifest.shards {
                    let uncompressed = shard.frames.reduce(0) { $0 + $1.uncompressedBytes }
                    stored += shard.bytes; raw += uncompressed
                    lines.append(String(format: "    %@: rank %d, %d bytes (%d frames, %.2fx), crc32 %@", shard.file, shard.rank, shard.bytes,
                                        shard.frames.count, Double(uncompressed) / Double(max(1, shard.bytes)), shard.checksum))
                }
                lines.append(String(format: "  total %.2f MB stored, %.2f MB raw (%.2fx)", Double(stored) / 1e6, Double(raw) / 1e6,
                                    Double(raw) / Double(max(1, stored))))
                lines.append("  state:")
                lines += stateLines(manifest.state).map { "    " + $0 }
                say(lines.joined(separator: "\n"))
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every shard: present, sizes and checksums right (non-zero exit otherwise).")
        @Argument(help: ArgumentHelp(checkpointHelp)) var path: String

        func run() throws {
            try reportingErrors {
                let url = try CheckpointStore.resolve(path)
                try CheckpointStore.verify(url)
                say("checkpoint \(url.path): OK")
            }
        }
    }
}

/// Help of every argument that takes a checkpoint (`CheckpointStore.resolve` accepts them all).
let checkpointHelp = "A run directory (its newest complete checkpoint), a checkpoint directory "
    + "(RUN/checkpoints/step-NNNNNNNNN) or RUN/checkpoints/latest."

/// The training state (JSON) as indented `key: value` lines, one per scalar; the config, a
/// YAML string, as its own lines under `config:`. Not JSON, which would be one escaped line.
func stateLines(_ state: Data) -> [String] {
    guard let object = try? JSONSerialization.jsonObject(with: state) else {
        return [String(decoding: state, as: UTF8.self)]
    }
    func lines(_ value: Any, key: String?) -> [String] {
        let label = key.map { $0 + ":" } ?? "-"
        switch value {
        case let dictionary as [String: Any]:
            let body = dictionary.keys.sorted().flatMap { lines(dictionary[$0]!, key: $0) }
            return key == nil ? body : [label] + body.map { "  " + $0 }
        case let array as [Any]:
            if array.allSatisfy({ !($0 is [String: Any]) && !($0 is [Any]) }) {
                return [label + " [" + array.map { scalar($0) }.joined(separator: ", ") + "]"]
            }
            return [label] + array.flatMap { lines($0, key: nil) }.map { "  " + $0 }
        case let text as String where text.contains("\n"):
            return [label] + text.split(separator: "\n", omittingEmptySubsequences: false)
                .reversed().drop(while: \.isEmpty).reversed().map { "  " + $0 }
        default:
            return [label + " " + scalar(value)]
        }
    }
    func scalar(_ value: Any) -> String {
        if value is NSNull { return "null" }
        // Foundation's JSON booleans are NSNumbers of type char.
        if let number = value as? NSNumber, String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
        return "\(value)"
    }
    return lines(object, key: nil)
}
