/// A contiguous run of a data set's samples, addressed by global sample index: all of an
/// in-memory data set, or the shards one rank reads from a prepared one.
///
/// The features and pairs are held in memory, or (`data.hold: disk`) in unnamed temporary
/// files (`SampleFile`), one row per sample, read a batch at a time; labels are always in
/// memory. Readers go through `withFeatureRows` / `withPairRows` / `writeInputs` /
/// `writePairs`, which give the same values either way.
///
/// Immutable after loading, so the training loop and the batch producer share it without locks.
/// Shapes: samples `held` = first ..< first + n of a data set of N; F feature elements and
/// W pair elements per sample, stored row-major as n x F and n x W.
public final class SampleRows: Sendable {
    /// The files the feature and pair rows are kept in instead of memory.
    public struct Disk: Sendable {
        public let features: SampleFile
        public let pairs: SampleFile?

        public init(features: SampleFile, pairs: SampleFile?) {
            self.features = features
            self.pairs = pairs
        }
    }

    /// Encoded images (a `--store jpeg` set) held in place of feature rows: each sample's file
    /// bytes, decoded with `decode` into its uint8 [C, S, S] row whenever a reader asks for rows
    /// (`withFeatureRows`): in the thread that makes the batch, so in the prefetch thread.
    public struct Encoded: Sendable {
        public let images: VariableValues
        public let decode: ImageDecodeSpec

        public init(images: VariableValues, decode: ImageDecodeSpec) {
            self.images = images
            self.decode = decode
        }
    }

    /// Global indices of the samples held.
    public let held: Range<Int>
    /// Samples in the whole data set (N).
    public let totalCount: Int
    /// Shape of one sample's features, e.g. [28, 28] for an image, [512] for a feature vector.
    public let featureShape: [Int]
    /// The feature rows in memory; empty (of the features' type) when they are on `disk`.
    public let features: FeatureValues
    /// One label per held sample, when the data set has labels.
    public let labels: [Int64]?
    /// Shape of one sample's second modality, when the data set has pairs.
    public let pairShape: [Int]?
    /// The pair rows in memory; nil when the data set has none or they are on `disk`.
    public let pairs: [Float]?
    /// Where the rows are when they are not in memory.
    public let disk: Disk?
    /// The encoded images the feature rows are decoded from, when the data set stores them so.
    public let encoded: Encoded?
    /// When the rows are one batch's samples gathered in batch order (`data.hold: stream`), not
    /// a contiguous run: the global index of each row's sample (`held` is then empty).
    public let gathered: [Int]?
    private let gatheredRows: [Int: Int]?

    public var count: Int { gathered?.count ?? held.count }
    public var featureWidth: Int { featureShape.reduce(1, *) }
    public var pairWidth: Int { pairShape?.reduce(1, *) ?? 0 }
    /// Whether the data set has a second modality (in memory or on disk).
    public var hasPairs: Bool { pairShape != nil }
    /// Images, trained with the image views: uint8 [H, W] (grey), or [C, H, W] planes with C = 1 or 3.
    public var isImage: Bool { features.dtype == .uint8 && Self.isImageShape(featureShape) }

    /// [H, W], or [C, H, W] with C = 1 or 3: the shapes of uint8 features that are images.
    public static func isImageShape(_ shape: [Int]) -> Bool {
        shape.count == 2 || (shape.count == 3 && (shape[0] == 1 || shape[0] == 3))
    }

