import Storage

/// Everything that can go wrong reading a data set or laying out its batches.
///
/// Each description is one line that names the file or config key, the problem and the fix,
/// because it is what a person sees when `contrast train` stops before the first step.
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file does not exist.
    case fileNotFound(path: String)
    /// The file exists but cannot be opened (permissions, a directory, ...).
    case cannotOpen(path: String, reason: String)
    /// Writing a file failed.
    case writeFailed(path: String, reason: String)
    /// The IDX magic number is not the one for this kind of file.
    case wrongMagic(path: String, expected: UInt32, got: UInt32)
    /// The file ends before `section` ("header", "pixel data", "label data") is complete.
    case truncated(path: String, section: String, expectedBytes: Int, gotBytes: Int)
    /// The images and labels files disagree on how many samples there are.
    case countMismatch(imagesPath: String, images: Int, labelsPath: String, labels: Int)
    /// zlib could not decompress the stream (a damaged gzip file).
    case corruptStream(path: String, detail: String)
    /// The global batch cannot be split evenly across the virtual shards.
    case batchNotMultipleOfShards(globalBatchSize: Int, virtualShards: Int)
    /// The global batch cannot be split evenly across the ranks.
    case batchNotMultipleOfRanks(globalBatchSize: Int, worldSize: Int)
    /// The smallest virtual shard cannot fill even one batch.
    case epochTooShort(sampleCount: Int, virtualShards: Int, perShard: Int)
    /// The global batch cannot take the same number of samples from every shard file of a
    /// prepared data set (the files, not data.virtual_shards, are its shards).
    case preparedBatchNotMultipleOfShards(directory: String, shards: Int, batchPerRank: Int, worldSize: Int)
    /// The smallest shard file of a prepared data set cannot give one batch its share.
    case preparedEpochTooShort(directory: String, sampleCount: Int, shards: Int, smallestShard: Int, batchPerRank: Int, worldSize: Int)
    /// `prepare npy --test-fraction` would leave the test or the training split without samples.
    case testSplitEmpty(fraction: Double, sampleCount: Int, testCount: Int)
    /// A prepared data set's manifest (dataset.json) is missing, unreadable or inconsistent.
    case manifestInvalid(path: String, problem: String)
    /// Shard `shard` of a prepared data set is missing, the wrong size, or fails a checksum.
    case shardInvalid(path: String, shard: Int, problem: String)
    /// A .npy file cannot be used as it is.
    case npyInvalid(path: String, problem: String)
    /// A safetensors file's header or layout is not valid.
    case safetensorsInvalid(path: String, problem: String)
    /// Two inputs of `contrast prepare` disagree on the sample count.
    case sampleCountMismatch(firstPath: String, first: Int, secondPath: String, second: Int)
    /// `contrast prepare` was asked for more shards than there are samples.
    case tooManyShards(shards: Int, sampleCount: Int)
    /// A data file's header declares no samples: nothing to train on.
    case noSamples(path: String)
    /// `contrast prepare` was pointed at a folder that already holds something.
    case outputNotEmpty(path: String)
    /// A prepared data set has no `features` (a text set, or encoded images alone), and the
    /// reader needs the model's input.
    case noFeatures(path: String, fields: [NamedField])
    /// A text table (`contrast prepare text`) cannot be used: a missing column, a bad row under
    /// --strict, no usable rows.
    case textInvalid(path: String, problem: String)
    /// A webdataset tar shard (`contrast prepare webdataset`) cannot be used.
    case webDatasetInvalid(path: String, problem: String)
    /// The samples cannot be kept on disk (`data.hold: disk`) in `directory`.
    case spillFailed(directory: String, reason: String)
    /// `contrast prepare images`: a folder, file or labels CSV it cannot use; `problem` ends with the fix.
    case imagesInvalid(path: String, problem: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "data file \(path) not found; install Debian's dataset-fashion-mnist (launch/setup.sh does) "
                + "or set data.path to the folder holding the IDX files"
        case .cannotOpen(let path, let reason):
            return "data file \(path) cannot be opened (\(reason)); check that it is a readable file"
        case .writeFailed(let path, let reason):
            return "cannot write data file \(path) (\(reason)); check that its folder exists, is writable and has space"
        case .wrongMagic(let path, let expected, let got):
            return "data file \(path) is not the expected IDX file: magic number \(hex(got)), expected \(hex(expected)); "
                + "point data.path at the images-idx3 / labels-idx1 files of the data set"
        case .truncated(let path, let section, let expectedBytes, let gotBytes):
            return "data file \(path) is truncated: expected \(expectedBytes) bytes of \(section), got \(gotBytes); "
                + "reinstall or re-download it"
        case .countMismatch(let imagesPath, let images, let labelsPath, let labels):
            return "\(imagesPath) holds \(images) images but \(labelsPath) holds \(labels) labels; "
                + "the two files must come from the same split of the same data set"
        case .corruptStream(let path, let detail):
            return "data file \(path) is not a valid gzip stream (\(detail)); reinstall or re-download it"
        case .batchNotMultipleOfShards(let globalBatchSize, let virtualShards):
            return "global batch \(globalBatchSize) (data.batch_per_rank x ranks) is not a multiple of "
                + "data.virtual_shards = \(virtualShards); choose data.batch_per_rank so that it is"
        case .batchNotMultipleOfRanks(let globalBatchSize, let worldSize):
            return "global batch \(globalBatchSize) cannot be split evenly over \(worldSize) ranks; "
                + "set data.batch_per_rank (the global batch is data.batch_per_rank x ranks)"
        case .epochTooShort(let sampleCount, let virtualShards, let perShard):
            return "\(sampleCount) samples in data.virtual_shards = \(virtualShards) shards cannot give each batch "
                + "\(perShard) samples per shard; lower data.batch_per_rank or data.virtual_shards"
        case .preparedBatchNotMultipleOfShards(let directory, let shards, let batchPerRank, let worldSize):
            let global = batchPerRank * worldSize
            var fixes = ["set data.batch_per_rank to \(Self.batchPerRank(near: batchPerRank, worldSize: worldSize, shards: shards))"]
            if let count = Self.divisor(of: global, atMost: shards) { fixes.append("re-prepare it with --shards \(count) (a divisor of \(global))") }
            return "the global batch \(Self.batch(batchPerRank, worldSize)) takes the same number of samples from each of the \(shards) "
                + "shard files of the prepared data set \(directory) (`contrast prepare --shards`), so it must be a multiple of \(shards): "
                + fixes.joined(separator: ", or ") + " (data.virtual_shards applies to fashion-mnist only)"
        case .preparedEpochTooShort(let directory, let sampleCount, let shards, let smallestShard, let batchPerRank, let worldSize):
            let global = batchPerRank * worldSize
            var fixes: [String] = []
            // The largest batch per rank whose global batch every shard can fill and that the shards divide.
            let largest = stride(from: smallestShard * shards / worldSize, through: 1, by: -1).first { ($0 * worldSize) % shards == 0 }
            if let largest { fixes.append("lower data.batch_per_rank to \(largest) or less") }
            // With S' near-equal shards the smallest holds floor(N / S') >= B / S' samples when S' divides B and B <= N.
            if global <= sampleCount, let count = Self.divisor(of: global, atMost: shards - 1) {
                fixes.append("re-prepare it with fewer shards (--shards \(count))")
            }
            return "the prepared data set \(directory) has \(sampleCount) samples in \(shards) shard files (`contrast prepare --shards`), "
                + "the smallest of \(smallestShard), but the global batch \(Self.batch(batchPerRank, worldSize)) takes \(global / shards) "
                + "from each: " + (fixes.isEmpty ? "lower data.batch_per_rank" : fixes.joined(separator: ", or "))
        case .testSplitEmpty(let fraction, let sampleCount, let testCount):
            return "--test-fraction \(fraction) of \(sampleCount) samples leaves " + (testCount == 0 ? "no test sample" : "no training sample")
                + "; choose a fraction between \(1 / Double(sampleCount)) and \(1 - 1 / Double(sampleCount)), e.g. 0.2"
        case .manifestInvalid(let path, let problem):
            return "data set manifest \(path): \(problem); re-run `contrast prepare` to rebuild the data set"
        case .shardInvalid(let path, let shard, let problem):
            return "data set shard \(shard) (\(path)): \(problem); re-run `contrast prepare` or restore the file"
        case .npyInvalid(let path, let problem):
            return ".npy file \(path): \(problem)"
        case .safetensorsInvalid(let path, let problem):
            return "safetensors file \(path): \(problem)"
        case .sampleCountMismatch(let firstPath, let first, let secondPath, let second):
            return "\(firstPath) holds \(first) samples but \(secondPath) holds \(second); "
                + "their first dimensions must match (one row per sample)"
        case .tooManyShards(let shards, let sampleCount):
            return "cannot cut \(sampleCount) samples into \(shards) shards (a shard would be empty); "
                + "pass --shards \(sampleCount) or fewer, or --shard-size N"
        case .noSamples(let path):
            return "data file \(path) holds no samples (its header declares 0); point data.path at a data set that has some, "
                + "or reinstall or re-download it"
        case .outputNotEmpty(let path):
            return "the output folder \(path) is not empty; choose a new or empty folder, "
                + "or add --overwrite to replace the data set in it (everything in the folder is replaced)"
        case .noFeatures(let path, let fields):
            let names = fields.map(\.name).joined(separator: ", ")
            if fields.contains(where: { $0.dtype == .utf8 }) && !fields.contains(where: { $0.dtype == .bytes }) {
                return "the data set \(path) holds text (fields \(names)) and no features; it trains the text encoder "
                    + "(contrast train with model.encoder: bert and data.vocab, docs/text.md); here give a data set with features "
                    + "(contrast prepare fashion-mnist, npy)"
            }
            if fields.contains(where: { $0.dtype == .bytes && $0.name == ShardManifest.encodedImageField }) {
                return "the data set \(path) holds encoded images (fields \(names)) without the size to decode them to; "
                    + "re-prepare it with --size S (contrast prepare webdataset --store jpeg --size 32), or with --store pixels --size S"
            }
            return "the data set \(path) holds no features (its fields: \(names)); train on a data set with features "
                + "(contrast prepare fashion-mnist, npy, images)"
        case .textInvalid(let path, let problem):
            return "text file \(path): \(problem)"
        case .webDatasetInvalid(let path, let problem):
            return "webdataset shard \(path): \(problem)"
        case .spillFailed(let directory, let reason):
            return "cannot keep the samples on disk in \(directory) (data.spill_dir, data.hold: disk): \(reason); "
                + "point data.spill_dir at a writable local directory with room for this rank's samples, or set data.hold: memory"
        case .imagesInvalid(let path, let problem):
            return "\(path): \(problem)"
        }
    }
}

