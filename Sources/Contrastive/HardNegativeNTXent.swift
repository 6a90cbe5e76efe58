import Foundation
import Tensor

/// NT-Xent with hard-negative reweighting (Robinson et al. 2021, "Contrastive Learning with Hard
/// Negative Samples", concentration beta) and the debiased estimator (Chuang et al. 2020,
/// "Debiased Contrastive Learning", class prior tau+), as in the authors' reference code.
///
/// Shapes: A local anchors, N candidates (the global batch of views), D embedding width, K the
/// negatives of an anchor (every candidate but itself and its positive: N - 2, or N - 1 when
/// self(i) < 0). With S = Z_a Z^T / tau, for anchor i with positive p:
///
///     pos = e^{S_ip},  neg_j = e^{S_ij},  imp_j = e^{beta S_ij}              (j over the K negatives)
///     R   = sum_j imp_j neg_j / ((1/K) sum_j imp_j)                        (beta = 0: sum_j neg_j)
///     Ng  = max((R - tau+ K pos) / (1 - tau+),  K e^{-1/tau})
///     loss = (1 / M) sum_i -log(pos / (pos + Ng))
///
/// beta = 0 and tau+ = 0 is plain NT-Xent (`NTXentLoss`). Gradients flow through every term, the
/// importance weights included (no detach, as in the reference code). With w = softmax((1+beta) S_i.)
/// and u = softmax(beta S_i.) over the negatives, and G = pos + Ng:
///
///     dR/dS_ij       = R ((1 + beta) w_j - beta u_j)
///     dloss_i/dS_ij  = dR/dS_ij / ((1 - tau+) G)                           (0 where the clamp holds)
///     dloss_i/dS_ip  = (pos - tau+ K pos / (1 - tau+)) / G - 1             (pos / G - 1 where it holds)
///
/// and, as in `NTXentLoss`, dL/dZ_a = dS Z / tau, dL/dZ = dS^T Z_a / tau, M the global anchor count.
/// Everything is evaluated in the log domain with each row shifted by its maximum: R e^{-m} =
/// K sum_j e^{(1+beta)(S_ij - m)} / sum_j e^{beta (S_ij - m)}, m the largest negative logit; the row
/// statistics are kept in Double.
///
/// With `logitChunk` = C > 0 the candidates are processed C columns at a time (logit memory A x C):
/// a first pass keeps each row's running maximum m and both running sums, rescaled by
/// e^{(1+beta)(m - m')} and e^{beta (m - m')} when the maximum grows; a second pass recomputes each
/// chunk's logits and turns them into dS. Twice the logit GEMM, same result.
///
/// A learnable temperature (theta = log(1/tau)): the logits give sum_i <Z_a[i], dL/dZ_a[i]> as in
/// `NTXentLoss`; the clamp's floor K e^{-1/tau} = K e^{-e^theta} depends on theta directly, adding
/// -(Ng / G) / tau / M for every anchor where the clamp holds.
public final class HardNegativeNTXentLoss {
    /// tau; settable between calls (a scheduled or learned temperature).
    public var temperature: Float {
        didSet { precondition(temperature > 0, "NT-Xent temperature must be positive, got \(temperature)") }
    }
    /// Concentration beta >= 0 of the importance weights; settable between calls (a curriculum).
    public var beta: Float {
        didSet { precondition(beta >= 0 && beta.isFinite, "hard-negative beta must be >= 0, got \(beta)") }
    }
    /// Class prior tau+ in [0, 1) of the debiased estimator.
    public let tauPlus: Float
    public let logitChunk: Int
    private let logits = ScratchBuffer()
    /// One row's e^{S - m} and e^{beta (S - m)} (C each), for the vectorised exp.
    private let shifted = ScratchBuffer()
    private let importanceWeights = ScratchBuffer()
    /// Per anchor, `statisticsWidth` Doubles: see `Slot`.
    private var statistics: UnsafeMutablePointer<Double>
    private var statisticsCapacity = 0
    private static let statisticsWidth = 5
    /// Row statistics: largest negative logit m, sum e^{(1+beta)(S - m)}, sum e^{beta (S - m)}, the
    /// positive logit; after pass 1 the second and third hold dS's coefficients alpha1, alpha2 and
    /// the fourth dS of the positive.
    private enum Slot { static let maximum = 0, hardSum = 1, importanceSum = 2, positive = 3 }

    public init(temperature: Float, beta: Float = 0, tauPlus: Float = 0, logitChunk: Int = 0) {
        precondition(temperature > 0, "NT-Xent temperature must be positive, got \(temperature)")
        precondition(beta >= 0 && beta.isFinite, "hard-negative beta must be >= 0, got \(beta)")
        precondition(tauPlus >= 0 && tauPlus < 1, "debiased tau+ must be in [0, 1), got \(tauPlus)")
        precondition(logitChunk >= 0, "NT-Xent logit chunk must be >= 0, got \(logitChunk)")
        self.temperature = temperature
        self.beta = beta
        self.tauPlus = tauPlus
        self.logitChunk = logitChunk
        statistics = .allocate(capacity: 1)
    }

