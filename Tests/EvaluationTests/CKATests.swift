import Foundation
import Tensor
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Training

/// n x d standard normal values, row-major.
private func gaussian(_ n: Int, _ d: Int, stream: UInt64) -> [Float] {
    var random = RandomStream(seed: 7, stream: stream)
    return (0..<(n * d)).map { _ in random.nextNormal() }
}

/// x (n x d) times m (d x e).
private func multiply(_ x: [Float], _ m: [Float], n: Int, d: Int, e: Int) -> [Float] {
    var out = [Float](repeating: 0, count: n * e)
    gemmReference(transposeA: false, transposeB: false, m: n, n: e, k: d, a: x, lda: d, b: m, ldb: e, c: &out, ldc: e)
    return out
}

/// A d x e matrix with orthonormal rows (d <= e): Gram-Schmidt on Gaussian rows.
private func orthonormalRows(_ d: Int, _ e: Int, stream: UInt64) -> [Float] {
    var rows: [[Double]] = []
    let values = gaussian(d, e, stream: stream).map(Double.init)
    for r in 0..<d {
        var v = Array(values[r * e ..< (r + 1) * e])
        for u in rows {
            let dot = zip(u, v).reduce(0) { $0 + $1.0 * $1.1 }
            v = zip(v, u).map { $0 - dot * $1 }
        }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        rows.append(v.map { $0 / norm })
    }
    return rows.flatMap { $0.map(Float.init) }
}

private func cka(_ x: [Float], _ d1: Int, _ y: [Float], _ d2: Int) -> Double {
    CKA.linear(x, columns: d1, y, columns: d2, rows: x.count / d1)
}

@Suite struct CKATests {
    @Test func identicalRepresentationsGiveOne() {
        let x = gaussian(200, 12, stream: 1)
        #expect(abs(cka(x, 12, x, 12) - 1) < 1e-6)
    }

    /// Rotations (here an isometry into a wider space) and isotropic scaling leave CKA at 1;
    /// an anisotropic scaling does not.
    @Test func invariantToOrthogonalTransformsAndIsotropicScaling() {
        let n = 300, d = 10, e = 16
        let x = gaussian(n, d, stream: 2)
        let rotated = multiply(x, orthonormalRows(d, d, stream: 3), n: n, d: d, e: d)
        #expect(abs(cka(x, d, rotated, d) - 1) < 1e-5)
        let widened = multiply(x, orthonormalRows(d, e, stream: 4), n: n, d: d, e: e).map { $0 * 3.7 }
        #expect(abs(cka(x, d, widened, e) - 1) < 1e-5)
        #expect(abs(cka(widened, e, rotated, d) - 1) < 1e-5, "symmetric in its arguments and widths")
        let shifted = x.map { $0 + 5 }
        #expect(abs(cka(x, d, shifted, d) - 1) < 1e-5, "columns are centred first")
        let stretched = x.enumerated().map { $0.offset % d == 0 ? $0.element * 10 : $0.element }
        #expect(cka(x, d, stretched, d) < 0.9)
    }

    /// Hand-computed: X = [[1,0],[0,1],[-1,0],[0,-1]], Y = [1,1,-1,-1]ᵀ (both centred):
    /// XᵀX = 2 I (norm 2√2), YᵀY = 4, YᵀX = [2, 2] (squared norm 8): CKA = 8 / (2√2 · 4) = 1/√2.
    /// In one dimension CKA is the squared correlation: x = [1,2,3], y = [1,0,2] correlate 1/2.
    @Test func handComputedCases() {
        let x: [Float] = [1, 0, 0, 1, -1, 0, 0, -1], y: [Float] = [1, 1, -1, -1]
        #expect(abs(cka(x, 2, y, 1) - 1 / 2.0.squareRoot()) < 1e-7)
        #expect(abs(cka([1, 2, 3], 1, [1, 0, 2], 1) - 0.25) < 1e-7)
        #expect(abs(CKA.linearReference([[1, 0], [0, 1], [-1, 0], [0, -1]], [[1], [1], [-1], [-1]]) - 1 / 2.0.squareRoot()) < 1e-12)
    }

    @Test func independentRandomFeaturesGiveALowValue() {
        let n = 2000, d = 10
        let similarity = cka(gaussian(n, d, stream: 5), d, gaussian(n, d, stream: 6), d)
        // E ≈ d / n for independent Gaussian features.
        #expect(similarity < 0.02, "\(similarity)")
    }

    /// The BLAS path against the plain Double loops, on uncentred data of different widths.
    @Test func matchesTheReference() {
        let n = 37, d1 = 5, d2 = 8
        let x = gaussian(n, d1, stream: 8).map { $0 + 2 }
        let correlated = multiply(x, gaussian(d1, d2, stream: 9), n: n, d: d1, e: d2)
        let y = zip(correlated, gaussian(n, d2, stream: 10)).map { $0 + 0.5 * $1 }
        let rows = { (v: [Float], d: Int) in (0..<n).map { r in v[r * d ..< (r + 1) * d].map(Double.init) } }
        let reference = CKA.linearReference(rows(x, d1), rows(y, d2))
        #expect(reference > 0.2 && reference < 0.99)
        #expect(abs(cka(x, d1, y, d2) - reference) < 1e-5)
    }

    @Test func constantRepresentationIsUndefined() {
        #expect(cka([Float](repeating: 3, count: 20), 2, gaussian(10, 3, stream: 11), 3).isNaN)
    }
}
