import Foundation
import TestSupport
import Config
import Data
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

    /// A CLIP run with the text tower (GELU in its projection head, so the exported Dense modules carry both
    /// activations' kinds between them and the one-tower test), trained two steps once for the export tests.
    static let towerRun: String = {
        let tests = ImageTextTrainingTests()
        let (outcome, run) = try! tests.train(ranks: 1, steps: 2, ["loss.kind=clip", "loss.temperature=0.1", "model.activation=gelu"])
        precondition(outcome.status == 0, "the CLIP run for the export tests failed: \(outcome.error.suffix(1500))")
        return run
    }()

    /// Captions and prompts, one unknown word ("zebra") and one longer than max_length 16.
    static let captionLines = ["a photo of a t-shirt.", "a pair of trousers", "zebra sneaker", "a dark ankle boot with a heel",
                               "a bag " + [String](repeating: "and a shirt", count: 8).joined(separator: " ")]

    func contrast(_ arguments: [String]) throws -> ProcessOutcome {
        let outcome = try runContrast(ranks: 1, arguments)
        #expect(outcome.status == 0, "contrast \(arguments.prefix(2).joined(separator: " ")): \(outcome.error.suffix(1500))")
        return outcome
    }

    /// `contrast embed --texts` on a CLIP checkpoint embeds through the text tower, by default to z (the image
    /// tower's embedding space: same width, unit rows); `export --format hf --tower text` writes the text tower with
    /// its head as Dense and Normalize modules. Without --tower, on another format, or on a run without a text
    /// tower: one line naming --tower and the fix, and nothing written.
    @Test func textTowerEmbedsAndExports() throws {
        let run = Self.towerRun
        let folder = temporaryDirectory("text-tower")
        let path = { folder.appendingPathComponent($0).path }
        try (Self.captionLines.joined(separator: "\n") + "\n").write(toFile: path("texts.txt"), atomically: true, encoding: .utf8)
        let z = try contrast(["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--out", path("z.npy")])
        #expect(z.output.contains("embeddings of 5 texts (the lines of \(path("texts.txt")), through the text tower; 1 longer than 16 tokens, "
                                  + "truncated), 5 x 16 float32"), "\(z.output)")
        let h = try contrast(["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--what", "representation", "--out", path("h.npy")])
        #expect(h.output.contains("representations of 5 texts"), "\(h.output)")
        let images = try contrast(["embed", "--checkpoint", run, "--what", "embedding", "--limit", "8", "--out", path("images.npy")])
        #expect(images.status == 0)
        let (textZ, textH, imageZ) = (try NPYArray(path: path("z.npy")), try NPYArray(path: path("h.npy")), try NPYArray(path: path("images.npy")))
        #expect(textZ.shape == [5, 16] && imageZ.shape == [8, 16] && textH.shape == [5, 32], "\(textZ.shape) \(imageZ.shape) \(textH.shape)")
        let zValues = textZ.float32Values()
        for row in 0..<5 {
            let norm = (0..<16).map { zValues[row * 16 + $0] * zValues[row * 16 + $0] }.reduce(0, +)
            #expect(abs(norm - 1) <= 1e-5, "text embedding \(row) has squared norm \(norm)")
        }
        // z is what the trainer's zero-shot and retrieval compare with images: the pair tower's forward pass.
        let trained = try TrainedModel.load(run)
        let tokens = try CaptionTokens(config: trained.config)
        let rows = try tokens.rows(Self.captionLines)
        var expected = [Float](repeating: 0, count: 5 * 16)
        trained.model.embeddings(of: rows, count: 5, pair: true, into: &expected)
        #expect(zValues == expected, "embed --texts is not the text tower's z")

        let exported = try contrast(["export", "--checkpoint", run, "--format", "hf", "--tower", "text", "--out", path("hf")])
        #expect(exported.output.contains("the text tower as BertModel (1 layers, width 32") && exported.output.contains("2 Dense"), "\(exported.output)")
        let modules = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("hf/modules.json")))) as? [[String: Any]])
        #expect(modules.map { $0["type"] as? String ?? "" } == ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                                                                "sentence_transformers.models.Dense", "sentence_transformers.models.Dense",
                                                                "sentence_transformers.models.Normalize"], "\(modules)")
        let dense = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("hf/2_Dense/config.json")))) as? [String: Any])
        #expect(dense["in_features"] as? Int == 32 && dense["out_features"] as? Int == 32
                && dense["activation_function"] as? String == "torch.nn.modules.activation.GELU", "\(dense)")
        let weights = try Safetensors.readHeader(Data(contentsOf: URL(fileURLWithPath: path("hf/model.safetensors"))), path: "model.safetensors")
        #expect(weights.entries.contains { $0.name == "encoder.layer.0.attention.self.query.weight" } && !weights.entries.contains { $0.name.hasPrefix("pair") })
        // --what encoder: the text tower's h only.
        let encoderOnly = try contrast(["export", "--checkpoint", run, "--format", "hf", "--tower", "text", "--what", "encoder", "--out", path("hf-h")])
        #expect(!encoderOnly.output.contains("Dense") && !FileManager.default.fileExists(atPath: path("hf-h/2_Dense")), "\(encoderOnly.output)")

        let withoutTower = try runContrast(ranks: 1, ["export", "--checkpoint", run, "--format", "hf", "--out", path("none")])
        #expect(withoutTower.status != 0 && withoutTower.error.contains("pass --tower text") && withoutTower.error.split(separator: "\n").count == 1,
                "\(withoutTower.error)")
        let onnx = try runContrast(ranks: 1, ["export", "--checkpoint", run, "--format", "onnx", "--tower", "text", "--out", path("x.onnx")])
        #expect(onnx.status != 0 && onnx.error.contains("--tower text applies to --format hf"), "\(onnx.error)")
        let (plain, plainRun) = try train(ranks: 1, steps: 1, ["loss.kind=ntxent", "model.pair_encoder=mlp"])
        #expect(plain.status == 0, "\(plain.error.suffix(1500))")
        let noTower = try runContrast(ranks: 1, ["export", "--checkpoint", plainRun, "--format", "hf", "--tower", "text", "--out", path("none")])
        #expect(noTower.status != 0 && noTower.error.contains("--tower text:") && noTower.error.contains("has no text tower")
                && noTower.error.split(separator: "\n").count == 1, "\(noTower.error)")
        let noTexts = try runContrast(ranks: 1, ["embed", "--checkpoint", plainRun, "--texts", path("texts.txt"), "--out", path("none.npy")])
        #expect(noTexts.status != 0 && noTexts.error.contains("leave out --texts"), "\(noTexts.error)")
        for file in ["none", "x.onnx", "none.npy"] { #expect(!FileManager.default.fileExists(atPath: path(file)), "\(file) was written") }
    }

    /// The exported text tower in transformers and sentence-transformers: BertTokenizerFast tokenizes as contrast
    /// does, BertModel's masked mean of the last hidden states is `embed --texts --what representation` (h), and
    /// SentenceTransformer (Transformer, Pooling, Dense, Dense, Normalize) gives `embed --texts` (z), to 1e-5 relative.
    @Test(.enabled(if: transformersUnavailable == nil, "\(transformersUnavailable ?? "")"))
    func exportedTextTowerMatchesEmbedInPython() throws {
        print("python-verify: ran CLIP text tower export")
        let run = Self.towerRun
        let folder = temporaryDirectory("text-tower-python")
        let path = { folder.appendingPathComponent($0).path }
        try (Self.captionLines.joined(separator: "\n") + "\n").write(toFile: path("texts.txt"), atomically: true, encoding: .utf8)
        _ = try contrast(["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--out", path("z.npy")])
        _ = try contrast(["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--what", "representation", "--out", path("h.npy")])
        _ = try contrast(["export", "--checkpoint", run, "--format", "hf", "--tower", "text", "--out", path("hf")])
        try FileManager.default.createDirectory(atPath: path("py"), withIntermediateDirectories: true)
        let report = try checkBert(["texts", path("hf"), path("texts.txt"), path("py")])
        print("python-verify: \(report.trimmingCharacters(in: .whitespacesAndNewlines))")
        let z = try NPYArray(path: path("z.npy")).float32Values(), sentence = try NPYArray(path: path("py/sentence.npy")).float32Values()
        #expect(relativeDifference(z, sentence) <= 1e-5, "SentenceTransformer differs from contrast embed --texts by \(relativeDifference(z, sentence))")
        // BertModel: its last hidden states, mean-pooled over the tokenizer's mask, are the text tower's h.
        let mask = try #require(try NPYArray(path: path("py/mask.npy")).int64Values())
        let hidden = try NPYArray(path: path("py/hidden.npy")).float32Values()
        let (n, t, d) = (5, 16, 32)
        #expect(mask.count == n * t && hidden.count == n * t * d)
        var pooled = [Float](repeating: 0, count: n * d)
        for s in 0..<n {
            let real = (0..<t).filter { mask[s * t + $0] != 0 }
            for c in 0..<d { pooled[s * d + c] = real.map { hidden[(s * t + $0) * d + c] }.reduce(0, +) / Float(real.count) }
        }
        let h = try NPYArray(path: path("h.npy")).float32Values()
        #expect(relativeDifference(h, pooled) <= 1e-5, "BertModel's pooled states differ from embed --what representation by \(relativeDifference(h, pooled))")
        print("python-verify: CLIP text tower: SentenceTransformer z \(relativeDifference(z, sentence)), BertModel h \(relativeDifference(h, pooled)) relative")
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
