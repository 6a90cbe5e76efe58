import Config
import Foundation
import Testing
import TestSupport
@testable import Data
@testable import Training

/// A text set of 100 samples in 4 shard files of 25 (text, positive, negative, group = the
/// sample's index, so the pair ids a batch carries name its samples): every fifth text is longer
/// than max_length 16 (truncated), every negative another sentence of the vocabulary's words.
enum StreamedTextCorpus {
    static let words = ["red", "green", "blue", "cat", "dog", "bird", "tree", "stone", "river", "hill", "cloud", "rain"]

    static let path: String = {
        let folder = temporaryDirectory("text-stream-corpus").path
        var texts: [[String]] = [[], [], []]
        for i in 0..<100 {
            texts[0].append((0..<(i % 5 == 0 ? 20 : 3)).map { words[(i + 5 * $0) % words.count] }.joined(separator: " "))
            texts[1].append("\(words[i % 12]) \(words[(i / 12) % 12]) thing")
            texts[2].append("\(words[(i + 7) % 12]) \(words[(i / 5) % 12]) \(words[(i + 2) % 12])")
        }
        let names = ["text", "positive", "negative"]
        var values: [String: FieldValues] = ["group": .int64((0..<100).map { Int64($0) })]
        for (k, name) in names.enumerated() { values[name] = .variable(VariableValues(strings: texts[k])) }
        try! ShardedDatasetWriter.write(SampleBlock(count: 100, features: nil, fields: values), featureShape: nil,
                                        fields: names.map { NamedField(name: $0, dtype: .utf8) } + [NamedField(name: "group", dtype: .int64, shape: [])],
                                        to: folder + "/set", layout: .count(4))
        return folder + "/set"
    }()

    /// configs/text-smoke.yaml on the corpus, streamed through buffers of 5 samples, global batch 12
    /// (k = 3 from each shard, 8 batches an epoch, 24 of each shard's 25 samples used).
    static func config(ranks: Int, hold: String = "stream", _ extra: [String] = []) throws -> TrainingConfig {
        try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/text-smoke.yaml").path, overrides: [
            "run_dir=\(temporaryDirectory("text-stream-run").path)/run", "data.path=\(path)", "data.vocab=\(TextTrainingTests.set.vocab)",
            "data.hold=\(hold)", "data.shuffle_buffer=5", "data.batch_per_rank=\(12 / ranks)",
        ] + extra)
    }
}

/// The streamed batches of a text set in process: the sampler's order (every used sample once
/// an epoch, the same global batches at P = 1, 2 and 3), the rows the held path writes for the
/// same samples bit for bit, a resume at any batch the uninterrupted sequence, bounded buffers.
@Suite struct StreamedTextBatchTests {
    /// Rank `rank`'s batches from `start`, `count` of them, as floats.
    func batches(ranks: Int, rank: Int, start: SamplerPosition, count: Int, _ extra: [String] = []) throws
        -> (batches: [[Float]], data: TrainingData, sequence: StreamedTextBatches) {
        let data = try TrainingData(config: try StreamedTextCorpus.config(ranks: ranks, extra), rank: rank, worldSize: ranks, loadTest: false)
        let sequence = try #require(try data.batches(start: start) as? StreamedTextBatches)
        var out: [[Float]] = []
        for _ in 0..<count {
            var batch = [Float](repeating: 0, count: data.maker.floatsPerBatch)
            try batch.withUnsafeMutableBufferPointer { try sequence.makeNext(into: $0.baseAddress!) }
            out.append(batch)
        }
        return (out, data, sequence)
    }

    /// The pair ids (here the samples) a batch of B samples carries: after 3B rows of 48 floats.
    func samples(_ batch: [Float], b: Int) -> [Int] {
        batch.withUnsafeBufferPointer { p in (0..<b).map { Int(CarriedId.read(p.baseAddress! + 3 * b * 48 + $0 * CarriedId.floats)) } }
    }

