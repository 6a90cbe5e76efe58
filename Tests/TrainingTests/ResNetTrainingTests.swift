import Distributed
import Foundation
import TestSupport
import Config
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// The ResNet encoder trains through `contrast train` like the others: P = 2 and P = 3 equal one process on the
/// global batch (with drop-path too, keyed by the global sample), a run is bitwise reproducible, and a shape
/// that does not fit the images is refused before the run directory exists.
@Suite(.serialized) struct ResNetTrainingTests {
    /// A bottleneck ResNet small enough for seconds on 28 x 28: small stem of 4 channels, stages at 28, 14 and 7
    /// (the last of two blocks), two pooled stages over 2 x 2 cells.
    static let resnet = ["model.encoder=resnet", "model.resnet.stages=[[4, 1, 1], [4, 1, 2], [6, 2, 2]]", "model.resnet.block=bottleneck",
                         "model.resnet.expansion=2", "model.pool_cells=2", "model.pool_stages=2", "model.representation=0",
                         "data.train_limit=512"]
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    /// One plain SGD step: the P ranks' gradients of their shares of the batch, all-reduced (in 4 kB buckets that
    /// start while backward runs), are the one process's of the whole; every encoder tensor moved. With
    /// drop-path on, the masks are keyed by the global sample, so P ranks still equal one process (sums in
    /// another order round differently, ~2e-5 here with the masks' 1 / (1 - p) scaling, as in
    /// DropoutTrainingTests), and the masks change the step. P = 3 takes a global batch of 48 (a multiple of 3
    /// and of smoke.yaml's 8 shards), so a rank's 16 samples straddle shard boundaries unlike at P = 2. Its
    /// three partial sums round differently again: one of the 5,184 parameters, a stem weight (its gradient
    /// sums over every pixel of every image) near 2e-4, off by 4e-8 = 3.9e-5 relative to the 1e-3 floor, every
    /// other one within 1e-5; a wrong share or normalisation changes the whole step, not one weight's last bits.
    @Test(arguments: [(2, 32, "0", 1e-5 as Float), (2, 32, "0.4", 5e-5), (3, 48, "0", 5e-5), (3, 48, "0.4", 5e-5)])
    func stepAtPRanksEqualsOneProcessOnTheGlobalBatch(ranks: Int, globalBatch: Int, dropPath: String, tolerance: Float) throws {
        let overrides = Self.resnet + Self.sgd + ["communication.bucket_mb=0.004", "model.drop_path=\(dropPath)"]
        let reference = try trainSmoke("resnet-p1", ranks: 1, steps: 1, globalBatch: globalBatch, overrides)
        let distributed = try trainSmoke("resnet-p\(ranks)", ranks: ranks, steps: 1, globalBatch: globalBatch, overrides)
        #expect(reference.model.arena.slice(named: "encoder.layer3.1.conv3.weight") != nil)
        #expect(reference.losses.count == 1 && distributed.losses.count == 1)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= tolerance)
        let initial = ContrastiveModel(reference.config.model, inputWidth: 784, imageShape: [28, 28])
        initial.initialise(seed: UInt64(reference.config.seed))
        for slice in initial.arena.slices where slice.name.hasPrefix("encoder.") {
            let moved = slice.range.contains { initial.arena.parameters[$0] != reference.model.arena.parameters[$0] }
            #expect(moved, "\(slice.name) did not change in a step")
        }
        if dropPath != "0" {
            let plain = try trainSmoke("resnet-plain", ranks: 1, steps: 1, globalBatch: globalBatch, Self.resnet + Self.sgd)
            #expect(maxRelativeDifference(plain.parameters, reference.parameters) > 1e-1, "drop-path changed little")
        }
    }

    /// Three AdamW steps at P = 2 with drop-path on, twice: the same bits.
    @Test func runsAreBitwiseReproducible() throws {
        let first = try trainSmoke("resnet-a", ranks: 2, steps: 3, globalBatch: 32, Self.resnet + ["model.drop_path=0.2"])
        let second = try trainSmoke("resnet-b", ranks: 2, steps: 3, globalBatch: 32, Self.resnet + ["model.drop_path=0.2"])
        #expect(first.losses.count == 3 && first.losses == second.losses)
        #expect(first.parameters.map(\.bitPattern) == second.parameters.map(\.bitPattern))
    }

    @Test func shapesThatDoNotFitAreOneLineBeforeTheRun() throws {
        let run = temporaryDirectory("resnet-bad").appendingPathComponent("run").path
        let size = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                              "--set", "model.encoder=resnet", "--set", "model.resnet.preset=resnet18"])
        expectOneLineError(size, mentioning: ["model.resnet.stages", "28 x 28", "32, 64, 96", "stem small"])
        #expect(!FileManager.default.fileExists(atPath: run))
        let preset = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                "--set", "model.encoder=resnet", "--set", "model.resnet.preset=resnet50"])
        expectOneLineError(preset, mentioning: ["model.resnet.preset", "resnet18"])
        let stages = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                "--set", "model.encoder=resnet", "--set", "model.resnet.stages=[[8, 1]]"])
        expectOneLineError(stages, mentioning: ["model.resnet.stages", "stage 1", "[channels, blocks, stride]"])
        #expect(!FileManager.default.fileExists(atPath: run))
    }

    /// Gradient caching (a second forward per chunk of views, then its backward) runs the max pool and the
    /// blocks again on other rows between forward and backward: the step must still be the ordinary one, with
    /// drop-path too (the second forward draws the same masks; rounding ~1.3e-5 there, a mask drawn for
    /// another sample would move parameters by O(1)).
    @Test(arguments: [(3, "0", 1e-5 as Float), (8, "0", 1e-5), (3, "0.3", 5e-5), (8, "0.3", 5e-5)])
    func gradientCachedStepEqualsTheOrdinaryStep(chunk: Int, dropPath: String, tolerance: Float) throws {
        func step(_ overrides: [String]) throws -> (loss: Double, parameters: [Float], cached: Bool) {
            let config = try smokeConfig(Self.sgd + ["model.encoder=resnet", "model.resnet.stages=[[4, 1, 1], [4, 2, 2]]",
                                                     "model.resnet.block=bottleneck", "model.resnet.expansion=2", "model.resnet.stem=imagenet"]
                                         + overrides)
            let step = try TrainingStep(config: config, communicator: SingleProcessCommunicator(), inputWidth: 256, pairWidth: 0,
                                        imageShape: [16, 16], samplesPerStep: 10, totalSteps: 1)
            var random = RandomStream(seed: 7, stream: 1)
            for i in 0..<(2 * 10 * 256) { step.batch[i] = random.nextUniform() }
            let result = try step.step(0, input: step.batch.data)
            #expect(result.applied)
            return (result.loss, step.model.arena.parameters.array, step.objective.passes is GradientCache)
        }
        let reference = try step(["model.drop_path=\(dropPath)"])
        let cached = try step(["model.drop_path=\(dropPath)", "train.gradient_cache_chunk=\(chunk)"])
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss))
        #expect(maxRelativeDifference(cached.parameters, reference.parameters) <= tolerance)
        #expect(cached.cached && !reference.cached)
        if dropPath != "0" {
            let plain = try step([])
            #expect(maxRelativeDifference(plain.parameters, reference.parameters) > 1e-1, "drop-path changed little")
        }
    }
}
