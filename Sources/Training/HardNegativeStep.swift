import Tensor
import Evaluation
import RunFiles
import Config
import Contrastive
import Foundation

// Hard negatives in the training step (loss.hard_negative_beta, loss.hard_negative_schedule,
// loss.debiased_tau_plus): which loss the step uses and the beta of each step.

extension TrainingStep {
    /// The reweighted / debiased NT-Xent of `loss`, or nil when neither option is on (plain NTXentLoss).
    static func makeHardNegativeLoss(_ loss: LossSection) -> HardNegativeNTXentLoss? {
        guard loss.kind == .ntxent && loss.usesHardNegatives else { return nil }
        return HardNegativeNTXentLoss(temperature: loss.temperature, beta: loss.hardNegativeBeta,
                                      tauPlus: loss.debiasedTauPlus, logitChunk: loss.logitChunk)
    }

    /// beta(step) from `start` at step 0 to `final` at `totalSteps`:
    /// constant: start;  linear: start + (final - start) t;  cosine: final + (start - final)(1 + cos(pi t)) / 2,
    /// t = min(1, step / totalSteps).
    public static func hardNegativeBeta(schedule: HardNegativeSchedule, start: Float, final: Float, step: Int, totalSteps: Int) -> Float {
        let progress = totalSteps > 0 ? min(1, Double(step) / Double(totalSteps)) : 1
        switch schedule {
        case .constant: return start
        case .linear: return Float(Double(start) + Double(final - start) * progress)
        case .cosine: return cosineTemperature(start: start, final: final, step: step, totalSteps: totalSteps)
        }
    }

    /// The hard-negative beta of step `step` (0-based) under the config's schedule.
    public func hardNegativeBeta(atStep step: Int) -> Float {
        let l = config.loss
        return Self.hardNegativeBeta(schedule: l.hardNegativeSchedule, start: l.hardNegativeBeta, final: l.hardNegativeBetaFinal,
                                     step: step, totalSteps: totalSteps)
    }
}
