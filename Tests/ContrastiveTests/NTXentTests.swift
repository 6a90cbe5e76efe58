import Testing
@testable import Contrastive
@testable import Tensor

@Suite struct NTXentTests {
    /// 2B unit rows, the two views of a sample made similar so the loss is not trivial.
    func embeddings(samples b: Int, dimension d: Int, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, stream: 1)
        let z = Tensor(zeros: [2 * b, d])
        for i in 0..<(b * d) { let v = rng.nextNormal(); z[i] = v; z[b * d + i] = v + 0.5 * rng.nextNormal() }
        let norms = Tensor(zeros: [2 * b])
        Kernels.l2NormalizeRows(z.data, norms: norms.data, input: z.data, rows: 2 * b, columns: d)
        return z
    }

    func pairs(_ b: Int, offset: Int = 0) -> ([Int32], [Int32]) {
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positive = [Int32](repeating: 0, count: 2 * b)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: offset)
        return (selfIndex, positive)
    }

    /// Full gradient in one process: anchors and candidates are the same rows.
    func lossAndGradient(_ loss: NTXentLoss, z: Tensor, b: Int, d: Int) -> (Double, [Float], Int) {
        let (selfIndex, positive) = pairs(b)
        let ga = Tensor(zeros: [2 * b, d]), gc = Tensor(zeros: [2 * b, d])
        let r = loss.forwardBackward(anchors: z.data, anchorCount: 2 * b, candidates: z.data, candidateCount: 2 * b,
                                     dimension: d, selfIndex: selfIndex, positiveIndex: positive, normalization: 2 * b,
                                     anchorGradient: ga.data, candidateGradient: gc.data)
        return (r.loss, (0..<ga.count).map { ga[$0] + gc[$0] }, r.positiveTop1)
    }

    @Test func lossMatchesDoubleReference() {
        let b = 6, d = 5
        let z = embeddings(samples: b, dimension: d, seed: 1)
        let (selfIndex, positive) = pairs(b)
        let (loss, _, _) = lossAndGradient(NTXentLoss(temperature: 0.2), z: z, b: b, d: d)
        let reference = NTXentLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d,
                                                 selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                                 normalization: 2 * b, temperature: 0.2)
        #expect(abs(loss - reference) < 1e-5 * max(1, reference))
    }

    @Test func gradientMatchesFiniteDifferences() {
        let b = 4, d = 6
        let z = embeddings(samples: b, dimension: d, seed: 2)
        let loss = NTXentLoss(temperature: 0.5)
        let (_, gradient, _) = lossAndGradient(loss, z: z, b: b, d: d)
        let f = { lossAndGradient(loss, z: z, b: b, d: d).0 }
        let indices = Array(0..<z.count)
        let numerical = GradientCheck.numericalGradient(of: f, at: z.data, indices: indices, step: 1e-2)
        let error = GradientCheck.maxRelativeError(analytic: indices.map { Double(gradient[$0]) }, numerical: numerical)
        #expect(error < 2e-2)
    }

    /// The split used across ranks: each half of the anchors against all candidates, candidate
    /// gradients summed, must equal the whole batch at once (the equivalence the distributed
    /// path rests on).
    @Test func anchorSubsetsSumToTheWholeBatch() {
        let b = 5, d = 4
        let z = embeddings(samples: b, dimension: d, seed: 3)
        let loss = NTXentLoss(temperature: 0.2)
        let (whole, wholeGradient, wholeCorrect) = lossAndGradient(loss, z: z, b: b, d: d)
        let (selfIndex, positive) = pairs(b)
        var total = 0.0, correct = 0
        var gradient = [Float](repeating: 0, count: z.count)
        for part in [0..<3, 3..<(2 * b)] {
            let ga = Tensor(zeros: [part.count, d]), gc = Tensor(zeros: [2 * b, d])
            let r = Array(selfIndex[part]).withUnsafeBufferPointer { s in
                Array(positive[part]).withUnsafeBufferPointer { p in
                    loss.forwardBackward(anchors: z.data + part.lowerBound * d, anchorCount: part.count,
                                         candidates: z.data, candidateCount: 2 * b, dimension: d,
                                         selfIndex: s.baseAddress!, positiveIndex: p.baseAddress!, normalization: 2 * b,
                                         anchorGradient: ga.data, candidateGradient: gc.data)
                }
            }
            total += r.loss; correct += r.positiveTop1
            for i in 0..<(part.count * d) { gradient[part.lowerBound * d + i] += ga[i] }
            for i in 0..<gc.count { gradient[i] += gc[i] }
        }
        #expect(abs(total - whole) < 1e-6)
        #expect(correct == wholeCorrect)
        for i in 0..<gradient.count { #expect(abs(gradient[i] - wholeGradient[i]) < 1e-6) }
    }

    /// Streaming over candidate chunks gives the whole-matrix result, for chunk sizes that
    /// split the batch unevenly, put self or the positive alone in a chunk, or span it all.
    @Test(arguments: [1, 3, 7, 16, 40])
    func chunkedEqualsUnchunked(chunk: Int) {
        let b = 8, d = 6, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 4)
        let (selfIndex, positive) = pairs(b)
        func run(_ loss: NTXentLoss) -> (NTXentLoss.Result, [Float], [Float]) {
            let ga = Tensor(zeros: [n, d]), gc = Tensor(zeros: [n, d])
            ga.data.update(repeating: 99, count: ga.count)   // must be overwritten, not accumulated into
            let r = loss.forwardBackward(anchors: z.data, anchorCount: n, candidates: z.data, candidateCount: n, dimension: d,
                                         selfIndex: selfIndex, positiveIndex: positive, normalization: n,
                                         anchorGradient: ga.data, candidateGradient: gc.data)
            return (r, ga.array, gc.array)
        }
        let (whole, wholeAnchor, wholeCandidate) = run(NTXentLoss(temperature: 0.2))
        let (chunked, chunkedAnchor, chunkedCandidate) = run(NTXentLoss(temperature: 0.2, logitChunk: chunk))
        #expect(abs(chunked.loss - whole.loss) <= 1e-6 * abs(whole.loss))
        #expect(chunked.positiveTop1 == whole.positiveTop1)
        for (x, y) in zip(chunkedAnchor + chunkedCandidate, wholeAnchor + wholeCandidate) {
            #expect(abs(x - y) <= 1e-6 + 1e-5 * abs(y))
        }
    }

    @Test func positiveAccuracyCountsNearestPositives() {
        // Identical views: every positive is the nearest candidate.
        let b = 4, d = 8
        let z = Tensor(zeros: [2 * b, d])
        for i in 0..<b { z[i * d + i] = 1; z[(b + i) * d + i] = 1 }
        let (_, _, correct) = lossAndGradient(NTXentLoss(temperature: 0.1), z: z, b: b, d: d)
        #expect(correct == 2 * b)
    }
}
