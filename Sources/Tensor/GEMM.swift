import CBLAS
import Foundation

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
    if let recorder = GEMMRecording.active {
        recorder.append(GEMMCall(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, accumulates: beta != 0))
    }
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
    /// The kernel set OpenBLAS chose for this CPU (DYNAMIC_ARCH builds pick at load time), e.g. "Zen".
    public static var coreName: String { String(cString: openblas_get_corename()) }
}

/// The shape of one Float `gemm` call: op(A) M x K, op(B) K x N; `accumulates` when beta != 0.
public struct GEMMCall: Hashable, Sendable, CustomStringConvertible {
    public var m: Int, n: Int, k: Int
    public var transposeA: Bool, transposeB: Bool
    public var accumulates: Bool

    public init(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, accumulates: Bool = false) {
        self.m = m; self.n = n; self.k = k
        self.transposeA = transposeA; self.transposeB = transposeB; self.accumulates = accumulates
    }

    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    public var description: String {
        "\(m)x\(n)x\(k)\(transposeA ? " A^T" : "")\(transposeB ? " B^T" : "")\(accumulates ? " +C" : "")"
    }
}

/// Records the shape of every Float `gemm` while a `record` call runs (`bench step`'s GEMM
/// account). Off, it costs `gemm` one load and one branch.
public enum GEMMRecording {
    /// The calls recorded so far; appended under a lock (a GEMM on another thread is recorded too).
    public final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var recorded: [GEMMCall] = []
        func append(_ call: GEMMCall) { lock.lock(); recorded.append(call); lock.unlock() }
        var calls: [GEMMCall] { lock.lock(); defer { lock.unlock() }; return recorded }
    }

    /// Set only by `record`, on the thread that calls it.
    nonisolated(unsafe) static var active: Recorder?

    /// Runs `body` and returns its result with every GEMM it called, in call order. Not nested.
    public static func record<T>(_ body: () throws -> T) rethrows -> (result: T, calls: [GEMMCall]) {
        precondition(active == nil, "GEMMRecording.record does not nest")
        let recorder = Recorder()
        active = recorder
        defer { active = nil }
        let result = try body()
        return (result, recorder.calls)
    }
}