    deinit { statistics.deallocate() }

    /// Computes the loss of `anchorCount` anchors against `candidateCount` candidates and
    /// *writes* dL/d(anchors) (A x D) and dL/d(candidates) (N x D; skipped when nil); the arguments and the result
    /// mean what they mean for `NTXentLoss.forwardBackward`.
    public func forwardBackward(
        anchors: UnsafePointer<Float>, anchorCount a: Int,
        candidates: UnsafePointer<Float>, candidateCount n: Int, dimension d: Int,
        selfIndex: UnsafePointer<Int32>, positiveIndex: UnsafePointer<Int32>, normalization: Int,
        anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>?
    ) -> NTXentLoss.Result {
        let c = logitChunk > 0 && logitChunk < n ? logitChunk : n
        let inverseTemperature = 1 / temperature
        let s = logits.pointer(count: a * c)
        let powers = shifted.pointer(count: c), weights = importanceWeights.pointer(count: c)
        let width = Self.statisticsWidth
        if statisticsCapacity < a * width {
            statistics.deallocate()
            statistics = .allocate(capacity: a * width)
            statisticsCapacity = a * width
        }
        let stats = statistics
        for i in 0..<a {
            stats[i * width + Slot.maximum] = -.infinity
            stats[i * width + Slot.hardSum] = 0
            stats[i * width + Slot.importanceSum] = 0
        }
        let importance = beta

        let chunks = ChunkedLogits(anchors: anchors, anchorCount: a, candidates: candidates, candidateCount: n, dimension: d,
                                   chunk: c, inverseTemperature: inverseTemperature, selfIndex: selfIndex, s: s)

        /// Logits of candidates start ..< start + columns into s (A x columns), self and positive
        /// set to -inf so that only negatives remain; `savePositive`: the positive's logit saved first.
        func chunkLogits(_ start: Int, _ columns: Int, savePositive: Bool) {
            chunks.logits(start, columns)
            for i in 0..<a {
                let p = Int(positiveIndex[i]) - start
                if p >= 0 && p < columns {
                    if savePositive { stats[i * width + Slot.positive] = Double(s[i * columns + p]) }
                    s[i * columns + p] = -.infinity
                }
            }
        }

        // Pass 1: online maximum and the two sums over each row's negatives; the positive logits.
        var start = 0
        while start < n {
            let columns = min(c, n - start)
            chunkLogits(start, columns, savePositive: true)
            for i in 0..<a {
                let row = s + i * columns, rowStats = stats + i * width
                let chunkMaximum = Kernels.maximum(row, count: columns)
                if chunkMaximum == -.infinity { continue }
                let oldMaximum = rowStats[Slot.maximum]
                if Double(chunkMaximum) > oldMaximum {
                    if oldMaximum > -.infinity {
                        let shift = oldMaximum - Double(chunkMaximum)
                        rowStats[Slot.hardSum] *= Foundation.exp((1 + Double(importance)) * shift)
                        rowStats[Slot.importanceSum] *= Foundation.exp(Double(importance) * shift)
                    }
                    rowStats[Slot.maximum] = Double(chunkMaximum)
                }
                // Masked entries are -inf and give exactly 0; the logits stay for pass 2.
                let m = Float(rowStats[Slot.maximum])
                let plainSum = Kernels.expSum(powers, input: row, count: columns, shift: m)
                if importance == 0 {
                    rowStats[Slot.hardSum] += Double(plainSum)
                } else {
                    // e^{(1+beta)(S - m)} = e^{S - m} e^{beta (S - m)}
                    for j in 0..<columns { weights[j] = importance * row[j] }
                    rowStats[Slot.importanceSum] += Double(Kernels.expSum(weights, input: weights, count: columns, shift: importance * m))
                    var hardSum: Float = 0
                    for j in 0..<columns { hardSum += powers[j] * weights[j] }
                    rowStats[Slot.hardSum] += Double(hardSum)
                }
            }
            start += columns
        }

        // Per row: the loss, and dS's coefficients (dS_j = alpha1 e^{(1+beta)(S_j - m)} - alpha2 e^{beta (S_j - m)}).
        var loss = 0.0, clampGradient = 0.0
        var correct = 0
        let scale = 1 / Double(normalization), tp = Double(tauPlus), b = Double(beta)
        for i in 0..<a {
            let rowStats = stats + i * width
            let positive = rowStats[Slot.positive], m = rowStats[Slot.maximum]
            let k = Double(n - 1 - (selfIndex[i] >= 0 ? 1 : 0))
            if positive >= m { correct += 1 }
            let shift = max(m, positive)
            // beta = 0: every importance weight is 1 and their sum is K (summed as 0 above).
            let importanceSum = importance == 0 ? k : rowStats[Slot.importanceSum]
            let r = k > 0 && m > -.infinity ? k * Foundation.exp(m - shift) * rowStats[Slot.hardSum] / importanceSum : 0
            let q = Foundation.exp(positive - shift)
            let unclamped = (r - tp * k * q) / (1 - tp)
            let floor = k * Foundation.exp(-Double(inverseTemperature) - shift)
            let clamped = unclamped < floor
            let g = clamped ? floor : unclamped
            let total = q + g
            loss += shift + Foundation.log(total) - positive
            let kappa = clamped ? 0 : r / ((1 - tp) * total)
            rowStats[Slot.positive] = ((clamped ? q : q - tp * k * q / (1 - tp)) / total - 1) * scale
            let hardSum = rowStats[Slot.hardSum]
            rowStats[Slot.hardSum] = kappa > 0 ? kappa * (1 + b) / hardSum * scale : 0
            rowStats[Slot.importanceSum] = kappa > 0 && importance > 0 ? kappa * b / importanceSum * scale : 0
            if m == -.infinity { rowStats[Slot.maximum] = 0 }  // no negatives: keeps S - m at -inf, not NaN
            if clamped { clampGradient -= g / total * Double(inverseTemperature) * scale }
        }

        // Pass 2: dS per chunk (the logits recomputed unless one chunk spans all), then both gradients.
        start = 0
        while start < n {
            let columns = min(c, n - start)
            if c < n { chunkLogits(start, columns, savePositive: false) }
            for i in 0..<a {
                let row = s + i * columns, rowStats = stats + i * width
                let m = Float(rowStats[Slot.maximum])
                let alpha1 = Float(rowStats[Slot.hardSum]), alpha2 = Float(rowStats[Slot.importanceSum])
                if alpha1 == 0 {
                    row.update(repeating: 0, count: columns)
                } else if importance == 0 {
                    _ = Kernels.expSum(row, input: row, count: columns, shift: m)
                    Kernels.scale(row, by: alpha1, count: columns)
                } else {
                    // alpha1 e^{(1+beta)x} - alpha2 e^{beta x} = e^{beta x} (alpha1 e^x - alpha2), x = S - m
                    for j in 0..<columns { weights[j] = importance * row[j] }
                    _ = Kernels.expSum(weights, input: weights, count: columns, shift: importance * m)
                    _ = Kernels.expSum(row, input: row, count: columns, shift: m)
                    for j in 0..<columns { row[j] = weights[j] * (alpha1 * row[j] - alpha2) }
                }
                let p = Int(positiveIndex[i]) - start
                if p >= 0 && p < columns { row[p] = Float(rowStats[Slot.positive]) }
            }
            chunks.addGradients(start, columns, anchorGradient: anchorGradient, candidateGradient: candidateGradient)
            start += columns
        }
        let thetaGradient = NTXentLoss.logitScaleGradient(anchors: anchors, anchorGradient: anchorGradient, count: a * d) + clampGradient
        return NTXentLoss.Result(loss: loss * scale, positiveTop1: correct, logitScaleGradient: thetaGradient)
    }

