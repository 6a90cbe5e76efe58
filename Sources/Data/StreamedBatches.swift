import Foundation
import Tensor

/// Makes a rank's batches one after another: by sample index from rows it holds
/// (`SampledBatches`), or from its shards streamed through shuffle buffers (`StreamedBatches`).
/// Called by the training loop or by `ViewPrefetcher`'s thread, one batch at a time, in order.
public protocol BatchSequence: AnyObject {
    /// The batch at the current position into `out` (`floatsPerBatch` floats); then moves on.
    func makeNext(into out: UnsafeMutablePointer<Float>) throws
}

/// The batches of rows held in memory or on disk: each a slice of the epoch's `EpochOrder`.
public final class SampledBatches: BatchSequence {
    public let maker: BatchMaker
    public let sampler: Sampler
    public let rank: Int
    public let worldSize: Int
    public private(set) var position: SamplerPosition
    private var order: EpochOrder?

    public init(maker: BatchMaker, sampler: Sampler, rank: Int, worldSize: Int, start: SamplerPosition) throws {
        _ = try sampler.slots(rank: rank, worldSize: worldSize)
        self.maker = maker
        self.sampler = sampler
        self.rank = rank
        self.worldSize = worldSize
        position = start
    }

    public func makeNext(into out: UnsafeMutablePointer<Float>) throws {
        if order?.epoch != position.epoch { order = try sampler.order(epoch: position.epoch, rank: rank, worldSize: worldSize) }
        maker.makeBatch(samples: order!.batch(position.batch), epoch: position.epoch, into: out)
        position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
    }
}

/// `data.hold: stream`: a rank's batches read from its shard files as it goes, holding at most
/// M samples of each shard (M = the sampler's `shuffleBuffer`) and a few decompression buffers.
///
/// Every shard the rank's slots fall in is streamed from its start each epoch through its
/// `BufferedShuffle`; batch b takes the next k samples each shard emits, keeping those whose
/// slots (s k + j) are this rank's. These are `Sampler.localBatch` exactly (the same
/// `BufferedShuffle` made that order without samples), so the batches are a pure function of
/// (seed, epoch) and the same global batches at any rank count.
///
/// Resume at (epoch, b > 0): the shards are streamed from their start and each buffer emits
/// b k samples that are dropped, not made into batches: the buffer then holds what the
/// uninterrupted run held. The cost is decoding each of the rank's shards up to the place the
/// stream had reached (at most the whole shard; no augmentation, no step).
///
/// At the end of each epoch every stream reads its shard to the end and checks the frames'
/// checksums and the file's crc32 (a shard is checked whole once an epoch); an epoch cut short
/// (train.max_steps, a stop) leaves its streams' tails unchecked.
///
/// The batch maker gets each batch's samples as gathered `SampleRows` (one row per slot,
/// keyed by global sample index), so views, labels and pairs are made as from held rows.
/// Encoded images (`--store jpeg`) are gathered as the bytes their buffer slots hold and decoded
/// by the batch maker (`SampleRows.withFeatureRows`), in this same call: the prefetch thread.
public final class StreamedBatches: BatchSequence {
    public let dataset: ShardedDataset
    public let sampler: Sampler
    public let maker: BatchMaker
    public let slots: Range<Int>
    public let shards: Range<Int>
    /// The data set's features (a streamed set has them: a set of named fields alone is refused here).
    public let featureLayout: FieldLayout
    public private(set) var position: SamplerPosition
    private var streams: [ShardShuffleStream] = []
    private var streamsEpoch = -1

    public init(dataset: ShardedDataset, sampler: Sampler, maker: BatchMaker, rank: Int, worldSize: Int, start: SamplerPosition) throws {
        precondition(sampler.shuffleBuffer > 0, "StreamedBatches: the sampler has no shuffle buffer")
        precondition(zip(sampler.shardRanges, dataset.manifest.shards).allSatisfy { $0.lowerBound == $1.firstSample },
                     "StreamedBatches: the sampler's shards are not the data set's files")
        featureLayout = try dataset.manifest.requireInputs(path: dataset.directory)
        self.dataset = dataset
        self.sampler = sampler
        self.maker = maker
        slots = try sampler.slots(rank: rank, worldSize: worldSize)
        shards = try sampler.shards(rank: rank, worldSize: worldSize)
        position = start
    }

    /// Opens this epoch's streams, each emitting (and dropping) `skipping` batches' worth.
    private func openStreams(epoch: Int, skipping batches: Int) throws {
        streams = try shards.map { shard in
            try ShardShuffleStream(dataset: dataset, shard: shard, count: sampler.shardRange(shard).count, used: sampler.usedPerShard,
                                   capacity: sampler.shuffleBuffer, seed: sampler.seed, epoch: epoch)
        }
        streamsEpoch = epoch
        for stream in streams {
            for _ in 0 ..< batches * sampler.perShard { try stream.emit { _, _ in } }
        }
    }

    /// Reads the rest of each shard and checks it, then lets the streams go.
    private func finishStreams() throws {
        for stream in streams { try stream.stream.finish() }
        streams = []
        streamsEpoch = -1
    }

