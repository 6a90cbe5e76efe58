import Data
import Foundation

/// `data.hold: stream` for a text set: a rank's batches read from its shard files as it goes,
/// the texts tokenized as they enter a shuffle buffer, holding at most M tokenized samples of
/// each shard (M = the sampler's `shuffleBuffer`), never the rank's samples.
///
/// The machinery of the image sets' `StreamedBatches`, with text in the buffer slots: every
/// shard the rank's slots fall in is streamed from its start each epoch through its
/// `BufferedShuffle`; batch b takes the next k samples each shard emits, keeping those whose
/// slots (s k + j) are this rank's: `Sampler.localBatch` exactly, a pure function of (seed,
/// epoch) and the same global batches at any rank count. Resume at (epoch, b > 0) streams the
/// shards from their start and drops b k emissions of each (the texts they read are tokenized:
/// the buffer must hold what the uninterrupted run held). An epoch read to its end checks every
/// shard's checksums, as for image sets.
///
/// A sample is tokenized once, when it is read into a slot (`TextSampleReader`, the held sets'
/// path: the same ids, the same pair ids), in the thread that makes the batch (the prefetch
/// thread); the batch is written by `TextBatches.write` from the gathered samples. A text over
/// T tokens with data.overlong: error, or an empty negative, stops the run at the batch that
/// reads it (a held set stops before the run starts: it tokenizes everything first).
public final class StreamedTextBatches: BatchSequence {
    public let dataset: ShardedDataset
    public let sampler: Sampler
    /// The layout (ids, negatives, B): its texts are empty, each batch's are gathered.
    public let maker: TextBatches
    public let slots: Range<Int>
    public let shards: Range<Int>
    public private(set) var position: SamplerPosition
    private let reader: TextSampleReader
    private var streams: [TextShardStream] = []
    private var streamsEpoch = -1
    /// The most tokenized samples held at once in the buffers (a test's bound on the memory).
    public private(set) var peakResident = 0

    public init(dataset: ShardedDataset, sampler: Sampler, maker: TextBatches, reader: TextSampleReader, rank: Int, worldSize: Int,
                start: SamplerPosition) throws {
        precondition(sampler.shuffleBuffer > 0, "StreamedTextBatches: the sampler has no shuffle buffer")
        precondition(zip(sampler.shardRanges, dataset.manifest.shards).allSatisfy { $0.lowerBound == $1.firstSample },
                     "StreamedTextBatches: the sampler's shards are not the data set's files")
        precondition(dataset.manifest.isTextSet, "StreamedTextBatches: \(dataset.directory) is not a text set")
        self.dataset = dataset
        self.sampler = sampler
        self.maker = maker
        self.reader = reader
        slots = try sampler.slots(rank: rank, worldSize: worldSize)
        shards = try sampler.shards(rank: rank, worldSize: worldSize)
        precondition(slots.count == maker.samplesPerBatch, "StreamedTextBatches: \(slots.count) slots, batches of \(maker.samplesPerBatch)")
        position = start
    }

    private func openStreams(epoch: Int, skipping batches: Int) throws {
        streams = try shards.map { shard in
            try TextShardStream(dataset: dataset, shard: shard, first: sampler.shardRange(shard).lowerBound,
                                count: sampler.shardRange(shard).count, used: sampler.usedPerShard, capacity: sampler.shuffleBuffer,
                                seed: sampler.seed, epoch: epoch, reader: reader)
        }
        streamsEpoch = epoch
        for stream in streams {
            for _ in 0 ..< batches * sampler.perShard { try stream.emit { _, _ in } }
        }
        noteResident()
    }

    private func noteResident() {
        peakResident = max(peakResident, streams.reduce(0) { $0 + $1.resident })
    }

    private func finishStreams() throws {
        for stream in streams { try stream.stream.finish() }
        streams = []
        streamsEpoch = -1
    }

    public func makeNext(into out: UnsafeMutablePointer<Float>) throws {
        if streamsEpoch != position.epoch { try openStreams(epoch: position.epoch, skipping: position.batch) }
        let n = slots.count, k = sampler.perShard
        var gathered = [TextSample?](repeating: nil, count: n)
        for (index, stream) in streams.enumerated() {
            let shard = shards.lowerBound + index
            for j in 0..<k {
                let slot = shard * k + j
                try stream.emit { bufferSlot, _ in
                    guard slots.contains(slot) else { return }
                    gathered[slot - slots.lowerBound] = stream.samples[bufferSlot]
                }
            }
        }
        noteResident()
        let texts = TextSamples(held: 0..<n, samples: gathered.map { $0! }, layout: reader)
        TextBatches(texts: texts, samplesPerBatch: n, ids: maker.ids).write(rows: Array(0..<n), into: out)
        position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
        if position.batch == 0 { try finishStreams() }
    }
}

/// One shard of a text set streamed through its shuffle buffer: each slot a tokenized sample.
final class TextShardStream: ShuffleSource {
    let stream: ShardStream
    private var shuffle: BufferedShuffle
    private var reader: TextSampleReader
    /// The buffer's slots (at most min(M, used)).
    private(set) var samples: [TextSample?]
    private let first: Int
    private let text: Int, positive: Int?, negative: Int?, group: Int?
    private var values: [[UInt8]]

    init(dataset: ShardedDataset, shard: Int, first: Int, count: Int, used: Int, capacity: Int, seed: UInt64, epoch: Int,
         reader: TextSampleReader) throws {
        stream = try ShardStream(dataset, shard: shard)
        shuffle = BufferedShuffle(count: count, used: used, capacity: capacity, seed: seed, epoch: epoch, shard: shard)
        self.reader = reader
        self.first = first
        samples = [TextSample?](repeating: nil, count: max(1, min(capacity, used)))
        let names = stream.namedFields.map(\.name)
        text = names.firstIndex(of: "text")!
        positive = reader.hasPositive ? names.firstIndex(of: "positive") : nil
        negative = reader.hasNegative ? names.firstIndex(of: "negative") : nil
        group = reader.hasGroup ? names.firstIndex(of: "group") : nil
        values = [[UInt8]](repeating: [], count: names.count)
    }

    /// Tokenized samples in the buffer now.
    var resident: Int { samples.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    func emit(_ take: (_ slot: Int, _ offset: Int) throws -> Void) throws {
        var source = self
        try shuffle.emit(&source, take)
    }

    func skip() throws { try stream.skipSample() }

    func read(into slot: Int) throws {
        let sample = first + stream.position
        try values.withUnsafeMutableBufferPointer {
            try stream.readSample(features: nil, label: nil, pairs: nil, named: $0.baseAddress!)
        }
        func string(_ index: Int) -> String { String(decoding: values[index], as: UTF8.self) }
        let groupValue = group.map { index in values[index].withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) } }
        samples[slot] = try reader.sample(sample, text: string(text), positive: positive.map(string), negative: negative.map(string),
                                          group: groupValue)
    }

    func move(from: Int, to: Int) throws {
        samples[to] = samples[from]
        samples[from] = nil
    }
}