    @Test func everySampleOnceAnEpochAndTheSameGlobalBatchesAtOneTwoAndThreeRanks() throws {
        var reference: [[Int]] = []
        for ranks in [1, 2, 3] {
            let b = 12 / ranks
            var global = [[Int]](repeating: [], count: 16)
            for rank in 0..<ranks {
                let (batches, data, _) = try batches(ranks: ranks, rank: rank, start: SamplerPosition(epoch: 0, batch: 0), count: 16)
                #expect(data.sampler.batchesPerEpoch == 8 && data.sampler.usedPerShard == 24)
                for (step, batch) in batches.enumerated() {
                    let ids = samples(batch, b: b)
                    // The sampler's order of this rank (what `Sampler.order` says without reading a shard).
                    #expect(ids == (try data.sampler.order(epoch: step / 8, rank: rank, worldSize: ranks)).batch(step % 8), "P=\(ranks) rank \(rank) step \(step)")
                    global[step] += ids
                }
            }
            for epoch in 0..<2 {
                let seen = global[(8 * epoch)..<(8 * epoch + 8)].flatMap { $0 }
                #expect(seen.count == 96 && Set(seen).count == 96, "P=\(ranks) epoch \(epoch): \(seen.count) samples, \(Set(seen).count) distinct")
                for shard in 0..<4 { #expect(seen.filter { $0 / 25 == shard }.count == 24, "P=\(ranks) epoch \(epoch) shard \(shard)") }
            }
            #expect(global[0] != global[8], "epoch 1 begins as epoch 0 did")
            if reference.isEmpty { reference = global } else { #expect(global == reference, "P=\(ranks)") }
        }
    }

    /// Tokenized as they are read, the streamed samples' rows and ids are those the held texts
    /// (data.hold: memory, tokenized before the run) give the same samples, float for float.
    @Test func streamedRowsAreTheHeldRows() throws {
        let held = try TrainingData(config: try StreamedTextCorpus.config(ranks: 1, hold: "memory"), rank: 0, worldSize: 1, loadTest: false)
        let texts = try #require(held.texts)
        #expect(texts.anchors.count == 100 && texts.negatives != nil && texts.idsAreGroups)
        for (ranks, rank) in [(1, 0), (2, 1), (3, 2)] {
            let (batches, data, _) = try batches(ranks: ranks, rank: rank, start: SamplerPosition(epoch: 0, batch: 0), count: 10)
            let maker = TextBatches(texts: texts, samplesPerBatch: 12 / ranks, ids: .exact)
            #expect(maker.floatsPerBatch == data.maker.floatsPerBatch)
            for (step, batch) in batches.enumerated() {
                var expected = [Float](repeating: 0, count: maker.floatsPerBatch)
                let order = try data.sampler.order(epoch: step / 8, rank: rank, worldSize: ranks)
                expected.withUnsafeMutableBufferPointer { maker.makeBatch(samples: order.batch(step % 8), epoch: step / 8, into: $0.baseAddress!) }
                #expect(batch == expected, "P=\(ranks) rank \(rank) step \(step)")
            }
        }
    }

    /// A sequence started at (epoch, batch) gives what the uninterrupted one gives from there, at
    /// the same and another rank count (the global batch is the ranks' batches side by side).
    @Test func aResumeAtAnyBatchIsTheUninterruptedSequence() throws {
        let straight = try batches(ranks: 2, rank: 1, start: SamplerPosition(epoch: 0, batch: 0), count: 16).batches
        for start in [3, 7, 8, 13] {
            let resumed = try batches(ranks: 2, rank: 1, start: SamplerPosition(epoch: start / 8, batch: start % 8), count: 16 - start).batches
            #expect(resumed == Array(straight[start...]), "from batch \(start)")
        }
        let one = try batches(ranks: 1, rank: 0, start: SamplerPosition(epoch: 0, batch: 5), count: 4).batches
        let two = try (0..<2).map { try batches(ranks: 2, rank: $0, start: SamplerPosition(epoch: 0, batch: 5), count: 4).batches }
        for step in 0..<4 { #expect(samples(one[step], b: 12) == samples(two[0][step], b: 6) + samples(two[1][step], b: 6)) }
    }

    /// The rank holds no texts: its `texts` is the layout alone, and the streams hold at most M
    /// tokenized samples of each of its shards (4 x 5 of the 100), through two epochs.
    @Test func theRankHoldsTheBuffersNotTheTexts() throws {
        let (_, data, sequence) = try batches(ranks: 1, rank: 0, start: SamplerPosition(epoch: 0, batch: 0), count: 16)
        #expect(data.texts?.anchors.count == 0 && data.streamed != nil && data.train.count == 0)
        #expect(sequence.peakResident > 0 && sequence.peakResident <= 4 * 5, "\(sequence.peakResident) tokenized samples held at once")
        #expect(data.summary.contains("tokenized as they enter a buffer: at most 20 tokenized samples"), "\(data.summary)")
    }

    /// A damaged text shard stops the epoch that streams it, the error naming the file: the named
    /// fields' frames are checked (zstd, checksums, the file's crc32) as the features' are.
    @Test func aDamagedTextShardIsNamed() throws {
        let copy = temporaryDirectory("text-stream-damaged").appendingPathComponent("set").path
        try FileManager.default.copyItem(atPath: StreamedTextCorpus.path, toPath: copy)
        let path = copy + "/shard-00001.bin"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let data = try TrainingData(config: try StreamedTextCorpus.config(ranks: 1, ["data.path=\(copy)"]), rank: 0, worldSize: 1, loadTest: false)
        let sequence = try data.batches(start: SamplerPosition(epoch: 0, batch: 0))
        var batch = [Float](repeating: 0, count: data.maker.floatsPerBatch)
        do {
            for _ in 0..<data.sampler.batchesPerEpoch { try batch.withUnsafeMutableBufferPointer { try sequence.makeNext(into: $0.baseAddress!) } }
            Issue.record("an epoch over a damaged shard passed")
        } catch {
            #expect("\(error)".contains(path), "\(error)")
        }
    }

    /// A one-column set (SimCSE) streams too: its batches are the text twice, as held.
    @Test func aOneColumnSetStreams() throws {
        let config = try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/text-smoke.yaml").path, overrides: [
            "run_dir=\(temporaryDirectory("text-stream-one").path)/run", "data.path=\(TextTrainingTests.set.simcse)",
            "data.vocab=\(TextTrainingTests.set.vocab)", "data.hold=stream", "data.shuffle_buffer=3", "data.batch_per_rank=8",
            "loss.mask_duplicates=false"])
        let data = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        var heldConfig = config
        heldConfig.data.hold = .memory
        let held = try TrainingData(config: heldConfig, rank: 0, worldSize: 1, loadTest: false)
        let sequence = try data.batches(start: SamplerPosition(epoch: 0, batch: 0))
        for step in 0..<data.sampler.batchesPerEpoch {
            var batch = [Float](repeating: 0, count: data.maker.floatsPerBatch), expected = batch
            try batch.withUnsafeMutableBufferPointer { try sequence.makeNext(into: $0.baseAddress!) }
            let samples = try data.sampler.order(epoch: 0).batch(step)
            expected.withUnsafeMutableBufferPointer { held.maker.makeBatch(samples: samples, epoch: 0, into: $0.baseAddress!) }
            #expect(batch == expected && batch[0..<(8 * 48)] == batch[(8 * 48)..<(16 * 48)], "step \(step)")
        }
    }
}

/// The text batch maker's layout against the pairs objective's, checked when the run starts.
@Suite struct BatchLayoutCheckTests {
    @Test func aLayoutTheObjectiveDoesNotReadIsRefusedNamingBoth() throws {
        let config = try StreamedTextCorpus.config(ranks: 1, hold: "memory")
        let data = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        let maker = try #require(data.maker as? TextBatches)
        #expect(maker.batchLayout == BatchLayout(samples: 12, rows: 36, rowWidth: 48, idBlocks: 3, idFloats: CarriedId.floats))
        #expect(maker.batchLayout.floats == maker.floatsPerBatch)
        let agreeing = try TrainingStep(config: config, inputWidth: 48, samplesPerStep: 12, totalSteps: 1, layout: data.viewsLayout)
        try agreeing.checkBatchLayout(data.maker)
        // The objective told of no negatives and no keys: it would read the negatives' rows as ids.
        let wrong = try TrainingStep(config: config, inputWidth: 48, samplesPerStep: 12, totalSteps: 1,
                                     layout: ViewsLayout(hardNegatives: false, exactIds: true, keys: false))
        do {
            try wrong.checkBatchLayout(data.maker)
            Issue.record("a disagreeing layout passed the check")
        } catch {
            let line = "\(error)"
            #expect(line.contains("the batch maker writes 36 rows (3B, B = 12) of 48 floats, then 3 block(s) of B ids of 3 float(s)")
                    && line.contains("the objective reads 24 rows (2B, B = 12) of 48 floats, then 1 block(s) of B ids of 3 float(s)")
                    && !line.contains("\n"), "\(line)")
        }
    }
}

