import CBLAS
import CKernels
import Testing
@testable import Tensor

/// The bf16 GEMM (oneDNN) against plain loops: bitwise-rounded inputs give fp32-accurate results,
/// and the result stays within the bf16 rounding bound of the exact product. Needs AVX-512.
@Suite(.enabled(if: OneDNNGEMM.unavailableReason == nil, "needs AVX-512 (avx512_core): oneDNN has no bf16 matmul on this CPU"))
struct BF16GEMMTests {
    func random(_ count: Int, stream: UInt64) -> [Float] {
        var rng = RandomStream(seed: 7, stream: stream)
        return (0..<count).map { _ in rng.nextUniform(-1, 1) }
    }

    func bf16(_ values: [Float]) -> [Float] {
        var half = [UInt16](repeating: 0, count: values.count), back = [Float](repeating: 0, count: values.count)
        ck_f32_to_bf16(values, &half, values.count)
        ck_bf16_to_f32(half, &back, values.count)
        return back
    }

    /// C = alpha op(A) op(B) + beta C in Double over `a`, `b` as given; also sum_p |alpha a_ip b_pj|.
    func reference(_ ta: Bool, _ tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int, b: [Float], ldb: Int,
                   beta: Float, c: [Float], ldc: Int) -> (c: [Double], magnitude: [Double]) {
        var out = c.map(Double.init), magnitude = [Double](repeating: 0, count: c.count)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0, size = 0.0
                for p in 0..<k {
                    let product = Double(ta ? a[p * lda + i] : a[i * lda + p]) * Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                    sum += product
                    size += abs(product)
                }
                out[i * ldc + j] = Double(alpha) * sum + Double(beta) * Double(c[i * ldc + j])
                magnitude[i * ldc + j] = abs(Double(alpha)) * size
            }
        }
        return (out, magnitude)
    }

    /// Odd sizes, padded leading dimensions (the conversion packs strided rows; a padded C takes
    /// oneDNN's other kernel), all four transposes, beta 0 and 1, alpha 1 and 0.5.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)], [Float(0), 1])
    func matchesTheRoundedReference(transposes: (Bool, Bool), beta: Float) throws {
        let (ta, tb) = transposes
        let m = 37, n = 29, k = 53
        for (alpha, pad) in [(Float(1), 0), (0.5, 3)] {
            let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
            let a = random((ta ? k : m) * lda, stream: 1), b = random((tb ? n : k) * ldb, stream: 2)
            let start = random(m * ldc, stream: 3)
            var c = start
            try OneDNNGEMM.shared.multiply(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                                         b: b, ldb: ldb, beta: beta, c: &c, ldc: ldc)
            // Against bf16(A) bf16(B) exactly: only fp32 accumulation differs (k products, u = 2^-24).
            let rounded = reference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: bf16(a), lda: lda, b: bf16(b), ldb: ldb,
                                    beta: beta, c: start, ldc: ldc)
            // Against A B exactly: each product carries two bf16 roundings, |err| <= 2 * 2^-9 sum |a||b| (+ fp32).
            let exact = reference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: start, ldc: ldc)
            var largestError = 0.0, largestBound = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    let index = i * ldc + j, value = Double(c[index])
                    let fp32 = Double(k + 2) * 0x1p-24 * (exact.magnitude[index] + abs(Double(beta * start[index])))
                    #expect(abs(value - rounded.c[index]) <= fp32 + 1e-7, "(\(i), \(j)) alpha \(alpha) pad \(pad)")
                    #expect(abs(value - exact.c[index]) <= 0x1p-8 * exact.magnitude[index] + fp32 + 1e-7, "(\(i), \(j))")
                    largestError = max(largestError, abs(value - exact.c[index]))
                    largestBound = max(largestBound, exact.magnitude[index])
                }
            }
            // The inputs really were rounded: sgemm would be ~2^-24 off, bf16 about 2^-9 sum|a||b| / sqrt(k).
            #expect(largestError > 0x1p-16 * largestBound)
            // The padding columns of C are untouched.
            if pad > 0 { for i in 0..<m { for j in n..<ldc { #expect(c[i * ldc + j] == start[i * ldc + j]) } } }
        }
    }

    /// `gemm(precision: .bf16)` goes through OneDNNGEMM, and the same call twice is bitwise the same.
    @Test func gemmDispatchesAndIsDeterministic() {
        let m = 65, n = 31, k = 129
        let a = random(m * k, stream: 4), b = random(n * k, stream: 5)
        var first = [Float](repeating: 0, count: m * n), second = first, direct = first, single = first
        gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &first, ldc: n, precision: .bf16)
        gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &second, ldc: n, precision: .bf16)
        try? OneDNNGEMM.shared.multiply(transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k,
                                      b: b, ldb: k, beta: 0, c: &direct, ldc: n)
        gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &single, ldc: n)
        #expect(first == second)
        #expect(first == direct)
        #expect(first != single)
    }

    /// K = 0 leaves beta C, as sgemm does.
    @Test func emptyInnerDimensionScalesC() throws {
        var c: [Float] = [1, 2, 3, 4]
        let none: [Float] = [0]
        try OneDNNGEMM.shared.multiply(transposeA: false, transposeB: false, m: 2, n: 2, k: 0, alpha: 1, a: none, lda: 1,
                                     b: none, ldb: 2, beta: 0.5, c: &c, ldc: 2)
        #expect(c == [0.5, 1, 1.5, 2])
    }

    @Test func reportsItsImplementation() {
        #expect(OneDNNGEMM.implementation != nil)
    }
}

