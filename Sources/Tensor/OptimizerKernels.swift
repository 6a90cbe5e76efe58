import CKernels
import Foundation

// Optimizer update kernels over flat ranges of the parameter arena. Same pattern as
// Kernels.swift: the fast one calls CKernels, a plain Swift `...Reference` sits beside it.

extension Kernels {
    /// The bias corrections of Adam after `step` steps (1-based), in Double as PyTorch does:
    /// c1 = 1 - beta1^t, c2 = 1 - beta2^t.
    public static func adamBiasCorrections(beta1: Float, beta2: Float, step: Int) -> (first: Float, second: Float) {
        precondition(step >= 1, "Adam bias corrections need step >= 1, got \(step)")
        let first = 1 - pow(Double(beta1), Double(step))
        let second = 1 - pow(Double(beta2), Double(step))
        return (Float(first), Float(second))
    }

    /// One AdamW step over `count` consecutive elements (torch.optim.AdamW semantics):
    ///
    ///     p ← p (1 - lr·wd)
    ///     m ← β1 m + (1 - β1) g
    ///     v ← β2 v + (1 - β2) g²
    ///     p ← p - (lr / c1) · m / (√v / √c2 + ε),   c1 = 1 - β1^t, c2 = 1 - β2^t
    ///
    /// The C kernel is compiled per instruction set and may fuse multiply-adds, so it agrees
    /// with `adamWReference` to a few ulps, not bit for bit (see OptimizerKernelTests).
    /// - Parameters:
    ///   - p: parameters, updated in place.
    ///   - g: gradients (read only).
    ///   - m, v: first and second moment buffers, updated in place.
    ///   - step: the 1-based step number t, after incrementing.
    @inline(__always)
    public static func adamW(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                             firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
                             count: Int, learningRate: Float, beta1: Float, beta2: Float, epsilon: Float,
                             weightDecay: Float, step: Int) {
        let corrections = adamBiasCorrections(beta1: beta1, beta2: beta2, step: step)
        ck_adamw(p, g, m, v, count, learningRate, beta1, beta2, epsilon, weightDecay,
                 corrections.first, corrections.second)
    }

    /// Plain Swift twin of `adamW`, the same operations in the same order, without fusion.
    public static func adamWReference(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                                      firstMoment m: UnsafeMutablePointer<Float>, secondMoment v: UnsafeMutablePointer<Float>,
                                      count: Int, learningRate: Float, beta1: Float, beta2: Float, epsilon: Float,
                                      weightDecay: Float, step: Int) {
        let corrections = adamBiasCorrections(beta1: beta1, beta2: beta2, step: step)
        let decay: Float = 1 - learningRate * weightDecay
        let stepSize = learningRate / corrections.first
        let sqrtCorrection2 = corrections.second.squareRoot()
        for i in 0..<count {
            let gi = g[i]
            let mi = beta1 * m[i] + (1 - beta1) * gi
            let vi = beta2 * v[i] + (1 - beta2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() / sqrtCorrection2 + epsilon)
        }
    }
}
