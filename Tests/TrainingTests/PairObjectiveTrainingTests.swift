import Foundation
import TestSupport
import Config
import Evaluation
import Testing
@testable import NN
@testable import Training

/// loss.kind siglip and pairs through `contrast train` on the smoke workload (the two views of each
/// image are the two sides of a pair): one plain SGD step at P ranks equals one process on the
/// global batch, the same run twice gives the same bits, SigLIP's scale and bias are trained, and
/// the duplicate mask (pair id = label) changes the step.
@Suite(.serialized) struct PairObjectiveTrainingTests {
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]
    static let siglip = ["loss.kind=siglip", "loss.temperature_mode=learnable", "loss.temperature=0.1"]

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    /// P = 2 and 3 ranks passing the y blocks around the ring equal one process holding all 48 pairs;
    /// theta and b (the last parameters) moved from log 10 and -10 by the same step, and the step records log b.
    @Test(arguments: [2, 3])
    func siglipStepAtPRanksEqualsOneProcess(ranks: Int) throws {
        let reference = try trainSmoke("siglip-p1", ranks: 1, steps: 1, globalBatch: 48, Self.siglip + Self.sgd)
        let distributed = try trainSmoke("siglip-p\(ranks)", ranks: ranks, steps: 1, globalBatch: 48, Self.siglip + Self.sgd)
        #expect(reference.losses.count == 1 && distributed.losses.count == 1)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        // SigLIP's first step is large (the loss is a sum over N columns, ~N log 2 at the start, so the
        // step moves theta by ~20 and many weights by more than their size): parameters are compared by
        // how far the step moved them, every element within 1e-5 of the largest update.
        let initial = ContrastiveModel(reference.config.model, inputWidth: 784, imageShape: [28, 28], learnableTemperature: true,
                                       learnableBias: true)
        initial.initialise(seed: UInt64(reference.config.seed))
        let model = reference.model, weights = model.logitScale!.offset     // theta and b are compared below
        let largestUpdate = zip(reference.parameters, initial.arena.parameters.array).prefix(weights).map { abs($0 - $1) }.max()!
        let difference = zip(reference.parameters, distributed.parameters).prefix(weights).map { abs($0 - $1) }.max()!
        #expect(difference <= 1e-5 * largestUpdate, "\(difference) vs \(largestUpdate)")
        let theta = model.arena.parameters(model.logitScale!)[0], bias = model.arena.parameters(model.logitBias!)[0]
        let thetaP = distributed.model.arena.parameters(model.logitScale!)[0], biasP = distributed.model.arena.parameters(model.logitBias!)[0]
        #expect(abs(theta - thetaP) <= 1e-5 * abs(theta) && abs(bias - biasP) <= 1e-5 * abs(bias))
        #expect(abs(theta - log(10)) > 1 && abs(bias + 10) > 1, "theta \(theta), b \(bias)")
        // The step record carries the bias the step's loss used: the start value.
        #expect(reference.steps[0]["logit_bias"] as? Double == -10 && distributed.steps[0]["logit_bias"] as? Double == -10)
    }

    /// Three AdamW steps at P = 2, twice: the same bits (each rank sums its ring's blocks in a fixed order).
    @Test func siglipRunsAreBitwiseReproducible() throws {
        let first = try trainSmoke("siglip-a", ranks: 2, steps: 3, globalBatch: 32, Self.siglip)
        let second = try trainSmoke("siglip-b", ranks: 2, steps: 3, globalBatch: 32, Self.siglip)
        #expect(first.losses.count == 3 && first.losses == second.losses)
        #expect(first.parameters.map(\.bitPattern) == second.parameters.map(\.bitPattern))
    }

    /// Pairs with duplicates masked by label (10 classes in a batch of 48: every rank's anchors have
    /// duplicates on the other ranks): P = 2 and 3 equal one process, and the mask changes the step.
    @Test(arguments: [2, 3])
    func pairsStepAtPRanksEqualsOneProcess(ranks: Int) throws {
        let pairs = ["loss.kind=pairs", "loss.mask_duplicates=true", "loss.temperature=0.05"]
        let reference = try trainSmoke("pairs-p1", ranks: 1, steps: 1, globalBatch: 48, pairs + Self.sgd)
        let distributed = try trainSmoke("pairs-p\(ranks)", ranks: ranks, steps: 1, globalBatch: 48, pairs + Self.sgd)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
        let unmasked = try trainSmoke("pairs-unmasked", ranks: 1, steps: 1, globalBatch: 48,
                                      ["loss.kind=pairs", "loss.temperature=0.05"] + Self.sgd)
        #expect(unmasked.losses[0] - reference.losses[0] > 0.1, "masking same-label positives lowers the loss")
    }

    /// Two towers (loss.sides pairs, CLIP's paired Fashion-MNIST): SigLIP's ring and the symmetric pairs
    /// loss, one plain SGD step at P = 2 equal to one process on the global batch of 64 pairs.
    @Test(arguments: ["siglip", "pairs"])
    func twoTowerStepAtTwoRanksEqualsOneProcess(kind: String) throws {
        let prepared = PreparedDataTests()
        let settings = ["loss.kind=\(kind)", "loss.sides=pairs", "model.pair_hidden=[48]"] + Self.sgd
            + (kind == "siglip" ? ["loss.temperature=0.1", "optimizer.lr=0.01"] : ["loss.temperature=0.05"])
        /// The run's final parameters, or (nil) the initial ones of its config.
        func model(_ run: String?) throws -> [Float] {
            let config = try run.map { try ConfigLoader.load(file: $0 + "/config.yaml", overrides: []) } ?? smokeConfig(settings)
            let model = ContrastiveModel(config.model, inputWidth: 784, pairInputWidth: 64, learnableBias: config.loss.learnsLogitBias)
            #expect(model.pairEncoder != nil)
            if let run { try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run + "/weights.bin")) } else {
                model.initialise(seed: UInt64(config.seed))
            }
            return model.arena.parameters.array
        }
        let reference = try prepared.train(ranks: 1, path: PreparedDataTests.paired, batchPerRank: 64, steps: 1, settings)
        let distributed = try prepared.train(ranks: 2, path: PreparedDataTests.paired, batchPerRank: 32, steps: 1, settings)
        #expect(reference.outcome.status == 0 && distributed.outcome.status == 0, "\(distributed.outcome.error.suffix(1500))")
        let losses = (try prepared.losses(reference.run), try prepared.losses(distributed.run))
        #expect(losses.0.count == 1 && abs(losses.1[0] - losses.0[0]) <= 1e-5 * abs(losses.0[0]))
        // Compared by the step's size, as for SigLIP above (b is the last parameter and starts at -10, not at init's 0).
        let a = try model(reference.run), b = try model(distributed.run), start = try model(nil)
        let largestUpdate = zip(a, start).dropLast().map { abs($0 - $1) }.max()!
        #expect(largestUpdate > 0 && zip(a, b).map { abs($0 - $1) }.max()! <= 1e-5 * largestUpdate)
    }

    /// Keys that do not fit the objective are refused with one line naming the key and the fix.
    @Test func mismatchedKeysAreConfigErrors() throws {
        let ntxent = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "loss.mask_duplicates=true"])
        #expect(ntxent.status != 0 && ntxent.error.contains("config key 'loss.mask_duplicates' needs loss.kind pairs"), "\(ntxent.error)")
        let sides = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "loss.kind=siglip",
                                               "--set", "loss.sides=pairs", "--set", "run_dir=\(temporaryDirectory("sides").path)/run"])
        #expect(sides.status != 0 && sides.error.contains("config key 'loss.sides' is pairs, but the data set has no pairs"), "\(sides.error)")
        let decoder = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "loss.kind=siglip",
                                                 "--set", "loss.reconstruction_weight=1"])
        #expect(decoder.status != 0 && decoder.error.contains("must be 0 with loss.kind siglip"), "\(decoder.error)")
    }
}
