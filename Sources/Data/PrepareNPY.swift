import Foundation
import Storage
import Tensor

/// Where `contrast prepare npy` gets its test split from. Without one the data set is a single
/// folder and a run on it trains but skips its kNN evaluation (it has nothing to test on).
public enum TestSplit: Sendable, Equatable {
    /// Hold out round(fraction x N) of the samples, drawn at random under `seed`
    /// (`DatasetPreparation.testRows`): a random draw, not the last rows, so inputs sorted by
    /// class still give a test split of every class.
    case fraction(Double, seed: UInt64)
    /// The user's own test arrays, read and checked as the training arrays are, and against
    /// them (same feature dtype and sample shape, labels and pairs both or neither).
    case files(features: String, labels: String?, pairs: String?)
}

extension DatasetPreparation {
    /// Name of the file beside `train/` and `test/` that `--test-fraction` writes: the test
    /// samples' row numbers in the source .npy files, int64, ascending.
    public static let testRowsFileName = "test-rows.npy"

    /// .npy arrays into `out`: features (u1 stays uint8; f4, f8 and i8 become float32), optional
    /// labels (i8 or u1, one per sample) and optional pairs (converted to float32). Without
    /// `test`, `out` is one data-set folder; with it, `out`/train and `out`/test
    /// (`ShardedDataset.splits(of:)`), and for a fraction `out`/test-rows.npy.
    /// - Parameters:
    ///   - layout: how to cut the training split into shards; the test split is cut the same
    ///     way, into at most one shard per sample (it is read whole by the evaluating rank).
    ///   - overwrite: replace what `out` holds (see `placing`); without it `out` must be empty.
    /// - Returns: one summary per folder written (the training split's first).
    /// - Throws: `DataError.npyInvalid` naming the first row and column of a NaN or infinite
    ///   feature or pair value (a run would only stop later, at a loss that is not finite), or a
    ///   test split that does not match the training one; `DataError.testSplitEmpty` when a
    ///   fraction leaves a split without samples. Nothing is written then.
    public static func npy(features: String, labels: String? = nil, pairs: String? = nil, test: TestSplit? = nil,
                           out: String, layout: ShardLayout, overwrite: Bool = false) throws -> [PrepareSummary] {
        try checkOutput(out, overwrite: overwrite)
        let all = try NPYSamples(features: features, labels: labels, pairs: pairs)
        guard let test else {
            return [try placing(out) { staging in try all.write(to: staging, named: out, layout: layout) }]
        }
        let train: NPYSamples, rows: [Int]?
        var held: NPYSamples
        switch test {
        case .fraction(let fraction, let seed):
            let split = try testSplit(sampleCount: all.count, fraction: fraction, seed: seed)
            train = all.rows(split.train)
            held = all.rows(split.test)
            held.notes = []   // the training split's summary has them
            rows = split.test
        case .files(let testFeatures, let testLabels, let testPairs):
            train = all
            held = try NPYSamples(features: testFeatures, labels: testLabels, pairs: testPairs, split: "test ")
            try held.requireMatching(train)
            rows = nil
        }
        // Checked before anything is written, like the fashion-mnist splits.
        _ = try layout.ranges(sampleCount: train.count)
        let testLayout: ShardLayout
        if case .count(let shards) = layout { testLayout = .count(min(shards, held.count)) } else { testLayout = layout }
        return try placing(out) { staging in
            let summaries = [try train.write(to: staging + "/train", named: out + "/train", layout: layout),
                             try held.write(to: staging + "/test", named: out + "/test", layout: testLayout)]
            if let rows {
                let file = NPYArray.encode(int64: rows.map { Int64($0) }, shape: [rows.count])
                do { try AtomicFile.write(file, to: URL(fileURLWithPath: staging + "/" + testRowsFileName)) } catch {
                    throw (error as? StorageError).map { DataError(writing: $0) } ?? error
                }
            }
            return summaries
        }
    }

