import Foundation
import Tensor

/// How the embeddings of a batch sit on the unit sphere: the health signals of contrastive
/// training (is it learning, is it collapsing).
///
/// Shapes: N rows z_i (L2-normalised, width E), M positive pairs (i, p(i)).
///
///     alignment   = (1/M) sum_i |z_i - z_p(i)|^2                       (Wang & Isola 2020; lower is better, 0..4)
///     uniformity  = log (1/(N(N-1))) sum_{i != j} exp(-2 |z_i - z_j|^2)  (lower is better, -4..0)
///     std         = (1/E) sum_d std_i(z_id)                           (collapse: -> 0; ~1/sqrt(E) when spread)
///     effective rank = exp(H(lambda / sum lambda))                     (Roy & Vetterli 2007; lambda: eigenvalues of the covariance)
///     positive cosine = (1/M) sum_i z_i . z_p(i);  negative cosine = mean over i != j, j != p(i) of z_i . z_j
///
/// With N larger than `maxRows` the first `maxRows` rows are used (the pair statistics are
/// averages, a subset estimates them; the global batch is in random order).
public enum EmbeddingGeometry {
    public struct Measures: Sendable, Equatable {
        public var alignment: Double
        public var uniformity: Double
        public var std: Double
        public var effectiveRank: Double
        public var positiveCosine: Double
        public var negativeCosine: Double
    }

    /// Measures `count` rows of `z` (count x width, rows unit-norm); `positive(i)` is row i's
    /// positive (any row index, or -1 for none).
    public static func measure(_ z: UnsafePointer<Float>, count: Int, width: Int, maxRows: Int = 1024,
                               positive: (Int) -> Int) -> Measures {
        precondition(count >= 2 && width >= 1, "EmbeddingGeometry: needs at least two rows")
        let n = min(count, maxRows), e = width
        // Gram matrix of the rows used: cosines, since rows are unit-norm.
        var gram = [Float](repeating: 0, count: n * n)
        gram.withUnsafeMutableBufferPointer {
            gemm(transposeA: false, transposeB: true, m: n, n: n, k: e, a: z, lda: e, b: z, ldb: e, c: $0.baseAddress!, ldc: n)
        }
        var alignment = 0.0, positiveCosine = 0.0, pairs = 0
        var uniformitySum = 0.0, negativeSum = 0.0, negatives = 0
        for i in 0..<n {
            let p = positive(i)
            if p >= 0 {
                // |a - b|^2 = 2 - 2 a.b for unit vectors; the positive may lie beyond the rows used.
                var dot = 0.0
                for d in 0..<e { dot += Double(z[i * e + d]) * Double(z[p * e + d]) }
                alignment += max(0, 2 - 2 * dot)
                positiveCosine += dot
                pairs += 1
            }
            for j in 0..<n where j != i {
                let cosine = Double(gram[i * n + j])
                uniformitySum += Foundation.exp(-2 * max(0, 2 - 2 * cosine))
                if j != p { negativeSum += cosine; negatives += 1 }
            }
        }
        // Per-dimension mean and covariance of the rows used, in Double.
        var mean = [Double](repeating: 0, count: e)
        for i in 0..<n { for d in 0..<e { mean[d] += Double(z[i * e + d]) } }
        for d in 0..<e { mean[d] /= Double(n) }
        var covariance = [Double](repeating: 0, count: e * e)
        for i in 0..<n {
            for a in 0..<e {
                let x = Double(z[i * e + a]) - mean[a]
                if x == 0 { continue }
                for b in a..<e { covariance[a * e + b] += x * (Double(z[i * e + b]) - mean[b]) }
            }
        }
        for a in 0..<e { for b in a..<e { covariance[a * e + b] /= Double(n); covariance[b * e + a] = covariance[a * e + b] } }
        let std = (0..<e).map { covariance[$0 * e + $0].squareRoot() }.reduce(0, +) / Double(e)
        let eigenvalues = symmetricEigenvalues(covariance, size: e).map { max(0, $0) }
        let total = eigenvalues.reduce(0, +)
        var entropy = 0.0
        if total > 0 {
            for value in eigenvalues where value > 0 {
                let p = value / total
                entropy -= p * Foundation.log(p)
            }
        }
        return Measures(alignment: pairs > 0 ? alignment / Double(pairs) : .nan,
                        uniformity: Foundation.log(uniformitySum / Double(n * (n - 1))),
                        std: std,
                        effectiveRank: total > 0 ? Foundation.exp(entropy) : 0,
                        positiveCosine: pairs > 0 ? positiveCosine / Double(pairs) : .nan,
                        negativeCosine: negatives > 0 ? negativeSum / Double(negatives) : .nan)
    }

    /// Eigenvalues of a symmetric `size` x `size` matrix (row-major) by cyclic Jacobi rotations,
    /// to ~1e-12 relative off-diagonal mass; unordered.
    static func symmetricEigenvalues(_ matrix: [Double], size n: Int) -> [Double] {
        var a = matrix
        let scale = max(1e-300, a.reduce(0) { $0 + $1 * $1 })
        for _ in 0..<60 {
            var off = 0.0
            for p in 0..<n { for q in (p + 1)..<max(p + 1, n) { off += a[p * n + q] * a[p * n + q] } }
            if off <= 1e-24 * scale { break }
            for p in 0..<n {
                for q in (p + 1)..<max(p + 1, n) where a[p * n + q] != 0 {
                    let apq = a[p * n + q], app = a[p * n + p], aqq = a[q * n + q]
                    let theta = (aqq - app) / (2 * apq)
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot(), s = t * c
                    for k in 0..<n {
                        let akp = a[k * n + p], akq = a[k * n + q]
                        a[k * n + p] = c * akp - s * akq
                        a[k * n + q] = s * akp + c * akq
                    }
                    for k in 0..<n {
                        let apk = a[p * n + k], aqk = a[q * n + k]
                        a[p * n + k] = c * apk - s * aqk
                        a[q * n + k] = s * apk + c * aqk
                    }
                }
            }
        }
        return (0..<n).map { a[$0 * n + $0] }
    }
}
