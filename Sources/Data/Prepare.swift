import Foundation

/// What `contrast prepare` wrote, for its report.
public struct PrepareSummary: Sendable {
    public var directory: String
    public var sampleCount: Int
    public var shardCount: Int
    /// Bytes of the shard files plus the manifest.
    public var preparedBytes: Int
    /// Bytes of the input files.
    public var sourceBytes: Int
    /// Notes for the user (dtype conversions).
    public var notes: [String] = []
}

/// Turns source data sets into sharded data sets (docs/data-format.md).
public enum DatasetPreparation {
    /// Fashion-MNIST's two splits from the IDX files in `source` into `out`/train and `out`/test:
    /// uint8 [28, 28] features and int64 labels.
    /// - Parameters:
    ///   - layout: how to cut each split into shards.
    ///   - limit: prepare only the first `limit` samples of each split; 0 prepares all.
    /// - Throws: `DataError.tooManyShards` before writing anything when a split has fewer
    ///   samples than the layout's shard count.
    public static func fashionMNIST(source: String = FashionMNIST.defaultDirectory, out: String,
                                    layout: ShardLayout, limit: Int = 0) throws -> [PrepareSummary] {
        let splits = try FashionMNIST.Split.allCases.map { ($0, try FashionMNIST.load(directory: source, split: $0, limit: limit)) }
        for (_, dataset) in splits { _ = try layout.ranges(sampleCount: dataset.count) }
        return try splits.map { split, dataset in
            let directory = out + "/" + split.rawValue
            let samples = SampleBlock(count: dataset.count, features: .uint8(dataset.images),
                                      labels: dataset.labels.map { Int64($0) })
            let manifest = try ShardedDatasetWriter.write(samples, featureShape: [dataset.height, dataset.width],
                                                          to: directory, layout: layout)
            let sources = ["images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"].map { source + "/" + split.filePrefix + "-" + $0 }
            return PrepareSummary(directory: directory, sampleCount: manifest.sampleCount, shardCount: manifest.shards.count,
                                  preparedBytes: try preparedBytes(directory, manifest),
                                  sourceBytes: try sources.reduce(0) { $0 + (try fileSize($1)) })
        }
    }

    /// .npy arrays into `out`: features (u1 stays uint8; f4, f8 and i8 become float32), optional
    /// labels (i8 or u1, one per sample) and optional pairs (converted to float32).
    public static func npy(features: String, labels: String? = nil, pairs: String? = nil,
                           out: String, layout: ShardLayout) throws -> PrepareSummary {
        let featureArray = try NPYArray(path: features)
        guard featureArray.shape.count >= 1 else {
            throw DataError.npyInvalid(path: features, problem: "features must have at least one dimension (samples first)")
        }
        var notes: [String] = []
        let values: FeatureValues
        if let bytes = featureArray.uint8Values() {
            values = .uint8(bytes)
        } else {
            if featureArray.dtype != .float32 { notes.append("features: \(featureArray.dtype) converted to float32") }
            values = .float32(featureArray.float32Values())
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
            if array.dtype != .float32 { notes.append("pairs: \(array.dtype) converted to float32") }
            pairValues = array.float32Values()
            pairShape = array.sampleShape
        }
        let samples = SampleBlock(count: featureArray.sampleCount, features: values, labels: labelValues, pairs: pairValues)
        let manifest = try ShardedDatasetWriter.write(samples, featureShape: featureArray.sampleShape, pairShape: pairShape,
                                                      to: out, layout: layout)
        let sources = [features] + [labels, pairs].compactMap { $0 }
        return PrepareSummary(directory: out, sampleCount: manifest.sampleCount, shardCount: manifest.shards.count,
                              preparedBytes: try preparedBytes(out, manifest),
                              sourceBytes: try sources.reduce(0) { $0 + (try fileSize($1)) }, notes: notes)
    }

    private static func preparedBytes(_ directory: String, _ manifest: ShardManifest) throws -> Int {
        manifest.totalShardBytes + (try fileSize(directory + "/" + ShardManifest.fileName))
    }

    static func fileSize(_ path: String) throws -> Int {
        var status = stat()
        guard stat(path, &status) == 0 else { throw DataError.fileNotFound(path: path) }
        return Int(status.st_size)
    }
}
