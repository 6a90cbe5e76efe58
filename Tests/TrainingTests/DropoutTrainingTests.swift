import Distributed
import Foundation
import TestSupport
import Config
import Data
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// Dropout and drop-path in training (model.dropout, model.drop_path): their masks are keyed by
/// (seed, step, layer, global sample, view), so P ranks equal one process on the global batch, runs
/// and resumed runs are bitwise the same, gradient caching's replayed forwards draw the first
/// forward's masks, and every forward outside a training step is inference.
@Suite(.serialized) struct DropoutTrainingTests {
    /// The small ViT of ViTTrainingTests with both regularisers on.
    static let vit = ViTTrainingTests.vit + ["model.dropout=0.2", "model.attention_dropout=0.1", "model.drop_path=0.3"]
    static let sgd = ViTTrainingTests.sgd

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    /// One plain SGD step (the parameters carry the summed gradient): P ranks, each masking its rows by
    /// their global sample, equal one process on the global batch of 24; and the step is not the one
    /// without dropout (the masks do something). The ViT (dropout, attention dropout and drop-path) at
    /// P = 2 and 3, the MLP (dropout; also under MoCo, whose key model does not drop) and the CNN
    /// (drop-path of its second stage; NCHW and blocked activations) at P = 2.
    @Test(arguments: [(vit, 2), (vit, 3),
                      (["model.dropout=0.3", "data.train_limit=512"], 2),
                      (["model.dropout=0.3", "loss.moco_queue=96", "data.train_limit=512"], 2),
                      (["model.encoder=cnn", "model.channels=[4, 8]", "model.representation=0", "model.drop_path=0.5",
                        "data.train_limit=512"], 2),
                      // Channels filling oneDNN's blocks: the drop path scales samples of blocked activations.
                      (["model.encoder=cnn", "model.channels=[16, 16]", "model.representation=0", "model.drop_path=0.5",
                        "data.train_limit=512"], 2)])
    func stepAtPRanksEqualsOneProcessWithDropoutOn(overrides: [String], ranks: Int) throws {
        let reference = try trainSmoke("dropout-p1", ranks: 1, steps: 1, globalBatch: 24, overrides + Self.sgd)
        let distributed = try trainSmoke("dropout-p\(ranks)", ranks: ranks, steps: 1, globalBatch: 24, overrides + Self.sgd)
        #expect(reference.config.model.dropout > 0 || reference.config.model.dropPath > 0)
        #expect(reference.losses.count == 1 && distributed.losses.count == 1)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        // Sums in another order (per rank, then all-reduced) round differently: ~1e-5 here, the masks scaling
        // kept values by up to 1 / (1 - p); one mask drawn for another sample moves parameters by O(1) (below).
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 5e-5)
        let off = overrides.filter { !$0.hasPrefix("model.dropout") && !$0.hasPrefix("model.drop_path") && !$0.hasPrefix("model.attention_dropout") }
        let plain = try trainSmoke("dropout-off", ranks: 1, steps: 1, globalBatch: 24, off + Self.sgd)
        #expect(maxRelativeDifference(plain.parameters, reference.parameters) > 1e-1, "dropout changed little")
    }

    /// Three AdamW steps at P = 2 with dropout and drop-path, twice: the same bits.
    @Test func runsWithDropoutAreBitwiseReproducible() throws {
        let first = try trainSmoke("dropout-a", ranks: 2, steps: 3, globalBatch: 32, Self.vit)
        let second = try trainSmoke("dropout-b", ranks: 2, steps: 3, globalBatch: 32, Self.vit)
        #expect(first.losses.count == 3 && first.losses == second.losses)
        #expect(first.parameters.map(\.bitPattern) == second.parameters.map(\.bitPattern))
    }

    /// A fresh one-process step of a tiny ViT on a fixed batch of 10 samples (8 x 8 images).
    func vitStep(_ overrides: [String]) throws -> TrainingStep {
        let config = try smokeConfig(Self.sgd + ["model.encoder=vit", "model.vit.preset=none", "model.vit.patch=4", "model.vit.dim=8",
                                                 "model.vit.depth=2", "model.vit.heads=2", "model.vit.mlp_ratio=2"] + overrides)
        let step = try TrainingStep(config: config, communicator: SingleProcessCommunicator(), inputWidth: 64, pairWidth: 0,
                                    imageShape: [8, 8], samplesPerStep: 10, totalSteps: 1)
        var random = RandomStream(seed: 7, stream: 1)
        for i in 0..<(2 * 10 * 64) { step.batch[i] = random.nextUniform() }
        return step
    }

    /// Gradient caching forwards each chunk twice (pass 1 for z, pass 2 before its backward): both must
    /// draw the masks one forward of all views draws, or the step is not the ordinary one.
    /// The same for the pair objectives (SigLIP's ring, pairs with its gathers), whose sides are the two views.
    @Test(arguments: [3, 8], ["ntxent", "siglip", "pairs"])
    func gradientCachedStepEqualsTheOrdinaryStepWithDropoutOn(chunk: Int, kind: String) throws {
        func step(_ overrides: [String]) throws -> (loss: Double, parameters: [Float], cached: Bool) {
            let step = try vitStep(["model.dropout=0.3", "model.attention_dropout=0.2", "model.drop_path=0.5", "loss.kind=\(kind)"]
                                   + overrides)
            let result = try step.step(0, input: step.batch.data)
            #expect(result.applied)
            return (result.loss, step.model.arena.parameters.array, step.objective.passes is GradientCache)
        }
        let reference = try step([])
        let cached = try step(["train.gradient_cache_chunk=\(chunk)"])
        #expect(cached.cached && !reference.cached)
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss))
        #expect(maxRelativeDifference(cached.parameters, reference.parameters) <= 1e-5)
    }

    /// After a training step the model is back in inference: the representations evaluation and
    /// `contrast embed` compute are those of the same parameters without any dropout, bit for bit.
    @Test func forwardsOutsideAStepAreInference() throws {
        let step = try vitStep(["model.dropout=0.3", "model.attention_dropout=0.2", "model.drop_path=0.5"])
        _ = try step.step(0, input: step.batch.data)
        #expect(step.model.dropoutKey.step == nil)
        var config = step.config
        config.model.dropout = 0
        config.model.attentionDropout = 0
        config.model.dropPath = 0
        let plain = ContrastiveModel(config.model, inputWidth: 64, imageShape: [8, 8])
        plain.arena.parameters.copy(from: step.model.arena.parameters)
        func representations(_ model: ContrastiveModel) -> [UInt32] {
            let out = Tensor(zeros: [20, model.representationWidth])
            model.representations(of: step.batch.data, count: 20, into: out.data, batch: 7)
            return out.array.map(\.bitPattern)
        }
        #expect(representations(step.model) == representations(plain))
        // And a training forward of the same rows differs: the comparison above can fail.
        step.model.dropoutKey.train(seed: 1, step: 0)
        #expect(representations(step.model) != representations(plain))
        step.model.dropoutKey.infer()
    }

    /// P = 2 with dropout and drop-path, 12 steps straight against a run killed right after its step-6
    /// checkpoint committed and resumed: the masks of steps 7...12 are those of the straight run (they
    /// depend on the step, not on a generator's state), so parameters, AdamW moments and step records
    /// are bitwise the same.
    @Test func resumedRunWithDropoutIsBitIdentical() throws {
        let checkpoints = CheckpointResumeTests()
        // 512 images: the resume crosses the epoch boundary at step 8, and its evaluation runs between the steps.
        let settings = Self.vit + ["checkpoint.every_steps=6"]
        let straight = temporaryDirectory("dropout-straight").appendingPathComponent("run").path
        let killed = temporaryDirectory("dropout-killed").appendingPathComponent("run").path
        try checkpoints.train(straight, ranks: 2, steps: 12, settings)
        let crash = try checkpoints.train(killed, ranks: 2, steps: 12, settings, crashAt: "before-latest", expectSuccess: false)
        #expect(crash.status != 0)
        try checkpoints.train(killed, ranks: 2, steps: 12, settings)
        let log = try String(contentsOfFile: killed + "/train.log", encoding: .utf8)
        #expect(log.contains("resumed from checkpoint"))
        #expect(try checkpoints.newestState(killed) == checkpoints.newestState(straight))
        let records = try checkpoints.stepRecords(killed, from: 7)
        let straightRecords = try checkpoints.stepRecords(straight, from: 7)
        #expect(records.count == 6 && records == straightRecords)
    }

    /// `contrast export` of a run trained with dropout writes the inference network (no layer for the
    /// dropout, which is the identity there) instead of refusing the Dropout layer.
    @Test func runTrainedWithDropoutExports() throws {
        let folder = temporaryDirectory("dropout-export")
        defer { try? FileManager.default.removeItem(at: folder) }
        let run = folder.appendingPathComponent("run").path, file = folder.appendingPathComponent("model.safetensors").path
        let trained = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "train.max_steps=2", "--set", "eval.knn_every_epochs=0",
                                                 "--set", "model.dropout=0.3"])
        #expect(trained.status == 0, "\(trained.error.suffix(1500))")
        let exported = try runContrast(ranks: 1, ["export", "--checkpoint", run, "--format", "safetensors", "--out", file])
        #expect(exported.status == 0, "\(exported.error)")
        let header = try Safetensors.readHeader(try Data(contentsOf: URL(fileURLWithPath: file)), path: file)
        #expect(header.entries.map(\.name).prefix(4) == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias"])
    }

    @Test func rateOutOfRangeIsOneLineBeforeTheRun() throws {
        let run = temporaryDirectory("dropout-bad").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "model.dropout=1"])
        expectOneLineError(outcome, mentioning: ["model.dropout", "[0, 1)"])
        #expect(!FileManager.default.fileExists(atPath: run))
        let path = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                              "--set", "model.drop_path=0.2"])
        expectOneLineError(path, mentioning: ["model.drop_path", "residual", "model.dropout"])
        #expect(!FileManager.default.fileExists(atPath: run))
    }
}
