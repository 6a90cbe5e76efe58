import Foundation
import Tensor

/// SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image
/// Pre-Training"), computed in a ring of ranks as the paper's chunked implementation does
/// (big_vision `losses.siglip`): no rank ever holds more than a local x local block of logits.
///
/// Shapes: B pairs per rank, P ranks, N = P B pairs in the global batch, D embedding width.
/// x_i and y_j are L2-normalised rows of the two sides (image and text, or two views); t = e^theta
/// a learnable scale and b a learnable bias (the paper initialises theta = log 10, b = -10):
///
///     L_ij  = t x_i . y_j + b                       z_ij = +1 if j is i's pair, else -1
///     loss  = -(1 / N) sum_i sum_j log sigmoid(z_ij L_ij)          (all N^2 pairs, over the ranks)
///     G_ij  = dloss/dL_ij = -z_ij sigmoid(-z_ij L_ij) / N
///     dL/dx_i = t sum_j G_ij y_j,   dL/dy_j = t sum_i G_ij x_i
///     dL/dtheta = sum_ij G_ij (L_ij - b),   dL/db = sum_ij G_ij
///
/// The ring (`forwardBackward`): rank r holds x_r and y_r (B x D). At turn k = 0 ..< P it holds the
/// block y of rank r - k together with that block's gradient accumulated by the ranks it visited,
/// adds its local x_r x block terms (logits B x B; the pairs, the diagonal, only at k = 0), and passes
/// [y, dL/dy] to rank r + 1 while receiving the next from rank r - 1. After P turns every block has
/// visited every rank and its complete gradient is back on its owner (the last turn sends only the
/// gradient). Each rank's x gradient is complete locally; every term of the global sum is computed
/// exactly once, so P ranks give the single-process gradient up to summation order.
///
/// Memory: the logits (B x B), two ring buffers of [y, dy] (2 B D each) and two rows of B: the same
/// at any P for a fixed local batch (`workspaceBytes`), where an all-gather would hold N x D and
/// a softmax loss B x N logits.
///
/// The loss knows nothing of MPI: the caller hands it the ring turn (`Communicator.ringShift`).
public final class SigLIPLoss {
    private let logits = ScratchBuffer()
    private let current = ScratchBuffer()
    private let incoming = ScratchBuffer()
    /// Per local row: the largest logit of a non-pair and the pair's logit (top-1 accuracy).
    private let rowMaximum = ScratchBuffer()
    private let rowPositive = ScratchBuffer()

    public init() {}

    /// Bytes of the loss's own buffers as they stand; they grow on first use and are then reused.
    public var workspaceBytes: Int {
        [logits, current, incoming, rowMaximum, rowPositive].reduce(0) { $0 + $1.tensor.count * MemoryLayout<Float>.stride }
    }

    public struct Result: Sendable {
        /// This rank's share of the loss: the terms of its x rows against all N y rows, / N.
        public var loss: Double
        /// Local x rows whose pair has the largest logit among all N candidates (ties count as correct).
        public var positiveTop1: Int
        /// This rank's dL/dtheta, t = e^theta.
        public var logitScaleGradient: Double
        /// This rank's dL/db.
        public var biasGradient: Double
    }

    /// One turn of the ring: `count` floats from `send` to the next rank, the previous rank's into
    /// `receive` (the buffers never overlap).
    public typealias RingShift = (_ send: UnsafePointer<Float>, _ receive: UnsafeMutablePointer<Float>, _ count: Int) throws -> Void

