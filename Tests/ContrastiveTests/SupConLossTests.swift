import TestSupport
import Testing
@testable import Contrastive
@testable import Tensor

@Suite struct SupConLossTests {
    /// 2B unit rows, the two views of a sample made similar so the loss is not trivial.
    func embeddings(samples b: Int, dimension d: Int, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, stream: 3)
        let z = Tensor(zeros: [2 * b, d])
        for i in 0..<(b * d) { let v = rng.nextNormal(); z[i] = v; z[b * d + i] = v + 0.5 * rng.nextNormal() }
        let norms = Tensor(zeros: [2 * b])
        Kernels.l2NormalizeRows(z.data, norms: norms.data, input: z.data, rows: 2 * b, columns: d)
        return z
    }

    func pairs(_ b: Int) -> ([Int32], [Int32]) {
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positive = [Int32](repeating: 0, count: 2 * b)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        return (selfIndex, positive)
    }

    /// Per-sample classes of a partially labeled batch of 8 samples: classes 0 and 1 repeat,
    /// class 2 (sample 3) has a single sample, samples 4 and 7 are unlabeled. Both views share
    /// their sample's label.
    let sampleLabels: [Int32] = [0, 1, 0, 2, -1, 1, 0, -1]
    var viewLabels: [Int32] { sampleLabels + sampleLabels }

    /// Runs anchors `part` of the 2B rows of z against all rows. Gradient buffers are filled
    /// with garbage first: they must be written, not accumulated into.
    func run(_ loss: SupConLoss, z: Tensor, b: Int, d: Int, labels: [Int32], part: Range<Int>? = nil)
        -> (SupConLoss.Result, anchor: [Float], candidate: [Float]) {
        let n = 2 * b, part = part ?? 0..<n
        let (selfIndex, positive) = pairs(b)
        let ga = Tensor(zeros: [part.count, d]), gc = Tensor(zeros: [n, d])
        ga.data.update(repeating: 99, count: ga.count)
        gc.data.update(repeating: 99, count: gc.count)
        let r = Array(selfIndex[part]).withUnsafeBufferPointer { s in
            Array(positive[part]).withUnsafeBufferPointer { p in
                Array(labels[part]).withUnsafeBufferPointer { l in
                    loss.forwardBackward(anchors: z.data + part.lowerBound * d, anchorCount: part.count,
                                         candidates: z.data, candidateCount: n, dimension: d,
                                         selfIndex: s.baseAddress!, positiveIndex: p.baseAddress!,
                                         anchorLabels: l.baseAddress!, candidateLabels: labels, normalization: n,
                                         anchorGradient: ga.data, candidateGradient: gc.data)
                }
            }
        }
        return (r, ga.array, gc.array)
    }

    func reference(_ z: Tensor, b: Int, d: Int, labels: [Int32], temperature: Float) -> Double {
        let (selfIndex, positive) = pairs(b)
        return SupConLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d,
                                        selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                        anchorLabels: labels, candidateLabels: labels, normalization: 2 * b,
                                        temperature: temperature)
    }

    @Test(arguments: [0, 3, 5])
    func lossMatchesDoubleReference(chunk: Int) {
        let b = 8, d = 5
        let z = embeddings(samples: b, dimension: d, seed: 1)
        let (r, _, _) = run(SupConLoss(temperature: 0.2, logitChunk: chunk), z: z, b: b, d: d, labels: viewLabels)
        let expected = reference(z, b: b, d: d, labels: viewLabels, temperature: 0.2)
        #expect(abs(r.loss - expected) < 1e-5 * max(1, abs(expected)))
        // Labels must change the loss, or this test would not tell SupCon from NT-Xent.
        let unlabeled = reference(z, b: b, d: d, labels: [Int32](repeating: -1, count: 2 * b), temperature: 0.2)
        #expect(abs(expected - unlabeled) > 1e-2)
    }

    /// Anchor and candidate gradients, each against central differences of the Double reference
    /// with the other input held fixed (in one process the caller adds the two).
    @Test func gradientMatchesFiniteDifferences() {
        let b = 8, d = 4, n = 2 * b, temperature: Float = 0.5
        let z = embeddings(samples: b, dimension: d, seed: 2)
        let (_, ga, gc) = run(SupConLoss(temperature: temperature), z: z, b: b, d: d, labels: viewLabels)
        let anchors = Tensor(zeros: [n, d]), candidates = Tensor(zeros: [n, d])
        anchors.data.update(from: z.data, count: z.count)
        candidates.data.update(from: z.data, count: z.count)
        let (selfIndex, positive) = pairs(b)
        let f = {
            SupConLoss.lossReference(anchors: anchors.array, candidates: candidates.array, dimension: d,
                                     selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                     anchorLabels: viewLabels, candidateLabels: viewLabels, normalization: n,
                                     temperature: temperature)
        }
        for (x, gradient) in [(anchors, ga), (candidates, gc)] {
            let indices = Array(0..<x.count)
            let numerical = GradientCheck.numericalGradient(of: f, at: x.data, indices: indices, step: 1e-3)
            let error = GradientCheck.maxRelativeError(analytic: gradient.map(Double.init), numerical: numerical)
            #expect(error < 1e-3)
        }
    }

    /// P ranks in process: rank blocks of anchors against the same gathered candidates and
    /// labels; summed candidate gradients plus each block's anchor gradient must equal the
    /// one-process gradient, and the loss shares and top-1 counts must sum to the whole.
    @Test(arguments: [2, 3, 4])
    func rankBlocksSumToOneProcess(ranks: Int) {
        let b = 8, d = 6, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 3)
        let loss = SupConLoss(temperature: 0.2)
        let (whole, wholeAnchor, wholeCandidate) = run(loss, z: z, b: b, d: d, labels: viewLabels)
        let wholeGradient = zip(wholeAnchor, wholeCandidate).map { $0 + $1 }
        var total = 0.0, correct = 0
        var gradient = [Float](repeating: 0, count: z.count)
        for rank in 0..<ranks {
            let part = (rank * n / ranks)..<((rank + 1) * n / ranks)   // uneven blocks for P = 3
            let (r, ga, gc) = run(loss, z: z, b: b, d: d, labels: viewLabels, part: part)
            total += r.loss; correct += r.positiveTop1
            for i in 0..<ga.count { gradient[part.lowerBound * d + i] += ga[i] }
            for i in 0..<gc.count { gradient[i] += gc[i] }
        }
        #expect(abs(total - whole.loss) < 1e-6)
        #expect(correct == whole.positiveTop1)
        for i in 0..<gradient.count { #expect(abs(gradient[i] - wholeGradient[i]) < 1e-6) }
    }

    /// With every label -1, P(i) = { pos(i) } and SupCon is NT-Xent operation for operation:
    /// loss, top-1 and both gradients equal bit for bit, on both paths.
    @Test(arguments: [0, 3, 7])
    func equalsNTXentWhenUnlabeled(chunk: Int) {
        let b = 8, d = 5, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 4)
        let (r, ga, gc) = run(SupConLoss(temperature: 0.2, logitChunk: chunk), z: z, b: b, d: d,
                              labels: [Int32](repeating: -1, count: n))
        let (selfIndex, positive) = pairs(b)
        let na = Tensor(zeros: [n, d]), nc = Tensor(zeros: [n, d])
        let expected = NTXentLoss(temperature: 0.2, logitChunk: chunk).forwardBackward(
            anchors: z.data, anchorCount: n, candidates: z.data, candidateCount: n, dimension: d,
            selfIndex: selfIndex, positiveIndex: positive, normalization: n, anchorGradient: na.data, candidateGradient: nc.data)
        #expect(r.loss == expected.loss)
        #expect(r.positiveTop1 == expected.positiveTop1)
        #expect(ga == na.array)
        #expect(gc == nc.array)
    }

    /// Per anchor in a partially labeled batch: an unlabeled anchor, and an anchor whose class
    /// appears on no other candidate (its other view carries -1 here), reduce to NT-Xent; an
    /// anchor with class-mates does not.
    @Test func partiallyLabeledAnchors() {
        let b = 8, d = 5, n = 2 * b
        let z = embeddings(samples: b, dimension: d, seed: 5)
        var labels = viewLabels
        labels[3 + b] = -1   // class 2 now only on row 3: no positive but its view
        let supCon = SupConLoss(temperature: 0.2), ntXent = NTXentLoss(temperature: 0.2)
        let (selfIndex, positive) = pairs(b)
        func ntXentLoss(_ i: Int) -> Double {
            let na = Tensor(zeros: [1, d]), nc = Tensor(zeros: [n, d])
            return ntXent.forwardBackward(anchors: z.data + i * d, anchorCount: 1, candidates: z.data, candidateCount: n,
                                          dimension: d, selfIndex: [selfIndex[i]], positiveIndex: [positive[i]],
                                          normalization: n, anchorGradient: na.data, candidateGradient: nc.data).loss
        }
        for (i, reducesToNTXent) in [(3, true), (4, true), (3 + b, true), (0, false), (1, false)] {
            let (r, ga, gc) = run(supCon, z: z, b: b, d: d, labels: labels, part: i..<(i + 1))
            #expect(Kernels.allFinite(ga, count: ga.count) && Kernels.allFinite(gc, count: gc.count))
            if reducesToNTXent { #expect(r.loss == ntXentLoss(i)) } else { #expect(abs(r.loss - ntXentLoss(i)) > 1e-4) }
        }
        let (whole, _, _) = run(supCon, z: z, b: b, d: d, labels: labels)
        let expected = reference(z, b: b, d: d, labels: labels, temperature: 0.2)
        #expect(abs(whole.loss - expected) < 1e-5 * max(1, abs(expected)))
    }

    /// Every class a single sample, at a low temperature with views identical to each other:
    /// |P(i)| = 1 everywhere, and nothing is NaN or infinite.
    @Test(arguments: [0, 2])
    func singleSampleClassesStayFinite(chunk: Int) {
        let b = 4, d = 8, n = 2 * b
        let z = Tensor(zeros: [n, d])
        for i in 0..<b { z[i * d + i] = 1; z[(b + i) * d + i] = 1 }
        let labels = (0..<n).map { Int32($0 % b) }
        let (r, ga, gc) = run(SupConLoss(temperature: 0.01, logitChunk: chunk), z: z, b: b, d: d, labels: labels)
        #expect(r.loss.isFinite)
        #expect(Kernels.allFinite(ga, count: ga.count) && Kernels.allFinite(gc, count: gc.count))
        #expect(r.positiveTop1 == n)
    }

    @Test(arguments: [1, 3, 7, 16, 40])
    func chunkedEqualsUnchunked(chunk: Int) {
        let b = 8, d = 6
        let z = embeddings(samples: b, dimension: d, seed: 6)
        let (whole, wholeAnchor, wholeCandidate) = run(SupConLoss(temperature: 0.2), z: z, b: b, d: d, labels: viewLabels)
        let (chunked, chunkedAnchor, chunkedCandidate) = run(SupConLoss(temperature: 0.2, logitChunk: chunk),
                                                             z: z, b: b, d: d, labels: viewLabels)
        #expect(abs(chunked.loss - whole.loss) <= 1e-6 * abs(whole.loss))
        #expect(chunked.positiveTop1 == whole.positiveTop1)
        for (x, y) in zip(chunkedAnchor + chunkedCandidate, wholeAnchor + wholeCandidate) {
            #expect(abs(x - y) <= 1e-6 + 1e-5 * abs(y))
        }
    }

    /// Top-1 is label-aware: the nearest candidate being a class-mate rather than the other
    /// view counts as correct; an unlabeled anchor in the same place does not.
    @Test(arguments: [0, 3])
    func top1CountsNearestClassMates(chunk: Int) {
        let b = 3, d = 4, n = 2 * b
        let z = Tensor(zeros: [n, d])
        // Sample 0's view 0 sits on sample 1's view 0; its own other view points elsewhere.
        z[0 * d + 0] = 1; z[1 * d + 0] = 1; z[2 * d + 2] = 1
        z[3 * d + 1] = 1; z[4 * d + 3] = 1; z[5 * d + 2] = 1
        let classMates: [Int32] = [5, 5, 6, 5, 5, 6]
        let (labeled, _, _) = run(SupConLoss(temperature: 0.1, logitChunk: chunk), z: z, b: b, d: d,
                                  labels: classMates, part: 0..<1)
        #expect(labeled.positiveTop1 == 1)
        let (unlabeled, _, _) = run(SupConLoss(temperature: 0.1, logitChunk: chunk), z: z, b: b, d: d,
                                    labels: [Int32](repeating: -1, count: n), part: 0..<1)
        #expect(unlabeled.positiveTop1 == 0)
    }
}