    public init(held: Range<Int>, totalCount: Int, featureShape: [Int], features: FeatureValues,
                labels: [Int64]? = nil, pairShape: [Int]? = nil, pairs: [Float]? = nil, disk: Disk? = nil, gathered: [Int]? = nil,
                encoded: Encoded? = nil) {
        let width = featureShape.reduce(1, *)
        let rowCount = gathered?.count ?? held.count
        precondition(held.lowerBound >= 0 && held.upperBound <= totalCount, "SampleRows: \(held) outside 0..<\(totalCount)")
        precondition(gathered == nil || (held.isEmpty && disk == nil), "SampleRows: gathered rows are in memory and hold no run")
        precondition(labels.map { $0.count == rowCount } ?? true, "SampleRows: one label per sample")
        if let encoded {
            precondition(disk == nil && features.dtype == .uint8 && features.elementCount == 0 && encoded.images.count == rowCount
                         && encoded.decode.layout.elementsPerSample == width,
                         "SampleRows: \(encoded.images.count) encoded images are not \(rowCount) samples of \(featureShape), or rows are held too")
            precondition((pairs == nil) == (pairShape == nil), "SampleRows: pairs need a pair shape")
        } else if let disk {
            precondition(features.elementCount == 0 && pairs == nil, "SampleRows: rows on disk hold none in memory")
            // A prefix of the rows (`prefix(_:)`) reads the first rows of the files.
            precondition(disk.features.rows >= held.count && disk.features.rowBytes == width * features.dtype.size,
                         "SampleRows: the feature file's \(disk.features.rows) rows of \(disk.features.rowBytes) bytes are not \(held.count) x \(featureShape) \(features.dtype)")
            precondition((disk.pairs == nil) == (pairShape == nil), "SampleRows: pairs on disk need a pair shape, and a pair shape pairs")
            precondition(disk.pairs.map { $0.rows >= held.count && $0.rowBytes == (pairShape ?? []).reduce(1, *) * 4 } ?? true,
                         "SampleRows: the pair file does not match the pair shape")
        } else {
            precondition(features.elementCount == rowCount * width,
                         "SampleRows: \(features.elementCount) feature values are not \(rowCount) x \(featureShape)")
            precondition((pairs == nil) == (pairShape == nil), "SampleRows: pairs need a pair shape")
            precondition(pairs.map { $0.count == rowCount * (pairShape ?? []).reduce(1, *) } ?? true,
                         "SampleRows: pair values do not match the pair shape")
        }
        self.held = held
        self.totalCount = totalCount
        self.featureShape = featureShape
        self.features = features
        self.labels = labels
        self.pairShape = pairShape
        self.pairs = pairs
        self.disk = disk
        self.encoded = encoded
        self.gathered = gathered
        gatheredRows = gathered.map { samples in Dictionary(uniqueKeysWithValues: samples.enumerated().map { ($0.element, $0.offset) }) }
    }

    /// All of an in-memory image data set.
    public convenience init(_ dataset: ImageDataset) {
        self.init(held: 0..<dataset.count, totalCount: dataset.count, featureShape: [dataset.height, dataset.width],
                  features: .uint8(dataset.images), labels: dataset.labels.map { Int64($0) })
    }

    /// Reads `shards` (a contiguous run) of a prepared data set, checking every checksum, and
    /// opens no other shard file. With `limit` > 0 the data set ends after its first `limit`
    /// samples (data.train_limit / data.test_limit): later samples of the last shard are dropped
    /// and `totalCount` is the limit; the shards must start before it. With `spillDirectory`, the
    /// feature and pair rows go to unnamed files there one shard at a time (`data.hold: disk`):
    /// the rank never holds more than one shard's samples in memory.
    public static func read(_ dataset: ShardedDataset, shards: Range<Int>, limit: Int = 0, spillDirectory: String? = nil) throws -> SampleRows {
        precondition(!shards.isEmpty && shards.lowerBound >= 0 && shards.upperBound <= dataset.shardCount,
                     "SampleRows.read: shards \(shards) outside 0..<\(dataset.shardCount)")
        let manifest = dataset.manifest
        let total = limit > 0 ? min(limit, manifest.sampleCount) : manifest.sampleCount
        let first = manifest.shards[shards.lowerBound].firstSample
        let last = manifest.shards[shards.upperBound - 1]
        precondition(first < total, "SampleRows.read: shard \(shards.lowerBound) starts at sample \(first), past the limit \(total)")
        let held = first..<min(total, last.firstSample + last.sampleCount)
        let featureLayout = try manifest.requireInputs(path: dataset.directory)
        let decode = manifest.encodedImages?.decode
        // Encoded images are held in memory as they are; training refuses data.hold: disk for them first.
        precondition(decode == nil || spillDirectory == nil, "SampleRows.read: encoded images are not kept on disk")
        var images = VariableValues()
        let width = featureLayout.elementsPerSample, pairWidth = manifest.pairs?.elementsPerSample ?? 0
        let dtype = featureLayout.dtype
        var bytes: [UInt8] = [], floats: [Float] = []
        var labels: [Int64]? = manifest.labels == nil ? nil : []
        var pairs: [Float]? = manifest.pairs == nil ? nil : []
        var featureFile: SampleFile.Writer?, pairFile: SampleFile.Writer?
        if let spillDirectory {
            featureFile = try SampleFile.Writer(directory: spillDirectory, rowBytes: width * dtype.size)
            if pairs != nil { pairFile = try SampleFile.Writer(directory: spillDirectory, rowBytes: pairWidth * 4) }
        } else {
            if dtype == .uint8 { bytes.reserveCapacity(held.count * width) } else { floats.reserveCapacity(held.count * width) }
            pairs?.reserveCapacity(held.count * pairWidth)
        }
        labels?.reserveCapacity(held.count)
        for shard in shards {
            let block = try dataset.readShard(shard)
            // Samples of this shard before the limit (all of them but in the last shard read).
            let kept = min(manifest.shards[shard].sampleCount, held.upperBound - manifest.shards[shard].firstSample)
            // A whole shard is appended as read; only the one the limit cuts is copied shorter.
            func cut<T>(_ values: [T], _ width: Int) -> [T] { values.count > kept * width ? Array(values.prefix(kept * width)) : values }
            switch block.features {
            case .uint8(let values): if let featureFile { try featureFile.append(cut(values, width)) } else { bytes += cut(values, width) }
            case .float32(let values): if let featureFile { try featureFile.append(cut(values, width)) } else { floats += cut(values, width) }
            case nil:
                // No features: the manifest has encoded images (above), so every shard read has them.
                for sample in 0..<kept { images.append(block.bytes(ShardManifest.encodedImageField, sample)!) }
            }
            if labels != nil { labels! += cut(block.labels ?? [], 1) }
            if let pairFile { try pairFile.append(cut(block.pairs ?? [], pairWidth)) } else if pairs != nil { pairs! += cut(block.pairs ?? [], pairWidth) }
        }
        let disk = featureFile.map { Disk(features: $0.finish(), pairs: pairFile?.finish()) }
        return SampleRows(held: held, totalCount: total, featureShape: featureLayout.sampleShape,
                          features: dtype == .uint8 ? .uint8(bytes) : .float32(floats),
                          labels: labels, pairShape: manifest.pairs?.shape, pairs: disk == nil ? pairs : nil, disk: disk,
                          encoded: decode.map { Encoded(images: images, decode: $0) })
    }

