import Foundation

/// Learning rate as a function of the 0-based step index (the step about to be taken).
public enum LearningRateSchedule: Sendable, Equatable {
    /// The same rate at every step.
    case constant(Float)

    /// Linear warm-up, then cosine decay (SimCLR, Goyal et al. 2017), with s the 0-based step:
    ///
    ///     lr(s) = base · (s + 1) / W                                    s < W
    ///     lr(s) = final + (base - final) · ½ (1 + cos(π (s - W) / (T - W)))   W ≤ s < T
    ///     lr(s) = final                                                 s ≥ T
    ///
    /// So the first step already moves (base/W), step W-1 uses base, step W starts the cosine
    /// at base, and the cosine reaches `final` at s = T (clamped there). Computed in Double.
    /// - Parameters:
    ///   - base: the peak rate.
    ///   - warmupSteps: W ≥ 0; 0 means no warm-up.
    ///   - totalSteps: T, the step at which the rate reaches `final`; T ≤ W means no cosine part.
    ///   - final: the rate after the decay.
    case warmupCosine(base: Float, warmupSteps: Int, totalSteps: Int, final: Float)

    public func learningRate(atStep step: Int) -> Float {
        precondition(step >= 0, "LearningRateSchedule: step must be >= 0, got \(step)")
        switch self {
        case .constant(let rate):
            return rate
        case let .warmupCosine(base, warmupSteps, totalSteps, final):
            if step < warmupSteps {
                return Float(Double(base) * Double(step + 1) / Double(warmupSteps))
            }
            if step >= totalSteps { return final }
            let progress = Double(step - warmupSteps) / Double(totalSteps - warmupSteps)
            return Float(Double(final) + (Double(base) - Double(final)) * 0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}