    /// The rows of N samples that `TestSplit.fraction(F, seed:)` holds out, ascending: the first
    /// T = round(F N) entries of a Fisher-Yates shuffle of 0..<N run from the front (i = 0 ..< T
    /// swaps i with i + nextInt(below: N - i)) with `RandomStream(seed, id(.testSplit))`.
    /// A pure function of (N, F, seed): the same on every machine, and a different seed gives
    /// another split.
    /// - Throws: `DataError.testSplitEmpty` when T is 0 or N.
    public static func testRows(sampleCount: Int, fraction: Double, seed: UInt64) throws -> [Int] {
        precondition(fraction > 0 && fraction < 1, "testRows: fraction \(fraction) must be in (0, 1)")
        let testCount = Int((fraction * Double(sampleCount)).rounded())
        guard testCount > 0 && testCount < sampleCount else {
            throw DataError.testSplitEmpty(fraction: fraction, sampleCount: sampleCount, testCount: testCount)
        }
        var order = Array(0..<sampleCount)
        var random = RandomStream(seed: seed, stream: RandomStream.id(.testSplit))
        for i in 0..<testCount { order.swapAt(i, i + random.nextInt(below: sampleCount - i)) }
        return order[..<testCount].sorted()
    }

    /// `testRows` and the rows it leaves for training, both ascending: the split every
    /// `prepare --test-fraction` makes.
    public static func testSplit(sampleCount: Int, fraction: Double, seed: UInt64) throws -> (train: [Int], test: [Int]) {
        let test = try testRows(sampleCount: sampleCount, fraction: fraction, seed: seed)
        var isTest = [Bool](repeating: false, count: sampleCount)
        for row in test { isTest[row] = true }
        return ((0..<sampleCount).filter { !isTest[$0] }, test)
    }

    /// Rows of `width` values: the first NaN or infinity is an error naming its row and column.
    static func requireFinite(_ values: [Float], width: Int, path: String, what: String) throws {
        guard let index = values.firstIndex(where: { !$0.isFinite }) else { return }
        let row = index / max(1, width), column = index % max(1, width)
        throw DataError.npyInvalid(path: path, problem: "\(what) row \(row), column \(column) is \(values[index]) "
                                   + "(the first value that is not finite); drop or repair such rows before `contrast prepare`, "
                                   + "e.g. keep = np.isfinite(x.reshape(len(x), -1)).all(axis=1); x, y = x[keep], y[keep]")
    }
}

/// One split's .npy arrays, read, converted and checked: what `prepare npy` writes as one folder.
struct NPYSamples {
    var block: SampleBlock
    var featureShape: [Int]
    var pairShape: [Int]?
    /// Conversions to tell the user about.
    var notes: [String]
    /// The files read and their bytes (for a subset of them, its share by samples).
    var sources: [String]
    var sourceBytes: Int
    /// The features file, for messages.
    var featuresPath: String

    var count: Int { block.count }

    /// Reads the arrays; `split` ("test " or "") prefixes the notes.
    init(features: String, labels: String?, pairs: String?, split: String = "") throws {
        let featureArray = try NPYArray(path: features)
        guard featureArray.shape.count >= 1 else {
            throw DataError.npyInvalid(path: features, problem: "features must have at least one dimension (samples first)")
        }
        var notes: [String] = []
        let values: FeatureValues
        if let bytes = featureArray.uint8Values() {
            values = .uint8(bytes)
        } else {
            if featureArray.dtype != .float32 { notes.append("\(split)features: \(featureArray.dtype) converted to float32") }
            let floats = featureArray.float32Values()
            try DatasetPreparation.requireFinite(floats, width: featureArray.shape.dropFirst().reduce(1, *), path: features, what: "feature")
            values = .float32(floats)
        }
        var labelValues: [Int64]?
        if let labels {
            let array = try NPYArray(path: labels)
            guard array.shape.count == 1 else {
                throw DataError.npyInvalid(path: labels, problem: "labels must be one-dimensional (one per sample), got shape \(array.shape)")
            }
            guard let values = array.int64Values() else {
                throw DataError.npyInvalid(path: labels, problem: "labels must be integers (i8 or u1), got \(array.dtype); save y.astype(np.int64)")
            }
            guard array.sampleCount == featureArray.sampleCount else {
                throw DataError.sampleCountMismatch(firstPath: features, first: featureArray.sampleCount, secondPath: labels, second: array.sampleCount)
            }
            labelValues = values
        }
        var pairValues: [Float]?, pairShape: [Int]?
        if let pairs {
            let array = try NPYArray(path: pairs)
            guard array.shape.count >= 1 else { throw DataError.npyInvalid(path: pairs, problem: "pairs must have at least one dimension") }
            guard array.sampleCount == featureArray.sampleCount else {
                throw DataError.sampleCountMismatch(firstPath: features, first: featureArray.sampleCount, secondPath: pairs, second: array.sampleCount)
            }
            if array.dtype != .float32 { notes.append("\(split)pairs: \(array.dtype) converted to float32") }
            let floats = array.float32Values()
            try DatasetPreparation.requireFinite(floats, width: array.shape.dropFirst().reduce(1, *), path: pairs, what: "pair")
            pairValues = floats
            pairShape = array.sampleShape
        }
        block = SampleBlock(count: featureArray.sampleCount, features: values, labels: labelValues, pairs: pairValues)
        featureShape = featureArray.sampleShape
        self.pairShape = pairShape
        self.notes = notes
        sources = [features] + [labels, pairs].compactMap { $0 }
        sourceBytes = try sources.reduce(0) { $0 + (try DatasetPreparation.fileSize($1)) }
        featuresPath = features
    }

