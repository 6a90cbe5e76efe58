import TestSupport
import Testing
@testable import Contrastive
@testable import Tensor

/// NT-Xent as the MoCo step uses it: queries (anchors) against a separate candidate set
/// [keys of the same views, queued keys], self(i) and pos(i) pointing into the keys. The other
/// tests have candidates equal to anchors (self masked) or self < 0; here the masked column is
/// a different row from the anchor.
@Suite struct MoCoLossTests {
    /// 2B queries, and 2B + Q candidates: the keys (noisy copies of the queries, same view
    /// layout) then Q queue rows drawn independently; all unit rows.
    func queriesAndCandidates(samples b: Int, queue q: Int, dimension d: Int, seed: UInt64) -> (Tensor, Tensor) {
        var rng = RandomStream(seed: seed, stream: 4)
        let v = 2 * b
        let queries = Tensor(zeros: [v, d]), candidates = Tensor(zeros: [v + q, d])
        for i in 0..<(b * d) { let x = rng.nextNormal(); queries[i] = x; queries[b * d + i] = x + 0.6 * rng.nextNormal() }
        for i in 0..<(v * d) { candidates[i] = queries[i] + 0.4 * rng.nextNormal() }
        for i in (v * d)..<((v + q) * d) { candidates[i] = rng.nextNormal() }
        let norms = Tensor(zeros: [v + q])
        Kernels.l2NormalizeRows(queries.data, norms: norms.data, input: queries.data, rows: v, columns: d)
        Kernels.l2NormalizeRows(candidates.data, norms: norms.data, input: candidates.data, rows: v + q, columns: d)
        return (queries, candidates)
    }

    func indices(_ b: Int) -> ([Int32], [Int32]) {
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positive = [Int32](repeating: 0, count: 2 * b)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        return (selfIndex, positive)
    }

    func run(_ loss: NTXentLoss, _ queries: Tensor, _ candidates: Tensor, b: Int, d: Int) -> (NTXentLoss.Result, [Float]) {
        let (selfIndex, positive) = indices(b)
        let ga = Tensor(zeros: [queries.rows, d]), gc = Tensor(zeros: [candidates.rows, d])
        let r = loss.forwardBackward(anchors: queries.data, anchorCount: queries.rows, candidates: candidates.data,
                                     candidateCount: candidates.rows, dimension: d, selfIndex: selfIndex, positiveIndex: positive,
                                     normalization: queries.rows, anchorGradient: ga.data, candidateGradient: gc.data)
        return (r, ga.array)
    }

    /// Without a candidate gradient (the MoCo step passes nil: keys get none) the loss, the top-1
    /// count, dL/d(queries) and dL/dtheta are bit for bit those of the full call, chunked or not,
    /// with or without hard negatives.
    @Test(arguments: [0, 4, 5])
    func skippingTheCandidateGradientChangesNothingElse(chunk: Int) {
        let b = 3, q = 7, d = 5
        let (queries, candidates) = queriesAndCandidates(samples: b, queue: q, dimension: d, seed: 12)
        let (selfIndex, positive) = indices(b)
        let ntxent = NTXentLoss(temperature: 0.3, logitChunk: chunk)
        let hard = HardNegativeNTXentLoss(temperature: 0.3, beta: 0.5, logitChunk: chunk)
        for forwardBackward in [ntxent.forwardBackward, hard.forwardBackward] {
            let withGradient = Tensor(zeros: [queries.rows, d]), without = Tensor(zeros: [queries.rows, d])
            let gc = Tensor(zeros: [candidates.rows, d])
            func call(_ ga: Tensor, _ gc: UnsafeMutablePointer<Float>?) -> NTXentLoss.Result {
                forwardBackward(queries.data, queries.rows, candidates.data, candidates.rows, d, selfIndex, positive,
                                queries.rows, ga.data, gc)
            }
            let full = call(withGradient, gc.data), skipped = call(without, nil)
            #expect(full.loss == skipped.loss && full.positiveTop1 == skipped.positiveTop1)
            #expect(full.logitScaleGradient == skipped.logitScaleGradient)
            #expect(withGradient.array == without.array)
            #expect(gc.array.contains { $0 != 0 })
        }
    }

    /// The loss and dL/d(queries) against the Double reference and its central differences.
    @Test(arguments: [0, 5])
    func queryGradientMatchesFiniteDifferences(chunk: Int) {
        let b = 3, q = 7, d = 5, temperature: Float = 0.4
        let (queries, candidates) = queriesAndCandidates(samples: b, queue: q, dimension: d, seed: 11)
        let (selfIndex, positive) = indices(b)
        let (result, gradient) = run(NTXentLoss(temperature: temperature, logitChunk: chunk), queries, candidates, b: b, d: d)
        let f = {
            NTXentLoss.lossReference(anchors: queries.array, candidates: candidates.array, dimension: d,
                                     selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                     normalization: 2 * b, temperature: temperature)
        }
        #expect(abs(result.loss - f()) <= 1e-5 * f())
        let all = Array(0..<queries.count)
        let numerical = GradientCheck.numericalGradient(of: f, at: queries.data, indices: all, step: 1e-3)
        #expect(GradientCheck.maxRelativeError(analytic: gradient.map(Double.init), numerical: numerical) < 1e-3)
    }

    /// The mask hits the key of the query's own view, not candidate row i of some other set:
    /// with queries equal to their own keys, excluding the wrong column would leave the
    /// similarity-1 self key in the softmax and change the loss.
    @Test func selfKeyIsExcluded() {
        let b = 2, d = 6
        let (queries, _) = queriesAndCandidates(samples: b, queue: 0, dimension: d, seed: 12)
        let candidates = Tensor(zeros: [2 * b + 3, d])
        candidates.data.update(from: queries.data, count: queries.count)
        for i in (queries.count)..<candidates.count { candidates[i] = Float(i % 3) - 1 }
        let norms = Tensor(zeros: [candidates.rows])
        Kernels.l2NormalizeRows(candidates.data, norms: norms.data, input: candidates.data, rows: candidates.rows, columns: d)
        let (selfIndex, positive) = indices(b)
        let (result, _) = run(NTXentLoss(temperature: 0.1), queries, candidates, b: b, d: d)
        let masked = NTXentLoss.lossReference(anchors: queries.array, candidates: candidates.array, dimension: d,
                                              selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                              normalization: 2 * b, temperature: 0.1)
        let unmasked = NTXentLoss.lossReference(anchors: queries.array, candidates: candidates.array, dimension: d,
                                                selfIndex: [Int](repeating: -1, count: 2 * b), positiveIndex: positive.map(Int.init),
                                                normalization: 2 * b, temperature: 0.1)
        #expect(abs(result.loss - masked) <= 1e-5 * masked)
        #expect(unmasked - masked > 1)
    }
}
