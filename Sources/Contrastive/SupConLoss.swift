import Foundation
import Tensor

/// Supervised contrastive loss, the L_out form (Khosla et al. 2020, eq. 2), over a candidate set.
///
/// Shapes: A local anchors, N candidates (the global batch of views), D embedding width.
/// Anchors Z_a (A x D) and candidates Z (N x D) are L2-normalised rows; every candidate row has
/// a label (Int32, -1 = unlabeled). For anchor i with candidate index self(i), other view pos(i)
/// and label y_i, its positives are its other view and, when labeled, every other candidate of
/// its class:
///
///     P(i) = { p != self(i) : y_p = y_i, y_i >= 0 }  U  { pos(i) }          (|P(i)| >= 1)
///     S = Z_a Z^T / tau                        (A x N), S[i, self(i)] = -inf if self(i) >= 0
///     loss = (1 / M) sum_i [ logsumexp_j S[i, j] - (1 / |P(i)|) sum_{p in P(i)} S[i, p] ]
///     dS[i, j] = (softmax(S[i])_j - q[i, j]) / M,    q[i, j] = [j in P(i)] / |P(i)|
///     dL/dZ_a = dS Z / tau,   dL/dZ = dS^T Z_a / tau
///
/// The row of q sums to 1 like the one-hot it replaces, so the gradient is NT-Xent's with the
/// one-hot target spread evenly over P(i); with every label -1, P(i) = { pos(i) }, q is the
/// one-hot and this is NTXentLoss operation for operation (same result bit for bit).
/// (In terms of the raw similarity s = tau S, dL/ds[i, j] = dS[i, j] / tau, hence the 1/tau
/// in both GEMMs.) An unlabeled candidate is never another anchor's label-positive, since
/// y_i >= 0 is required to match; an anchor whose class appears nowhere else keeps its view.
///
/// M (`normalization`) is the number of anchors in the *global* batch, so that summing the
/// gradients of all ranks gives exactly the single-process gradient, as in NTXentLoss. The
/// caller gathers the candidate labels alongside the candidates (same rank-major order).
///
/// `logitChunk` = C > 0 streams the candidates C columns at a time (A x C logit memory), with
/// NTXentLoss's online log-sum-exp; the positive sum, count and maximum are accumulated per
/// chunk in the same first pass.
///
/// A learnable temperature's gradient dL/dtheta = sum_i <Z_a[i], dL/dZ_a[i]> as in NTXentLoss.
public final class SupConLoss {
    /// tau; settable between calls (a scheduled or learned temperature).
    public var temperature: Float {
        didSet { precondition(temperature > 0, "SupCon temperature must be positive, got \(temperature)") }
    }
    public let logitChunk: Int
    private let logits = ScratchBuffer()
    private let rowMaximum = ScratchBuffer()
    private let rowSum = ScratchBuffer()
    private let rowPositiveSum = ScratchBuffer()
    private let rowPositiveCount = ScratchBuffer()
    private let rowPositiveMaximum = ScratchBuffer()

    /// - Parameters:
    ///   - temperature: tau, the softmax temperature.
    ///   - logitChunk: candidate columns per chunk for the streaming path (0: the whole A x N matrix).
    public init(temperature: Float, logitChunk: Int = 0) {
        precondition(temperature > 0, "SupCon temperature must be positive, got \(temperature)")
        precondition(logitChunk >= 0, "SupCon logit chunk must be >= 0, got \(logitChunk)")
        self.temperature = temperature
        self.logitChunk = logitChunk
    }

    public struct Result: Sendable {
        /// This rank's share of the loss: sum over its anchors / normalization.
        public var loss: Double
        /// Anchors whose most similar candidate (self excluded) is one of their positives P(i);
        /// a tie with the maximum counts as correct. Unlabeled, this is NTXentLoss's count.
        public var positiveTop1: Int
        /// dL/dtheta of this rank's anchors for a learnable temperature, theta = log(1/tau).
        public var logitScaleGradient: Double
    }

    /// Whether candidate j is in P(i) for an anchor with self `me`, other view `positive`, label `label`.
    @inline(__always)
    private static func isPositive(_ j: Int, me: Int, positive: Int, label: Int32, candidateLabels: UnsafePointer<Int32>) -> Bool {
        j == positive || (label >= 0 && j != me && candidateLabels[j] == label)
    }