    /// The first `limit` held samples (all when `limit` is 0 or not smaller): copies of the
    /// arrays in memory, the same files on disk.
    public func prefix(_ limit: Int) -> SampleRows {
        guard limit > 0, limit < count else { return self }
        let held = held.lowerBound ..< held.lowerBound + limit
        let labels = labels.map { Array($0.prefix(limit)) }
        if let encoded {
            return SampleRows(held: held, totalCount: totalCount, featureShape: featureShape, features: features, labels: labels,
                              pairShape: pairShape, pairs: pairs.map { Array($0.prefix(limit * pairWidth)) },
                              encoded: Encoded(images: VariableValues((0..<limit).map { Array(encoded.images[$0]) }), decode: encoded.decode))
        }
        if let disk {
            return SampleRows(held: held, totalCount: totalCount, featureShape: featureShape, features: features,
                              labels: labels, pairShape: pairShape, disk: disk)
        }
        let features: FeatureValues = switch features {
        case .uint8(let values): .uint8(Array(values.prefix(limit * featureWidth)))
        case .float32(let values): .float32(Array(values.prefix(limit * featureWidth)))
        }
        return SampleRows(held: held, totalCount: totalCount, featureShape: featureShape, features: features, labels: labels,
                          pairShape: pairShape, pairs: pairs.map { Array($0.prefix(limit * pairWidth)) })
    }

    /// Row of global sample `sample` in the held arrays.
    @inline(__always)
    public func row(_ sample: Int) -> Int {
        if let gatheredRows {
            guard let row = gatheredRows[sample] else { preconditionFailure("sample \(sample) is not in the gathered batch") }
            return row
        }
        precondition(held.contains(sample), "sample \(sample) is not held (\(held))")
        return sample - held.lowerBound
    }

