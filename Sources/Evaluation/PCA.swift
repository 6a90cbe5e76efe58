import RunFiles
import NN
import Storage
import Foundation
import Tensor

/// Principal component analysis down to two dimensions, for pictures of representations
/// (the PCA scatters of `contrast report`).
///
/// Method: centre the rows (means in Double), form the D x D covariance C = XᵀX / (B - 1)
/// with one `gemm`, then find its top two eigenvectors by orthogonal (subspace) iteration:
/// V ← orth(C V) for a D x 2 block V, followed by a 2 x 2 Rayleigh-Ritz step that orders
/// the two directions by variance. Subspace iteration converges at the rate λ₃/λ₂, so even
/// equal top eigenvalues (where single-vector power iteration with deflation would crawl)
/// cost nothing extra. Golub & Van Loan, Matrix Computations, 4th ed., §8.2.4.
///
/// Deterministic: the start block is a fixed sequence, and each component's sign is chosen
/// so that its largest-magnitude coordinate is positive (ties: the lowest index).
/// Shapes: B rows (`count`), D features (`width`).
public enum PCA {
    /// The rows projected on their top two principal components: (PC1, PC2) per row.
    /// Fewer than 2 rows or zero width give zeros; a rank-1 cloud gives PC2 = 0.
    public static func project2D(_ rows: UnsafePointer<Float>, count: Int, width: Int) -> [(Float, Float)] {
        guard count > 0 else { return [] }
        guard width > 0 else { return Array(repeating: (0, 0), count: count) }
        let (centred, _) = centre(rows, count: count, width: width)
        let axes = principalAxes(centred: centred, count: count, width: width)
        var out: [(Float, Float)] = []
        out.reserveCapacity(count)
        for row in 0..<count {
            var first = 0.0, second = 0.0
            for j in 0..<width {
                let value = Double(centred[row * width + j])
                first += value * axes.first[j]
                second += value * axes.second[j]
            }
            out.append((Float(first), Float(second)))
        }
        return out
    }

    /// The top two unit eigenvectors of the covariance and their eigenvalues (variances along them).
    struct Axes {
        var first: [Double]
        var second: [Double]
        var variances: (Double, Double)
    }

    /// Rows minus their column means, and the means. [B, D] -> [B, D], [D].
    static func centre(_ rows: UnsafePointer<Float>, count: Int, width: Int) -> ([Float], [Double]) {
        var mean = [Double](repeating: 0, count: width)
        for row in 0..<count { for j in 0..<width { mean[j] += Double(rows[row * width + j]) } }
        for j in 0..<width { mean[j] /= Double(count) }
        var centred = [Float](repeating: 0, count: count * width)
        for row in 0..<count { for j in 0..<width { centred[row * width + j] = Float(Double(rows[row * width + j]) - mean[j]) } }
        return (centred, mean)
    }

