import Foundation
import Storage
import Testing
@testable import Data

/// `data.hold: stream`: the bounded-buffer order, and batches streamed from shard files that
/// are exactly the sampler's batches with exactly the samples' stored values, at any rank
/// count, from any resume point; damaged shards named.
@Suite struct StreamingTests {
    // MARK: - The order

    @Test(arguments: [(100, 100, 1), (100, 96, 7), (100, 60, 16), (37, 37, 64), (500, 480, 32)])
    func bufferedShuffleEmitsEachKeptSampleOnce(n: Int, used: Int, capacity: Int) {
        let order = BufferedShuffle.order(count: n, used: used, capacity: capacity, seed: 9, epoch: 3, shard: 2)
        #expect(order.count == used && Set(order).count == used && order.allSatisfy { (0..<n).contains($0) })
        #expect(order == BufferedShuffle.order(count: n, used: used, capacity: capacity, seed: 9, epoch: 3, shard: 2))
        if used == n { #expect(order.sorted() == Array(0..<n)) }
        // A buffer of one shuffles nothing: the kept samples leave in file order.
        guard capacity > 1 else { #expect(order == order.sorted()); return }
        #expect(order != BufferedShuffle.order(count: n, used: used, capacity: capacity, seed: 9, epoch: 4, shard: 2))
        #expect(order != BufferedShuffle.order(count: n, used: used, capacity: capacity, seed: 9, epoch: 3, shard: 3))
        // The bound of a buffer of M: the i-th sample read cannot leave before place i - M + 1.
        if used == n { for (place, sample) in order.enumerated() { #expect(sample - capacity + 1 <= place) } }
    }

    /// Which samples an epoch skips is random: over epochs every sample of the shard is used,
    /// the last ones too (selection sampling, not "the end of the stream is dropped").
    @Test func skippedSamplesDifferEveryEpoch() {
        var seen = Set<Int>()
        for epoch in 0..<20 { seen.formUnion(BufferedShuffle.order(count: 50, used: 40, capacity: 4, seed: 1, epoch: epoch, shard: 0)) }
        #expect(seen == Set(0..<50))
    }

    // Five shards, the last smaller (the files below, `--shard-size 41`), 30 per global batch: k = 6.
    static let ranges = [0..<41, 41..<82, 82..<123, 123..<164, 164..<203]

    /// Every sample of the used part of each shard once per epoch, and the same global batches,
    /// at P = 1, 2, 3, 5 (30 = B divides by them; 3 and 5 make ranks share shards) and 4 with B = 40.
    @Test func everySampleOnceAndTheSameGlobalBatchesAtEveryRankCount() throws {
        for (batch, counts) in [(30, [1, 2, 3, 5]), (40, [1, 2, 4])] {
            let sampler = try Sampler(shardRanges: Self.ranges, globalBatchSize: batch, seed: 5, shuffleBuffer: 8)
            let k = sampler.perShard
            for epoch in 0..<2 {
                let global = (0..<sampler.batchesPerEpoch).map { sampler.globalBatch(epoch: epoch, index: $0) }
                for worldSize in counts {
                    var union: [Int] = []
                    for index in 0..<sampler.batchesPerEpoch {
                        let locals = try (0..<worldSize).map { try sampler.localBatch(epoch: epoch, index: index, rank: $0, worldSize: worldSize) }
                        #expect(locals.joined().elementsEqual(global[index]), "P = \(worldSize), batch \(index)")
                        union += locals.joined()
                    }
                    #expect(union.count == Set(union).count && union.count == sampler.batchesPerEpoch * batch)
                    for (s, range) in Self.ranges.enumerated() {
                        let used = union.filter { range.contains($0) }
                        #expect(used.count == sampler.usedPerShard)
                        #expect(Set(used) == Set(sampler.permutation(epoch: epoch, shard: s)), "shard \(s)")
                    }
                }
                // Shard s gives slots s k ..< (s + 1) k of every batch.
                for (s, range) in Self.ranges.enumerated() { #expect(global[1][s * k ..< (s + 1) * k].allSatisfy(range.contains)) }
            }
        }
    }

    // MARK: - Streamed batches

    /// Values that name their sample: feature e of sample i, pair w of sample i.
    static func feature(_ sample: Int, _ e: Int) -> UInt8 { UInt8((sample * 7 + e * 3) % 251) }
    static func pair(_ sample: Int, _ w: Int) -> Float { Float(sample) * 10 + Float(w) + 0.25 }

    /// 203 samples of 4 x 4 features (uint8, or float32 byte-shuffled), labels and 3-wide pairs in
    /// the five shard files of `ranges`.
    static func write(_ directory: String, float: Bool = false) throws -> ShardedDataset {
        let n = 203, width = 16
        let bytes = (0..<n).flatMap { i in (0..<width).map { feature(i, $0) } }
        let block = SampleBlock(count: n, features: float ? .float32(bytes.map { Float($0) / 3 }) : .uint8(bytes),
                                labels: (0..<n).map { Int64($0) * 3 }, pairs: (0..<n).flatMap { i in (0..<3).map { pair(i, $0) } })
        try ShardedDatasetWriter.write(block, featureShape: [4, 4], pairShape: [3], to: directory,
                                       layout: .size(41), level: 3)
        return try ShardedDataset(directory: directory)
    }

    /// Writes, for each sample of the batch: its index, its 16 features as floats, its label, its 3 pair values.
    struct Recorder: BatchMaker {
        let rows: SampleRows
        let samplesPerBatch: Int
        var floatsPerBatch: Int { samplesPerBatch * 21 }
        func reading(_ rows: SampleRows) -> BatchMaker { Recorder(rows: rows, samplesPerBatch: samplesPerBatch) }
        func makeBatch(samples: [Int], epoch: Int, into out: UnsafeMutablePointer<Float>) {
            let inputs = UnsafeMutablePointer<Float>.allocate(capacity: samples.count * 16)
            let pairs = UnsafeMutablePointer<Float>.allocate(capacity: samples.count * 3)
            defer { inputs.deallocate(); pairs.deallocate() }
            rows.writeInputs(samples, into: inputs)
            rows.writePairs(samples, into: pairs)
            for (index, sample) in samples.enumerated() {
                let row = out + index * 21
                row[0] = Float(sample)
                (row + 1).update(from: inputs + index * 16, count: 16)
                row[17] = Float(rows.labels![rows.row(sample)])
                (row + 18).update(from: pairs + index * 3, count: 3)
            }
        }
    }

    /// What `Recorder` must write for `samples`.
    static func expected(_ samples: [Int], float: Bool) -> [Float] {
        var out: [Float] = []
        for i in samples {
            out.append(Float(i))
            for e in 0..<16 {
                let value = Float(feature(i, e))
                out.append(float ? value / 3 : value / 255)
            }
            out.append(Float(i * 3))
            for w in 0..<3 { out.append(pair(i, w)) }
        }
        return out
    }

    func stream(_ dataset: ShardedDataset, _ sampler: Sampler, rank: Int, worldSize: Int, from start: SamplerPosition,
                batches count: Int) throws -> [[Float]] {
        let local = sampler.globalBatchSize / worldSize
        let template = Recorder(rows: SampleRows(held: 0..<0, totalCount: sampler.sampleCount, featureShape: [4, 4], features: .uint8([])),
                                samplesPerBatch: local)
        let batches = try StreamedBatches(dataset: dataset, sampler: sampler, maker: template, rank: rank, worldSize: worldSize, start: start)
        var out = [Float](repeating: .nan, count: template.floatsPerBatch)
        return try (0..<count).map { _ in
            try out.withUnsafeMutableBufferPointer { try batches.makeNext(into: $0.baseAddress!) }
            return out
        }
    }

    /// Each rank's streamed batches are `Sampler.localBatch` with the samples' own stored values,
    /// over two epochs and across the epoch boundary, at P = 1, 2, 3, 5, for uint8 and float32 features.
    @Test(arguments: [false, true])
    func streamedBatchesAreTheSamplersWithTheirValues(float: Bool) throws {
        try withTemporaryDirectory { directory in
            let dataset = try Self.write(directory, float: float)
            let sampler = try Sampler(shardRanges: Self.ranges, globalBatchSize: 30, seed: 11, shuffleBuffer: 5)
            let epochs = 2, perEpoch = sampler.batchesPerEpoch
            for worldSize in [1, 2, 3, 5] {
                for rank in 0..<worldSize {
                    let made = try stream(dataset, sampler, rank: rank, worldSize: worldSize, from: SamplerPosition(), batches: epochs * perEpoch)
                    for (step, batch) in made.enumerated() {
                        let samples = try sampler.localBatch(epoch: step / perEpoch, index: step % perEpoch, rank: rank, worldSize: worldSize)
                        #expect(batch == Self.expected(samples, float: float), "P = \(worldSize), rank \(rank), step \(step)")
                    }
                }
            }
        }
    }

    /// Started at (epoch, batch) mid-epoch, at the same or another rank count, the streams give
    /// exactly the batches an uninterrupted one-rank stream gives from there.
    @Test func resumedStreamsContinueExactly() throws {
        try withTemporaryDirectory { directory in
            let dataset = try Self.write(directory)
            let sampler = try Sampler(shardRanges: Self.ranges, globalBatchSize: 30, seed: 11, shuffleBuffer: 4)
            let perEpoch = sampler.batchesPerEpoch
            let straight = try stream(dataset, sampler, rank: 0, worldSize: 1, from: SamplerPosition(), batches: 2 * perEpoch)
            for (epoch, batch) in [(0, 3), (1, 1), (1, perEpoch - 1)] {
                let skipped = epoch * perEpoch + batch
                for worldSize in [1, 2, 3] {
                    let parts = try (0..<worldSize).map {
                        try stream(dataset, sampler, rank: $0, worldSize: worldSize, from: SamplerPosition(epoch: epoch, batch: batch),
                                   batches: 2 * perEpoch - skipped)
                    }
                    for step in 0 ..< 2 * perEpoch - skipped {
                        #expect(Array(parts.map { $0[step] }.joined()) == straight[skipped + step], "from (\(epoch), \(batch)) at P = \(worldSize)")
                    }
                }
            }
        }
    }

    /// A damaged shard stops the stream with one error naming the file: bytes changed inside a
    /// frame (zstd's decoding or its content checksum), or in the frame's checksum itself, which
    /// only the frame's end shows (checked when the epoch ends).
    @Test(arguments: [("features", 0.5), ("labels", 1.0)])
    func damagedShardIsNamed(section: String, at fraction: Double) throws {
        try withTemporaryDirectory { directory in
            let dataset = try Self.write(directory)
            let frame = dataset.manifest.shards[1].frames.first { $0.section == section }!
            let path = dataset.shardPath(1)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let at = frame.offset + min(frame.bytes - 1, Int(Double(frame.bytes) * fraction))
            bytes[at] ^= 0x5A
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let sampler = try Sampler(shardRanges: Self.ranges, globalBatchSize: 30, seed: 11, shuffleBuffer: 5)
            #expect {
                _ = try stream(dataset, sampler, rank: 0, worldSize: 1, from: SamplerPosition(), batches: sampler.batchesPerEpoch)
            } throws: { error in
                guard case DataError.shardInvalid(let named, 1, _) = error else { return false }
                return named == path && "\(error)".contains("shard-00001.bin")
            }
        }
    }

    /// Encoded images stream: `ShardStream` reads the `image` field's offsets and data frames in
    /// step, each sample's bytes (of any length, empty too) exactly as `readShard` gives them, skips
    /// some, checks both frames and the file at `finish`; an offset past the data is named.
    @Test func encodedImageFieldStreamsValueByValue() throws {
        try withTemporaryDirectory { directory in
            let values = (0..<57).map { i in (0..<((i * 131) % 900)).map { UInt8(truncatingIfNeeded: $0 * 31 + i) } }
            let block = SampleBlock(count: values.count, features: nil, labels: (0..<57).map { Int64($0) },
                                    fields: ["image": .variable(VariableValues(values))])
            try ShardedDatasetWriter.write(block, featureShape: nil,
                                           fields: [NamedField(name: "image", dtype: .bytes, decode: ImageDecodeSpec(size: 8, channels: 3, fit: .crop))],
                                           to: directory, layout: .count(2))
            let dataset = try ShardedDataset(directory: directory)
            #expect(try dataset.manifest.requireInputs(path: directory) == FieldLayout(dtype: .uint8, shape: [3, 8, 8]))
            var read: [[UInt8]] = [], labels: [Int64] = []
            for shard in 0..<2 {
                let stream = try ShardStream(dataset, shard: shard)
                for i in 0..<stream.sampleCount {
                    if i % 5 == 3 { try stream.skipSample(); read.append([]); labels.append(-1); continue }
                    var image: [UInt8] = [0xEE], label: Int64 = 0
                    try stream.readSample(features: nil, label: &label, pairs: nil, image: &image)
                    read.append(image)
                    labels.append(label)
                }
                try stream.finish()
            }
            let firstCount = dataset.manifest.shards[0].sampleCount
            for (index, value) in values.enumerated() where (index < firstCount ? index : index - firstCount) % 5 != 3 {
                #expect(read[index] == value && labels[index] == Int64(index), "sample \(index)")
            }

            // A damaged data frame is named as the image field's, with the shard.
            let frame = dataset.manifest.shards[1].frames.first { $0.section == "image" && $0.part == .data }!
            let path = dataset.shardPath(1)
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[frame.offset + frame.bytes / 2] ^= 0x5A
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect {
                let stream = try ShardStream(dataset, shard: 1)
                var image: [UInt8] = []
                for _ in 0..<stream.sampleCount { try stream.readSample(features: nil, label: nil, pairs: nil, image: &image) }
                try stream.finish()
            } throws: { error in
                guard case DataError.shardInvalid(let named, 1, let problem) = error else { return false }
                return named == path && problem.contains("image frames")
            }
        }
    }

    /// The crc32 of the whole file is checked too: a manifest whose crc32 is not the file's
    /// (frames intact, so only that check can tell) stops the stream when the epoch ends.
    @Test func crcOfTheWholeFileIsChecked() throws {
        try withTemporaryDirectory { directory in
            let written = try Self.write(directory)
            let manifestPath = directory + "/" + ShardManifest.fileName
            let json = try String(contentsOfFile: manifestPath, encoding: .utf8)
            let crc = written.manifest.shards[2].crc32
            let wrong = crc.hasSuffix("0") ? String(crc.dropLast()) + "1" : String(crc.dropLast()) + "0"
            try json.replacingOccurrences(of: "\"\(crc)\"", with: "\"\(wrong)\"").write(toFile: manifestPath, atomically: true, encoding: .utf8)
            let dataset = try ShardedDataset(directory: directory)
            let sampler = try Sampler(shardRanges: Self.ranges, globalBatchSize: 30, seed: 11, shuffleBuffer: 5)
            // Every batch but the last of the epoch is made: the check is at the shard's end.
            _ = try stream(dataset, sampler, rank: 0, worldSize: 1, from: SamplerPosition(), batches: sampler.batchesPerEpoch - 1)
            #expect {
                _ = try stream(dataset, sampler, rank: 0, worldSize: 1, from: SamplerPosition(), batches: sampler.batchesPerEpoch)
            } throws: { error in
                "\(error)".contains("shard-00002.bin") && "\(error)".contains("crc32 is \(crc), the manifest says \(wrong)")
            }
        }
    }

    /// `FrameStream` reads a frame in pieces of any size to the same bytes `FrameDecoder` gives,
    /// and refuses a truncated one.
    @Test func frameStreamReadsInPieces() throws {
        var values = [UInt8](repeating: 0, count: 700_001)
        var state: UInt32 = 1
        for i in values.indices { state = state &* 1_664_525 &+ 1_013_904_223; values[i] = UInt8(truncatingIfNeeded: state >> (i % 3 == 0 ? 24 : 5)) }
        let encoder = try FrameEncoder(level: 3)      // the frame lives in the encoder
        let frame = try values.withUnsafeBytes { try [UInt8](encoder.encode($0)) }
        let path = NSTemporaryDirectory() + "contrast-frame-\(UUID().uuidString)"
        defer { unlink(path) }
        try Data([7, 7, 7] + frame + [9]).write(to: URL(fileURLWithPath: path))
        let descriptor = open(path, O_RDONLY)
        defer { close(descriptor) }
        let stream = try FrameStream(descriptor: descriptor, path: path, offset: 3, bytes: frame.count, contentBytes: values.count, checksumming: true)
        var read: [UInt8] = []
        var piece = 1
        while read.count < values.count {
            let n = min(piece, values.count - read.count)
            var buffer = [UInt8](repeating: 0, count: n)
            try buffer.withUnsafeMutableBytes { try stream.read(n, into: $0.baseAddress!) }
            read += buffer
            piece = piece * 3 + 1
        }
        #expect(read == values)
        #expect(try stream.finish() == frame.withUnsafeBytes { CRC32.checksum($0) })
        let short = try FrameStream(descriptor: descriptor, path: path, offset: 3, bytes: frame.count - 10, contentBytes: values.count, checksumming: false)
        #expect(throws: StorageError.self) { try short.finish() }
    }
}
