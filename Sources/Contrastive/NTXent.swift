import Foundation
import Tensor

/// NT-Xent / InfoNCE over a candidate set (Chen et al. 2020, SimCLR; Oord et al. 2018).
///
/// Shapes: A local anchors, N candidates (the global batch of views), D embedding width.
/// Anchors Z_a (A x D) and candidates Z (N x D) are L2-normalised rows. For anchor i with
/// candidate index self(i) and positive pos(i):
///
///     S = Z_a Z^T / tau                        (A x N), S[i, self(i)] = -inf if self(i) >= 0
///     loss = (1 / M) sum_i [ logsumexp_j S[i, j] - S[i, pos(i)] ]
///     dS[i, j] = (softmax(S[i])_j - [j = pos(i)]) / M
///     dL/dZ_a = dS Z / tau,   dL/dZ = dS^T Z_a / tau
///
/// M (`normalization`) is the number of anchors in the *global* batch, so that summing the
/// gradients of all ranks gives exactly the single-process gradient (DESIGN.md decision 3).
/// The loss knows nothing of ranks: in one process anchors and candidates are the same rows
/// and the caller adds both gradients; across ranks the candidate gradient is reduce-scattered.
///
/// self(i) < 0 excludes nothing: every candidate, the positive included, is in anchor i's softmax.
/// That is the two-tower case (CLIPLoss), where anchors and candidates come from different
/// modalities and no candidate is the anchor itself.
///
/// With `logitChunk` = C > 0 the candidates are processed C columns at a time, so the logit
/// memory is A x C instead of A x N: a first pass accumulates each row's log-sum-exp online
/// (running maximum m and sum s, s <- s exp(m - m') + sum_j exp(S_ij - m')), a second pass
/// recomputes each chunk's logits and turns them into dS. Twice the logit GEMM, same result.
///
/// A learnable temperature (CLIP) writes the logits as S = e^theta Z_a Z^T, theta = log(1/tau), so
///
///     dL/dtheta = sum_ij dS[i, j] S[i, j] = sum_i <Z_a[i], dL/dZ_a[i]>
///
/// (dL/dZ_a = dS Z / tau and S = Z_a Z^T / tau): one dot product of the anchors with their own
/// gradient, the same in the plain and the chunked path. It is this rank's share; summed over
/// ranks it is the whole batch's, as every logit row belongs to one anchor.
public final class NTXentLoss {
    /// tau; settable between calls (a scheduled or learned temperature).
    public var temperature: Float {
        didSet { precondition(temperature > 0, "NT-Xent temperature must be positive, got \(temperature)") }
    }
    public let logitChunk: Int
    private let logits = ScratchBuffer()
    private let rowMaximum = ScratchBuffer()
    private let rowSum = ScratchBuffer()
    private let rowPositive = ScratchBuffer()

    /// Bytes of the loss's own buffers as they stand (the logits, A x N or A x C floats, and
    /// three per-anchor rows when chunked); they grow on first use and are then reused.
    public var workspaceBytes: Int {
        [logits, rowMaximum, rowSum, rowPositive].reduce(0) { $0 + $1.tensor.count * MemoryLayout<Float>.stride }
    }

    public init(temperature: Float, logitChunk: Int = 0) {
        precondition(temperature > 0, "NT-Xent temperature must be positive, got \(temperature)")
        precondition(logitChunk >= 0, "NT-Xent logit chunk must be >= 0, got \(logitChunk)")
        self.temperature = temperature
        self.logitChunk = logitChunk
    }

    public struct Result: Sendable {
        /// This rank's share of the loss: sum over its anchors / normalization.
        public var loss: Double
        /// Anchors whose positive has the highest similarity among all candidates but self
        /// (among all candidates when self < 0); a tie with the maximum counts as correct.
        public var positiveTop1: Int
        /// dL/dtheta of this rank's anchors for a learnable temperature, theta = log(1/tau).
        public var logitScaleGradient: Double
    }

    /// dL/dtheta = sum_i <Z_a[i], dL/dZ_a[i]> of `count` = A x D anchor values and their gradient
    /// through the logits (see the type's comment).
    public static func logitScaleGradient(anchors: UnsafePointer<Float>, anchorGradient: UnsafePointer<Float>, count: Int) -> Double {
        var sum = 0.0
        for k in 0..<count { sum += Double(anchors[k]) * Double(anchorGradient[k]) }
        return sum
    }

