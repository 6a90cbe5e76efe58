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
}
