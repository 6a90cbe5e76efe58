import Foundation
import Testing
@testable import Contrastive
@testable import Tensor

/// The multiple-negatives ranking loss with global negatives, hard negatives and duplicate
/// masking: value against the Double reference, gradients against central differences, ranks
/// (duplicates straddling them) against one process, and a hand-computed masked case.
@Suite struct PairLossTests {
    static func unitRows(_ rows: Int, dimension d: Int, seed: UInt64, near: [Float]? = nil) -> [Float] {
        var rng = RandomStream(seed: seed, stream: 7)
        var v = [Float](repeating: 0, count: rows * d)
        for i in 0..<(rows * d) { v[i] = (near?[i] ?? 0) + rng.nextNormal() }
        for i in 0..<rows {
            let norm = (0..<d).reduce(Float(0)) { $0 + v[i * d + $1] * v[i * d + $1] }.squareRoot()
            for k in 0..<d { v[i * d + k] /= norm }
        }
        return v
    }

    struct Batch {
        var anchors: [Float], positives: [Float], hardNegatives: [Float], ids: [UInt64]?
        var n: Int, d: Int
        /// ids of the candidates: the pairs', then the hard negatives' (their own, never a pair's here but one).
        var candidateIds: [UInt64]? {
            ids.map { ids in ids + (0..<(hardNegatives.count / d)).map { $0 == 1 ? ids[4] : 1000 + UInt64($0) } }
        }
    }

    /// N pairs; pairs 1, 4 and 6 share an id (duplicates: at 2 ranks of 4 pairs, 1 on rank 0 and 4, 6 on rank 1),
    /// as do 0 and 7 (ranks 0 and 1), and hard negative 1 carries pair 4's id.
    static func batch(n: Int = 8, d: Int = 5, hard: Bool, ids: Bool) -> Batch {
        let anchors = unitRows(n, dimension: d, seed: 1)
        let positives = unitRows(n, dimension: d, seed: 2, near: anchors.map { 1.5 * $0 })
        let hardNegatives = hard ? unitRows(n, dimension: d, seed: 3, near: anchors) : []
        var pairIds = (0..<n).map { UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }
        pairIds[4] = pairIds[1]; pairIds[6] = pairIds[1]; pairIds[7] = pairIds[0]
        return Batch(anchors: anchors, positives: positives, hardNegatives: hardNegatives, ids: ids ? pairIds : nil, n: n, d: d)
    }

    struct Outcome {
        var result: PairLoss.Result
        var anchorGradient: [Float], positiveGradient: [Float]
    }

    /// Ranks of `perRank` pairs each: gathered inputs, the candidates' gradients summed onto their
    /// owners (what the reduce-scatter does), concatenated in rank order.
    static func run(_ batch: Batch, perRank a: Int, temperature: Float, symmetric: Bool) -> Outcome {
        let n = batch.n, d = batch.d, h = batch.hardNegatives.count / d, c = n + h
        let candidates = batch.positives + batch.hardNegatives
        var anchorGradient = [Float](repeating: 0, count: n * d), positiveGradient = anchorGradient
        var hardGradient = [Float](repeating: 0, count: h * d)
        var total = PairLoss.Result(loss: 0, positiveTop1: 0, logitScaleGradient: 0, masked: 0)
        let loss = PairLoss(temperature: temperature, symmetric: symmetric)
        let ids = batch.candidateIds
        for start in stride(from: 0, to: n, by: a) {
            var ga = [Float](repeating: 0, count: a * d), gp = ga
            var gc = [Float](repeating: 0, count: c * d), gAll = [Float](repeating: 0, count: n * d)
            let rows = (start * d)..<((start + a) * d)
            let r = ids.withOptionalPointer { idPointer in
                loss.forwardBackward(anchors: Array(batch.anchors[rows]), positives: Array(batch.positives[rows]), count: a,
                                     candidates: candidates, candidateCount: c, allAnchors: batch.anchors, pairs: n, dimension: d,
                                     offset: start, ids: idPointer, anchorGradient: &ga, positiveGradient: &gp,
                                     candidateGradient: &gc, allAnchorGradient: &gAll)
            }
            total.loss += r.loss; total.positiveTop1 += r.positiveTop1; total.masked += r.masked
            total.logitScaleGradient += r.logitScaleGradient
            for k in 0..<(a * d) {
                anchorGradient[start * d + k] += ga[k]
                if symmetric { positiveGradient[start * d + k] += gp[k] }
            }
            for k in 0..<(n * d) {
                positiveGradient[k] += gc[k]
                if symmetric { anchorGradient[k] += gAll[k] }
            }
            for k in 0..<(h * d) { hardGradient[k] += gc[n * d + k] }
        }
        return Outcome(result: total, anchorGradient: anchorGradient, positiveGradient: positiveGradient + hardGradient)
    }

