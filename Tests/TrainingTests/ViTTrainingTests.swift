import Distributed
import Foundation
import TestSupport
import Config
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// The Vision Transformer encoder trains through `contrast train` like the others: P = 2 equals one
/// process on the global batch, a run is bitwise reproducible, and a shape that does not fit the
/// images is refused before the run directory exists; gradient caching leaves the step unchanged.
@Suite(.serialized) struct ViTTrainingTests {
    /// A ViT small enough for seconds: 16 patches of 7 x 7, width 16, two blocks of two heads.
    static let vit = ["model.encoder=vit", "model.vit.preset=none", "model.vit.patch=7", "model.vit.dim=16", "model.vit.depth=2",
                      "model.vit.heads=2", "model.vit.mlp_ratio=2", "model.representation=0", "data.train_limit=512"]
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    /// One plain SGD step (the update is -lr g, so the parameters carry the summed gradient): the two
    /// ranks' gradients of their half batches, all-reduced, are the one process's of the whole. With
    /// 4 kB buckets (6 of them) the all-reduce starts while backward runs: a layer that reported its gradients
    /// final too early would send partial ones.
    @Test(arguments: [["model.vit.pool=cls"], ["model.vit.pool=mean", "model.vit.attention_tile=5", "communication.bucket_mb=0.004"]])
    func stepAtTwoRanksEqualsOneProcessOnTheGlobalBatch(variant: [String]) throws {
        let overrides = Self.vit + Self.sgd + variant
        let reference = try trainSmoke("vit-p1", ranks: 1, steps: 1, globalBatch: 32, overrides)
        let distributed = try trainSmoke("vit-p2", ranks: 2, steps: 1, globalBatch: 32, overrides)
        #expect(reference.model.arena.slice(named: "encoder.blocks.1.mlp.fc2.weight") != nil)
        #expect(reference.losses.count == 1 && distributed.losses.count == 1)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
        // The step moved every tensor of the encoder: no part of it is left out of backward.
        let initial = ContrastiveModel(reference.config.model, inputWidth: 784, imageShape: [28, 28])
        initial.initialise(seed: UInt64(reference.config.seed))
        for slice in initial.arena.slices where slice.name.hasPrefix("encoder.") {
            let moved = slice.range.contains { initial.arena.parameters[$0] != reference.model.arena.parameters[$0] }
            #expect(moved, "\(slice.name) did not change in a step")
        }
    }

    /// Three AdamW steps at P = 2, twice: the same bits (a fixed reduction order, no unordered sums).
    @Test func runsAreBitwiseReproducible() throws {
        let first = try trainSmoke("vit-a", ranks: 2, steps: 3, globalBatch: 32, Self.vit + ["model.vit.attention_tile=6"])
        let second = try trainSmoke("vit-b", ranks: 2, steps: 3, globalBatch: 32, Self.vit + ["model.vit.attention_tile=6"])
        #expect(first.losses.count == 3 && first.losses == second.losses)
        #expect(first.parameters.map(\.bitPattern) == second.parameters.map(\.bitPattern))
    }

    @Test func patchThatDoesNotDivideTheImagesIsOneLineBeforeTheRun() throws {
        let run = temporaryDirectory("vit-bad").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "model.encoder=vit", "--set", "model.vit.patch=5"])
        expectOneLineError(outcome, mentioning: ["model.vit.patch", "28 x 28", "use one of 1, 2, 4, 7, 14, 28"])
        #expect(!FileManager.default.fileExists(atPath: run))
        let heads = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                               "--set", "model.encoder=vit", "--set", "model.vit.heads=5"])
        expectOneLineError(heads, mentioning: ["model.vit.heads", "128"])
        #expect(!FileManager.default.fileExists(atPath: run))
    }

    /// Gradient caching (a second forward per chunk of views, then its backward) runs the ViT's layers
    /// again on other rows between forward and backward: the step must still be the ordinary one.
    @Test(arguments: [3, 8])
    func gradientCachedStepEqualsTheOrdinaryStep(chunk: Int) throws {
        func step(_ overrides: [String]) throws -> (loss: Double, parameters: [Float], cached: Bool) {
            let config = try smokeConfig(Self.sgd + ["model.encoder=vit", "model.vit.preset=none", "model.vit.patch=4", "model.vit.dim=8",
                                                     "model.vit.depth=1", "model.vit.heads=2", "model.vit.mlp_ratio=2"] + overrides)
            let step = try TrainingStep(config: config, communicator: SingleProcessCommunicator(), inputWidth: 64, pairWidth: 0,
                                        imageShape: [8, 8], samplesPerStep: 10, totalSteps: 1)
            var random = RandomStream(seed: 7, stream: 1)
            for i in 0..<(2 * 10 * 64) { step.batch[i] = random.nextUniform() }
            let result = try step.step(0, input: step.batch.data)
            #expect(result.applied)
            return (result.loss, step.model.arena.parameters.array, step.objective.passes is GradientCache)
        }
        let reference = try step([])
        let cached = try step(["train.gradient_cache_chunk=\(chunk)"])
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss))
        #expect(maxRelativeDifference(cached.parameters, reference.parameters) <= 1e-5)
        #expect(cached.cached && !reference.cached)
    }
}