    /// Plain Double-precision reference of the loss alone (for tests), the formula as written in
    /// the type's comment (no shifts); selfIndex < 0 excludes nothing.
    public static func lossReference(anchors: [Float], candidates: [Float], dimension d: Int, selfIndex: [Int],
                                     positiveIndex: [Int], normalization: Int, temperature: Double,
                                     beta: Double, tauPlus: Double) -> Double {
        let a = selfIndex.count, n = candidates.count / d
        var total = 0.0
        for i in 0..<a {
            func logit(_ j: Int) -> Double {
                var dot = 0.0
                for k in 0..<d { dot += Double(anchors[i * d + k]) * Double(candidates[j * d + k]) }
                return dot / temperature
            }
            let negatives = (0..<n).filter { $0 != selfIndex[i] && $0 != positiveIndex[i] }
            let k = Double(negatives.count)
            let pos = Foundation.exp(logit(positiveIndex[i]))
            let neg = negatives.map { Foundation.exp(logit($0)) }
            let imp = negatives.map { Foundation.exp(beta * logit($0)) }
            let reweighted = k > 0 ? zip(imp, neg).map(*).reduce(0, +) / (imp.reduce(0, +) / k) : 0
            let ng = max((reweighted - tauPlus * k * pos) / (1 - tauPlus), k * Foundation.exp(-1 / temperature))
            total += -Foundation.log(pos / (pos + ng))
        }
        return total / Double(normalization)
    }
}
