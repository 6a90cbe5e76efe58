import Distributed
import Foundation
import TestSupport
import Config
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// The BERT encoder in a training step: its dropout masks (hidden and attention) are keyed like every
/// other, so gradient caching's replayed forwards draw the first forward's masks and the cached step is
/// the ordinary one; the two views of a text differ only by their masks (SimCSE), and with dropout off
/// they are the same text and the step learns nothing different from plain inference forwards.
@Suite(.serialized) struct BertTrainingTests {
    static let samples = 10, tokens = 8

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    /// One SGD step's TrainingStep of a small BERT whose two views of each sample are the same token row.
    func bertStep(_ overrides: [String]) throws -> TrainingStep {
        let config = try smokeConfig(ViTTrainingTests.sgd + [
            "model.encoder=bert", "model.bert.preset=none", "model.bert.layers=2", "model.bert.width=8", "model.bert.heads=2",
            "model.bert.ffn=16", "model.bert.max_length=\(Self.tokens)", "model.bert.max_position=16", "model.bert.vocab_size=20",
            "model.representation=0",
        ] + overrides)
        let width = 3 * Self.tokens
        let step = try TrainingStep(config: config, communicator: SingleProcessCommunicator(), inputWidth: width, pairWidth: 0,
                                    imageShape: nil, samplesPerStep: Self.samples, totalSteps: 1)
        var random = RandomStream(seed: 7, stream: 1)
        for sample in 0..<Self.samples {
            let real = 3 + random.nextInt(below: Self.tokens - 2)
            let ids = (0..<Self.tokens).map { $0 < real ? 1 + random.nextInt(below: 19) : 0 }
            let row = BERT.row(ids: ids, mask: (0..<Self.tokens).map { $0 < real ? 1 : 0 })
            for view in 0..<2 { for j in 0..<width { step.batch[(view * Self.samples + sample) * width + j] = row[j] } }
        }
        return step
    }

    func step(_ overrides: [String]) throws -> (loss: Double, parameters: [Float], cached: Bool) {
        let step = try bertStep(overrides)
        let result = try step.step(0, input: step.batch.data)
        #expect(result.applied)
        return (result.loss, step.model.arena.parameters.array, step.objective.passes is GradientCache)
    }

    @Test(arguments: [3, 8])
    func gradientCachedStepEqualsTheOrdinaryStepWithDropoutOn(chunk: Int) throws {
        let rates = ["model.bert.dropout=0.2", "model.bert.attention_dropout=0.2"]
        let reference = try step(rates)
        let cached = try step(rates + ["train.gradient_cache_chunk=\(chunk)"])
        #expect(cached.cached && !reference.cached)
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss))
        #expect(maxRelativeDifference(cached.parameters, reference.parameters) <= 1e-5)
        // The masks matter: without dropout the two views are one text and the step is another.
        let plain = try step(["model.bert.dropout=0", "model.bert.attention_dropout=0"])
        #expect(maxRelativeDifference(plain.parameters, reference.parameters) > 1e-2, "dropout changed little")
        #expect(plain.loss < reference.loss, "identical views must be easier positives (\(plain.loss) vs \(reference.loss))")
    }
}