    @Test(arguments: [(false, false, false), (true, false, true), (false, true, true), (true, true, true), (true, true, false)])
    func lossAndGradientsMatchTheReference(symmetric: Bool, hard: Bool, ids: Bool) {
        let batch = Self.batch(hard: hard, ids: ids), d = batch.d, tau: Float = 0.1
        let outcome = Self.run(batch, perRank: batch.n, temperature: tau, symmetric: symmetric)
        func reference(_ b: Batch) -> Double {
            PairLoss.lossReference(anchors: b.anchors, positives: b.positives, hardNegatives: b.hardNegatives, dimension: d,
                                   ids: b.candidateIds, temperature: Double(tau), symmetric: symmetric)
        }
        let value = reference(batch)
        #expect(abs(outcome.result.loss - value) <= 1e-5 * value, "\(outcome.result.loss) vs \(value)")
        func check(_ analytic: Float, _ numeric: Double, _ label: String) {
            #expect(abs(Double(analytic) - numeric) <= 2e-3 * max(abs(numeric), 1e-2), "\(label): \(analytic) vs \(numeric)")
        }
        let step: Float = 1e-3
        for k in 0..<batch.anchors.count {
            var plus = batch, minus = batch
            plus.anchors[k] += step; minus.anchors[k] -= step
            check(outcome.anchorGradient[k], (reference(plus) - reference(minus)) / Double(plus.anchors[k] - minus.anchors[k]), "dL/da[\(k)]")
            plus = batch; minus = batch
            plus.positives[k] += step; minus.positives[k] -= step
            check(outcome.positiveGradient[k], (reference(plus) - reference(minus)) / Double(plus.positives[k] - minus.positives[k]),
                  "dL/dp[\(k)]")
        }
        for k in 0..<batch.hardNegatives.count {
            var plus = batch, minus = batch
            plus.hardNegatives[k] += step; minus.hardNegatives[k] -= step
            check(outcome.positiveGradient[batch.anchors.count + k],
                  (reference(plus) - reference(minus)) / Double(plus.hardNegatives[k] - minus.hardNegatives[k]), "dL/dh[\(k)]")
        }
        // theta = log(1/tau)
        let theta = log(1 / Double(tau)), h = 1e-4
        func at(_ theta: Double) -> Double {
            PairLoss.lossReference(anchors: batch.anchors, positives: batch.positives, hardNegatives: batch.hardNegatives, dimension: d,
                                   ids: batch.candidateIds, temperature: exp(-theta), symmetric: symmetric)
        }
        check(Float(outcome.result.logitScaleGradient), (at(theta + h) - at(theta - h)) / (2 * h), "dL/dtheta")
    }

    /// Two ranks of 4 pairs and four of 2, with duplicates on both sides of a rank boundary, give
    /// one process's loss and gradients (the ids travel with the embeddings).
    @Test(arguments: [4, 2])
    func ranksEqualOneProcessWithDuplicatesAcrossRanks(perRank: Int) {
        for symmetric in [false, true] {
            let batch = Self.batch(hard: true, ids: true)
            let whole = Self.run(batch, perRank: batch.n, temperature: 0.05, symmetric: symmetric)
            let ranks = Self.run(batch, perRank: perRank, temperature: 0.05, symmetric: symmetric)
            #expect(abs(ranks.result.loss - whole.result.loss) <= 1e-6 * whole.result.loss)
            #expect(ranks.result.masked == whole.result.masked && whole.result.masked > 0)
            let scale = whole.anchorGradient.map(abs).max()!
            for (u, v) in zip(ranks.anchorGradient + ranks.positiveGradient, whole.anchorGradient + whole.positiveGradient) {
                #expect(abs(u - v) <= 1e-5 * scale)
            }
        }
    }

    /// Three pairs in one dimension-2 plane, by hand: a_0 = p_0 = (1, 0), p_1 = (0, 1), p_2 = (1, 0),
    /// tau = 1, one direction. Without ids anchor 0's candidates have logits (1, 0, 1), its loss
    /// log(2e + 1) - 1; with pairs 0 and 2 sharing an id, p_2 is a duplicate of p_0 and leaves the
    /// softmax: log(e + 1) - 1. The other anchors' terms do not change (their ids are their own)
    /// except anchor 2, whose duplicate p_0 leaves in turn.
    @Test func maskingRemovesExactlyTheDuplicatesTerm() {
        let d = 2
        let anchors: [Float] = [1, 0, 0, 1, 1, 0], positives: [Float] = [1, 0, 0, 1, 1, 0]
        func loss(_ ids: [UInt64]?) -> (Double, Int) {
            var ga = [Float](repeating: 0, count: 6), gc = ga
            let r = ids.withOptionalPointer { pointer in
                PairLoss(temperature: 1, symmetric: false).forwardBackward(
                    anchors: anchors, positives: positives, count: 3, candidates: positives, candidateCount: 3, allAnchors: nil,
                    pairs: 3, dimension: d, offset: 0, ids: pointer, anchorGradient: &ga, positiveGradient: nil,
                    candidateGradient: &gc, allAnchorGradient: nil)
            }
            return (r.loss, r.masked)
        }
        let e = M_E
        // anchor 0: (1, 0, 1) -> target 0; anchor 1: (0, 1, 0) -> target 1; anchor 2: (1, 0, 1) -> target 2.
        let plain = (log(2 * e + 1) - 1 + log(e + 2) - 1 + log(2 * e + 1) - 1) / 3
        let masked = (log(e + 1) - 1 + log(e + 2) - 1 + log(e + 1) - 1) / 3
        let (unmaskedLoss, none) = loss(nil)
        let (maskedLoss, count) = loss([7, 8, 7])
        #expect(abs(unmaskedLoss - plain) <= 1e-6 && none == 0)
        #expect(abs(maskedLoss - masked) <= 1e-6 && count == 2)
        // Ids that never repeat mask nothing.
        #expect(abs(loss([1, 2, 3]).0 - plain) <= 1e-6)
    }
}

extension Optional where Wrapped == [UInt64] {
    /// The array's pointer, or nil.
    func withOptionalPointer<R>(_ body: (UnsafePointer<UInt64>?) -> R) -> R {
        switch self {
        case .some(let array): array.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: body(nil)
        }
    }
}
