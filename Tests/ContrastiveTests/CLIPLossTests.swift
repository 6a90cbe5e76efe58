import TestSupport
import Testing
@testable import Contrastive
@testable import Tensor

@Suite struct CLIPLossTests {
    /// N pairs of unit rows, b a noisy copy of a so that retrieval is mostly but not always right.
    func pairs(_ n: Int, dimension d: Int, seed: UInt64) -> (a: Tensor, b: Tensor) {
        var rng = RandomStream(seed: seed, stream: 3)
        let a = Tensor(zeros: [n, d]), b = Tensor(zeros: [n, d])
        for i in 0..<(n * d) { let v = rng.nextNormal(); a[i] = v; b[i] = v + 1.2 * rng.nextNormal() }
        let norms = Tensor(zeros: [n])
        Kernels.l2NormalizeRows(a.data, norms: norms.data, input: a.data, rows: n, columns: d)
        Kernels.l2NormalizeRows(b.data, norms: norms.data, input: b.data, rows: n, columns: d)
        return (a, b)
    }

    /// One rank's call: local pairs `part` of the gathered batch, gradients as four arrays
    /// (local a, local b: A x D; all a, all b: N x D).
    func rank(_ loss: CLIPLoss, a: Tensor, b: Tensor, part: Range<Int>, dimension d: Int)
        -> (CLIPLoss.Result, [[Float]]) {
        let n = a.rows
        let gradients = [part.count, part.count, n, n].map { Tensor(zeros: [$0, d]) }
        for g in gradients { g.data.update(repeating: 99, count: g.count) }   // must be overwritten, not accumulated into
        let r = loss.forwardBackward(localA: a.data + part.lowerBound * d, localB: b.data + part.lowerBound * d,
                                     localCount: part.count, allA: a.data, allB: b.data, allCount: n, dimension: d,
                                     offset: part.lowerBound, normalization: n,
                                     localAGradient: gradients[0].data, localBGradient: gradients[1].data,
                                     allAGradient: gradients[2].data, allBGradient: gradients[3].data)
        return (r, gradients.map(\.array))
    }

    /// One process: local rows are all rows, the total gradient is local + all.
    func oneProcess(_ loss: CLIPLoss, a: Tensor, b: Tensor, dimension d: Int) -> (CLIPLoss.Result, [Float], [Float]) {
        let (r, g) = rank(loss, a: a, b: b, part: 0..<a.rows, dimension: d)
        return (r, zip(g[0], g[2]).map { $0 + $1 }, zip(g[1], g[3]).map { $0 + $1 })
    }

    /// Double-precision top-1: local anchors whose positive (row offset + i) is the most similar candidate.
    func top1Reference(anchors: [Float], candidates: [Float], dimension d: Int, offset: Int) -> Int {
        let n = candidates.count / d
        return (0..<(anchors.count / d)).filter { i in
            let dots = (0..<n).map { j in (0..<d).reduce(0.0) { $0 + Double(anchors[i * d + $1]) * Double(candidates[j * d + $1]) } }
            return dots.allSatisfy { $0 <= dots[offset + i] }
        }.count
    }

