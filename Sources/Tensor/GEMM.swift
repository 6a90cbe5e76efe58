import CBLAS

/// Matrix multiplication through OpenBLAS: C = alpha * op(A) op(B) + beta * C.
///
/// Row-major. op(A) is M x K, op(B) is K x N, C is M x N. `lda`, `ldb`, `ldc` are row strides
/// of the stored (untransposed) matrices. `precision` bf16 rounds A and B to bf16 and multiplies
/// them in oneDNN with fp32 accumulation and C (`BF16GEMM`); the caller has checked
/// `BF16GEMM.unavailableReason` first.
@inline(__always)
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    precision: GEMMPrecision = .fp32
) {
    if m == 0 || n == 0 { return }
    if precision == .bf16 {
        do {
            try BF16GEMM.shared.multiply(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                                         a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        } catch {
            preconditionFailure("bf16 GEMM \(m) x \(n) x \(k): \(error)")
        }
        return
    }
    cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Double-precision matrix multiplication through OpenBLAS (dgemm), the same layout as the
/// Float `gemm`: C = alpha * op(A) op(B) + beta * C, row-major, op(A) M x K, op(B) K x N.
/// For solvers whose line searches need function values beyond Float's 7 digits (LinearProbe).
@inline(__always)
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
    b: UnsafePointer<Double>, ldb: Int,
    beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    cblas_dgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The plain triple loop `gemm` is tested against (accumulates in Double).
public func gemmReference(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for p in 0..<k {
                let av = transposeA ? a[p * lda + i] : a[i * lda + p]
                let bv = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                sum += Double(av) * Double(bv)
            }
            let previous = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * Float(sum) + previous
        }
    }
}

/// OpenBLAS's own thread pool. Set explicitly (1 by default in contrast): with one MPI rank
/// per core, BLAS threads would only fight over the cores.
public enum BLASThreads {
    /// Also the OpenMP thread count of bf16 GEMMs in oneDNN (`BF16GEMM.threads`).
    public static func set(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
        BF16GEMM.threads = max(1, count)
    }
    public static var current: Int { Int(openblas_get_num_threads()) }
    public static var configuration: String { String(cString: openblas_get_config()) }
}
