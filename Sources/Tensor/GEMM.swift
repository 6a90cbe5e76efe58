import CBLAS
import Foundation

/// Matrix multiplication: C = alpha * op(A) op(B) + beta * C.
///
/// Row-major. op(A) is M x K, op(B) is K x N, C is M x N. `lda`, `ldb`, `ldc` are row strides
/// of the stored (untransposed) matrices. fp32 runs in the library `FP32GEMM.library` names
/// (OpenBLAS sgemm unless a run chose oneDNN). `precision` bf16 rounds A and B to bf16 and
/// multiplies them in oneDNN with fp32 accumulation and C (`OneDNNGEMM`); the caller has checked
/// `OneDNNGEMM.unavailableReason` first.
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
    if precision == .bf16 || FP32GEMM.library == .onednn {
        do {
            try OneDNNGEMM.shared.multiply(precision: precision, transposeA: transposeA, transposeB: transposeB,
                                           m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                           beta: beta, c: c, ldc: ldc)
        } catch {
            preconditionFailure("\(precision) GEMM \(m) x \(n) x \(k) in oneDNN: \(error)")
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
    /// Also the OpenMP thread count of GEMMs in oneDNN (`OneDNNGEMM.threads`).
    public static func set(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
        OneDNNGEMM.threads = max(1, count)
    }
    public static var current: Int { Int(openblas_get_num_threads()) }
    public static var configuration: String { String(cString: openblas_get_config()) }
    /// The kernel set OpenBLAS chose for this CPU (DYNAMIC_ARCH builds pick at load time), e.g. "Zen".
    public static var coreName: String { String(cString: openblas_get_corename()) }
}

/// Which library runs fp32 `gemm`s, process-wide (like the thread count): the fastest this CPU
/// has (`fastest`) until a run chooses (`train.gemm_library`). oneDNN's AVX-512 brgemm kernels run
/// the benchmark MLP's GEMMs about 7 % faster than Debian's OpenBLAS sgemm; on AVX2, OpenBLAS wins
/// (docs/benchmarks.md).
/// The two libraries sum in different orders, so the choice is part of what makes a run bitwise
/// reproducible.
public enum FP32GEMM {
    public enum Library: String, Sendable, CaseIterable {
        case openblas, onednn
    }

    /// Set once per process by a run; the default is `fastest` (computed on first use), so a run
    /// with `train.gemm_library: auto` does not change it.
    nonisolated(unsafe) public static var library: Library = fastest

    /// oneDNN where its fp32 matmul runs brgemm kernels (AVX-512), otherwise OpenBLAS. Where oneDNN
    /// has only its generic `gemm:jit` (AVX2 CPUs) OpenBLAS's Haswell sgemm is faster: 4 % on the
    /// benchmark's GEMMs alone, and 2.2x on the transposed-A weight gradient of the 1024->256 layer,
    /// which made oneDNN's P = 2 step 29 % slower (docs/benchmarks.md, "The GEMM library by CPU kind").
    public static var fastest: Library { OneDNNGEMM.fp32Implementation?.hasPrefix("brg") == true ? .onednn : .openblas }

    /// The library's kernel for the benchmark's shapes, e.g. "OpenBLAS Zen" or "oneDNN brg:avx512_core".
    public static var description: String {
        switch library {
        case .openblas: "OpenBLAS \(BLASThreads.coreName)"
        case .onednn: "oneDNN \(OneDNNGEMM.fp32Implementation ?? "unavailable")"
        }
    }
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
    /// The calls recorded so far; appended under a lock.
    public final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var recorded: [GEMMCall] = []
        func append(_ call: GEMMCall) { lock.lock(); recorded.append(call); lock.unlock() }
        var calls: [GEMMCall] { lock.lock(); defer { lock.unlock() }; return recorded }
    }

    /// Task-local, so a recording sees the GEMMs of its own task only (tests record while other
    /// tests run GEMMs in parallel); set only by `record`.
    @TaskLocal static var active: Recorder?

    /// Records GEMMs that stand for work done another way: a oneDNN convolution notes the im2col
    /// GEMMs it replaces, so the account holds the step's convolution FLOPs at the sgemm rate.
    /// `calls` is evaluated only while a `record` runs: off, a note costs the step one load.
    public static func note(_ calls: @autoclosure () -> [GEMMCall]) {
        guard let recorder = active else { return }
        for call in calls() { recorder.append(call) }
    }

    /// Runs `body` and returns its result with every GEMM it called, in call order. Not nested.
    public static func record<T>(_ body: () throws -> T) rethrows -> (result: T, calls: [GEMMCall]) {
        precondition(active == nil, "GEMMRecording.record does not nest")
        let recorder = Recorder()
        let result = try $active.withValue(recorder) { try body() }
        return (result, recorder.calls)
    }
}