    /// The whole batch and one rank's share (offset 4), unchunked and chunked.
    @Test(arguments: [(0..<10, 0), (4..<7, 0), (0..<10, 3), (4..<7, 3)])
    func lossMatchesDoubleReference(part: Range<Int>, chunk: Int) {
        let n = 10, d = 5, temperature: Float = 0.2
        let (a, b) = pairs(n, dimension: d, seed: 1)
        let (r, _) = rank(CLIPLoss(temperature: temperature, logitChunk: chunk), a: a, b: b, part: part, dimension: d)
        let localA = Array(a.array[(part.lowerBound * d)..<(part.upperBound * d)])
        let localB = Array(b.array[(part.lowerBound * d)..<(part.upperBound * d)])
        let reference = CLIPLoss.lossReference(localA: localA, localB: localB, allA: a.array, allB: b.array, dimension: d,
                                               offset: part.lowerBound, normalization: n, temperature: temperature)
        #expect(abs(r.loss - reference) < 1e-5 * max(1, reference))
        #expect(r.aToBTop1 == top1Reference(anchors: localA, candidates: b.array, dimension: d, offset: part.lowerBound))
        #expect(r.bToATop1 == top1Reference(anchors: localB, candidates: a.array, dimension: d, offset: part.lowerBound))
        if part.count == n { #expect(r.aToBTop1 > 0 && r.aToBTop1 < n) }   // the data must exercise both outcomes
    }

    /// Total gradient (local + all) w.r.t. every entry of a and b, against central differences
    /// of the Double reference in the one-process setting.
    @Test func gradientMatchesFiniteDifferences() {
        let n = 5, d = 4, temperature: Float = 0.5
        let (a, b) = pairs(n, dimension: d, seed: 2)
        let (_, gradientA, gradientB) = oneProcess(CLIPLoss(temperature: temperature), a: a, b: b, dimension: d)
        let f = {
            CLIPLoss.lossReference(localA: a.array, localB: b.array, allA: a.array, allB: b.array, dimension: d,
                                   offset: 0, normalization: n, temperature: temperature)
        }
        for (z, gradient) in [(a, gradientA), (b, gradientB)] {
            let indices = Array(0..<z.count)
            let numerical = GradientCheck.numericalGradient(of: f, at: z.data, indices: indices, step: 1e-3)
            let error = GradientCheck.maxRelativeError(analytic: gradient.map(Double.init), numerical: numerical)
            #expect(error < 1e-3)
        }
    }

    /// The data-parallel equivalence: P ranks (uneven blocks), each against the same gathered
    /// batch; "all" gradients summed over ranks (the reduce) plus each rank's local gradient on
    /// its rows must give the one-process gradient, and the loss shares must sum to its loss.
    /// One CLIPLoss serves every rank, so its cached index tables must follow the offset.
    @Test(arguments: [2, 3, 4])
    func ranksSumToOneProcess(ranks p: Int) {
        let n = 10, d = 6
        let (a, b) = pairs(n, dimension: d, seed: 3)
        let loss = CLIPLoss(temperature: 0.2)
        let (whole, wholeA, wholeB) = oneProcess(loss, a: a, b: b, dimension: d)
        var total = 0.0, aToB = 0, bToA = 0
        var gradientA = [Float](repeating: 0, count: n * d), gradientB = gradientA
        for r in 0..<p {
            let part = (r * n / p)..<((r + 1) * n / p)
            let (result, g) = rank(loss, a: a, b: b, part: part, dimension: d)
            total += result.loss; aToB += result.aToBTop1; bToA += result.bToATop1
            for i in 0..<(part.count * d) {
                gradientA[part.lowerBound * d + i] += g[0][i]
                gradientB[part.lowerBound * d + i] += g[1][i]
            }
            for i in 0..<(n * d) { gradientA[i] += g[2][i]; gradientB[i] += g[3][i] }
        }
        #expect(abs(total - whole.loss) < 1e-6)
        #expect(aToB == whole.aToBTop1 && bToA == whole.bToATop1)
        for (x, y) in zip(gradientA + gradientB, wholeA + wholeB) { #expect(abs(x - y) < 1e-6) }
    }

    /// Streaming over candidate chunks gives the whole-matrix result, for the whole batch and
    /// for a rank whose positives straddle chunk boundaries.
    @Test(arguments: [(0..<10, 3), (0..<10, 7), (4..<7, 3), (4..<7, 7)])
    func chunkedEqualsUnchunked(part: Range<Int>, chunk: Int) {
        let n = 10, d = 6
        let (a, b) = pairs(n, dimension: d, seed: 4)
        let (whole, wholeGradients) = rank(CLIPLoss(temperature: 0.2), a: a, b: b, part: part, dimension: d)
        let (chunked, chunkedGradients) = rank(CLIPLoss(temperature: 0.2, logitChunk: chunk), a: a, b: b,
                                               part: part, dimension: d)
        #expect(abs(chunked.loss - whole.loss) <= 1e-6 * abs(whole.loss))
        #expect(chunked.aToBTop1 == whole.aToBTop1 && chunked.bToATop1 == whole.bToATop1)
        for (x, y) in zip(chunkedGradients.joined(), wholeGradients.joined()) {
            #expect(abs(x - y) <= 1e-6 + 1e-5 * abs(y))
        }
    }

    /// The half weight via normalization 2M is exact: bit-for-bit half of each NT-Xent direction at M.
    @Test func halfWeightIsExact() {
        let n = 7, d = 5
        let (a, b) = pairs(n, dimension: d, seed: 5)
        let (clip, g) = rank(CLIPLoss(temperature: 0.3), a: a, b: b, part: 0..<n, dimension: d)
        let contrastive = NTXentLoss(temperature: 0.3)
        let noSelf = [Int32](repeating: -1, count: n), positive = (0..<n).map(Int32.init)
        var expectedLoss = 0.0
        for (anchors, candidates, anchorIndex, candidateIndex) in [(a, b, 0, 3), (b, a, 1, 2)] {
            let ga = Tensor(zeros: [n, d]), gc = Tensor(zeros: [n, d])
            let r = contrastive.forwardBackward(anchors: anchors.data, anchorCount: n, candidates: candidates.data,
                                                candidateCount: n, dimension: d, selfIndex: noSelf, positiveIndex: positive,
                                                normalization: n, anchorGradient: ga.data, candidateGradient: gc.data)
            expectedLoss += 0.5 * r.loss
            #expect(g[anchorIndex] == ga.array.map { 0.5 * $0 })
            #expect(g[candidateIndex] == gc.array.map { 0.5 * $0 })
        }
        #expect(clip.loss == expectedLoss)
    }
}
