import Foundation
import Tensor

/// NT-Xent / InfoNCE over a candidate set (Chen et al. 2020, SimCLR; Oord et al. 2018).
///
/// Shapes: A local anchors, N candidates (the global batch of views), D embedding width.
/// Anchors Z_a (A x D) and candidates Z (N x D) are L2-normalised rows. For anchor i with
/// candidate index self(i) and positive pos(i):
///
///     S = Z_a Z^T / tau                        (A x N), S[i, self(i)] = -inf
///     loss = (1 / M) sum_i [ logsumexp_j S[i, j] - S[i, pos(i)] ]
///     dS[i, j] = (softmax(S[i])_j - [j = pos(i)]) / M
///     dL/dZ_a = dS Z / tau,   dL/dZ = dS^T Z_a / tau
///
/// M (`normalization`) is the number of anchors in the *global* batch, so that summing the
/// gradients of all ranks gives exactly the single-process gradient (DESIGN.md decision 3).
/// The loss knows nothing of ranks: in one process anchors and candidates are the same rows
/// and the caller adds both gradients; across ranks the candidate gradient is reduce-scattered.
public final class NTXentLoss {
    public let temperature: Float
    private let logits = ScratchBuffer()

    public init(temperature: Float) {
        precondition(temperature > 0, "NT-Xent temperature must be positive, got \(temperature)")
        self.temperature = temperature
    }

    public struct Result: Sendable {
        /// This rank's share of the loss: sum over its anchors / normalization.
        public var loss: Double
        /// Anchors whose positive has the highest similarity among all candidates but self.
        public var positiveTop1: Int
    }

    /// Computes the loss of `anchorCount` anchors against `candidateCount` candidates and
    /// *writes* dL/d(anchors) (A x D) and dL/d(candidates) (N x D).
    /// `selfIndex[i]` / `positiveIndex[i]` are candidate rows of anchor i itself and of its positive.
    public func forwardBackward(
        anchors: UnsafePointer<Float>, anchorCount: Int,
        candidates: UnsafePointer<Float>, candidateCount: Int, dimension: Int,
        selfIndex: UnsafePointer<Int32>, positiveIndex: UnsafePointer<Int32>, normalization: Int,
        anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>
    ) -> Result {
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
            row[me] = -.infinity
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
        gemm(transposeA: true, transposeB: false, m: n, n: d, k: a, alpha: inverseTemperature,
             a: s, lda: n, b: anchors, ldb: d, c: candidateGradient, ldc: d)
        return Result(loss: loss / Double(normalization), positiveTop1: correct)
    }

    /// Plain Double-precision reference of the loss alone (for tests).
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
}
