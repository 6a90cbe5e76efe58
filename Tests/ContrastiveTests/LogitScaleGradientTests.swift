import Foundation
import Testing
@testable import Contrastive
@testable import Tensor

/// A learnable temperature (CLIP's logit scale theta = log(1/tau)): each loss's dL/dtheta against a
/// central difference of its Double reference in theta, at several temperatures, plain and chunked.
@Suite struct LogitScaleGradientTests {
    /// `rows` unit rows of width d; rows i and i + rows/2 made similar so the loss is not trivial.
    func unitRows(_ rows: Int, dimension d: Int, seed: UInt64) -> Tensor {
        var rng = RandomStream(seed: seed, stream: 3)
        let z = Tensor(zeros: [rows, d]), half = rows / 2 * d
        for i in 0..<half { let v = rng.nextNormal(); z[i] = v; z[half + i] = v + 0.5 * rng.nextNormal() }
        for i in (2 * half)..<(rows * d) { z[i] = rng.nextNormal() }
        let norms = Tensor(zeros: [rows])
        Kernels.l2NormalizeRows(z.data, norms: norms.data, input: z.data, rows: rows, columns: d)
        return z
    }

    /// (f(theta + h) - f(theta - h)) / 2h of a loss given as a function of tau = exp(-theta).
    func centralDifference(temperature: Float, _ loss: (Float) -> Double) -> Double {
        let theta = log(1 / Double(temperature)), h = 1e-3
        return (loss(Float(exp(-(theta + h)))) - loss(Float(exp(-(theta - h))))) / (2 * h)
    }

    func expectClose(_ analytic: Double, _ numeric: Double, _ label: String) {
        #expect(abs(analytic - numeric) <= 2e-3 * max(1, abs(numeric)), "\(label): \(analytic) vs \(numeric)")
    }