/// oneDNN's fp32 matmul (`train.gemm_library`) against a Double reference: fp32 accuracy on odd
/// sizes, padded strides, all transposes, alpha and beta; deterministic; `gemm` dispatches to it.
@Suite(.enabled(if: OneDNNGEMM.fp32UnavailableReason == nil, "oneDNN has no fp32 matmul on this CPU"))
struct OneDNNFP32GEMMTests {
    let helpers = BF16GEMMTests()

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)], [Float(0), 1])
    func matchesTheReferenceToFP32Rounding(transposes: (Bool, Bool), beta: Float) throws {
        let (ta, tb) = transposes
        let m = 37, n = 29, k = 53
        for (alpha, pad) in [(Float(1), 0), (0.5, 3)] {
            let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
            let a = helpers.random((ta ? k : m) * lda, stream: 11), b = helpers.random((tb ? n : k) * ldb, stream: 12)
            let start = helpers.random(m * ldc, stream: 13)
            var c = start
            try OneDNNGEMM.shared.multiply(precision: .fp32, transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: alpha,
                                           a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &c, ldc: ldc)
            let exact = helpers.reference(ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                          beta: beta, c: start, ldc: ldc)
            var largestError = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    let index = i * ldc + j
                    let bound = Double(k + 2) * 0x1p-24 * (exact.magnitude[index] + abs(Double(beta * start[index])))
                    #expect(abs(Double(c[index]) - exact.c[index]) <= bound + 1e-7, "(\(i), \(j)) alpha \(alpha) pad \(pad)")
                    largestError = max(largestError, abs(Double(c[index]) - exact.c[index]) / max(exact.magnitude[index], 1e-30))
                }
            }
            // Not bf16: the relative error is at fp32's scale, far below bf16's 2^-9.
            #expect(largestError < 0x1p-18)
            if pad > 0 { for i in 0..<m { for j in n..<ldc { #expect(c[i * ldc + j] == start[i * ldc + j]) } } }
        }
    }

    /// Primitives of every size share one scratchpad. What oneDNN guarantees, and so what is
    /// checked (not which kernel it picks: brgemm on AVX-512 packs B into a scratchpad of
    /// megabytes, gemm:jit on AVX2 needs none): the shared scratchpad is at least what every
    /// primitive asked for, and a primitive run on it after larger ones, and the larger ones
    /// again, give bit for bit what the same primitive gives on a scratchpad of its own (a fresh
    /// OneDNNGEMM), and what OpenBLAS gives to rounding.
    @Test func sharedScratchpadServesEveryShape() throws {
        func run(_ gemm: OneDNNGEMM, _ m: Int, _ n: Int, _ k: Int, transposeA: Bool) throws -> [Float] {
            let a = helpers.random(m * k, stream: 16), b = helpers.random(k * n, stream: 17)
            var c = [Float](repeating: 0, count: m * n)
            try gemm.multiply(precision: .fp32, transposeA: transposeA, transposeB: false, m: m, n: n, k: k, alpha: 1,
                              a: a, lda: transposeA ? m : k, b: b, ldb: n, beta: 0, c: &c, ldc: n)
            return c
        }
        func blas(_ m: Int, _ n: Int, _ k: Int, transposeA: Bool) -> [Float] {
            let a = helpers.random(m * k, stream: 16), b = helpers.random(k * n, stream: 17)
            var c = [Float](repeating: 0, count: m * n)
            cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                        a, Int32(transposeA ? m : k), b, Int32(n), 0, &c, Int32(n))
            return c
        }
        let shapes = [(1024, 784, 512, true), (512, 1024, 1024, false), (37, 29, 53, false), (1024, 784, 512, true), (512, 1024, 1024, false)]
        let shared = OneDNNGEMM()
        for (m, n, k, transposeA) in shapes {
            let mine = try run(shared, m, n, k, transposeA: transposeA)
            let alone = try run(OneDNNGEMM(), m, n, k, transposeA: transposeA)
            #expect(mine == alone, "\(m)x\(n)x\(k) on the shared scratchpad differs from the same primitive on its own")
            let reference = blas(m, n, k, transposeA: transposeA)
            for i in 0..<mine.count where abs(mine[i] - reference[i]) > 1e-4 * max(1, abs(reference[i])) {
                Issue.record("\(m)x\(n)x\(k): \(mine[i]) against OpenBLAS \(reference[i]) at \(i)"); break
            }
        }
        let required = shared.requiredScratchpadBytes
        #expect(required.count == 3, "one primitive per distinct shape")
        #expect(required.allSatisfy { shared.scratchpadBytes >= $0 }, "shared \(shared.scratchpadBytes) bytes, asked for \(required)")
    }

    /// The same call twice is bitwise the same, and `gemm` runs in the library FP32GEMM names.
    @Test func deterministicAndDispatched() throws {
        let m = 65, n = 31, k = 129
        let a = helpers.random(m * k, stream: 14), b = helpers.random(n * k, stream: 15)
        var first = [Float](repeating: 0, count: m * n), second = first, viaGEMM = first, blas = first
        for out in [0, 1] {
            var c = [Float](repeating: 0, count: m * n)
            try OneDNNGEMM.shared.multiply(precision: .fp32, transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: 1,
                                           a: a, lda: k, b: b, ldb: k, beta: 0, c: &c, ldc: n)
            if out == 0 { first = c } else { second = c }
        }
        #expect(first == second)
        #expect(OneDNNGEMM.fp32Implementation != nil)
        gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, c: &viaGEMM, ldc: n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 0, &blas, Int32(n))
        #expect(viaGEMM == (FP32GEMM.library == .onednn ? first : blas))
        // The two libraries agree to rounding, not bit for bit (they sum in different orders).
        for i in 0..<(m * n) { #expect(abs(first[i] - blas[i]) <= 1e-5 * max(1, abs(blas[i]))) }
    }
}
