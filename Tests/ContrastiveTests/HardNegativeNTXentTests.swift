import Foundation
import TestSupport
import Testing
@testable import Contrastive
@testable import Tensor

/// HardNegativeNTXentLoss: Double reference, plain NT-Xent at beta = 0 and tau+ = 0, finite
/// differences of both gradients and of dL/dtheta, anchor blocks (the rank split) and chunking.
@Suite struct HardNegativeNTXentTests {
    /// 2B unit rows, the two views of a sample made similar so the loss is not trivial.
    func embeddings(samples b: Int, dimension d: Int, seed: UInt64, noise: Float = 0.5) -> Tensor {
        var rng = RandomStream(seed: seed, stream: 1)
        let z = Tensor(zeros: [2 * b, d])
        for i in 0..<(b * d) { let v = rng.nextNormal(); z[i] = v; z[b * d + i] = v + noise * rng.nextNormal() }
        let norms = Tensor(zeros: [2 * b])
        Kernels.l2NormalizeRows(z.data, norms: norms.data, input: z.data, rows: 2 * b, columns: d)
        return z
    }

    func pairs(_ b: Int) -> ([Int32], [Int32]) {
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positive = [Int32](repeating: 0, count: 2 * b)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        return (selfIndex, positive)
    }

    /// log(Ng / (K e^{-1/tau})) of each anchor before the clamp, in Double (-inf where Ng <= 0):
    /// negative where the clamp holds. Finite differences need every row away from 0 (the kink).
    func clampMargins(_ z: Tensor, selfIndex: [Int32], positive: [Int32], temperature tau: Double, beta: Double, tauPlus: Double) -> [Double] {
        let n = z.rows, d = z.shape[1]
        return (0..<n).map { i in
            var pos = 0.0, negatives = [Double]()
            for j in 0..<n where j != Int(selfIndex[i]) {
                var dot = 0.0
                for k in 0..<d { dot += Double(z[i * d + k]) * Double(z[j * d + k]) }
                if j == Int(positive[i]) { pos = Foundation.exp(dot / tau) } else { negatives.append(dot / tau) }
            }
            let k = Double(negatives.count)
            let weights = negatives.map { Foundation.exp(beta * $0) }
            let reweighted = zip(weights, negatives).map { $0 * Foundation.exp($1) }.reduce(0, +) / (weights.reduce(0, +) / k)
            let ng = (reweighted - tauPlus * k * pos) / (1 - tauPlus)
            return ng > 0 ? Foundation.log(ng / (k * Foundation.exp(-1 / tau))) : -.infinity
        }
    }

    /// One process: anchors and candidates are the same 2B rows; returns the result, the anchor and
    /// the candidate gradient (buffers pre-filled with garbage: they must be written, not added to).
    func run(_ loss: HardNegativeNTXentLoss, z: Tensor, selfIndex: [Int32], positive: [Int32], normalization: Int)
        -> (NTXentLoss.Result, [Float], [Float]) {
        let n = z.rows, d = z.shape[1]
        let ga = Tensor(zeros: [n, d]), gc = Tensor(zeros: [n, d])
        ga.data.update(repeating: 99, count: ga.count)
        gc.data.update(repeating: 99, count: gc.count)
        let r = loss.forwardBackward(anchors: z.data, anchorCount: n, candidates: z.data, candidateCount: n, dimension: d,
                                     selfIndex: selfIndex, positiveIndex: positive, normalization: normalization,
                                     anchorGradient: ga.data, candidateGradient: gc.data)
        return (r, ga.array, gc.array)
    }

    @Test(arguments: [(Float(0), Float(0)), (0, 0.1), (0.5, 0), (1, 0.1), (2, 0.3)])
    func lossMatchesDoubleReference(beta: Float, tauPlus: Float) {
        let b = 6, d = 5
        let z = embeddings(samples: b, dimension: d, seed: 1)
        let (selfIndex, positive) = pairs(b)
        let (r, _, _) = run(HardNegativeNTXentLoss(temperature: 0.2, beta: beta, tauPlus: tauPlus), z: z,
                            selfIndex: selfIndex, positive: positive, normalization: 2 * b)
        let reference = HardNegativeNTXentLoss.lossReference(
            anchors: z.array, candidates: z.array, dimension: d, selfIndex: selfIndex.map(Int.init),
            positiveIndex: positive.map(Int.init), normalization: 2 * b, temperature: Double(Float(0.2)),
            beta: Double(beta), tauPlus: Double(tauPlus))
        #expect(abs(r.loss - reference) < 1e-5 * max(1, reference))
    }