    @Test(arguments: [(Float(0.07), 0), (0.2, 0), (1.0, 0), (0.07, 5), (0.5, 3)])
    func ntXent(temperature: Float, chunk: Int) {
        let b = 6, d = 5
        let z = unitRows(2 * b, dimension: d, seed: 11)
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positive = [Int32](repeating: 0, count: 2 * b)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        let ga = Tensor(zeros: [2 * b, d]), gc = Tensor(zeros: [2 * b, d])
        let r = NTXentLoss(temperature: temperature, logitChunk: chunk).forwardBackward(
            anchors: z.data, anchorCount: 2 * b, candidates: z.data, candidateCount: 2 * b, dimension: d,
            selfIndex: selfIndex, positiveIndex: positive, normalization: 2 * b, anchorGradient: ga.data, candidateGradient: gc.data)
        let numeric = centralDifference(temperature: temperature) { tau in
            NTXentLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d, selfIndex: selfIndex.map(Int.init),
                                     positiveIndex: positive.map(Int.init), normalization: 2 * b, temperature: tau)
        }
        expectClose(r.logitScaleGradient, numeric, "NT-Xent tau \(temperature) chunk \(chunk)")
    }

    /// Anchor subsets (ranks) sum to the whole batch's dL/dtheta, as the all-reduce assumes.
    @Test func ntXentRanksSumToTheWholeBatch() {
        let b = 6, d = 5, n = 2 * b
        let z = unitRows(n, dimension: d, seed: 12)
        var selfIndex = [Int32](repeating: 0, count: n), positive = [Int32](repeating: 0, count: n)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        let loss = NTXentLoss(temperature: 0.3)
        func run(_ rows: Range<Int>) -> Double {
            let ga = Tensor(zeros: [rows.count, d]), gc = Tensor(zeros: [n, d])
            return loss.forwardBackward(anchors: z.data + rows.lowerBound * d, anchorCount: rows.count, candidates: z.data,
                                        candidateCount: n, dimension: d, selfIndex: Array(selfIndex[rows]), positiveIndex: Array(positive[rows]),
                                        normalization: n, anchorGradient: ga.data, candidateGradient: gc.data).logitScaleGradient
        }
        #expect(abs(run(0..<5) + run(5..<n) - run(0..<n)) <= 1e-5 * abs(run(0..<n)))
    }

    @Test(arguments: [(Float(0.07), 0), (0.3, 0), (0.3, 4)])
    func clip(temperature: Float, chunk: Int) {
        let n = 8, d = 4
        let both = unitRows(2 * n, dimension: d, seed: 13)
        let a = Array(both.array[0..<(n * d)]), bRows = Array(both.array[(n * d)...])
        let ga = Tensor(zeros: [n, d]), gb = Tensor(zeros: [n, d]), gaAll = Tensor(zeros: [n, d]), gbAll = Tensor(zeros: [n, d])
        let r = CLIPLoss(temperature: temperature, logitChunk: chunk).forwardBackward(
            localA: a, localB: bRows, localCount: n, allA: a, allB: bRows, allCount: n, dimension: d, offset: 0, normalization: n,
            localAGradient: ga.data, localBGradient: gb.data, allAGradient: gaAll.data, allBGradient: gbAll.data)
        let numeric = centralDifference(temperature: temperature) { tau in
            CLIPLoss.lossReference(localA: a, localB: bRows, allA: a, allB: bRows, dimension: d, offset: 0, normalization: n, temperature: tau)
        }
        expectClose(r.logitScaleGradient, numeric, "CLIP tau \(temperature) chunk \(chunk)")
    }

    @Test(arguments: [(Float(0.1), 0), (0.5, 0), (0.1, 5)])
    func supCon(temperature: Float, chunk: Int) {
        let b = 6, d = 5, n = 2 * b
        let z = unitRows(n, dimension: d, seed: 14)
        var selfIndex = [Int32](repeating: 0, count: n), positive = [Int32](repeating: 0, count: n)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        let sampleLabels: [Int32] = [0, 1, 0, -1, 1, 2]
        let labels = sampleLabels + sampleLabels
        let ga = Tensor(zeros: [n, d]), gc = Tensor(zeros: [n, d])
        let r = SupConLoss(temperature: temperature, logitChunk: chunk).forwardBackward(
            anchors: z.data, anchorCount: n, candidates: z.data, candidateCount: n, dimension: d, selfIndex: selfIndex,
            positiveIndex: positive, anchorLabels: labels, candidateLabels: labels, normalization: n,
            anchorGradient: ga.data, candidateGradient: gc.data)
        let numeric = centralDifference(temperature: temperature) { tau in
            SupConLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d, selfIndex: selfIndex.map(Int.init),
                                     positiveIndex: positive.map(Int.init), anchorLabels: labels, candidateLabels: labels,
                                     normalization: n, temperature: tau)
        }
        expectClose(r.logitScaleGradient, numeric, "SupCon tau \(temperature) chunk \(chunk)")
    }

    /// The temperature is settable between calls and a new value is used at once.
    @Test func settingTheTemperatureChangesTheLoss() {
        let b = 4, d = 3
        let z = unitRows(2 * b, dimension: d, seed: 15)
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positive = [Int32](repeating: 0, count: 2 * b)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        let loss = NTXentLoss(temperature: 0.2)
        let ga = Tensor(zeros: [2 * b, d]), gc = Tensor(zeros: [2 * b, d])
        loss.temperature = 0.7
        let r = loss.forwardBackward(anchors: z.data, anchorCount: 2 * b, candidates: z.data, candidateCount: 2 * b, dimension: d,
                                     selfIndex: selfIndex, positiveIndex: positive, normalization: 2 * b,
                                     anchorGradient: ga.data, candidateGradient: gc.data)
        let reference = NTXentLoss.lossReference(anchors: z.array, candidates: z.array, dimension: d, selfIndex: selfIndex.map(Int.init),
                                                 positiveIndex: positive.map(Int.init), normalization: 2 * b, temperature: 0.7)
        #expect(abs(r.loss - reference) <= 1e-5 * max(1, reference))
    }
}
