import Tensor

/// Central finite differences, the oracle every backward pass is tested against
/// (like `torch.autograd.gradcheck`, in Float32, so tolerances are loose by necessity).
public enum GradientCheck {
    /// Numerical gradient of `f` with respect to `x[indices]`: (f(x + h e_i) - f(x - h e_i)) / 2h.
    /// `x` is restored afterwards.
    public static func numericalGradient(of f: () -> Double, at x: UnsafeMutablePointer<Float>,
                                         indices: [Int], step h: Float = 1e-2) -> [Double] {
        indices.map { i in
            let saved = x[i]
            x[i] = saved + h
            let plus = f()
            x[i] = saved - h
            let minus = f()
            x[i] = saved
            return (plus - minus) / Double(2 * h)
        }
    }

    /// Largest |a - n| / max(|a|, |n|, floor) over the pairs: a relative error that does not blow
    /// up on gradients near zero.
    public static func maxRelativeError(analytic: [Double], numerical: [Double], floor: Double = 1e-2) -> Double {
        zip(analytic, numerical).map { a, n in abs(a - n) / max(abs(a), abs(n), floor) }.max() ?? 0
    }

    // MARK: Differences that know their own accuracy
    //
    // The central difference D = (f(x + h) - f(x - h)) / 2h of a Float32 computation f misses
    // f'(x) for three reasons, and `differences` measures each instead of covering them with
    // one tolerance:
    //
    // 1. Truncation, h^2 f'''/6 where f is smooth on [x - h, x + h]: at most 5e-4 of f' in
    //    the layer tests (h = 1e-2); the relative tolerance of `compare` covers it.
    // 2. Kinks. A ReLU max(z, 0) makes f only piecewise smooth: if a pre-activation z_j crosses
    //    0 between x - h and x + h, f' jumps there by (dL/da_j)(dz_j/dx_i) and D misses f'(x)
    //    by up to half that jump, an O(1) error that no tolerance or step size removes. In a
    //    block with normalisation every pre-activation of a group moves with every input, so
    //    some z_j within h |dz_j/dx_i| of 0 is likely among a few hundred units (each is about
    //    N(0, 1), density 0.4 at 0). So the caller passes the activation pattern (every ReLU's
    //    side, output > 0) and a coordinate whose pattern at x - h or x + h differs from x's is
    //    retried with h/8 (a kink at distance t from x is passed once h < t) and otherwise
    //    dropped and counted (in the layer tests 31 of ~1,500 coordinates needed h/8 and 2 were
    //    dropped). Equal patterns at x - h, x, x + h exclude a crossing, except a z_j leaving
    //    0 and coming back within the step, which needs curvature ~ |z_j| / h^2.
    // 3. Rounding. Each evaluation of f carries a rounding error e of some size sigma (the
    //    noise level of f), so D carries (e+ - e-) / 2h, standard deviation sigma / (sqrt 2 h).
    //    With h = 1e-3 and a loss summed over a few hundred outputs, sigma ~ 1e-7 gives about
    //    1e-4: 2 % of a gradient of 0.01, which is why a fixed relative tolerance passes on one
    //    CPU and fails on another (other GEMM kernels, other roundings). sigma is measured, by
    //    Moré and Wild's ECnoise ("Estimating computational noise", SIAM J. Sci. Comput. 33,
    //    2011): f at 17 points x_j = x + j delta, j = -8...8, delta = h/32, whose k-th
    //    differences are f^(k) delta^k (negligible for k >= 3) plus noise with mean square
    //    (2k)!/(k!)^2 sigma^2; sigma^2 is the mean of the k = 3...6 estimates. Two details
    //    matter in Float32. The points are rounded to Floats, so they are not exactly equally
    //    spaced: the linear part D t_j (t_j = x_j - x as rounded) is subtracted before
    //    differencing, or f' ulp(x) would leak in, as large as the noise. And delta is h/32 as
    //    given, not rounded to a power of two: at x + j 2^-n a bias or a residual sum can be
    //    exact, the noise there 0, while x +- h rounds; the grid must round like the step. One estimate from 17 points
    //    still ranges from 0.3 to 1.7 sigma, so none is taken below the root mean square over
    //    the coordinates of the call (f's noise level hardly depends on the coordinate).
    //    The allowance is 6 sigma / h. Over the ~1,500 differences of the layer tests, on
    //    AVX-512 and under AVX2 emulation, the largest error at h = 1e-3 was 2.8 sigma / h
    //    (rounding errors of deep networks have heavier tails than Gaussian ones, for which
    //    that is already 4 standard deviations); 6 leaves a factor of 2.

    /// How many of f's noise levels, over h, a central difference may stray through rounding.
    public static let noiseMultiple = 6.0

