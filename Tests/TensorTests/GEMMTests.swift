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

    @Test func threadCountIsSettable() {
        BLASThreads.set(1)
        #expect(BLASThreads.current == 1)
    }
}