    /// A test split must be able to stand beside this training split: the same kind of
    /// features, and labels and pairs exactly when the training split has them.
    func requireMatching(_ train: NPYSamples) throws {
        func describe(_ samples: NPYSamples) -> String { "\(samples.block.features?.dtype.rawValue ?? "none") \(samples.featureShape)" }
        guard block.features?.dtype == train.block.features?.dtype && featureShape == train.featureShape else {
            throw DataError.npyInvalid(path: featuresPath, problem: "the test features are \(describe(self)) a sample, the training features "
                                       + "(\(train.featuresPath)) \(describe(train)); save both splits with the same dtype and sample shape")
        }
        if (block.labels == nil) != (train.block.labels == nil) {
            throw DataError.npyInvalid(path: featuresPath, problem: "the \(block.labels == nil ? "training" : "test") split has labels "
                                       + "and the other none; give --labels and --test-labels together, or neither")
        }
        if (block.pairs == nil) != (train.block.pairs == nil) {
            throw DataError.npyInvalid(path: featuresPath, problem: "the \(block.pairs == nil ? "training" : "test") split has pairs "
                                       + "and the other none; give --pairs and --test-pairs together, or neither")
        }
        if let pairShape, pairShape != train.pairShape {
            throw DataError.npyInvalid(path: sources.last!, problem: "the test pairs are \(pairShape) a sample, the training pairs "
                                       + "\(train.pairShape ?? []); save both splits' pairs with the same shape")
        }
    }

    /// The samples at `indices` (in that order), with their share of the source bytes.
    func rows(_ indices: [Int]) -> NPYSamples {
        var result = self
        let featureWidth = featureShape.reduce(1, *)
        func gather<T>(_ values: [T], width: Int) -> [T] {
            var out: [T] = []
            out.reserveCapacity(indices.count * width)
            for row in indices { out += values[(row * width)..<((row + 1) * width)] }
            return out
        }
        let features: FeatureValues? = switch block.features {
        case .uint8(let values): .uint8(gather(values, width: featureWidth))
        case .float32(let values): .float32(gather(values, width: featureWidth))
        case nil: nil
        }
        result.block = SampleBlock(count: indices.count, features: features, labels: block.labels.map { gather($0, width: 1) },
                                   pairs: block.pairs.map { gather($0, width: (pairShape ?? []).reduce(1, *)) })
        result.sourceBytes = Int((Double(sourceBytes) * Double(indices.count) / Double(max(1, count))).rounded())
        return result
    }

    /// Writes the samples into `directory` (a staging folder) and describes them as `name`.
    func write(to directory: String, named name: String, layout: ShardLayout) throws -> PrepareSummary {
        let manifest = try ShardedDatasetWriter.write(block, featureShape: featureShape, pairShape: pairShape, to: directory, layout: layout)
        return PrepareSummary(directory: name, sampleCount: manifest.sampleCount, shardCount: manifest.shards.count,
                              preparedBytes: manifest.totalShardBytes + (try DatasetPreparation.fileSize(directory + "/" + ShardManifest.fileName)),
                              sourceBytes: sourceBytes, notes: notes)
    }
}
