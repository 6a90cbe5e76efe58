import CBLAS
import CKernels
import Foundation

// Element-wise kernels over raw buffers. Shapes: R rows, C columns, row-major.
// The fast ones call the C kernels in CKernels (runtime-dispatched SIMD); each has a plain
// Swift `...Reference` beside it that the tests compare against.

public enum Kernels {
    /// The instruction set the C kernels run at on this thread ("avx512", "avx2", "sse2"): the
    /// best the CPU has, capped by the environment variable CONTRAST_KERNELS_ISA=avx512|avx2|portable
    /// and by `withInstructionSet`.
    public static var instructionSet: String { String(cString: ck_instruction_set()) }

    /// The compilations of the C kernels, lowest first. `sse2` is the portable one (the x86-64
    /// baseline; CONTRAST_KERNELS_ISA=portable), `avx2` needs AVX2, FMA and F16C (x86-64-v3),
    /// `avx512` AVX-512 F/BW/CD/DQ/VL (x86-64-v4).
    public enum InstructionSet: String, CaseIterable, Comparable, Sendable {
        case sse2, avx2, avx512

        public static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
    }

    /// The instruction sets the kernels can run at in this process (the CPU's and
    /// CONTRAST_KERNELS_ISA's limit and everything below it), lowest first.
    public static var availableInstructionSets: [InstructionSet] {
        let limit = InstructionSet(rawValue: String(cString: ck_process_instruction_set()))!
        return InstructionSet.allCases.filter { $0 <= limit }
    }

    /// Runs `body` with this thread's kernels capped at `set` (at most the process's level), then
    /// lifts the cap. The cap is the calling thread's, so `body` must not suspend; tests use it to
    /// compare every compilation with the references in one process.
    public static func withInstructionSet<Result>(_ set: InstructionSet, _ body: () throws -> Result) rethrows -> Result {
        precondition(ck_set_thread_instruction_set(set.rawValue) == 1)
        defer { ck_set_thread_instruction_set(nil) }
        return try body()
    }

    /// y[r, c] += bias[c].  y: R x C, bias: C.
    @inline(__always)
    public static func addBiasRows(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, columns: Int) {
        ck_add_bias_rows(y, bias, rows, columns)
    }

    public static func addBiasRowsReference(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, columns: Int) {
        for r in 0..<rows { for c in 0..<columns { y[r * columns + c] += bias[c] } }
    }

    /// y[r, c] = max(y[r, c] + bias[c], 0).  y: R x C, bias: C.
    @inline(__always)
    public static func addBiasReLURows(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, columns: Int) {
        ck_add_bias_relu_rows(y, bias, rows, columns)
    }

    public static func addBiasReLURowsReference(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, columns: Int) {
        addBiasRowsReference(y, bias: bias, rows: rows, columns: columns)
        reluInPlaceReference(y, count: rows * columns)
    }

    /// Backward of bias + ReLU in one pass: dy masked where y <= 0 (in place), db += column sums.
    @inline(__always)
    public static func reluBiasBackward(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>,
                                        biasGradient db: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        ck_relu_bias_backward(dy, y, db, rows, columns)
    }

    public static func reluBiasBackwardReference(_ dy: UnsafeMutablePointer<Float>, output y: UnsafePointer<Float>,
                                                 biasGradient db: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        reluBackwardReference(inputGradient: dy, outputGradient: dy, output: y, count: rows * columns)
        biasGradientReference(db, outputGradient: dy, rows: rows, columns: columns)
    }

    /// y = max(y, 0), in place.
    @inline(__always)
    public static func reluInPlace(_ y: UnsafeMutablePointer<Float>, count: Int) { ck_relu_inplace(y, count) }

    public static func reluInPlaceReference(_ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count where !(y[i] > 0) { y[i] = 0 }
    }

    /// dx = dy where the ReLU output y > 0, else 0. dx may be dy.
    @inline(__always)
    public static func reluBackward(inputGradient dx: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                    output y: UnsafePointer<Float>, count: Int) {
        ck_relu_backward(dx, dy, y, count)
    }

    public static func reluBackwardReference(inputGradient dx: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                             output y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { dx[i] = y[i] > 0 ? dy[i] : 0 }
    }

    /// db[c] += sum over rows of dy[r, c].  dy: R x C.
    @inline(__always)
    public static func biasGradient(_ db: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>, rows: Int, columns: Int) {
        ck_bias_gradient(db, dy, rows, columns)
    }

    public static func biasGradientReference(_ db: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>, rows: Int, columns: Int) {
        for c in 0..<columns {
            var sum: Float = 0
            for r in 0..<rows { sum += dy[r * columns + c] }
            db[c] += sum
        }
    }

    /// GELU, exact form (PyTorch's default): y = x Φ(x) = x/2 (1 + erf(x/√2)).
    @inline(__always)
    public static func gelu(_ y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, count: Int) {
        ck_gelu(y, x, count)
    }