    /// beta = 0, tau+ = 0 is NTXentLoss: loss, top-1, both gradients and dL/dtheta, to rounding.
    @Test(arguments: [0, 5])
    func betaZeroTauPlusZeroIsPlainNTXent(chunk: Int) {
        let b = 8, d = 6, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 2)
        let (selfIndex, positive) = pairs(b)
        let (r, ga, gc) = run(HardNegativeNTXentLoss(temperature: 0.2, logitChunk: chunk), z: z,
                              selfIndex: selfIndex, positive: positive, normalization: n)
        let plain = NTXentLoss(temperature: 0.2, logitChunk: chunk)
        let pa = Tensor(zeros: [n, d]), pc = Tensor(zeros: [n, d])
        let p = plain.forwardBackward(anchors: z.data, anchorCount: n, candidates: z.data, candidateCount: n, dimension: d,
                                      selfIndex: selfIndex, positiveIndex: positive, normalization: n,
                                      anchorGradient: pa.data, candidateGradient: pc.data)
        #expect(abs(r.loss - p.loss) <= 1e-6 * abs(p.loss))
        #expect(r.positiveTop1 == p.positiveTop1)
        #expect(abs(r.logitScaleGradient - p.logitScaleGradient) <= 1e-5 * max(1, abs(p.logitScaleGradient)))
        for (x, y) in zip(ga + gc, pa.array + pc.array) { #expect(abs(x - y) <= 1e-6 + 1e-5 * abs(y)) }
    }