    /// Computes the loss of `anchorCount` anchors against `candidateCount` candidates and
    /// *writes* dL/d(anchors) (A x D) and dL/d(candidates) (N x D).
    /// - Parameters:
    ///   - selfIndex, positiveIndex: candidate rows of anchor i itself and of its other view (A each);
    ///     `selfIndex[i] < 0` means anchor i is not among the candidates and nothing is excluded.
    ///   - anchorLabels: class of each anchor (A), -1 = unlabeled.
    ///   - candidateLabels: class of each candidate (N), gathered like the candidates, -1 = unlabeled.
    ///   - normalization: M, the number of anchors in the global batch.
    public func forwardBackward(
        anchors: UnsafePointer<Float>, anchorCount: Int,
        candidates: UnsafePointer<Float>, candidateCount: Int, dimension: Int,
        selfIndex: UnsafePointer<Int32>, positiveIndex: UnsafePointer<Int32>,
        anchorLabels: UnsafePointer<Int32>, candidateLabels: UnsafePointer<Int32>, normalization: Int,
        anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>
    ) -> Result {
        precondition(normalization > 0, "SupCon normalization must be positive, got \(normalization)")
        if logitChunk > 0 && logitChunk < candidateCount {
            return chunkedForwardBackward(anchors: anchors, anchorCount: anchorCount, candidates: candidates,
                                          candidateCount: candidateCount, dimension: dimension, selfIndex: selfIndex,
                                          positiveIndex: positiveIndex, anchorLabels: anchorLabels,
                                          candidateLabels: candidateLabels, normalization: normalization,
                                          anchorGradient: anchorGradient, candidateGradient: candidateGradient)
        }
        let a = anchorCount, n = candidateCount, d = dimension
        let inverseTemperature = 1 / temperature
        let s = logits.pointer(count: a * n)
        gemm(transposeA: false, transposeB: true, m: a, n: n, k: d, alpha: inverseTemperature,
             a: anchors, lda: d, b: candidates, ldb: d, c: s, ldc: n)

        var loss = 0.0
        var correct = 0
        let scale = 1 / Float(normalization)
        for i in 0..<a {
            let row = s + i * n
            let me = Int(selfIndex[i]), positive = Int(positiveIndex[i]), label = anchorLabels[i]
            if me >= 0 { row[me] = -.infinity }
            var positiveSum: Float = 0, positiveCount = 0, positiveMaximum = -Float.infinity
            for j in 0..<n where Self.isPositive(j, me: me, positive: positive, label: label, candidateLabels: candidateLabels) {
                positiveSum += row[j]; positiveCount += 1; positiveMaximum = max(positiveMaximum, row[j])
            }
            let maximum = Kernels.maximum(row, count: n)
            if positiveMaximum >= maximum { correct += 1 }
            // Row becomes softmax probabilities, then dS = (p - q) / M in place.
            let sum = Kernels.expSum(row, input: row, count: n, shift: maximum)
            loss += Double(maximum + log(sum) - positiveSum / Float(positiveCount))
            Kernels.scale(row, by: scale / sum, count: n)
            let target = scale / Float(positiveCount)
            for j in 0..<n where Self.isPositive(j, me: me, positive: positive, label: label, candidateLabels: candidateLabels) {
                row[j] -= target
            }
        }
        // dZ_a = dS Z / tau;  dZ = dS^T Z_a / tau
        gemm(transposeA: false, transposeB: false, m: a, n: d, k: n, alpha: inverseTemperature,
             a: s, lda: n, b: candidates, ldb: d, c: anchorGradient, ldc: d)
        gemm(transposeA: true, transposeB: false, m: n, n: d, k: a, alpha: inverseTemperature,
             a: s, lda: n, b: anchors, ldb: d, c: candidateGradient, ldc: d)
        return Result(loss: loss / Double(normalization), positiveTop1: correct,
                      logitScaleGradient: NTXentLoss.logitScaleGradient(anchors: anchors, anchorGradient: anchorGradient, count: a * d))
    }

