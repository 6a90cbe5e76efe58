import TestSupport
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

    // MARK: selfIndex < 0: anchors that are not among the candidates (the two-tower case)

    /// A anchors and N candidates drawn separately (unit rows), anchor i's positive a noisy copy
    /// of it at candidate `positive[i]`, so retrieval is mostly but not always right.
    func separateSets(anchors a: Int, candidates n: Int, dimension d: Int, seed: UInt64)
        -> (anchors: Tensor, candidates: Tensor, positive: [Int32]) {
        var rng = RandomStream(seed: seed, stream: 2)
        let za = Tensor(zeros: [a, d]), zc = Tensor(zeros: [n, d])
        for i in 0..<(a * d) { za[i] = rng.nextNormal() }
        for i in 0..<(n * d) { zc[i] = rng.nextNormal() }
        let positive = (0..<a).map { Int32(($0 * 5 + 2) % n) }
        for i in 0..<a { for k in 0..<d { zc[Int(positive[i]) * d + k] = za[i * d + k] + 1.2 * rng.nextNormal() } }
        let norms = Tensor(zeros: [max(a, n)])
        Kernels.l2NormalizeRows(za.data, norms: norms.data, input: za.data, rows: a, columns: d)
        Kernels.l2NormalizeRows(zc.data, norms: norms.data, input: zc.data, rows: n, columns: d)
        return (za, zc, positive)
    }

    func runWithoutSelf(_ loss: NTXentLoss, anchors za: Tensor, candidates zc: Tensor, positive: [Int32],
                        dimension d: Int, normalization: Int) -> (NTXentLoss.Result, [Float], [Float]) {
        let a = za.rows, n = zc.rows
        let selfIndex = [Int32](repeating: -1, count: a)
        let ga = Tensor(zeros: [a, d]), gc = Tensor(zeros: [n, d])
        ga.data.update(repeating: 99, count: ga.count)   // must be overwritten, not accumulated into
        gc.data.update(repeating: 99, count: gc.count)
        let r = loss.forwardBackward(anchors: za.data, anchorCount: a, candidates: zc.data, candidateCount: n,
                                     dimension: d, selfIndex: selfIndex, positiveIndex: positive,
                                     normalization: normalization, anchorGradient: ga.data, candidateGradient: gc.data)
        return (r, ga.array, gc.array)
    }

    /// Double-precision top-1: anchors whose positive is the most similar candidate, nothing excluded.
    func top1Reference(anchors za: [Float], candidates zc: [Float], dimension d: Int, positive: [Int32]) -> Int {
        let n = zc.count / d
        return positive.indices.filter { i in
            let dots = (0..<n).map { j in (0..<d).reduce(0.0) { $0 + Double(za[i * d + $1]) * Double(zc[j * d + $1]) } }
            return dots.indices.allSatisfy { dots[$0] <= dots[Int(positive[i])] }
        }.count
    }

    @Test(arguments: [0, 3, 4])
    func noSelfMatchesDoubleReference(chunk: Int) {
        let a = 7, n = 11, d = 5
        let (za, zc, positive) = separateSets(anchors: a, candidates: n, dimension: d, seed: 5)
        let (r, _, _) = runWithoutSelf(NTXentLoss(temperature: 0.2, logitChunk: chunk), anchors: za, candidates: zc,
                                       positive: positive, dimension: d, normalization: 9)
        let reference = NTXentLoss.lossReference(anchors: za.array, candidates: zc.array, dimension: d,
                                                 selfIndex: [Int](repeating: -1, count: a),
                                                 positiveIndex: positive.map(Int.init), normalization: 9, temperature: 0.2)
        #expect(abs(r.loss - reference) < 1e-5 * max(1, reference))
        let top1 = top1Reference(anchors: za.array, candidates: zc.array, dimension: d, positive: positive)
        #expect(r.positiveTop1 == top1)
        #expect(top1 > 0 && top1 < a)   // the data must exercise both outcomes
    }

    /// Anchors equal to their positives: with nothing excluded every positive is the nearest
    /// candidate (similarity 1), which a self mask on the wrong column would break.
    @Test(arguments: [0, 2])
    func noSelfPositiveAccuracyCountsNearestPositives(chunk: Int) {
        let a = 4, n = 6, d = 8
        let za = Tensor(zeros: [a, d]), zc = Tensor(zeros: [n, d])
        let positive: [Int32] = [5, 0, 3, 1]
        for i in 0..<a { za[i * d + i] = 1; zc[Int(positive[i]) * d + i] = 1 }
        zc[2 * d + 6] = 1; zc[4 * d + 7] = 1
        let (r, _, _) = runWithoutSelf(NTXentLoss(temperature: 0.1, logitChunk: chunk), anchors: za, candidates: zc,
                                       positive: positive, dimension: d, normalization: a)
        #expect(r.positiveTop1 == a)
    }

    /// Gradients w.r.t. anchors and candidates against central differences of the Double reference.
    @Test func noSelfGradientMatchesFiniteDifferences() {
        let a = 4, n = 6, d = 5, temperature: Float = 0.5
        let (za, zc, positive) = separateSets(anchors: a, candidates: n, dimension: d, seed: 6)
        let (_, ga, gc) = runWithoutSelf(NTXentLoss(temperature: temperature), anchors: za, candidates: zc,
                                         positive: positive, dimension: d, normalization: a)
        let f = {
            NTXentLoss.lossReference(anchors: za.array, candidates: zc.array, dimension: d,
                                     selfIndex: [Int](repeating: -1, count: a), positiveIndex: positive.map(Int.init),
                                     normalization: a, temperature: temperature)
        }
        for (z, gradient) in [(za, ga), (zc, gc)] {
            let indices = Array(0..<z.count)
            let numerical = GradientCheck.numericalGradient(of: f, at: z.data, indices: indices, step: 1e-3)
            let error = GradientCheck.maxRelativeError(analytic: gradient.map(Double.init), numerical: numerical)
            #expect(error < 1e-3)
        }
    }

    @Test(arguments: [1, 3, 7, 16])
    func noSelfChunkedEqualsUnchunked(chunk: Int) {
        let a = 9, n = 13, d = 6
        let (za, zc, positive) = separateSets(anchors: a, candidates: n, dimension: d, seed: 7)
        let (whole, wholeAnchor, wholeCandidate) = runWithoutSelf(NTXentLoss(temperature: 0.2), anchors: za, candidates: zc,
                                                                  positive: positive, dimension: d, normalization: n)
        let (chunked, chunkedAnchor, chunkedCandidate) = runWithoutSelf(
            NTXentLoss(temperature: 0.2, logitChunk: chunk), anchors: za, candidates: zc,
            positive: positive, dimension: d, normalization: n)
        #expect(abs(chunked.loss - whole.loss) <= 1e-6 * abs(whole.loss))
        #expect(chunked.positiveTop1 == whole.positiveTop1)
        for (x, y) in zip(chunkedAnchor + chunkedCandidate, wholeAnchor + wholeCandidate) {
            #expect(abs(x - y) <= 1e-6 + 1e-5 * abs(y))
        }
    }
}
