import Foundation
import Testing
@testable import Contrastive
@testable import Tensor

@Suite struct EmbeddingGeometryTests {
    /// Every row the same unit vector: perfect alignment, total collapse.
    @Test func collapsedEmbeddings() {
        let e = 8, n = 16
        var z = [Float](repeating: 0, count: n * e)
        for i in 0..<n { z[i * e + 3] = 1 }
        let m = EmbeddingGeometry.measure(z, count: n, width: e) { $0 ^ 1 }
        #expect(m.alignment == 0 && m.positiveCosine == 1 && m.negativeCosine == 1)
        #expect(abs(m.uniformity) < 1e-12)           // log mean exp(0) = 0: the worst value
        #expect(m.std == 0 && m.effectiveRank == 0)
    }

    /// The 2E signed basis vectors ±e_d, paired with their opposite: known values throughout.
    @Test func signedBasis() {
        let e = 6, n = 2 * e
        var z = [Float](repeating: 0, count: n * e)
        for i in 0..<n { z[i * e + i / 2] = i % 2 == 0 ? 1 : -1 }
        let m = EmbeddingGeometry.measure(z, count: n, width: e) { $0 ^ 1 }
        #expect(abs(m.alignment - 4) < 1e-12 && abs(m.positiveCosine + 1) < 1e-12)
        // Of the n - 1 others, 1 is opposite (distance^2 4), n - 2 orthogonal (distance^2 2).
        let expected = log((exp(-8.0) + Double(n - 2) * exp(-4.0)) / Double(n - 1))
        #expect(abs(m.uniformity - expected) < 1e-9)
        #expect(abs(m.negativeCosine) < 1e-12)       // negatives are the orthogonal ones
        #expect(abs(m.effectiveRank - Double(e)) < 1e-9)   // covariance = I / E: all eigenvalues equal
        #expect(abs(m.std - (1.0 / Double(e)).squareRoot()) < 1e-9)
    }

    /// Jacobi eigenvalues against a matrix with known spectrum (Q diag Q^T, Q a rotation).
    @Test func eigenvaluesOfARotatedDiagonal() {
        let n = 5, values: [Double] = [5, 3, 1, 0.5, 0]
        var random = RandomStream(seed: 3, stream: 0)
        // Q from Gram-Schmidt of random vectors.
        var q = (0..<(n * n)).map { _ in Double(random.nextUniform(-1, 1)) }
        for i in 0..<n {
            for j in 0..<i {
                let dot = (0..<n).reduce(0.0) { $0 + q[i * n + $1] * q[j * n + $1] }
                for k in 0..<n { q[i * n + k] -= dot * q[j * n + k] }
            }
            let norm = (0..<n).reduce(0.0) { $0 + q[i * n + $1] * q[i * n + $1] }.squareRoot()
            for k in 0..<n { q[i * n + k] /= norm }
        }
        var a = [Double](repeating: 0, count: n * n)
        for r in 0..<n { for c in 0..<n { for k in 0..<n { a[r * n + c] += q[k * n + r] * values[k] * q[k * n + c] } } }
        let got = EmbeddingGeometry.symmetricEigenvalues(a, size: n).sorted(by: >)
        for (x, y) in zip(got, values) { #expect(abs(x - y) < 1e-9) }
    }
}