    /// Finite differences of the anchor gradient and of the candidate gradient separately (anchors
    /// and candidates are distinct buffers holding the same rows, so each is perturbed alone).
    /// (1, 0.6): Ng < 0 for every anchor, all clamped.
    @Test(arguments: [(Float(0), Float(0.05)), (0.5, 0), (1, 0.05), (2, 0.1), (1, 0.6)])
    func gradientsMatchFiniteDifferences(beta: Float, tauPlus: Float) {
        let b = 4, d = 6, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 3)
        let anchors = Tensor(zeros: [n, d]), candidates = Tensor(zeros: [n, d])
        anchors.data.update(from: z.data, count: z.count)
        candidates.data.update(from: z.data, count: z.count)
        let (selfIndex, positive) = pairs(b)
        let margins = clampMargins(z, selfIndex: selfIndex, positive: positive, temperature: 0.5, beta: Double(beta), tauPlus: Double(tauPlus))
        #expect(margins.allSatisfy { abs($0) > 0.05 }, "an anchor sits on the clamp's kink: \(margins)")
        let loss = HardNegativeNTXentLoss(temperature: 0.5, beta: beta, tauPlus: tauPlus)
        let ga = Tensor(zeros: [n, d]), gc = Tensor(zeros: [n, d])
        func evaluate() -> Double {
            loss.forwardBackward(anchors: anchors.data, anchorCount: n, candidates: candidates.data, candidateCount: n,
                                 dimension: d, selfIndex: selfIndex, positiveIndex: positive, normalization: n,
                                 anchorGradient: ga.data, candidateGradient: gc.data).loss
        }
        _ = evaluate()
        let anchorGradient = ga.array, candidateGradient = gc.array
        let indices = Array(0..<z.count)
        let numericalAnchor = GradientCheck.numericalGradient(of: evaluate, at: anchors.data, indices: indices, step: 1e-3)
        let numericalCandidate = GradientCheck.numericalGradient(of: evaluate, at: candidates.data, indices: indices, step: 1e-3)
        #expect(GradientCheck.maxRelativeError(analytic: anchorGradient.map(Double.init), numerical: numericalAnchor) < 2e-2)
        #expect(GradientCheck.maxRelativeError(analytic: candidateGradient.map(Double.init), numerical: numericalCandidate) < 2e-2)
    }

    /// Where the positive is much more similar than the negatives, tau+ K pos pulls the debiased
    /// estimate below K e^{-1/tau}: here the clamp holds for some anchors and not for others.
    /// Gradients, dL/dtheta included, still match finite differences.
    @Test(arguments: [(Float(0), Float(0.1)), (0.5, 0.1)])
    func clampActiveGradientsMatchFiniteDifferences(beta: Float, tauPlus: Float) {
        let b = 4, d = 6, n = 2 * b, tau: Float = 0.5
        let z = embeddings(samples: b, dimension: d, seed: 3)
        let (selfIndex, positive) = pairs(b)
        let margins = clampMargins(z, selfIndex: selfIndex, positive: positive, temperature: Double(tau), beta: Double(beta),
                                   tauPlus: Double(tauPlus))
        let clamped = margins.filter { $0 < 0 }.count
        #expect(margins.allSatisfy { abs($0) > 0.05 }, "an anchor sits on the clamp's kink: \(margins)")
        #expect(clamped > 0 && clamped < n, "want a mix of clamped and free anchors, got \(clamped) of \(n) clamped")

        let anchors = Tensor(zeros: [n, d]), candidates = Tensor(zeros: [n, d])
        anchors.data.update(from: z.data, count: z.count)
        candidates.data.update(from: z.data, count: z.count)
        let loss = HardNegativeNTXentLoss(temperature: tau, beta: beta, tauPlus: tauPlus)
        let ga = Tensor(zeros: [n, d]), gc = Tensor(zeros: [n, d])
        func evaluate() -> NTXentLoss.Result {
            loss.forwardBackward(anchors: anchors.data, anchorCount: n, candidates: candidates.data, candidateCount: n,
                                 dimension: d, selfIndex: selfIndex, positiveIndex: positive, normalization: n,
                                 anchorGradient: ga.data, candidateGradient: gc.data)
        }
        let result = evaluate()
        let anchorGradient = ga.array, candidateGradient = gc.array
        let indices = Array(0..<z.count)
        let numericalAnchor = GradientCheck.numericalGradient(of: { evaluate().loss }, at: anchors.data, indices: indices, step: 1e-3)
        let numericalCandidate = GradientCheck.numericalGradient(of: { evaluate().loss }, at: candidates.data, indices: indices, step: 1e-3)
        #expect(GradientCheck.maxRelativeError(analytic: anchorGradient.map(Double.init), numerical: numericalAnchor) < 2e-2)
        #expect(GradientCheck.maxRelativeError(analytic: candidateGradient.map(Double.init), numerical: numericalCandidate) < 2e-2)

        // dL/dtheta, theta = log(1/tau): central difference in Double on the reference.
        let h = 1e-4, theta = Foundation.log(1 / Double(tau))
        func reference(_ theta: Double) -> Double {
            HardNegativeNTXentLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d, selfIndex: selfIndex.map(Int.init),
                                                 positiveIndex: positive.map(Int.init), normalization: n,
                                                 temperature: Foundation.exp(-theta), beta: Double(beta), tauPlus: Double(tauPlus))
        }
        let numericalTheta = (reference(theta + h) - reference(theta - h)) / (2 * h)
        #expect(abs(result.logitScaleGradient - numericalTheta) < 1e-3 * max(1, abs(numericalTheta)),
                "dL/dtheta \(result.logitScaleGradient) vs finite difference \(numericalTheta)")
    }

    /// dL/dtheta with the clamp inactive and several beta / tau+.
    @Test(arguments: [(Float(0), Float(0)), (1, 0.1), (2, 0.2)])
    func logitScaleGradientMatchesFiniteDifference(beta: Float, tauPlus: Float) {
        let b = 5, d = 4, n = 2 * b, tau: Float = 0.25
        let z = embeddings(samples: b, dimension: d, seed: 5)
        let (selfIndex, positive) = pairs(b)
        let (r, _, _) = run(HardNegativeNTXentLoss(temperature: tau, beta: beta, tauPlus: tauPlus), z: z,
                            selfIndex: selfIndex, positive: positive, normalization: n)
        let h = 1e-4, theta = Foundation.log(1 / Double(tau))
        func reference(_ theta: Double) -> Double {
            HardNegativeNTXentLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d, selfIndex: selfIndex.map(Int.init),
                                                 positiveIndex: positive.map(Int.init), normalization: n,
                                                 temperature: Foundation.exp(-theta), beta: Double(beta), tauPlus: Double(tauPlus))
        }
        let numerical = (reference(theta + h) - reference(theta - h)) / (2 * h)
        #expect(abs(r.logitScaleGradient - numerical) < 1e-3 * max(1, abs(numerical)))
    }

    /// The rank split: anchor blocks against all candidates, candidate gradients summed, equal the
    /// whole batch at once.
    @Test(arguments: [(Float(1), Float(0.1)), (0.5, 0.9)])
    func anchorBlocksSumToTheWholeBatch(beta: Float, tauPlus: Float) {
        let b = 5, d = 4, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 6, noise: 0.2)
        let (selfIndex, positive) = pairs(b)
        let loss = HardNegativeNTXentLoss(temperature: 0.3, beta: beta, tauPlus: tauPlus)
        let (whole, wholeAnchor, wholeCandidate) = run(loss, z: z, selfIndex: selfIndex, positive: positive, normalization: n)
        var total = 0.0, theta = 0.0, correct = 0
        var anchorGradient = [Float](repeating: 0, count: z.count), candidateGradient = [Float](repeating: 0, count: z.count)
        for part in [0..<3, 3..<7, 7..<n] {
            let ga = Tensor(zeros: [part.count, d]), gc = Tensor(zeros: [n, d])
            let r = Array(selfIndex[part]).withUnsafeBufferPointer { s in
                Array(positive[part]).withUnsafeBufferPointer { p in
                    loss.forwardBackward(anchors: z.data + part.lowerBound * d, anchorCount: part.count,
                                         candidates: z.data, candidateCount: n, dimension: d,
                                         selfIndex: s.baseAddress!, positiveIndex: p.baseAddress!, normalization: n,
                                         anchorGradient: ga.data, candidateGradient: gc.data)
                }
            }
            total += r.loss; theta += r.logitScaleGradient; correct += r.positiveTop1
            for i in 0..<(part.count * d) { anchorGradient[part.lowerBound * d + i] = ga[i] }
            for i in 0..<gc.count { candidateGradient[i] += gc[i] }
        }
        #expect(abs(total - whole.loss) < 1e-6 * max(1, whole.loss))
        #expect(abs(theta - whole.logitScaleGradient) < 1e-5 * max(1, abs(whole.logitScaleGradient)))
        #expect(correct == whole.positiveTop1)
        for (x, y) in zip(anchorGradient + candidateGradient, wholeAnchor + wholeCandidate) { #expect(abs(x - y) < 1e-6 + 1e-5 * abs(y)) }
    }

    /// Streaming over candidate chunks equals the whole matrix, for chunks that split unevenly,
    /// isolate self or the positive, or span it all.
    @Test(arguments: [1, 3, 7, 16, 40])
    func chunkedEqualsUnchunked(chunk: Int) {
        let b = 8, d = 6, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 7)
        let (selfIndex, positive) = pairs(b)
        for (beta, tauPlus) in [(Float(1), Float(0.1)), (3, 0.5)] {
            let (whole, wa, wc) = run(HardNegativeNTXentLoss(temperature: 0.2, beta: beta, tauPlus: tauPlus), z: z,
                                      selfIndex: selfIndex, positive: positive, normalization: n)
            let (chunked, ca, cc) = run(HardNegativeNTXentLoss(temperature: 0.2, beta: beta, tauPlus: tauPlus, logitChunk: chunk), z: z,
                                        selfIndex: selfIndex, positive: positive, normalization: n)
            #expect(abs(chunked.loss - whole.loss) <= 1e-6 * abs(whole.loss))
            #expect(chunked.positiveTop1 == whole.positiveTop1)
            #expect(abs(chunked.logitScaleGradient - whole.logitScaleGradient) <= 1e-5 * max(1, abs(whole.logitScaleGradient)))
            for (x, y) in zip(ca + cc, wa + wc) { #expect(abs(x - y) <= 1e-6 + 1e-5 * abs(y)) }
        }
    }

    /// selfIndex < 0: nothing excluded but the positive (N - 1 negatives); finite differences.
    @Test func withoutSelfExclusionMatchesReferenceAndFiniteDifferences() {
        let a = 5, n = 7, d = 4
        var rng = RandomStream(seed: 8, stream: 2)
        let anchors = Tensor(zeros: [a, d]), candidates = Tensor(zeros: [n, d])
        for i in 0..<anchors.count { anchors[i] = rng.nextNormal() }
        for i in 0..<candidates.count { candidates[i] = rng.nextNormal() }
        let norms = Tensor(zeros: [n])
        Kernels.l2NormalizeRows(anchors.data, norms: norms.data, input: anchors.data, rows: a, columns: d)
        Kernels.l2NormalizeRows(candidates.data, norms: norms.data, input: candidates.data, rows: n, columns: d)
        let selfIndex = [Int32](repeating: -1, count: a), positive = (0..<a).map { Int32(($0 * 3 + 1) % n) }
        let loss = HardNegativeNTXentLoss(temperature: 0.5, beta: 1, tauPlus: 0.1)
        let ga = Tensor(zeros: [a, d]), gc = Tensor(zeros: [n, d])
        func evaluate() -> Double {
            loss.forwardBackward(anchors: anchors.data, anchorCount: a, candidates: candidates.data, candidateCount: n, dimension: d,
                                 selfIndex: selfIndex, positiveIndex: positive, normalization: a,
                                 anchorGradient: ga.data, candidateGradient: gc.data).loss
        }
        let value = evaluate()
        let reference = HardNegativeNTXentLoss.lossReference(anchors: anchors.array, candidates: candidates.array, dimension: d,
                                                             selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                                             normalization: a, temperature: Double(Float(0.5)), beta: 1, tauPlus: 0.1)
        #expect(abs(value - reference) < 1e-5 * max(1, reference))
        let anchorGradient = ga.array, candidateGradient = gc.array
        let numericalAnchor = GradientCheck.numericalGradient(of: evaluate, at: anchors.data, indices: Array(0..<anchors.count), step: 1e-2)
        let numericalCandidate = GradientCheck.numericalGradient(of: evaluate, at: candidates.data, indices: Array(0..<candidates.count), step: 1e-2)
        #expect(GradientCheck.maxRelativeError(analytic: anchorGradient.map(Double.init), numerical: numericalAnchor) < 2e-2)
        #expect(GradientCheck.maxRelativeError(analytic: candidateGradient.map(Double.init), numerical: numericalCandidate) < 2e-2)
    }

    /// Large logits (tau = 0.02, beta = 4: exponents up to 250): the shifted log-domain evaluation
    /// stays finite and matches the Double reference where exp alone would overflow Float.
    @Test func largeLogitsStayFinite() {
        let b = 6, d = 5
        let z = embeddings(samples: b, dimension: d, seed: 9)
        let (selfIndex, positive) = pairs(b)
        let (r, ga, gc) = run(HardNegativeNTXentLoss(temperature: 0.02, beta: 4, tauPlus: 0.1), z: z,
                              selfIndex: selfIndex, positive: positive, normalization: 2 * b)
        #expect(r.loss.isFinite && r.logitScaleGradient.isFinite)
        #expect((ga + gc).allSatisfy { $0.isFinite })
        let reference = HardNegativeNTXentLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d,
                                                             selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                                             normalization: 2 * b, temperature: Double(Float(0.02)), beta: 4, tauPlus: 0.1)
        #expect(abs(r.loss - reference) < 1e-4 * max(1, reference))
    }
}