    public func makeNext(into out: UnsafeMutablePointer<Float>) throws {
        if streamsEpoch != position.epoch { try openStreams(epoch: position.epoch, skipping: position.batch) }
        let manifest = dataset.manifest
        let width = featureLayout.elementsPerSample, pairWidth = manifest.pairs?.elementsPerSample ?? 0
        let decode = manifest.encodedImages?.decode
        let featureBytes = decode == nil ? width * featureLayout.dtype.size : 0
        let n = slots.count, k = sampler.perShard
        var images = [[UInt8]](repeating: [], count: decode == nil ? 0 : n)
        var samples = [Int](repeating: 0, count: n)
        var labels: [Int64]? = manifest.labels == nil ? nil : [Int64](repeating: 0, count: n)
        var pairs: [Float]? = manifest.pairs == nil ? nil : [Float](repeating: 0, count: n * pairWidth)
        let featureRows = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, n * featureBytes), alignment: 16)
        defer { featureRows.deallocate() }
        for (index, stream) in streams.enumerated() {
            let shard = shards.lowerBound + index, first = sampler.shardRange(shard).lowerBound
            for j in 0..<k {
                let slot = shard * k + j
                try stream.emit { bufferSlot, offset in
                    guard slots.contains(slot) else { return }
                    let row = slot - slots.lowerBound
                    samples[row] = first + offset
                    if let encoded = stream.images {
                        images[row] = encoded[bufferSlot]
                    } else {
                        (featureRows.baseAddress! + row * featureBytes).copyMemory(from: stream.features + bufferSlot * featureBytes, byteCount: featureBytes)
                    }
                    labels?[row] = stream.labels[bufferSlot]
                    if pairs != nil {
                        pairs!.withUnsafeMutableBytes {
                            ($0.baseAddress! + row * pairWidth * 4).copyMemory(from: stream.pairs! + bufferSlot * pairWidth * 4, byteCount: pairWidth * 4)
                        }
                    }
                }
            }
        }
        let features: FeatureValues = decode != nil ? .uint8([]) : featureLayout.dtype == .uint8
            ? .uint8(Array(UnsafeBufferPointer(start: featureRows.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n * width)))
            : .float32(Array(UnsafeBufferPointer(start: featureRows.baseAddress!.assumingMemoryBound(to: Float.self), count: n * width)))
        let rows = SampleRows(held: 0..<0, totalCount: sampler.sampleCount, featureShape: featureLayout.sampleShape, features: features,
                              labels: labels, pairShape: manifest.pairs?.shape, pairs: pairs, gathered: samples,
                              encoded: decode.map { SampleRows.Encoded(images: VariableValues(images), decode: $0) })
        maker.reading(rows).makeBatch(samples: samples, epoch: position.epoch, into: out)
        position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
        if position.batch == 0 { try finishStreams() }
    }
}

/// One shard streamed through its shuffle buffer: the buffer's M rows of each field, filled,
/// emptied and moved by `BufferedShuffle`.
final class ShardShuffleStream: ShuffleSource {
    let stream: ShardStream
    private var shuffle: BufferedShuffle
    let featureBytes: Int
    let pairBytes: Int
    let features: UnsafeMutableRawPointer
    /// Encoded images: each slot one file's bytes (slots sized per sample); nil for features.
    let images: UnsafeMutablePointer<[UInt8]>?
    private let slots: Int
    let labels: UnsafeMutablePointer<Int64>
    let pairs: UnsafeMutableRawPointer?

    init(dataset: ShardedDataset, shard: Int, count: Int, used: Int, capacity: Int, seed: UInt64, epoch: Int) throws {
        stream = try ShardStream(dataset, shard: shard)
        shuffle = BufferedShuffle(count: count, used: used, capacity: capacity, seed: seed, epoch: epoch, shard: shard)
        let manifest = dataset.manifest, slots = max(1, min(capacity, used))
        let featureLayout = try manifest.requireInputs(path: dataset.directory)
        let encoded = manifest.encodedImages != nil
        featureBytes = encoded ? 0 : featureLayout.elementsPerSample * featureLayout.dtype.size
        self.slots = slots
        if encoded {
            images = .allocate(capacity: slots)
            images!.initialize(repeating: [], count: slots)
        } else {
            images = nil
        }
        pairBytes = (manifest.pairs?.elementsPerSample ?? 0) * 4
        features = .allocate(byteCount: max(1, slots * featureBytes), alignment: 16)
        labels = .allocate(capacity: slots)
        pairs = manifest.pairs == nil ? nil : .allocate(byteCount: max(1, slots * pairBytes), alignment: 16)
    }

    deinit {
        images?.deinitialize(count: slots)
        images?.deallocate()
        features.deallocate()
        labels.deallocate()
        pairs?.deallocate()
    }

    /// The next sample of the shard's order; `take` reads it from its buffer slot.
    func emit(_ take: (_ slot: Int, _ offset: Int) throws -> Void) throws {
        var source = self
        try shuffle.emit(&source, take)
    }

    func skip() throws { try stream.skipSample() }

    func read(into slot: Int) throws {
        try stream.readSample(features: features + slot * featureBytes, label: labels + slot, pairs: pairs.map { $0 + slot * pairBytes },
                              image: images.map { $0 + slot })
    }

    func move(from: Int, to: Int) throws {
        (features + to * featureBytes).copyMemory(from: features + from * featureBytes, byteCount: featureBytes)
        if let images { images[to] = images[from] }
        labels[to] = labels[from]
        if let pairs { (pairs + to * pairBytes).copyMemory(from: pairs + from * pairBytes, byteCount: pairBytes) }
    }
}
