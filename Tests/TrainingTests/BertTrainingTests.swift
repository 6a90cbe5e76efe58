import Contrastive
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

/// The pairs objective with hard negatives, as a training step runs it: a small BERT embeds
/// [anchors, positives, negatives] of one batch (ids carried as the text batch carries them,
/// negative 1 the text and id of positive 3, so masked for anchor 3); the objective gathers, takes
/// PairLoss over [positives, negatives], zeroes and reduce-scatters, and the dL/dz it hands to the
/// encoder's backward (all 3B rows, the negatives' included) is the central difference of the
/// Double reference loss over those embeddings. Then the whole step: the negatives other than 1
/// use tokens 15 ..< 20 alone, so those word embeddings get a gradient only through the negatives'
/// rows: not zero with hard negatives. (The encoder's own backward has its finite-difference tests
/// in NNTests; PairLoss's with hard negatives and masks in ContrastiveTests.)
@Suite struct HardNegativeStepGradientTests {
    static let samples = 6, tokens = 6, vocabulary = 20

    /// `groups`: the pair ids are group numbers, so negative 1 (positive 3's text, its own text's
    /// hash as id) is masked for anchor 3 only through the positives' text keys the batch carries.
    @Test(arguments: [true, false], [false, true])
    func objectiveGradientMatchesFiniteDifferences(symmetric: Bool, groups: Bool) throws {
        let b = Self.samples, t = Self.tokens, width = 3 * t, temperature = 0.5
        let config = try smokeConfig(ViTTrainingTests.sgd + [
            "model.encoder=bert", "model.bert.preset=none", "model.bert.layers=1", "model.bert.width=8", "model.bert.heads=2",
            "model.bert.ffn=16", "model.bert.max_length=\(t)", "model.bert.max_position=8", "model.bert.vocab_size=\(Self.vocabulary)",
            "model.bert.dropout=0", "model.bert.attention_dropout=0", "model.representation=0", "optimizer.clip_norm=0",
            "loss.kind=pairs", "loss.sides=views", "loss.mask_duplicates=true", "loss.temperature=\(temperature)", "loss.symmetric=\(symmetric)",
        ])
        let step = try TrainingStep(config: config, communicator: SingleProcessCommunicator(), inputWidth: width, pairWidth: 0,
                                    imageShape: nil, samplesPerStep: b, totalSteps: 1,
                                    layout: ViewsLayout(hardNegatives: true, exactIds: true, keys: groups))
        #expect(step.batch.count == 3 * b * width + (groups ? 3 : 2) * b * CarriedId.floats)
        var random = RandomStream(seed: 11, stream: 2)
        func row(_ tokenRange: Range<Int>) -> [Int] {
            let real = 3 + random.nextInt(below: t - 2)
            return (0..<t).map { $0 < real ? tokenRange.lowerBound + random.nextInt(below: tokenRange.count) : 0 }
        }
        let anchors = (0..<b).map { _ in row(1..<15) }, positives = (0..<b).map { _ in row(1..<15) }
        var negatives = (0..<b).map { _ in row(15..<Self.vocabulary) }
        negatives[1] = positives[3]
        // Text hashes stand for the texts: negative 1 is positive 3's text.
        let positiveKeys = (0..<b).map { UInt64(bitPattern: TextSamples.hash("positive \($0)")) }
        let pairIds = groups ? (0..<b).map { UInt64(7 + $0) } : positiveKeys
        let negativeIds = (0..<b).map { $0 == 1 ? positiveKeys[3] : UInt64(bitPattern: TextSamples.hash("negative \($0)")) }
        for (side, rows) in [anchors, positives, negatives].enumerated() {
            for (i, ids) in rows.enumerated() {
                let values = BERT.row(ids: ids, mask: ids.map { $0 == 0 ? 0 : 1 })
                for j in 0..<width { step.batch[(side * b + i) * width + j] = values[j] }
            }
        }
        for (k, id) in (pairIds + negativeIds + (groups ? positiveKeys : [])).enumerated() {
            CarriedId.write(id, into: step.batch.data + 3 * b * width + k * CarriedId.floats)
        }

        // The objective's phases, as the step runs them, up to the dL/dz backward consumes.
        let pairs = try #require(step.objective as? Pairs)
        let e = pairs.width
        pairs.forward(step.batch.data)
        try pairs.gather()
        let loss = try pairs.loss(step.plan(0))
        try pairs.scatter()
        let z = Array(UnsafeBufferPointer(start: pairs.sides.x!, count: 3 * b * e))
        let analytic = pairs.sides.gradient.array
        #expect(analytic.count == 3 * b * e)
        let ids: [UInt64] = pairIds + negativeIds, keys: [UInt64]? = groups ? positiveKeys + negativeIds : nil
        func reference(_ z: [Float], masked: Bool = true) -> Double {
            let anchorRows: [Float] = Array(z[0..<(b * e)]), positiveRows: [Float] = Array(z[(b * e)..<(2 * b * e)])
            let negativeRows: [Float] = Array(z[(2 * b * e)...])
            return PairLoss.lossReference(anchors: anchorRows, positives: positiveRows, hardNegatives: negativeRows, dimension: e,
                                          ids: masked ? ids : nil, keys: masked ? keys : nil, temperature: temperature,
                                          symmetric: symmetric)
        }
        let expected = reference(z), unmasked = reference(z, masked: false)
        #expect(abs(loss.share - expected) <= 1e-5 * expected && abs(unmasked - expected) > 1e-4, "\(loss.share) \(expected) \(unmasked)")
        var worst = 0.0
        for k in 0..<z.count {
            var plus = z, minus = z
            plus[k] += 1e-3; minus[k] -= 1e-3
            let numerical = (reference(plus) - reference(minus)) / Double(plus[k] - minus[k])
            worst = max(worst, abs(numerical - Double(analytic[k])) / max(abs(numerical), 1e-2))
        }
        #expect(worst < 1e-3, "max relative error \(worst)")
        let negativesGradient = analytic[(2 * b * e)...].map(abs).max()!
        #expect(negativesGradient > 1e-3, "the negatives' rows get no gradient")

        // The whole step: the negatives' rows go back through the encoder to their tokens.
        _ = try step.step(0, input: step.batch.data)
        let gradients = step.model.arena.gradients.array
        let words = try #require(step.model.arena.slices.first { $0.name.hasSuffix("word_embeddings.weight") }).range
        let negativeOnly = (words.lowerBound + 15 * 8)..<(words.lowerBound + Self.vocabulary * 8)
        #expect(negativeOnly.map { abs(gradients[$0]) }.max()! > 1e-3, "no gradient reaches the negatives' tokens")
    }
}