extension DataError {
    /// "128 (data.batch_per_rank 64 x 2 ranks)".
    static func batch(_ batchPerRank: Int, _ worldSize: Int) -> String {
        "\(batchPerRank * worldSize) (data.batch_per_rank \(batchPerRank) x \(worldSize) rank\(worldSize == 1 ? "" : "s"))"
    }

    /// The batch per rank nearest `batchPerRank` (the larger on a tie) whose global batch `shards` divides.
    static func batchPerRank(near batchPerRank: Int, worldSize: Int, shards: Int) -> Int {
        let step = shards / gcd(shards, worldSize)   // b x P is a multiple of S exactly when b is a multiple of this
        let below = batchPerRank / step * step, above = below + step
        return below > 0 && batchPerRank - below < above - batchPerRank ? below : above
    }

    /// The largest divisor of `value` that is at most `limit`, nil when there is none above 1.
    static func divisor(of value: Int, atMost limit: Int) -> Int? {
        stride(from: min(value, limit), through: 2, by: -1).first { value % $0 == 0 }
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// Storage's error while writing a data set, in Data's words: the file (or "(zstd)") and
    /// the call that failed.
    init(writing error: StorageError) {
        switch error.kind {
        case .system, .corrupt: self = .writeFailed(path: error.path, reason: "\(error.call): \(error.reason)")
        case .zstd: self = .writeFailed(path: "(zstd)", reason: "\(error.call) failed: \(error.reason)")
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