    /// Calls `body` with the feature rows of `samples` and, for the i-th of them, its row in
    /// those: in memory, all held rows and the sample's own row; on disk, the samples' rows read
    /// in order into a buffer that lives for the call, and row i.
    public func withFeatureRows<R>(of samples: [Int], _ body: (FeatureRows, _ rowOf: (_ index: Int, _ sample: Int) -> Int) throws -> R) rethrows -> R {
        if let encoded {
            // Decoded here, into a buffer of these samples' rows: the batch maker's thread does the work.
            let width = featureWidth
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, samples.count * width))
            defer { buffer.deallocate() }
            for (index, sample) in samples.enumerated() {
                let bytes = Array(encoded.images[row(sample)])
                // `prepare --store jpeg` decoded every kept image, and the shard's checksums held: a failure is a broken invariant.
                guard let pixels = try? encoded.decode.sample(bytes) else {
                    preconditionFailure("the encoded image of sample \(sample) does not decode, though prepare decoded it")
                }
                _ = UnsafeMutableBufferPointer(rebasing: buffer[(index * width)..<((index + 1) * width)]).initialize(from: pixels)
            }
            return try body(.uint8(UnsafeBufferPointer(rebasing: buffer[0..<(samples.count * width)])), { index, _ in index })
        }
        if let file = disk?.features {
            return try staged(file, samples: samples) { buffer in
                switch features.dtype {
                case .uint8:
                    return try body(.uint8(UnsafeBufferPointer(buffer.bindMemory(to: UInt8.self))), { index, _ in index })
                default:
                    return try body(.float32(UnsafeBufferPointer(buffer.bindMemory(to: Float.self))), { index, _ in index })
                }
            }
        }
        switch features {
        case .uint8(let values):
            return try values.withUnsafeBufferPointer { try body(.uint8($0), { _, sample in self.row(sample) }) }
        case .float32(let values):
            return try values.withUnsafeBufferPointer { try body(.float32($0), { _, sample in self.row(sample) }) }
        }
    }

    /// `withFeatureRows` for the pair rows.
    public func withPairRows<R>(of samples: [Int], _ body: (UnsafeBufferPointer<Float>, _ rowOf: (_ index: Int, _ sample: Int) -> Int) throws -> R) rethrows -> R {
        precondition(hasPairs, "withPairRows: the data set has no pairs")
        if let file = disk?.pairs {
            return try staged(file, samples: samples) { buffer in
                try body(UnsafeBufferPointer(buffer.bindMemory(to: Float.self)), { index, _ in index })
            }
        }
        return try pairs!.withUnsafeBufferPointer { try body($0, { _, sample in self.row(sample) }) }
    }

    /// The rows of `samples` read from `file` into a buffer aligned for floats.
    private func staged<R>(_ file: SampleFile, samples: [Int], _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(samples.count * file.rowBytes, 1), alignment: 64)
        defer { buffer.deallocate() }
        for (index, sample) in samples.enumerated() {
            file.read(row: row(sample), into: buffer.baseAddress! + index * file.rowBytes)
        }
        return try body(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(samples.count * file.rowBytes)]))
    }

    /// Samples a call reads from disk (or decodes) at a time in `writeInputs` / `writePairs`, so a
    /// pass over all held rows (evaluation) stages a bounded buffer.
    static let diskChunk = 4096

    /// Calls `body` with consecutive runs of `samples` and the output row of each run's first:
    /// one run when the rows are in memory, runs of `diskChunk` when they are on disk.
    private func inRuns<Samples: Sequence<Int>>(_ samples: Samples, _ body: ([Int], Int) -> Void) {
        guard disk != nil || encoded != nil else { body(Array(samples), 0); return }
        var run: [Int] = []
        run.reserveCapacity(Self.diskChunk)
        var start = 0
        for sample in samples {
            run.append(sample)
            if run.count == Self.diskChunk { body(run, start); start += run.count; run.removeAll(keepingCapacity: true) }
        }
        if !run.isEmpty { body(run, start) }
    }

    /// The un-augmented features of `samples` as floats (uint8 as byte / 255, the values an
    /// identity view gives) in the rows of `out` (samples.count x F). Evaluation reads these.
    public func writeInputs<Samples: Sequence<Int>>(_ samples: Samples, into out: UnsafeMutablePointer<Float>) {
        let width = featureWidth
        inRuns(samples) { run, start in
            withFeatureRows(of: run) { source, rowOf in
                for (index, sample) in run.enumerated() {
                    let target = out + (start + index) * width
                    switch source {
                    case .uint8(let all):
                        let values = all.baseAddress! + rowOf(index, sample) * width
                        // Division, not multiplication by 1/255: the same values the views give for an identity crop.
                        for i in 0..<width { target[i] = Float(values[i]) / 255 }
                    case .float32(let all):
                        target.update(from: all.baseAddress! + rowOf(index, sample) * width, count: width)
                    }
                }
            }
        }
    }

    /// The pair rows of `samples` in the rows of `out` (samples.count x W).
    public func writePairs<Samples: Sequence<Int>>(_ samples: Samples, into out: UnsafeMutablePointer<Float>) {
        precondition(hasPairs, "writePairs: the data set has no pairs")
        let width = pairWidth
        inRuns(samples) { run, start in
            withPairRows(of: run) { all, rowOf in
                for (index, sample) in run.enumerated() {
                    (out + (start + index) * width).update(from: all.baseAddress! + rowOf(index, sample) * width, count: width)
                }
            }
        }
    }
}
