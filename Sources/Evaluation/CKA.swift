import NN
import Tensor

/// Linear centred kernel alignment between two representations of the same N samples
/// (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited", eq. 5):
///
///     CKA(X, Y) = ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F),  X (N x D1), Y (N x D2) column-centred.
///
/// 1 for representations equal up to an orthogonal transform and isotropic scaling, near 0 for
/// unrelated ones; widths may differ. `contrast eval drift` compares two checkpoints with it.
public enum CKA {
    /// Linear CKA of x (n x d1) and y (n x d2), row-major. NaN when either is constant over
    /// the samples (its centred Gram matrix is zero).
    public static func linear(_ x: UnsafePointer<Float>, columns d1: Int, _ y: UnsafePointer<Float>, columns d2: Int, rows n: Int) -> Double {
        let cx = centred(x, rows: n, columns: d1), cy = centred(y, rows: n, columns: d2)
        defer { cx.deallocate(); cy.deallocate() }
        // The three D x D products in float32 through BLAS; their squares summed in Double.
        func squaredFrobenius(_ a: UnsafePointer<Float>, _ da: Int, _ b: UnsafePointer<Float>, _ db: Int) -> Double {
            let product = UnsafeMutablePointer<Float>.allocate(capacity: da * db)
            defer { product.deallocate() }
            gemm(transposeA: true, transposeB: false, m: da, n: db, k: n, a: a, lda: da, b: b, ldb: db, c: product, ldc: db)
            return Kernels.sumOfSquares(product, count: da * db)
        }
        let cross = squaredFrobenius(cy, d2, cx, d1)
        let xx = squaredFrobenius(cx, d1, cx, d1).squareRoot(), yy = squaredFrobenius(cy, d2, cy, d2).squareRoot()
        return xx > 0 && yy > 0 ? cross / (xx * yy) : .nan
    }

    /// Columns minus their means (means accumulated in Double); the caller deallocates.
    static func centred(_ x: UnsafePointer<Float>, rows n: Int, columns d: Int) -> UnsafeMutablePointer<Float> {
        var means = [Double](repeating: 0, count: d)
        for r in 0..<n { for c in 0..<d { means[c] += Double(x[r * d + c]) } }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: max(1, n * d))
        for r in 0..<n { for c in 0..<d { out[r * d + c] = Float(Double(x[r * d + c]) - means[c] / Double(n)) } }
        return out
    }

    /// The same formula in plain Double loops: the oracle `linear` is tested against.
    public static func linearReference(_ x: [[Double]], _ y: [[Double]]) -> Double {
        func centre(_ m: [[Double]]) -> [[Double]] {
            let n = Double(m.count)
            let means = (0..<m[0].count).map { c in m.reduce(0) { $0 + $1[c] } / n }
            return m.map { row in zip(row, means).map { $0 - $1 } }
        }
        /// ||Aᵀ B||²_F for A (N x Da), B (N x Db).
        func squaredFrobenius(_ a: [[Double]], _ b: [[Double]]) -> Double {
            var sum = 0.0
            for i in 0..<a[0].count {
                for j in 0..<b[0].count {
                    let entry = zip(a, b).reduce(0) { $0 + $1.0[i] * $1.1[j] }
                    sum += entry * entry
                }
            }
            return sum
        }
        let cx = centre(x), cy = centre(y)
        return squaredFrobenius(cy, cx) / (squaredFrobenius(cx, cx).squareRoot() * squaredFrobenius(cy, cy).squareRoot())
    }
}
