import Foundation
import Storage
import Tensor

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

/// A second modality made from each image for paired (CLIP-style, two-tower) training.
///
/// `projection`: a second "sensor" sees the same instance through a different nuisance and a
/// different representation. Image n's pair is P v, where v is an augmented view of the image
/// (`ViewMaker` with the default `ViewSettings()`, stream `RandomStream.id(.view, 65_535, n, 0)`
/// under seed `seed`, epoch 65,535 being one no training run reaches) and P is a fixed W x (H*W)
/// Gaussian matrix with entries N(0, 1 / (H*W)). Everything is a pure function of (seed, image),
/// bit for bit on any machine. Shapes: W pair width, D = H*W pixels.
public struct PairSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case projection }

    public var kind: Kind
    /// W: floats per pair vector.
    public var width: Int
    /// Seed of the projection matrix and of the augmented copies.
    public var seed: UInt64

    public init(kind: Kind = .projection, width: Int = 64, seed: UInt64 = 0) {
        precondition(width > 0, "PairSpec: width \(width) must be positive")
        self.kind = kind
        self.width = width
        self.seed = seed
    }

    /// Epoch coordinate of the augmented copies' view streams (the largest the stream id holds).
    public static let viewEpoch = 65_535

    /// P, W x D row-major: entry k is normal k of `RandomStream(seed, id(.pairProjection))`
    /// (Box-Muller pair k / 2, cos for even k, sin for odd; `GaussianNoise`) divided by sqrt(D).
    public func projection(inputs: Int) -> [Float] {
        let count = width * inputs
        let blocks = (count + 3) / 4
        var draws = [UInt32](repeating: 0, count: (blocks + Philox.lanes - 1) / Philox.lanes * Philox.lanes * 4)
        var normals = [Float](repeating: 0, count: 4 * blocks)
        draws.withUnsafeMutableBufferPointer { draws in
            Philox.fillDraws(seed: seed, stream: RandomStream.id(.pairProjection), position: 0, blocks: blocks, into: draws.baseAddress!)
            normals.withUnsafeMutableBufferPointer {
                GaussianNoise.normals(fromDraws: draws.baseAddress!, pairs: 2 * blocks, into: $0.baseAddress!)
            }
        }
        let standardDeviation = Float(inputs).squareRoot()
        return normals[..<count].map { $0 / standardDeviation }
    }

    /// The pair vectors of every image of `dataset`: count x W, row-major.
    /// pair[w] = sum over i = 0, 1, ... of P[w, i] v[i], accumulated in float32 in that order.
    public func pairs(for dataset: ImageDataset) -> [Float] {
        let inputs = dataset.pixelsPerImage, W = width
        let matrix = projection(inputs: inputs)
        // Transposed (D x W) so the accumulation runs along W, contiguous and vectorised.
        var transposed = [Float](repeating: 0, count: matrix.count)
        for w in 0..<W { for i in 0..<inputs { transposed[i * W + w] = matrix[w * inputs + i] } }
        let maker = ViewMaker(dataset: dataset, settings: ViewSettings())
        var result = [Float](repeating: 0, count: dataset.count * W)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: maker.scratchCount + inputs)
        defer { scratch.deallocate() }
        let view = scratch + maker.scratchCount
        dataset.images.withUnsafeBufferPointer { images in
            transposed.withUnsafeBufferPointer { transposed in
                result.withUnsafeMutableBufferPointer { result in
                    for sample in 0..<dataset.count {
                        maker.makeView(image: images.baseAddress! + sample * inputs, into: view, seed: seed,
                                       epoch: Self.viewEpoch, sample: sample, view: 0, scratch: scratch)
                        let pair = result.baseAddress! + sample * W
                        for i in 0..<inputs {
                            let value = view[i], column = transposed.baseAddress! + i * W
                            for w in 0..<W { pair[w] += column[w] * value }
                        }
                    }
                }
            }
        }
        return result
    }
}