    public static func geluReference(_ y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = 0.5 * x[i] * (1 + erf(x[i] * 0.70710678118654752)) }
    }

    /// dx = dy * (Φ(x) + x φ(x)), overwriting dx (which must not alias dy or x).
    @inline(__always)
    public static func geluBackward(inputGradient dx: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                    input x: UnsafePointer<Float>, count: Int) {
        ck_gelu_backward(dx, dy, x, count)
    }

    public static func geluBackwardReference(inputGradient dx: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                             input x: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let v = x[i]
            let cdf = 0.5 * (1 + erf(v * 0.70710678118654752))
            let pdf = exp(-0.5 * v * v) * 0.39894228040143268
            dx[i] = dy[i] * (cdf + v * pdf)
        }
    }

    /// x *= alpha.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count: Int) {
        cblas_sscal(Int32(count), alpha, x, 1)
    }

    /// y += alpha * x.
    @inline(__always)
    public static func axpy(_ y: UnsafeMutablePointer<Float>, alpha: Float, x: UnsafePointer<Float>, count: Int) {
        cblas_saxpy(Int32(count), alpha, x, 1, y, 1)
    }

    /// Sum of squares, accumulated in Double (for global gradient norms).
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var sum = 0.0
        var i = 0
        // Four Float partial sums per block keep it vectorisable; blocks fold into Double.
        while i < count {
            let end = min(count, i + 4096)
            var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
            var j = i
            while j + 4 <= end {
                s0 += x[j] * x[j]; s1 += x[j + 1] * x[j + 1]; s2 += x[j + 2] * x[j + 2]; s3 += x[j + 3] * x[j + 3]
                j += 4
            }
            while j < end { s0 += x[j] * x[j]; j += 1 }
            sum += Double(s0) + Double(s1) + Double(s2) + Double(s3)
            i = end
        }
        return sum
    }

    /// Row-wise L2 normalisation: z[r] = u[r] / max(|u[r]|, eps); norms[r] = max(|u[r]|, eps).
    /// u, z: R x C (z may be u); norms: R.
    public static func l2NormalizeRows(_ z: UnsafeMutablePointer<Float>, norms: UnsafeMutablePointer<Float>,
                                       input u: UnsafePointer<Float>, rows: Int, columns: Int, epsilon: Float = 1e-12) {
        for r in 0..<rows {
            let row = u + r * columns
            var sum: Float = 0
            for c in 0..<columns { sum += row[c] * row[c] }
            let norm = max(sum.squareRoot(), epsilon)
            norms[r] = norm
            let inverse = 1 / norm
            let out = z + r * columns
            for c in 0..<columns { out[c] = row[c] * inverse }
        }
    }

    /// Backward of `l2NormalizeRows`: du[r] += (dz[r] - z[r] (z[r]·dz[r])) / norms[r].
    /// (Where the norm was clamped to eps the true Jacobian is dz/eps; rows that small do not
    /// occur in practice and PyTorch's F.normalize makes the same choice.)
    public static func l2NormalizeRowsBackward(inputGradient du: UnsafeMutablePointer<Float>, outputGradient dz: UnsafePointer<Float>,
                                               output z: UnsafePointer<Float>, norms: UnsafePointer<Float>, rows: Int, columns: Int) {
        for r in 0..<rows {
            let zr = z + r * columns, dzr = dz + r * columns, dur = du + r * columns
            var dot: Float = 0
            for c in 0..<columns { dot += zr[c] * dzr[c] }
            let inverse = 1 / norms[r]
            for c in 0..<columns { dur[c] += (dzr[c] - zr[c] * dot) * inverse }
        }
    }

    /// Row-wise log-softmax: y[r, c] = x[r, c] - log sum_c' exp(x[r, c']). Returns nothing;
    /// `logSumExp` (R values) receives each row's log-sum-exp. y may be x.
    public static func logSoftmaxRows(_ y: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>?,
                                      input x: UnsafePointer<Float>, rows: Int, columns: Int) {
        for r in 0..<rows {
            let row = x + r * columns
            var maximum = -Float.infinity
            for c in 0..<columns { maximum = max(maximum, row[c]) }
            var sum: Float = 0
            for c in 0..<columns { sum += exp(row[c] - maximum) }
            let lse = maximum + log(sum)
            logSumExp?[r] = lse
            let out = y + r * columns
            for c in 0..<columns { out[c] = row[c] - lse }
        }
    }

    /// Whether every x[i] is finite (no inf, no NaN).
    @inline(__always)
    public static func allFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool { ck_all_finite(x, count) != 0 }

    /// max of x[0..<n] (n > 0).
    @inline(__always)
    public static func maximum(_ x: UnsafePointer<Float>, count: Int) -> Float { ck_max(x, count) }

    /// y = exp(x - shift) element-wise, returning the sum of y (vectorised polynomial exp,
    /// within a few ulp of Foundation's exp; arguments below -87 give exactly 0). y may be x.
    @inline(__always)
    public static func expSum(_ y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, count: Int, shift: Float) -> Float {
        ck_exp_sum(x, y, count, shift)
    }

    public static func expSumReference(_ y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, count: Int, shift: Float) -> Float {
        var sum: Float = 0
        for i in 0..<count { y[i] = exp(x[i] - shift); sum += y[i] }
        return sum
    }
}