    /// One coordinate's central difference and what limits its accuracy.
    public struct Difference: Sendable {
        /// The coordinate of x.
        public var index: Int
        /// (f(x+) - f(x-)) / (x+ - x-), x± = x ± h as Floats.
        public var value: Double
        /// The step h taken: the first of h, h/8 whose interval holds no kink.
        public var step: Float
        /// f's noise level near x (the size of one evaluation's rounding error): this
        /// coordinate's estimate, or the root mean square of all coordinates' if that is larger.
        public var noise: Double
        /// A ReLU changed sides within every step tried: `value` is no derivative.
        public var crossesKink: Bool

        /// How far `value` may stray from f'(x) through f's rounding: `noiseMultiple` sigma / h.
        public var roundingAllowance: Double { GradientCheck.noiseMultiple * noise / Double(step) }
    }

    /// Central differences of `f` at `x[indices]` with their noise levels and kinks (see above);
    /// `x` is restored afterwards. `activationPattern`, read after each evaluation of `f`, is the
    /// side of every ReLU in f (nil: f has none).
    public static func differences(of f: () -> Double, at x: UnsafeMutablePointer<Float>, indices: [Int],
                                   step h: Float, activationPattern: (() -> [Bool])? = nil) -> [Difference] {
        let pattern = activationPattern ?? { [] }
        _ = f()
        let center = pattern()
        let differences = indices.map { index in
            let saved = x[index]
            defer { x[index] = saved }
            var last = Difference(index: index, value: 0, step: h, noise: 0, crossesKink: true)
            for step in [h, h / 8] {
                var kink = false
                func evaluate(_ value: Float) -> Double {
                    x[index] = value
                    let y = f()
                    if pattern() != center { kink = true }
                    return y
                }
                let plus = saved + step, minus = saved - step
                let value = (evaluate(plus) - evaluate(minus)) / (Double(plus) - Double(minus))
                let noise = noiseLevel({ evaluate($0) }, at: saved, step: step, slope: value)
                last = Difference(index: index, value: value, step: step, noise: noise, crossesKink: kink)
                if !kink { break }
            }
            return last
        }
        // One estimate from 17 points can be low by half; f's noise level hardly depends on the
        // coordinate, so none is taken below the root mean square over all of them.
        let pooled = (differences.reduce(0) { $0 + $1.noise * $1.noise } / Double(max(differences.count, 1))).squareRoot()
        return differences.map { difference in
            var difference = difference
            difference.noise = max(difference.noise, pooled)
            return difference
        }
    }

    /// ECnoise's estimate of the noise level of g near x: the root of the mean over k = 3...6 of
    /// (k!)^2/(2k)! mean((Δ^k r)^2), r_j = g(x_j) - slope t_j, x_j = x + j h/32 as a Float,
    /// t_j = x_j - x, j = -8...8 (see above).
    static func noiseLevel(_ g: (Float) -> Double, at x: Float, step h: Float, slope: Double) -> Double {
        var table = (-8...8).map { j -> Double in
            let point = x + Float(j) * (h / 32)
            return g(point) - slope * (Double(point) - Double(x))
        }
        var variance = 0.0, gamma = 1.0
        for k in 1...6 {
            table = zip(table.dropFirst(), table).map { $0 - $1 }
            // gamma_k = (k!)^2 / (2k)!, built up as gamma_k = gamma_{k-1} k^2 / ((2k - 1) 2k).
            gamma *= Double(k * k) / Double((2 * k - 1) * (2 * k))
            if k >= 3 { variance += gamma * table.reduce(0) { $0 + $1 * $1 } / Double(table.count) / 4 }
        }
        return variance.squareRoot()
    }

    /// The outcome of `compare`: which coordinates were checked, dropped at a kink, or failed.
    public struct Comparison: Sendable {
        public var checked = 0
        public var kinks = 0
        /// One line per coordinate outside its tolerance.
        public var failures: [String] = []
        /// Largest |a - n| / (relative tolerance max(|a|, |n|) + rounding allowance): below 1 passes.
        public var worst = 0.0
    }

    /// Each analytic derivative against its central difference: it passes when
    /// |a - n| <= relativeTolerance max(|a|, |n|) + n's rounding allowance. Coordinates that
    /// cross a kink are counted, not compared.
    public static func compare(analytic: [Double], _ differences: [Difference], relativeTolerance: Double) -> Comparison {
        precondition(analytic.count == differences.count, "one analytic derivative per difference")
        var result = Comparison()
        for (a, d) in zip(analytic, differences) {
            if d.crossesKink { result.kinks += 1; continue }
            result.checked += 1
            let bound = relativeTolerance * max(abs(a), abs(d.value)) + d.roundingAllowance
            let ratio = a == d.value ? 0 : abs(a - d.value) / bound
            result.worst = max(result.worst, ratio)
            if !(ratio <= 1) {
                result.failures.append("x[\(d.index)]: analytic \(a), numerical \(d.value) (step \(d.step), "
                                       + "rounding allowance \(d.roundingAllowance))")
            }
        }
        return result
    }
}
