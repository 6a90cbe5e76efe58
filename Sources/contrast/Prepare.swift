import Bench
import ArgumentParser
import Data
import Foundation

/// `contrast prepare`: turn a source data set into the sharded format of docs/data-format.md.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a sharded data set (docs/data-format.md) from Fashion-MNIST or .npy arrays.",
        subcommands: [PrepareFashionMNIST.self, PrepareNPY.self])
}

/// Prints what was written and how its size compares with the source files.
private func report(_ summary: PrepareSummary, source: String) {
    let ratio = Double(summary.preparedBytes) / Double(max(1, summary.sourceBytes))
    say("\(summary.directory): \(summary.sampleCount) samples in \(summary.shardCount) shards, "
        + "\(summary.preparedBytes) bytes (\(String(format: "%.3f", ratio))x the \(summary.sourceBytes) bytes of \(source))")
    for note in summary.notes { say("note: \(note)") }
}

/// Reads every shard back (checksums included) and prints the read throughput.
private func verify(_ directory: String) throws {
    let start = Date()
    let dataset = try ShardedDataset(directory: directory)
    let samples = try dataset.verifyAll()
    let seconds = Date().timeIntervalSince(start)
    let decoded = Double(samples * (dataset.manifest.features.bytesPerSample + (dataset.manifest.labels?.bytesPerSample ?? 0)
                                    + (dataset.manifest.pairs?.bytesPerSample ?? 0)))
    say(String(format: "verified %@: %d samples in %.3f s, %.0f samples/s, %.1f MB/s of shard files, %.1f MB/s decoded",
               directory, samples, seconds, Double(samples) / seconds, Double(dataset.manifest.totalShardBytes) / seconds / 1e6,
               decoded / seconds / 1e6))
}

/// How to cut the data set into shard files: a count (the default) or a size, not both.
struct ShardOptions: ParsableArguments {
    /// The trainer's default data.virtual_shards, so prepared shards are its virtual shards.
    static let defaultShardCount = 64

    @Option(help: ArgumentHelp("Shard files of near-equal size; shard s holds samples [s N / S, (s+1) N / S), the trainer's "
                               + "virtual shards for data.virtual_shards = S. (default: \(defaultShardCount), unless --shard-size is given)"))
    var shards: Int?
    @Option(help: "Samples per shard file instead of a shard count; the last shard may be smaller.")
    var shardSize: Int?

    func validate() throws {
        if shards != nil && shardSize != nil {
            throw ValidationError("--shards and --shard-size both cut the data set into shards; give one of them")
        }
        if let shards, shards <= 0 { throw ValidationError("--shards must be positive, got \(shards)") }
        if let shardSize, shardSize <= 0 { throw ValidationError("--shard-size must be positive, got \(shardSize)") }
    }

    var layout: ShardLayout { shardSize.map { .size($0) } ?? .count(shards ?? Self.defaultShardCount) }
}

extension PairSpec.Kind: ExpressibleByArgument {}

struct PrepareFashionMNIST: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fashion-mnist",
        abstract: "Fashion-MNIST from Debian's IDX files into OUT/train and OUT/test.")
    @Option(help: "Output folder: new or empty (see --overwrite); gets train/ and test/.") var out: String
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions
    @Option(help: "Folder of the IDX .gz files.") var path: String = FashionMNIST.defaultDirectory
    @Option(help: ArgumentHelp("Prepare only the first N samples of each split (0: all), for a small, quick data set; "
                               + "data.train_limit and data.test_limit cut a larger one at training time instead.")) var limit: Int = 0
    @Option(help: ArgumentHelp("Also write a float32 pair vector per image for two-tower training: 'projection', a fixed random "
                               + "projection of a differently augmented copy (docs/data-format.md, \"Pairs\")."))
    var pairs: PairSpec.Kind?
    @Option(help: "Width of the pair vectors. (default: 64)") var pairWidth: Int?
    @Option(help: "Seed of the pair projection and augmentation. (default: 0)") var pairSeed: UInt64?

    func validate() throws {
        if pairs == nil && (pairWidth != nil || pairSeed != nil) {
            throw ValidationError("--pair-width and --pair-seed describe pairs; add --pairs projection")
        }
        if let pairWidth, pairWidth <= 0 { throw ValidationError("--pair-width must be positive, got \(pairWidth)") }
    }

    func run() throws {
        try reportingErrors {
            let spec = pairs.map { PairSpec(kind: $0, width: pairWidth ?? 64, seed: pairSeed ?? 0) }
            for summary in try DatasetPreparation.fashionMNIST(source: path, out: out, layout: shardOptions.layout,
                                                               limit: limit, pairs: spec, overwrite: overwrite) {
                report(summary, source: "the raw IDX .gz files")
                try verify(summary.directory)
            }
        }
    }
}

struct PrepareNPY: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "npy",
        abstract: "NumPy .npy arrays (samples first, C order; u1, <f4, <f8, <i8) into OUT.",
        discussion: "Float features and pairs must be finite: the first NaN or infinity is an error naming its row and column.")
    @Option(help: "Features: uint8 stays uint8, float32/float64/int64 become float32.") var features: String
    @Option(help: "Labels: one integer per sample (int64 or uint8).") var labels: String?
    @Option(help: "Second modality for pairs, converted to float32.") var pairs: String?
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions

    func run() throws {
        try reportingErrors {
            let summary = try DatasetPreparation.npy(features: features, labels: labels, pairs: pairs, out: out,
                                                     layout: shardOptions.layout, overwrite: overwrite)
            report(summary, source: "the .npy files")
            try verify(summary.directory)
        }
    }
}