/// Streamed text sets through `contrast train`: a run killed mid-epoch resumes bit for bit, and
/// P = 2 trains as P = 1 (pairs with hard negatives and groups, and a one-column SimCSE set).
@Suite(.serialized) struct TextStreamingTrainingTests {
    func train(_ run: String, ranks: Int, data: String = StreamedTextCorpus.path, batch: Int = 12, steps: Int = 12,
               _ extra: [String] = [], fault: String? = nil) throws -> ProcessOutcome {
        let overrides = ["run_dir=\(run)", "data.path=\(data)", "data.vocab=\(TextTrainingTests.set.vocab)",
                         "data.batch_per_rank=\(batch / ranks)", "data.hold=stream", "data.shuffle_buffer=5",
                         "train.max_steps=\(steps)", "checkpoint.every_steps=2"] + extra
        return try runContrast(ranks: ranks, ["train", "--config", "configs/text-smoke.yaml"] + overrides.flatMap { ["--set", $0] },
                               environment: fault.map { ["CONTRAST_FAULT": $0] } ?? [:], timeout: 600)
    }

    func run(_ label: String) -> String { temporaryDirectory(label).appendingPathComponent("run").path }

    /// Killed at step 7 (epoch 0 of 8 batches), the run resumes from its step-6 checkpoint, mid-epoch, and
    /// ends, past the epoch's end, with the uninterrupted run's weights, bit for bit.
    @Test func killedStreamedTextRunResumesExactly() throws {
        let straight = run("text-stream-straight"), killed = run("text-stream-killed")
        let a = try train(straight, ranks: 2)
        #expect(a.status == 0, "\(a.error.suffix(1500))")
        let log = try String(contentsOfFile: straight + "/train.log", encoding: .utf8)
        #expect(log.contains("texts streamed from the 2 shard file(s)") && log.contains("text, positive and hard negative"), "\(log.prefix(3000))")
        let crash = try train(killed, ranks: 2, fault: "kill@rank=1@step=7@phase=allreduce")
        #expect(crash.status != 0 && crash.error.contains("kill at step 7"), "\(crash.error.suffix(1500))")
        let resumed = try train(killed, ranks: 2)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        let x = try Data(contentsOf: URL(fileURLWithPath: straight + "/weights.bin"))
        let y = try Data(contentsOf: URL(fileURLWithPath: killed + "/weights.bin"))
        #expect(x.count > 1000 && x == y)
    }

    /// P = 2 takes P = 1's global batches and negatives: the same losses step by step to float rounding.
    @Test(arguments: ["pairs", "simcse"])
    func streamedTextTrainsTheSameAtOneAndTwoRanks(_ set: String) throws {
        let data = set == "pairs" ? StreamedTextCorpus.path : TextTrainingTests.set.simcse
        let extra = set == "pairs" ? [] : ["loss.mask_duplicates=false"]
        let batch = set == "pairs" ? 12 : 16
        let one = run("text-stream-\(set)-p1"), two = run("text-stream-\(set)-p2")
        let a = try train(one, ranks: 1, data: data, batch: batch, steps: 8, extra)
        #expect(a.status == 0, "\(a.error.suffix(1500))")
        let b = try train(two, ranks: 2, data: data, batch: batch, steps: 8, extra)
        #expect(b.status == 0, "\(b.error.suffix(1500))")
        let tests = TextTrainingTests()
        let la = try tests.losses(one), lb = try tests.losses(two)
        #expect(la.count == 8 && la.count == lb.count, "\(la) \(lb)")
        for (x, y) in zip(la, lb) { #expect(abs(x - y) <= 1e-4 * abs(x), "\(la) \(lb)") }
    }
}