    /// Runs the ring of `ranks` turns and *writes* dL/dx and dL/dy of this rank's rows (B x D each).
    /// Every rank must call it with the same `count`, `ranks`, `normalization`, `scale` and `bias`.
    /// - Parameters:
    ///   - x, y: this rank's rows of the two sides, B x D; row i of x and row i of y are a pair.
    ///   - normalization: N, the pairs of the global batch.
    ///   - scale: t = e^theta; bias: b.
    ///   - shift: the ring turn; in one process (ranks 1) it is never called.
    public func forwardBackward(
        x: UnsafePointer<Float>, y: UnsafePointer<Float>, count b: Int, dimension d: Int, ranks: Int,
        normalization: Int, scale: Float, bias: Float,
        xGradient: UnsafeMutablePointer<Float>, yGradient: UnsafeMutablePointer<Float>, shift: RingShift
    ) rethrows -> Result {
        precondition(b > 0 && d > 0 && ranks > 0, "SigLIP needs rows, a width and ranks, got B \(b), D \(d), P \(ranks)")
        precondition(normalization > 0, "SigLIP normalization must be positive, got \(normalization)")
        let block = b * d
        var visiting = current.pointer(count: 2 * block), next = incoming.pointer(count: 2 * block)
        visiting.update(from: y, count: block)
        (visiting + block).update(repeating: 0, count: block)
        xGradient.update(repeating: 0, count: block)
        let maximum = rowMaximum.pointer(count: b), positive = rowPositive.pointer(count: b)
        maximum.update(repeating: -.infinity, count: b)
        var total = Result(loss: 0, positiveTop1: 0, logitScaleGradient: 0, biasGradient: 0)
        for turn in 0..<ranks {
            let terms = addBlock(x: x, y: visiting, count: b, dimension: d, pairs: turn == 0, normalization: normalization,
                                 scale: scale, bias: bias, xGradient: xGradient, yGradient: visiting + block,
                                 rowMaximum: maximum, rowPositive: positive)
            total.loss += terms.loss
            total.logitScaleGradient += terms.logitScaleGradient
            total.biasGradient += terms.biasGradient
            if ranks > 1 {
                // The last turn only returns the block's gradient to its owner: the y rows are its own.
                if turn < ranks - 1 {
                    try shift(visiting, next, 2 * block)
                } else {
                    try shift(visiting + block, next + block, block)
                }
                swap(&visiting, &next)
            }
        }
        yGradient.update(from: visiting + block, count: block)
        for i in 0..<b where positive[i] >= maximum[i] { total.positiveTop1 += 1 }
        return total
    }

    /// The terms of x (B x D) against one block y (C x D): adds the loss's share and *adds* into
    /// `xGradient` (B x D) and `yGradient` (C x D). `pairs`: row i of y is x_i's pair (the diagonal).
    /// `rowMaximum` / `rowPositive` keep each x row's largest non-pair logit and its pair's logit.
    func addBlock(x: UnsafePointer<Float>, y: UnsafePointer<Float>, count b: Int, dimension d: Int, pairs: Bool,
                  normalization: Int, scale: Float, bias: Float,
                  xGradient: UnsafeMutablePointer<Float>, yGradient: UnsafeMutablePointer<Float>,
                  rowMaximum: UnsafeMutablePointer<Float>, rowPositive: UnsafeMutablePointer<Float>)
        -> (loss: Double, logitScaleGradient: Double, biasGradient: Double) {
        let c = b
        let s = logits.pointer(count: b * c)
        // L = t x y^T + b
        gemm(transposeA: false, transposeB: true, m: b, n: c, k: d, alpha: scale, a: x, lda: d, b: y, ldb: d, c: s, ldc: c)
        let inverseN = 1 / Double(normalization)
        var loss = 0.0, theta = 0.0, biasSum = 0.0
        for i in 0..<b {
            let row = s + i * c
            var rowLoss = 0.0, rowTheta = 0.0, rowBias = 0.0
            for j in 0..<c {
                let logit = row[j] + bias
                let label: Float = pairs && i == j ? 1 : -1
                if pairs && i == j { rowPositive[i] = logit } else { rowMaximum[i] = max(rowMaximum[i], logit) }
                // -log sigmoid(u) = softplus(-u) = max(-u, 0) + log(1 + e^-|u|), u = z L
                let u = Double(label * logit)
                rowLoss += max(-u, 0) + Foundation.log1p(Foundation.exp(-abs(u)))
                // sigmoid(-u), stable on both sides
                let sigmoidMinus = u >= 0 ? Foundation.exp(-u) / (1 + Foundation.exp(-u)) : 1 / (1 + Foundation.exp(u))
                let g = -Double(label) * sigmoidMinus * inverseN
                rowTheta += g * Double(row[j])
                rowBias += g
                row[j] = Float(g)
            }
            loss += rowLoss
            theta += rowTheta
            biasSum += rowBias
        }
        // dx += t G y;  dy += t G^T x
        gemm(transposeA: false, transposeB: false, m: b, n: d, k: c, alpha: scale, a: s, lda: c, b: y, ldb: d,
             beta: 1, c: xGradient, ldc: d)
        gemm(transposeA: true, transposeB: false, m: c, n: d, k: b, alpha: scale, a: s, lda: c, b: x, ldb: d,
             beta: 1, c: yGradient, ldc: d)
        return (loss * inverseN, theta, biasSum)
    }

    /// Plain Double-precision reference of the whole loss (for tests): all N x N terms of the formula.
    public static func lossReference(x: [Float], y: [Float], dimension d: Int, scale: Double, bias: Double) -> Double {
        let n = x.count / d
        var total = 0.0
        for i in 0..<n {
            for j in 0..<n {
                var dot = 0.0
                for k in 0..<d { dot += Double(x[i * d + k]) * Double(y[j * d + k]) }
                let label = i == j ? 1.0 : -1.0
                total += -Foundation.log(1 / (1 + Foundation.exp(-label * (scale * dot + bias))))
            }
        }
        return total / Double(n)
    }
}