/// Turns source data sets into sharded data sets (docs/data-format.md).
public enum DatasetPreparation {
    /// Fashion-MNIST's two splits from the IDX files in `source` into `out`/train and `out`/test:
    /// uint8 [28, 28] features and int64 labels, and float32 [W] pairs when `pairs` is given.
    /// - Parameters:
    ///   - layout: how to cut each split into shards.
    ///   - limit: prepare only the first `limit` samples of each split; 0 prepares all.
    ///   - pairs: the second modality to add (see `PairSpec`), or nil for none.
    ///   - overwrite: replace what `out` holds (see `placing`); without it `out` must be empty.
    /// - Throws: `DataError.tooManyShards` before writing anything when a split has fewer
    ///   samples than the layout's shard count; `DataError.outputNotEmpty` likewise.
    public static func fashionMNIST(source: String = FashionMNIST.defaultDirectory, out: String,
                                    layout: ShardLayout, limit: Int = 0, pairs: PairSpec? = nil, captions: Bool = false,
                                    overwrite: Bool = false) throws -> [PrepareSummary] {
        try checkOutput(out, overwrite: overwrite)
        let splits = try FashionMNIST.Split.allCases.map { ($0, try FashionMNIST.load(directory: source, split: $0, limit: limit)) }
        for (_, dataset) in splits { _ = try layout.ranges(sampleCount: dataset.count) }
        return try placing(out) { staging in try splits.map { split, dataset in
            let directory = staging + "/" + split.rawValue
            let samples = SampleBlock(count: dataset.count, features: .uint8(dataset.images),
                                      labels: dataset.labels.map { Int64($0) }, pairs: pairs?.pairs(for: dataset),
                                      fields: captions ? ["caption": .variable(VariableValues(strings: FashionCaptions.captions(for: dataset)))] : [:])
            let manifest = try ShardedDatasetWriter.write(samples, featureShape: [dataset.height, dataset.width],
                                                          pairShape: pairs.map { [$0.width] },
                                                          fields: captions ? [NamedField(name: "caption", dtype: .utf8)] : [],
                                                          to: directory, layout: layout, classes: FashionMNIST.classNames)
            let sources = ["images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"].map { source + "/" + split.filePrefix + "-" + $0 }
            let notes = (pairs.map { ["pairs: \($0.kind.rawValue) of augmented copies, width \($0.width), seed \($0.seed)"] } ?? [])
                + (captions ? ["captions: class name and attributes read off the pixels (docs/data-format.md)"] : [])
            return PrepareSummary(directory: out + "/" + split.rawValue, sampleCount: manifest.sampleCount,
                                  shardCount: manifest.shards.count, preparedBytes: try preparedBytes(directory, manifest),
                                  sourceBytes: try sources.reduce(0) { $0 + (try fileSize($1)) }, notes: notes)
        } }
    }

    /// `out` must be absent or an empty folder, unless `overwrite`.
    static func checkOutput(_ out: String, overwrite: Bool) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else { throw DataError.writeFailed(path: out, reason: "it is a file, not a folder") }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        if !entries.isEmpty && !overwrite { throw DataError.outputNotEmpty(path: out) }
    }

    /// Writes a data set into a temporary sibling of `out` (`.NAME.preparing-PID`) and, once
    /// `body` has written all of it, puts it in `out`'s place: an old `out` is renamed aside,
    /// the new folder renamed to `out`, and the old one removed. So `out` never mixes old and
    /// new files (no stale shards a manifest does not name), a failed or interrupted prepare
    /// leaves the old data set as it was, and between the two renames `out` is briefly absent.
    static func placing<T>(_ out: String, _ body: (String) throws -> T) throws -> T {
        let url = URL(fileURLWithPath: out).standardizedFileURL
        let parent = url.deletingLastPathComponent().path, name = url.lastPathComponent
        let pid = getpid()
        let staging = parent + "/." + name + ".preparing-\(pid)", aside = parent + "/." + name + ".replaced-\(pid)"
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw DataError.writeFailed(path: parent, reason: "cannot create the folder")
        }
        try? FileManager.default.removeItem(atPath: staging)
        let result: T
        do { result = try body(staging) } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
        let hadOld = FileManager.default.fileExists(atPath: url.path)
        if hadOld {
            // rename(2) replaces only an empty folder: move the old one aside first.
            guard rename(url.path, aside) == 0 else {
                let reason = String(cString: strerror(errno))
                try? FileManager.default.removeItem(atPath: staging)
                throw DataError.writeFailed(path: out, reason: "cannot move the old data set aside: \(reason)")
            }
        }
        guard rename(staging, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            if hadOld { _ = rename(aside, url.path) }
            throw DataError.writeFailed(path: out, reason: "cannot rename \(staging) to it: \(reason)")
        }
        if hadOld { try? FileManager.default.removeItem(atPath: aside) }
        do { try AtomicFile.syncDirectory(parent) } catch { throw DataError(writing: error) }
        return result
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
