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
    var samples = 0, decodedBytes = 0
    for index in 0..<dataset.shardCount {
        let block = try dataset.readShard(index)
        samples += block.count
        decodedBytes += block.decodedBytes
    }
    let seconds = Date().timeIntervalSince(start)
    let decoded = Double(decodedBytes)
    say(String(format: "verified %@: %d samples in %.3f s, %.0f samples/s, %.1f MB/s of shard files, %.1f MB/s decoded",
               directory, samples, seconds, Double(samples) / seconds, Double(dataset.manifest.totalShardBytes) / seconds / 1e6,
               decoded / seconds / 1e6))
}

/// How to cut the data set into shard files: a count (the default) or a size, not both.
struct ShardOptions: ParsableArguments {
    /// The trainer's default data.virtual_shards, so prepared shards are its virtual shards.
    static let defaultShardCount = 64

    @Option(help: ArgumentHelp("Shard files of near-equal size; shard s holds samples [s N / S, (s+1) N / S). Training takes the "
                               + "same number of samples from each file, so its global batch (data.batch_per_rank x ranks) must be a "
                               + "multiple of S. (default: \(defaultShardCount), unless --shard-size is given)"))
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
        abstract: "NumPy .npy arrays (samples first, C order; u1, <f4, <f8, <i8) into OUT, or OUT/train and OUT/test.",
        discussion: """
        Float features and pairs must be finite: the first NaN or infinity is an error naming its row and column.

        A run evaluates on a test split: give --test-fraction F to hold out a random F of the samples (OUT/train, \
        OUT/test, and OUT/test-rows.npy with their row numbers), or --test-features (with --test-labels and \
        --test-pairs when you give --labels and --pairs) for a test split of your own. Without either, OUT is \
        one data set: a run on it trains, and says it skipped its kNN evaluation.
        """)
    @Option(help: "Features: uint8 stays uint8, float32/float64/int64 become float32.") var features: String
    @Option(help: "Labels: one integer per sample (int64 or uint8).") var labels: String?
    @Option(help: "Second modality for pairs, converted to float32.") var pairs: String?
    @Option(help: ArgumentHelp("Hold out this fraction of the samples as the test split, drawn at random with --split-seed (not "
                               + "the last rows, so data sorted by class gives a test split of every class); rows keep their order "
                               + "within each split. E.g. 0.2."))
    var testFraction: Double?
    @Option(help: "Seed of the --test-fraction draw: the same seed and files give the same split on any machine. (default: 0)")
    var splitSeed: UInt64?
    @Option(help: "Your own test split's features instead of --test-fraction: the same dtype and sample shape as --features.")
    var testFeatures: String?
    @Option(help: "The test split's labels (needed, and only allowed, with --labels).") var testLabels: String?
    @Option(help: "The test split's pairs (needed, and only allowed, with --pairs).") var testPairs: String?
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions

    func validate() throws {
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw ValidationError("--test-fraction must be between 0 and 1 (the share of samples held out for testing, e.g. 0.2), got \(testFraction)")
        }
        if testFraction != nil && testFeatures != nil {
            throw ValidationError("--test-fraction and --test-features both make the test split; give one of them")
        }
        if splitSeed != nil && testFraction == nil { throw ValidationError("--split-seed is the seed of --test-fraction; add --test-fraction F") }
        if testFeatures == nil && (testLabels != nil || testPairs != nil) {
            throw ValidationError("--test-labels and --test-pairs belong to a test split of your own; add --test-features")
        }
        if testFeatures != nil {
            if (labels == nil) != (testLabels == nil) {
                throw ValidationError(labels == nil ? "--test-labels needs --labels (the training split's labels)"
                                                    : "--labels needs --test-labels with --test-features: the test split needs labels for the kNN evaluation")
            }
            if (pairs == nil) != (testPairs == nil) {
                throw ValidationError(pairs == nil ? "--test-pairs needs --pairs (the training split's pairs)"
                                                   : "--pairs needs --test-pairs with --test-features: both splits need the same modalities")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            let test: TestSplit? = testFraction.map { .fraction($0, seed: splitSeed ?? 0) }
                ?? testFeatures.map { .files(features: $0, labels: testLabels, pairs: testPairs) }
            let summaries = try DatasetPreparation.npy(features: features, labels: labels, pairs: pairs, test: test, out: out,
                                                       layout: shardOptions.layout, overwrite: overwrite)
            for summary in summaries {
                report(summary, source: testFraction == nil ? "the .npy files" : "its share of the .npy files")
                try verify(summary.directory)
            }
            if testFraction != nil {
                say("note: the test split is \(summaries[1].sampleCount) rows drawn with --split-seed \(splitSeed ?? 0); "
                    + "\(out)/\(DatasetPreparation.testRowsFileName) lists their row numbers in \(features)")
            }
            if test == nil {
                say("note: no test split: a run on \(out) trains, but skips its kNN evaluation; "
                    + "add --test-fraction 0.2 (or --test-features) to hold some samples out for testing")
            }
        }
    }
}
