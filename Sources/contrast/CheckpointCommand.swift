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
        @Argument(help: "A checkpoint directory (run_dir/checkpoints/step-NNNNNNNNN).") var path: String

        func run() throws {
            try reportingErrors {
                let url = URL(fileURLWithPath: path)
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
                lines.append("  state: " + String(decoding: manifest.state, as: UTF8.self))
                say(lines.joined(separator: "\n"))
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every shard: present, sizes and checksums right (non-zero exit otherwise).")
        @Argument(help: "A checkpoint directory.") var path: String

        func run() throws {
            try reportingErrors {
                try CheckpointStore.verify(URL(fileURLWithPath: path))
                say("checkpoint \(path): OK")
            }
        }
    }
}
