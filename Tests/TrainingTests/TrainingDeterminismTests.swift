import Foundation
import TestSupport
import Config
import Testing
@testable import Data
@testable import NN
@testable import Tensor
@testable import Training

/// Same seed, same data, same steps: bit-identical parameters, whether the steps run in a plain
/// loop over the sampler's batches or in the Trainer (batches made ahead on the prefetch thread,
/// each step's plan from its step count, the hooks, checkpoint and logging around it). A
/// different seed differs.
@Suite struct TrainingDeterminismTests {
    /// `steps` steps of a TrainingStep in a plain loop, one process.
    func parameters(seed: Int, steps: Int) throws -> [Float] {
        let config = try smokeConfig(["seed=\(seed)"])
        // As the trainer does: OpenBLAS's own default (one thread per core) sums some GEMMs in
        // another order, and other tests in this process set it to 1 at any moment.
        BLASThreads.set(config.train.blasThreads)
        let data = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        let step = try TrainingStep(config: config, inputWidth: 784, samplesPerStep: config.data.batchPerRank, totalSteps: steps)
        let order = try data.sampler.order(epoch: 0)
        for i in 0..<steps {
            data.maker.makeBatch(samples: order.batch(i), epoch: 0, into: step.batch.data)
            _ = try step.step(i, input: step.batch.data)
        }
        return step.model.arena.parameters.array
    }

    /// The same steps through `Trainer.run`.
    func trainerParameters(seed: Int, steps: Int) throws -> [Float] {
        let config = try smokeConfig(["seed=\(seed)", "train.max_steps=\(steps)", "data.prefetch=2", "eval.knn_every_epochs=0",
                                      "data.test_limit=200"])
        let trainer = try Trainer(config: config)
        #expect(try trainer.run().steps == steps)
        return trainer.step.model.arena.parameters.array
    }

    @Test func sameSeedGivesBitIdenticalParameters() throws {
        let a = try parameters(seed: 3, steps: 6), b = try trainerParameters(seed: 3, steps: 6)
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
        let c = try parameters(seed: 4, steps: 6)
        #expect(a != c)
    }
}
