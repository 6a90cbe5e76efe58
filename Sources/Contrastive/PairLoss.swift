import Foundation
import Tensor

/// Multiple-negatives ranking loss of (anchor, positive) pairs with global negatives, optional
/// hard negatives and duplicate-aware masking: sentence-transformers' MultipleNegativesRankingLoss
/// (one direction) and MultipleNegativesSymmetricRankingLoss, with the candidates of the whole
/// global batch rather than of one device.
///
/// Shapes: A local pairs, N pairs in the global batch, H gathered hard negatives (0, or N: one per
/// pair), C = N + H candidates, D embedding width. Rows are L2-normalised; the gathered rows are
/// rank-major and this rank's pairs are rows o ..< o + A (`offset`). Candidates are [the N
/// positives, the H hard negatives]; anchor i's positive is candidate o + i. Every pair carries a
/// 64-bit id (a hash of the positive's text, or a group id), id_j for candidate j (hard negatives
/// carry their own). With `ids`, a candidate that is not i's positive but has the same id as it is
/// a duplicate of the positive, not a negative, and leaves anchor i's softmax (mask m_ij = 1).
/// With `keys` too (a second 64-bit id per candidate, e.g. the hash of its text when the ids are
/// group ids), a candidate with the same key as i's positive is masked as well:
///
///     S   = a_loc C^T / tau                 (A x C),  S_ij = -inf where m_ij
///     m_ij = [j != o + i  and  (id_j = id_{o+i}  or  key_j = key_{o+i})]
///     forward  = (1 / M) sum_i [ logsumexp_j S_ij - S_{i, o+i} ]
///
/// Symmetric: also each local positive against the N gathered anchors (not the hard negatives),
/// with the same rule over the anchors' pair ids, and the loss is the mean of both directions:
///
///     T   = p_loc A_all^T / tau             (A x N),  T_ij = -inf where m'_ij = [j != o + i and (id_j = id_{o+i} or key_j = key_{o+i})]
///     loss = (forward + backward) / 2,   backward = (1 / M) sum_i [ logsumexp_j T_ij - T_{i, o+i} ]
///
/// M is N, the global pairs; each direction's dS = (softmax - onehot) / M (halved when symmetric)
/// gives dL/da_loc = dS C / tau and dL/dC = dS^T a_loc / tau, and likewise for T. The loss knows
/// nothing of ranks: the caller all-gathers the embeddings and ids and reduce-scatters dL/dC
/// (and dL/dA_all) back onto their owners, as for NT-Xent (DESIGN.md decision 3). A learnable
/// temperature theta = log(1/tau) gets sum_i <a_i, dL/da_i> + sum_i <p_i, dL/dp_i> (NTXentLoss).
public final class PairLoss {
    /// tau; settable between calls (a scheduled or learned temperature).
    public var temperature: Float {
        didSet { precondition(temperature > 0, "pair loss temperature must be positive, got \(temperature)") }
    }
    /// Both directions (anchor -> candidates and positive -> anchors), or the first alone.
    public let symmetric: Bool
    private let logits = ScratchBuffer()

    public init(temperature: Float, symmetric: Bool) {
        precondition(temperature > 0, "pair loss temperature must be positive, got \(temperature)")
        self.temperature = temperature
        self.symmetric = symmetric
    }

    /// Bytes of the logits as they stand (A x C).
    public var workspaceBytes: Int { logits.tensor.count * MemoryLayout<Float>.stride }

    public struct Result: Sendable {
        /// This rank's share of the loss.
        public var loss: Double
        /// Local anchors whose positive has the largest logit among their unmasked candidates (plus,
        /// symmetric, local positives whose anchor does among the anchors).
        public var positiveTop1: Int
        /// This rank's dL/dtheta, theta = log(1/tau).
        public var logitScaleGradient: Double
        /// Candidates masked as duplicates over this rank's rows (both directions).
        public var masked: Int
    }

    /// Computes this rank's share and *writes* the gradients; the gradient buffers must not alias
    /// the inputs or each other.
    /// - Parameters:
    ///   - anchors, positives: this rank's pairs, A x D each.
    ///   - candidates: the gathered positives then the gathered hard negatives, C x D.
    ///   - allAnchors: the gathered anchors, N x D (read only when symmetric).
    ///   - ids: the C candidates' ids (the pairs' ids, then the hard negatives'); nil masks nothing.
    ///   - keys: the C candidates' second ids (read only with `ids`); nil: the ids alone.
    ///   - anchorGradient, positiveGradient: dL/d(anchors), dL/d(positives) through the local rows,
    ///     A x D (the second is written only when symmetric).
    ///   - candidateGradient: dL/d(candidates), C x D; allAnchorGradient: dL/d(allAnchors), N x D (symmetric).
    public func forwardBackward(
        anchors: UnsafePointer<Float>, positives: UnsafePointer<Float>, count a: Int,
        candidates: UnsafePointer<Float>, candidateCount c: Int, allAnchors: UnsafePointer<Float>?, pairs n: Int,
        dimension d: Int, offset o: Int, ids: UnsafePointer<UInt64>?, keys: UnsafePointer<UInt64>? = nil,
        anchorGradient: UnsafeMutablePointer<Float>, positiveGradient: UnsafeMutablePointer<Float>?,
        candidateGradient: UnsafeMutablePointer<Float>, allAnchorGradient: UnsafeMutablePointer<Float>?
    ) -> Result {
        precondition(a > 0 && o >= 0 && o + a <= n && n <= c, "pair loss: local pairs \(o)..<\(o + a) of \(n), \(c) candidates")
        precondition(!symmetric || (allAnchors != nil && positiveGradient != nil && allAnchorGradient != nil),
                     "pair loss: the symmetric form needs the gathered anchors and their gradient buffers")
        let normalization = symmetric ? 2 * n : n
        let forward = direction(anchors: anchors, count: a, candidates: candidates, candidateCount: c, dimension: d, offset: o,
                                ids: ids, keys: keys, normalization: normalization, anchorGradient: anchorGradient,
                                candidateGradient: candidateGradient)
        var result = Result(loss: forward.loss, positiveTop1: forward.top1,
                            logitScaleGradient: NTXentLoss.logitScaleGradient(anchors: anchors, anchorGradient: anchorGradient, count: a * d),
                            masked: forward.masked)
        if symmetric, let allAnchors, let positiveGradient, let allAnchorGradient {
            let backward = direction(anchors: positives, count: a, candidates: allAnchors, candidateCount: n, dimension: d, offset: o,
                                     ids: ids, keys: keys, normalization: normalization, anchorGradient: positiveGradient,
                                     candidateGradient: allAnchorGradient)
            result.loss += backward.loss
            result.positiveTop1 += backward.top1
            result.masked += backward.masked
            result.logitScaleGradient += NTXentLoss.logitScaleGradient(anchors: positives, anchorGradient: positiveGradient, count: a * d)
        }
        return result
    }

