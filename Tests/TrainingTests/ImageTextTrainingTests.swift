import Foundation
import TestSupport
import Config
import Evaluation
import RunFiles
import Testing
@testable import NN
@testable import Training

/// Image <-> text CLIP (model.pair_encoder bert) end to end through the binary, on Fashion-MNIST with
/// captions (`prepare fashion-mnist --captions`) and a vocabulary learned from them (`contrast vocab`).
@Suite(.serialized) struct ImageTextTrainingTests {
    /// The first 2,048 images of each split with captions, 8 shards, and its vocab.txt.
    static let captioned: (path: String, vocab: String) = {
        let out = temporaryDirectory("captioned").appendingPathComponent("fmnist-captions").path
        let prepared = try! runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--out", out, "--shards", "8", "--limit", "2048",
                                                           "--captions"])
        precondition(prepared.status == 0, "contrast prepare --captions failed: \(prepared.error)")
        let vocab = out + "/vocab.txt"
        let learned = try! runProcess(contrastExecutable, ["vocab", "--size", "200", "--out", vocab, out])
        precondition(learned.status == 0, "contrast vocab failed: \(learned.error)")
        return (out, vocab)
    }()

    /// A small text tower: one BERT layer of width 32 on 16 tokens, no dropout.
    static let textTower = ["model.pair_encoder=bert", "model.bert.layers=1", "model.bert.width=32", "model.bert.heads=2",
                            "model.bert.ffn=64", "model.bert.max_length=16", "model.bert.max_position=16",
                            "model.bert.dropout=0", "model.bert.attention_dropout=0"]

    func train(ranks: Int, batchPerRank: Int = 64, steps: Int, _ extra: [String]) throws -> (outcome: ProcessOutcome, run: String) {
        let run = temporaryDirectory("image-text-run").appendingPathComponent("run").path
        let overrides = ["run_dir=\(run)", "data.dataset=prepared", "data.path=\(Self.captioned.path)", "data.vocab=\(Self.captioned.vocab)",
                         "data.train_limit=0", "data.batch_per_rank=\(batchPerRank)", "train.max_steps=\(steps)",
                         "communication.precision=fp32", "eval.knn_every_epochs=0"] + Self.textTower
        let arguments = ["train", "--config", "configs/smoke.yaml"] + (overrides + extra).flatMap { ["--set", $0] }
        return (try runContrast(ranks: ranks, arguments), run)
    }

    func records(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The run's final parameters, or (`initial`) those its config starts from.
    func parameters(_ run: String, initial: Bool = false) throws -> [Float] {
        let config = try ConfigLoader.load(file: run + "/config.yaml", overrides: [])
        let model = ContrastiveModel(config.model, inputWidth: 784, pairInputWidth: 48, learnableBias: config.loss.learnsLogitBias)
        #expect(model.pairEncoder?.layers.first is BertEmbeddings, "the pair tower is BERT")
        if initial { model.initialise(seed: UInt64(config.seed)) } else {
            try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run + "/weights.bin"))
        }
        return model.arena.parameters.array
    }

    /// One plain SGD step of CLIP and of SigLIP (sides pairs) with the text tower at P = 2 equals one
    /// process on the global batch of 64 image-caption pairs.
    @Test(arguments: ["clip", "siglip"])
    func stepAtTwoRanksEqualsOneProcess(kind: String) throws {
        let settings = ["loss.kind=\(kind)", "loss.temperature=0.1", "optimizer.kind=sgd", "optimizer.momentum=0",
                        "optimizer.weight_decay=0", "optimizer.lr=0.1"] + (kind == "siglip" ? ["loss.sides=pairs"] : [])
        let reference = try train(ranks: 1, batchPerRank: 64, steps: 1, settings)
        let distributed = try train(ranks: 2, batchPerRank: 32, steps: 1, settings)
        #expect(reference.outcome.status == 0 && distributed.outcome.status == 0,
                "\(reference.outcome.error.suffix(1500)) \(distributed.outcome.error.suffix(1500))")
        let loss = { (run: String) in try self.records(run).compactMap { $0["time_forward"] != nil ? $0["loss"] as? Double : nil } }
        let (a, b) = (try loss(reference.run), try loss(distributed.run))
        #expect(a.count == 1 && b.count == 1 && abs(a[0] - b[0]) <= 1e-5 * abs(a[0]))
        // Compared by the step's size (SigLIP's bias b, the last parameter, starts at loss.siglip_bias, not at init's 0).
        let (x, y) = (try parameters(reference.run), try parameters(distributed.run))
        let start = try parameters(reference.run, initial: true)
        #expect(x.count == y.count && x.count == start.count)
        let largestUpdate = zip(x, start).dropLast(kind == "siglip" ? 1 : 0).map { abs($0 - $1) }.max()!
        let worst = zip(x, y).map { abs($0 - $1) }.max()!
        #expect(largestUpdate > 0 && worst <= 1e-5 * largestUpdate, "largest difference \(worst), largest update \(largestUpdate)")
    }

    /// A short CLIP run logs zero-shot accuracy (train.log, metrics, TensorBoard's scalars) and recall@1/5/10
    /// image -> caption and back, and learns: after two epochs zero-shot beats chance (10 %) on the test images.
    @Test func shortRunLogsAndLearnsZeroShot() throws {
        let run = try train(ranks: 1, steps: 0, ["loss.kind=clip", "loss.temperature=0.1", "train.epochs=2", "optimizer.lr=2e-3"])
        #expect(run.outcome.status == 0, "\(run.outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: run.run + "/train.log", encoding: .utf8)
        #expect(log.contains("zero-shot accuracy") && log.contains("recall@10"), "\(log.suffix(800))")
        let last = try records(run.run).last { $0["zero_shot_accuracy"] != nil }
        let accuracy = last?["zero_shot_accuracy"] as? Double ?? 0
        print("image-text short run: zero-shot accuracy \(accuracy), recall@1 image -> caption \(last?["recall_at_1_features_to_pairs"] ?? "-")")
        #expect(accuracy > 0.2, "zero-shot accuracy \(accuracy)")
        #expect(last?["recall_at_10_features_to_pairs"] != nil && last?["recall_at_10_pairs_to_features"] != nil)
        let tensorboard = URL(fileURLWithPath: run.run + "/tensorboard")
        let events = try #require(try FileManager.default.contentsOfDirectory(atPath: tensorboard.path).first { $0.hasPrefix("events.out.tfevents.") })
        let tags = Set(try TensorBoardReader.scalars(file: tensorboard.appendingPathComponent(events)).map(\.tag))
        for k in [1, 5, 10] {
            #expect(tags.contains("eval/recall_at_\(k)_features_to_pairs") && tags.contains("eval/recall_at_\(k)_pairs_to_features"), "\(tags.sorted())")
        }
        #expect(tags.contains("eval/zero_shot_accuracy"), "\(tags.sorted())")
    }

    /// Gradient caching (train.gradient_cache_chunk) with the text tower's dropout on: one SGD step, chunks of
    /// 13 rows (not dividing the 64), equals the uncached step: the replayed forwards draw the first masks.
    @Test func cachedStepWithTextDropoutEqualsTheUncachedStep() throws {
        let settings = ["loss.kind=clip", "loss.temperature=0.1", "optimizer.kind=sgd", "optimizer.momentum=0",
                        "optimizer.weight_decay=0", "optimizer.lr=0.1", "model.bert.dropout=0.2", "model.bert.attention_dropout=0.1"]
        let reference = try train(ranks: 1, steps: 1, settings)
        let cached = try train(ranks: 1, steps: 1, settings + ["train.gradient_cache_chunk=13"])
        #expect(reference.outcome.status == 0 && cached.outcome.status == 0, "\(cached.outcome.error.suffix(1500))")
        let loss = { (run: String) in try self.records(run).compactMap { $0["time_forward"] != nil ? $0["loss"] as? Double : nil } }
        let (a, b) = (try loss(reference.run), try loss(cached.run))
        #expect(a.count == 1 && b.count == 1 && abs(a[0] - b[0]) <= 1e-6 * abs(a[0]))
        let (x, y, start) = (try parameters(reference.run), try parameters(cached.run), try parameters(reference.run, initial: true))
        let largestUpdate = zip(x, start).map { abs($0 - $1) }.max()!
        #expect(largestUpdate > 0 && zip(x, y).map { abs($0 - $1) }.max()! <= 1e-5 * largestUpdate)
    }

    /// P = 2, CLIP with the text tower and its dropout on, 12 steps straight against a run killed right after
    /// its step-6 checkpoint committed and resumed: parameters, AdamW moments and step records are bitwise the same.
    @Test func resumedRunIsBitIdentical() throws {
        let checkpoints = CheckpointResumeTests()
        let settings = ["data.dataset=prepared", "data.path=\(Self.captioned.path)", "data.vocab=\(Self.captioned.vocab)",
                        "data.train_limit=0", "loss.kind=clip", "loss.temperature_mode=learnable", "checkpoint.every_steps=6",
                        "eval.knn_every_epochs=0"] + Self.textTower + ["model.bert.dropout=0.1", "model.bert.attention_dropout=0.1"]
        let straight = temporaryDirectory("image-text-straight").appendingPathComponent("run").path
        let killed = temporaryDirectory("image-text-killed").appendingPathComponent("run").path
        try checkpoints.train(straight, ranks: 2, steps: 12, settings)
        let crash = try checkpoints.train(killed, ranks: 2, steps: 12, settings, crashAt: "before-latest", expectSuccess: false)
        #expect(crash.status != 0)
        try checkpoints.train(killed, ranks: 2, steps: 12, settings)
        #expect(try String(contentsOfFile: killed + "/train.log", encoding: .utf8).contains("resumed from checkpoint"))
        #expect(try checkpoints.newestState(killed) == checkpoints.newestState(straight))
        let records = try checkpoints.stepRecords(killed, from: 7), straightRecords = try checkpoints.stepRecords(straight, from: 7)
        #expect(records.count == 6 && records == straightRecords)
    }

    /// A text pair tower without captions, on the IDX files, or without a two-tower loss is one line naming the key.
    @Test func unusableSettingsNameTheKey() throws {
        let idx = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "loss.kind=clip",
                                             "--set", "data.vocab=\(Self.captioned.vocab)"] + Self.textTower.flatMap { ["--set", $0] })
        #expect(idx.status != 0 && idx.error.contains("model.pair_encoder") && idx.error.contains("--captions"), "\(idx.error)")
        let ntxent = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "data.vocab=\(Self.captioned.vocab)"]
                                     + Self.textTower.flatMap { ["--set", $0] })
        #expect(ntxent.status != 0 && ntxent.error.contains("model.pair_encoder") && ntxent.error.contains("loss.kind clip"), "\(ntxent.error)")
        let noVocab = try train(ranks: 1, steps: 1, ["loss.kind=clip", "data.vocab="])
        #expect(noVocab.outcome.status != 0 && noVocab.outcome.error.contains("data.vocab"), "\(noVocab.outcome.error)")
    }
}
