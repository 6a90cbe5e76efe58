import Testing
@testable import Tensor

@Suite struct GEMMTests {
    func random(_ count: Int, stream: UInt64) -> Tensor {
        var rng = RandomStream(seed: 42, stream: stream)
        let t = Tensor(zeros: [count])
        for i in 0..<count { t[i] = rng.nextUniform(-1, 1) }
        return t
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func matchesReference(transposes: (Bool, Bool)) {
        let (ta, tb) = transposes
        let m = 37, n = 29, k = 53
        let a = random(m * k, stream: 1), b = random(k * n, stream: 2)
        let c = random(m * n, stream: 3), expected = c.clone()
        let lda = ta ? m : k, ldb = tb ? k : n
        gemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda, b: b.data, ldb: ldb,
             beta: 2, c: c.data, ldc: n)
        gemmReference(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: a.data, lda: lda, b: b.data, ldb: ldb,
                      beta: 2, c: expected.data, ldc: n)
        for i in 0..<(m * n) { #expect(abs(c[i] - expected[i]) <= 1e-4 * max(1, abs(expected[i])), "element \(i)") }
    }

    /// dgemm against the same triple loop written in Double: agreement to Double rounding.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func doubleMatchesReference(transposes: (Bool, Bool)) {
        let (ta, tb) = transposes
        let m = 11, n = 7, k = 301
        var rng = RandomStream(seed: 43, stream: 0)
        let a = (0..<(m * k)).map { _ in Double(rng.nextUniform(-1, 1)) + 1e-9 }
        let b = (0..<(k * n)).map { _ in Double(rng.nextUniform(-1, 1)) }
        var c = (0..<(m * n)).map { _ in Double(rng.nextUniform(-1, 1)) }
        let lda = ta ? m : k, ldb = tb ? k : n
        var expected = c
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k { sum += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]) }
                expected[i * n + j] = 0.5 * sum + 2 * expected[i * n + j]
            }
        }
        gemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 2, c: &c, ldc: n)
        for i in 0..<(m * n) { #expect(abs(c[i] - expected[i]) <= 1e-12 * max(1, abs(expected[i])), "element \(i)") }
    }

    @Test func threadCountIsSettable() {
        BLASThreads.set(1)
        #expect(BLASThreads.current == 1)
    }
}