    /// One direction: rows q (A x D) against `candidates` (K x D), row i's target candidate o + i,
    /// duplicates of the target (by `ids`, or `keys`) masked; the loss / `normalization` and both gradients written.
    private func direction(anchors q: UnsafePointer<Float>, count a: Int, candidates: UnsafePointer<Float>, candidateCount k: Int,
                           dimension d: Int, offset o: Int, ids: UnsafePointer<UInt64>?, keys: UnsafePointer<UInt64>?, normalization: Int,
                           anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>)
        -> (loss: Double, top1: Int, masked: Int) {
        let inverseTemperature = 1 / temperature
        let s = logits.pointer(count: a * k)
        gemm(transposeA: false, transposeB: true, m: a, n: k, k: d, alpha: inverseTemperature,
             a: q, lda: d, b: candidates, ldb: d, c: s, ldc: k)
        var loss = 0.0, correct = 0, masked = 0
        let scale = 1 / Float(normalization)
        for i in 0..<a {
            let row = s + i * k, target = o + i
            if let ids, let keys {
                let id = ids[target], key = keys[target]
                for j in 0..<k where j != target && (ids[j] == id || keys[j] == key) {
                    row[j] = -.infinity
                    masked += 1
                }
            } else if let ids {
                let id = ids[target]
                for j in 0..<k where j != target && ids[j] == id {
                    row[j] = -.infinity
                    masked += 1
                }
            }
            let targetLogit = row[target]
            let maximum = Kernels.maximum(row, count: k)
            if targetLogit >= maximum { correct += 1 }
            let sum = Kernels.expSum(row, input: row, count: k, shift: maximum)
            loss += Double(maximum + log(sum) - targetLogit)
            Kernels.scale(row, by: scale / sum, count: k)
            row[target] -= scale
        }
        gemm(transposeA: false, transposeB: false, m: a, n: d, k: k, alpha: inverseTemperature,
             a: s, lda: k, b: candidates, ldb: d, c: anchorGradient, ldc: d)
        gemm(transposeA: true, transposeB: false, m: k, n: d, k: a, alpha: inverseTemperature,
             a: s, lda: k, b: q, ldb: d, c: candidateGradient, ldc: d)
        return (loss / Double(normalization), correct, masked)
    }

    /// Plain Double-precision reference of the whole loss in one process (o = 0, A = N, for tests):
    /// the formula term by term, masks as the type's comment defines them.
    public static func lossReference(anchors: [Float], positives: [Float], hardNegatives: [Float], dimension d: Int,
                                     ids: [UInt64]?, keys: [UInt64]? = nil, temperature: Double, symmetric: Bool) -> Double {
        let n = anchors.count / d
        let candidates = positives + hardNegatives, c = candidates.count / d
        func dot(_ u: [Float], _ i: Int, _ v: [Float], _ j: Int) -> Double {
            (0..<d).reduce(0.0) { $0 + Double(u[i * d + $1]) * Double(v[j * d + $1]) }
        }
        let textKeys = keys
        func duplicate(_ j: Int, of i: Int) -> Bool {
            guard j != i, let ids else { return false }
            return ids[j] == ids[i] || textKeys.map { $0[j] == $0[i] } == true
        }
        func crossEntropy(_ q: [Float], _ rows: [Float], count: Int, _ i: Int) -> Double {
            let kept = (0..<count).filter { !duplicate($0, of: i) }
            let logits = kept.map { dot(q, i, rows, $0) / temperature }
            let maximum = logits.max()!
            return maximum + Foundation.log(logits.map { Foundation.exp($0 - maximum) }.reduce(0, +)) - dot(q, i, rows, i) / temperature
        }
        let forward = (0..<n).reduce(0.0) { $0 + crossEntropy(anchors, candidates, count: c, $1) } / Double(n)
        guard symmetric else { return forward }
        let backward = (0..<n).reduce(0.0) { $0 + crossEntropy(positives, anchors, count: n, $1) } / Double(n)
        return (forward + backward) / 2
    }
}