    /// Computes the loss of `anchorCount` anchors against `candidateCount` candidates and
    /// *writes* dL/d(anchors) (A x D) and dL/d(candidates) (N x D). A nil `candidateGradient`
    /// skips the latter (a third of the GEMM work, a quarter when chunked): MoCo's keys get no gradient.
    /// `selfIndex[i]` / `positiveIndex[i]` are candidate rows of anchor i itself and of its positive;
    /// `selfIndex[i] < 0` means anchor i is not among the candidates and nothing is excluded.
    public func forwardBackward(
        anchors: UnsafePointer<Float>, anchorCount: Int,
        candidates: UnsafePointer<Float>, candidateCount: Int, dimension: Int,
        selfIndex: UnsafePointer<Int32>, positiveIndex: UnsafePointer<Int32>, normalization: Int,
        anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>?
    ) -> Result {
        if logitChunk > 0 && logitChunk < candidateCount {
            return chunkedForwardBackward(anchors: anchors, anchorCount: anchorCount, candidates: candidates,
                                          candidateCount: candidateCount, dimension: dimension, selfIndex: selfIndex,
                                          positiveIndex: positiveIndex, normalization: normalization,
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
            let me = Int(selfIndex[i]), positive = Int(positiveIndex[i])
            if me >= 0 { row[me] = -.infinity }
            let positiveLogit = row[positive]
            let maximum = Kernels.maximum(row, count: n)
            if positiveLogit >= maximum { correct += 1 }
            // Row becomes softmax probabilities, then dS = (p - onehot(pos)) / M in place.
            let sum = Kernels.expSum(row, input: row, count: n, shift: maximum)
            loss += Double(maximum + log(sum) - positiveLogit)
            Kernels.scale(row, by: scale / sum, count: n)
            row[positive] -= scale
        }
        // dZ_a = dS Z / tau;  dZ = dS^T Z_a / tau
        gemm(transposeA: false, transposeB: false, m: a, n: d, k: n, alpha: inverseTemperature,
             a: s, lda: n, b: candidates, ldb: d, c: anchorGradient, ldc: d)
        if let candidateGradient {
            gemm(transposeA: true, transposeB: false, m: n, n: d, k: a, alpha: inverseTemperature,
                 a: s, lda: n, b: anchors, ldb: d, c: candidateGradient, ldc: d)
        }
        return Result(loss: loss / Double(normalization), positiveTop1: correct,
                      logitScaleGradient: Self.logitScaleGradient(anchors: anchors, anchorGradient: anchorGradient, count: a * d))
    }

    /// `forwardBackward` over candidate chunks of `logitChunk` columns (see the type's comment).
    func chunkedForwardBackward(
        anchors: UnsafePointer<Float>, anchorCount a: Int,
        candidates: UnsafePointer<Float>, candidateCount n: Int, dimension d: Int,
        selfIndex: UnsafePointer<Int32>, positiveIndex: UnsafePointer<Int32>, normalization: Int,
        anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>?
    ) -> Result {
        let chunks = ChunkedLogits(anchors: anchors, anchorCount: a, candidates: candidates, candidateCount: n, dimension: d,
                                   chunk: logitChunk, inverseTemperature: 1 / temperature, selfIndex: selfIndex,
                                   s: logits.pointer(count: a * logitChunk))
        let maximum = rowMaximum.pointer(count: a), sum = rowSum.pointer(count: a), positive = rowPositive.pointer(count: a)
        // Pass 1: online log-sum-exp and the positive logits.
        chunks.logSumExp(maximum: maximum, sum: sum) { i, row, start, width in
            let p = Int(positiveIndex[i]) - start
            if p >= 0 && p < width { positive[i] = row[p] }
        }
        var loss = 0.0
        var correct = 0
        for i in 0..<a {
            if positive[i] >= maximum[i] { correct += 1 }
            let lse = maximum[i] + log(sum[i])
            loss += Double(lse - positive[i])
            maximum[i] = lse    // reused below as each row's log-sum-exp
        }
        // Pass 2: dS per chunk, then its share of both gradients.
        let scale = 1 / Float(normalization)
        chunks.gradients(logSumExp: maximum, scale: scale, anchorGradient: anchorGradient, candidateGradient: candidateGradient) { i, row, start, width in
            let p = Int(positiveIndex[i]) - start
            if p >= 0 && p < width { row[p] -= scale }
        }
        return Result(loss: loss / Double(normalization), positiveTop1: correct,
                      logitScaleGradient: Self.logitScaleGradient(anchors: anchors, anchorGradient: anchorGradient, count: a * d))
    }

    /// Plain Double-precision reference of the loss alone (for tests); selfIndex < 0 excludes nothing.
    public static func lossReference(anchors: [Float], candidates: [Float], dimension d: Int,
                                     selfIndex: [Int], positiveIndex: [Int], normalization: Int, temperature: Float) -> Double {
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
            total += lse - logitsRow[positiveIndex[i]]
        }
        return total / Double(normalization)
    }
}

/// Index tables for the two-view layout used throughout contrast: a block of B samples is
/// laid out as rows [view 0 of samples 0..<B, view 1 of samples 0..<B], so row i's positive
/// is row (i + B) mod 2B, offset by where the block starts among the candidates.
public enum TwoViewPairs {
    /// Fills selfIndex / positiveIndex for 2B anchors whose block starts at candidate row `offset`.
    public static func fill(selfIndex: UnsafeMutablePointer<Int32>, positiveIndex: UnsafeMutablePointer<Int32>,
                            samples b: Int, offset: Int) {
        for i in 0..<(2 * b) {
            selfIndex[i] = Int32(offset + i)
            positiveIndex[i] = Int32(offset + (i + b) % (2 * b))
        }
    }

    /// selfIndex / positiveIndex of `fill`, as new arrays of 2B entries.
    public static func indices(samples b: Int, offset: Int) -> (selfIndex: [Int32], positiveIndex: [Int32]) {
        var selfIndex = [Int32](repeating: 0, count: 2 * b), positiveIndex = selfIndex
        fill(selfIndex: &selfIndex, positiveIndex: &positiveIndex, samples: b, offset: offset)
        return (selfIndex, positiveIndex)
    }
}