    /// `forwardBackward` over candidate chunks of `logitChunk` columns (see the type's comment).
    func chunkedForwardBackward(
        anchors: UnsafePointer<Float>, anchorCount a: Int,
        candidates: UnsafePointer<Float>, candidateCount n: Int, dimension d: Int,
        selfIndex: UnsafePointer<Int32>, positiveIndex: UnsafePointer<Int32>,
        anchorLabels: UnsafePointer<Int32>, candidateLabels: UnsafePointer<Int32>, normalization: Int,
        anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>
    ) -> Result {
        let chunks = ChunkedLogits(anchors: anchors, anchorCount: a, candidates: candidates, candidateCount: n, dimension: d,
                                   chunk: logitChunk, inverseTemperature: 1 / temperature, selfIndex: selfIndex,
                                   s: logits.pointer(count: a * logitChunk))
        let maximum = rowMaximum.pointer(count: a), sum = rowSum.pointer(count: a)
        let positiveSum = rowPositiveSum.pointer(count: a), positiveCount = rowPositiveCount.pointer(count: a)
        let positiveMaximum = rowPositiveMaximum.pointer(count: a)
        positiveMaximum.update(repeating: -.infinity, count: a)
        positiveSum.update(repeating: 0, count: a)
        positiveCount.update(repeating: 0, count: a)
        // Pass 1: online log-sum-exp; positive sums, counts and maxima.
        chunks.logSumExp(maximum: maximum, sum: sum) { i, row, start, width in
            let me = Int(selfIndex[i]), positive = Int(positiveIndex[i]), label = anchorLabels[i]
            for j in start..<(start + width)
            where Self.isPositive(j, me: me, positive: positive, label: label, candidateLabels: candidateLabels) {
                let logit = row[j - start]
                positiveSum[i] += logit; positiveCount[i] += 1; positiveMaximum[i] = max(positiveMaximum[i], logit)
            }
        }
        var loss = 0.0
        var correct = 0
        for i in 0..<a {
            if positiveMaximum[i] >= maximum[i] { correct += 1 }
            let lse = maximum[i] + log(sum[i])
            loss += Double(lse - positiveSum[i] / positiveCount[i])
            maximum[i] = lse    // reused below as each row's log-sum-exp
        }
        // Pass 2: dS per chunk, then its share of both gradients.
        let scale = 1 / Float(normalization)
        chunks.gradients(logSumExp: maximum, scale: scale, anchorGradient: anchorGradient, candidateGradient: candidateGradient) { i, row, start, width in
            let me = Int(selfIndex[i]), positive = Int(positiveIndex[i]), label = anchorLabels[i]
            let target = scale / positiveCount[i]
            for j in start..<(start + width)
            where Self.isPositive(j, me: me, positive: positive, label: label, candidateLabels: candidateLabels) {
                row[j - start] -= target
            }
        }
        return Result(loss: loss / Double(normalization), positiveTop1: correct,
                      logitScaleGradient: NTXentLoss.logitScaleGradient(anchors: anchors, anchorGradient: anchorGradient, count: a * d))
    }

    /// Plain Double-precision reference of the loss alone (for tests), P(i) built from the
    /// definition; selfIndex < 0 excludes nothing.
    public static func lossReference(anchors: [Float], candidates: [Float], dimension d: Int,
                                     selfIndex: [Int], positiveIndex: [Int], anchorLabels: [Int32], candidateLabels: [Int32],
                                     normalization: Int, temperature: Float) -> Double {
        let a = selfIndex.count, n = candidates.count / d
        var total = 0.0
        for i in 0..<a {
            var logitsRow = [Double](repeating: 0, count: n)
            for j in 0..<n {
                var dot = 0.0
                for k in 0..<d { dot += Double(anchors[i * d + k]) * Double(candidates[j * d + k]) }
                logitsRow[j] = dot / Double(temperature)
            }
            let others = (0..<n).filter { $0 != selfIndex[i] }
            let maximum = others.map { logitsRow[$0] }.max()!
            let lse = maximum + Foundation.log(others.map { Foundation.exp(logitsRow[$0] - maximum) }.reduce(0, +))
            var positives = Set(others.filter { anchorLabels[i] >= 0 && candidateLabels[$0] == anchorLabels[i] })
            positives.insert(positiveIndex[i])
            total += lse - positives.map { logitsRow[$0] }.reduce(0, +) / Double(positives.count)
        }
        return total / Double(normalization)
    }
}