    /// Subspace iteration on C = XᵀX / (B - 1) of centred rows X [B, D].
    static func principalAxes(centred: [Float], count: Int, width: Int, maxIterations: Int = 1000) -> Axes {
        var covarianceFloat = [Float](repeating: 0, count: width * width)
        centred.withUnsafeBufferPointer { x in
            covarianceFloat.withUnsafeMutableBufferPointer { c in
                gemm(transposeA: true, transposeB: false, m: width, n: width, k: count,
                     alpha: 1 / Float(max(1, count - 1)), a: x.baseAddress!, lda: width,
                     b: x.baseAddress!, ldb: width, c: c.baseAddress!, ldc: width)
            }
        }
        let covariance = covarianceFloat.map(Double.init)
        /// (C u, C v) in one pass over C.
        func multiply(_ u: [Double], _ v: [Double]) -> ([Double], [Double]) {
            var cu = [Double](repeating: 0, count: width), cv = cu
            covariance.withUnsafeBufferPointer { c in
                for i in 0..<width {
                    var sumU = 0.0, sumV = 0.0
                    let row = c.baseAddress! + i * width
                    for j in 0..<width {
                        sumU += row[j] * u[j]
                        sumV += row[j] * v[j]
                    }
                    cu[i] = sumU; cv[i] = sumV
                }
            }
            return (cu, cv)
        }

        // A fixed, generic start block (no structure a data set could be orthogonal to by design).
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53) - 0.5
        }
        var u = (0..<width).map { _ in next() }, v = (0..<width).map { _ in next() }
        orthonormalise(&u, &v)
        for _ in 0..<maxIterations {
            var (nu, nv) = multiply(u, v)
            orthonormalise(&nu, &nv)
            // Converged when the new block spans the old one: |P_new u| = |P_new v| = 1.
            let change = max(1 - (dot(nu, u) * dot(nu, u) + dot(nv, u) * dot(nv, u)),
                             1 - (dot(nu, v) * dot(nu, v) + dot(nv, v) * dot(nv, v)))
            u = nu; v = nv
            if change < 1e-13 { break }
        }

        // Rayleigh-Ritz: eigen-decompose the 2 x 2 projection [u v]ᵀ C [u v] to order the directions.
        let (cu, cv) = multiply(u, v)
        let a = dot(u, cu), b = dot(u, cv), d = dot(v, cv)
        let angle = 0.5 * atan2(2 * b, a - d)          // rotation that diagonalises [[a, b], [b, d]]
        let c = cos(angle), s = sin(angle)
        var first = zip(u, v).map { c * $0 + s * $1 }
        var second = zip(u, v).map { -s * $0 + c * $1 }
        var varianceFirst = c * c * a + 2 * c * s * b + s * s * d
        var varianceSecond = s * s * a - 2 * c * s * b + c * c * d
        if varianceSecond > varianceFirst {
            swap(&first, &second)
            swap(&varianceFirst, &varianceSecond)
        }
        return Axes(first: signNormalised(first), second: signNormalised(second), variances: (varianceFirst, varianceSecond))
    }

    /// Gram-Schmidt on two vectors. A vector that vanishes is replaced by a unit vector
    /// orthogonal to the other (zero or rank-1 data), so the result is always orthonormal.
    static func orthonormalise(_ u: inout [Double], _ v: inout [Double]) {
        let width = u.count
        func normalise(_ x: inout [Double]) -> Bool {
            let norm = dot(x, x).squareRoot()
            guard norm > 1e-300 else { return false }
            for i in 0..<x.count { x[i] /= norm }
            return true
        }
        if !normalise(&u) { u = [Double](repeating: 0, count: width); u[0] = 1 }
        let projection = dot(u, v)
        for i in 0..<width { v[i] -= projection * u[i] }
        if !normalise(&v) || width == 1 {
            // Any unit vector orthogonal to u: the basis vector least aligned with u, made orthogonal.
            v = [Double](repeating: 0, count: width)
            guard width > 1 else { return }
            let index = u.indices.min { abs(u[$0]) < abs(u[$1]) }!
            v[index] = 1
            let p = dot(u, v)
            for i in 0..<width { v[i] -= p * u[i] }
            _ = normalise(&v)
        }
    }

    static func dot(_ x: [Double], _ y: [Double]) -> Double {
        var sum = 0.0
        for i in 0..<x.count { sum += x[i] * y[i] }
        return sum
    }

    /// The vector or its negation, whichever has its largest-magnitude coordinate positive.
    static func signNormalised(_ x: [Double]) -> [Double] {
        guard let index = x.indices.max(by: { abs(x[$0]) < abs(x[$1]) }) else { return x }
        return x[index] < 0 ? x.map { -$0 } : x
    }
}

extension PCA {
    /// Writes `RUN_DIR/eval/pca-step-<S>.json` = `{"step":S,"epoch":E,"points":[[x,y,label],...]}`,
    /// the PCA picture `contrast report` draws, atomically. `rows` [B, D]; `labels` one per row
    /// (-1 or nil: unlabelled). More than `maxPoints` rows keep every n-th (and the last);
    /// the components are computed from all rows.
    public static func writeEvalFile(runDirectory: URL, step: Int, epoch: Int, rows: UnsafePointer<Float>, count: Int, width: Int,
                                     labels: [Int64]?, maxPoints: Int = 2000) throws {
        let projected = project2D(rows, count: count, width: width)
        let kept = thinned(Array(projected.indices), to: maxPoints)
        var text = "{\"step\":\(step),\"epoch\":\(epoch),\"points\":["
        for (position, index) in kept.enumerated() {
            if position > 0 { text += "," }
            let label = labels.map { index < $0.count ? $0[index] : -1 } ?? -1
            text += "[" + String(format: "%.5g,%.5g", projected[index].0, projected[index].1) + ",\(label)]"
        }
        text += "]}\n"
        let directory = runDirectory.appendingPathComponent("eval")
        try RunDirectory.createDirectory(directory)
        try AtomicFile.write(Data(text.utf8), to: directory.appendingPathComponent("pca-step-\(step).json"))
    }
}
