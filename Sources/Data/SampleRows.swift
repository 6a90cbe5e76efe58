/// A contiguous run of a data set's samples held in memory, addressed by global sample index:
/// all of an in-memory data set, or the shards one rank reads from a prepared one.
///
/// Immutable after loading, so the training loop and the batch producer share it without locks.
/// Shapes: samples `held` = first ..< first + n of a data set of N; F feature elements and
/// W pair elements per sample, stored row-major as n x F and n x W.
public final class SampleRows: Sendable {
    /// Global indices of the samples held.
    public let held: Range<Int>
    /// Samples in the whole data set (N).
    public let totalCount: Int
    /// Shape of one sample's features, e.g. [28, 28] for an image, [512] for a feature vector.
    public let featureShape: [Int]
    public let features: FeatureValues
    /// One label per held sample, when the data set has labels.
    public let labels: [Int64]?
    /// Shape of one sample's second modality, when the data set has pairs.
    public let pairShape: [Int]?
    public let pairs: [Float]?

    public var count: Int { held.count }
    public var featureWidth: Int { featureShape.reduce(1, *) }
    public var pairWidth: Int { pairShape?.reduce(1, *) ?? 0 }
    /// Grey-scale images (uint8 [H, W]): trained with the image views.
    public var isImage: Bool { featureShape.count == 2 && features.dtype == .uint8 }

    public init(held: Range<Int>, totalCount: Int, featureShape: [Int], features: FeatureValues,
                labels: [Int64]? = nil, pairShape: [Int]? = nil, pairs: [Float]? = nil) {
        let width = featureShape.reduce(1, *)
        precondition(held.lowerBound >= 0 && held.upperBound <= totalCount, "SampleRows: \(held) outside 0..<\(totalCount)")
        precondition(features.elementCount == held.count * width,
                     "SampleRows: \(features.elementCount) feature values are not \(held.count) x \(featureShape)")
        precondition(labels.map { $0.count == held.count } ?? true, "SampleRows: one label per sample")
        precondition((pairs == nil) == (pairShape == nil), "SampleRows: pairs need a pair shape")
        precondition(pairs.map { $0.count == held.count * (pairShape ?? []).reduce(1, *) } ?? true,
                     "SampleRows: pair values do not match the pair shape")
        self.held = held
        self.totalCount = totalCount
        self.featureShape = featureShape
        self.features = features
        self.labels = labels
        self.pairShape = pairShape
        self.pairs = pairs
    }

    /// All of an in-memory image data set.
    public convenience init(_ dataset: ImageDataset) {
        self.init(held: 0..<dataset.count, totalCount: dataset.count, featureShape: [dataset.height, dataset.width],
                  features: .uint8(dataset.images), labels: dataset.labels.map { Int64($0) })
    }

    /// Reads `shards` (a contiguous run) of a prepared data set, checking every checksum, and
    /// opens no other shard file.
    public static func read(_ dataset: ShardedDataset, shards: Range<Int>) throws -> SampleRows {
        precondition(!shards.isEmpty && shards.lowerBound >= 0 && shards.upperBound <= dataset.shardCount,
                     "SampleRows.read: shards \(shards) outside 0..<\(dataset.shardCount)")
        let manifest = dataset.manifest
        let first = manifest.shards[shards.lowerBound].firstSample
        let last = manifest.shards[shards.upperBound - 1]
        let held = first..<(last.firstSample + last.sampleCount)
        let width = manifest.features.elementsPerSample, pairWidth = manifest.pairs?.elementsPerSample ?? 0
        var bytes: [UInt8] = [], floats: [Float] = []
        var labels: [Int64]? = manifest.labels == nil ? nil : []
        var pairs: [Float]? = manifest.pairs == nil ? nil : []
        if manifest.features.dtype == .uint8 { bytes.reserveCapacity(held.count * width) } else { floats.reserveCapacity(held.count * width) }
        labels?.reserveCapacity(held.count)
        pairs?.reserveCapacity(held.count * pairWidth)
        for shard in shards {
            let block = try dataset.readShard(shard)
            switch block.features {
            case .uint8(let values): bytes += values
            case .float32(let values): floats += values
            }
            if labels != nil { labels! += block.labels ?? [] }
            if pairs != nil { pairs! += block.pairs ?? [] }
        }
        return SampleRows(held: held, totalCount: manifest.sampleCount, featureShape: manifest.features.shape,
                          features: manifest.features.dtype == .uint8 ? .uint8(bytes) : .float32(floats),
                          labels: labels, pairShape: manifest.pairs?.shape, pairs: pairs)
    }

    /// Row of global sample `sample` in the held arrays.
    @inline(__always)
    public func row(_ sample: Int) -> Int {
        precondition(held.contains(sample), "sample \(sample) is not held (\(held))")
        return sample - held.lowerBound
    }

    /// The un-augmented features of `samples` as floats (uint8 as byte / 255, the values an
    /// identity view gives) in the rows of `out` (samples.count x F). Evaluation reads these.
    public func writeInputs<Samples: Sequence<Int>>(_ samples: Samples, into out: UnsafeMutablePointer<Float>) {
        let width = featureWidth
        switch features {
        case .uint8(let values):
            values.withUnsafeBufferPointer { all in
                for (index, sample) in samples.enumerated() {
                    let source = all.baseAddress! + row(sample) * width, target = out + index * width
                    // Division, not multiplication by 1/255: the same values the views give for an identity crop.
                    for i in 0..<width { target[i] = Float(source[i]) / 255 }
                }
            }
        case .float32(let values):
            values.withUnsafeBufferPointer { all in
                for (index, sample) in samples.enumerated() {
                    (out + index * width).update(from: all.baseAddress! + row(sample) * width, count: width)
                }
            }
        }
    }

    /// The pair rows of `samples` in the rows of `out` (samples.count x W).
    public func writePairs<Samples: Sequence<Int>>(_ samples: Samples, into out: UnsafeMutablePointer<Float>) {
        guard let pairs else { preconditionFailure("writePairs: the data set has no pairs") }
        let width = pairWidth
        pairs.withUnsafeBufferPointer { all in
            for (index, sample) in samples.enumerated() {
                (out + index * width).update(from: all.baseAddress! + row(sample) * width, count: width)
            }
        }
    }
}
