import Tensor
import Config
import Contrastive
import Foundation
import NN

/// What one step needs of the run's clock, computed once per step from the step count: the
/// learning rate, the softmax temperature, the hard-negative beta, and this rank's requests.
public struct StepPlan: Sendable, Equatable {
    /// The step, 0-based (the schedules' clock).
    public var step: Int
    public var learningRate: Float
    /// Scheduled, or exp(-theta) of the learned logit scale as it stands before the step.
    public var temperature: Float
    /// The hard-negative concentration beta; nil without hard negatives.
    public var hardNegativeBeta: Float?
    public var requests: StepRequests
}

/// What this rank asks of every rank at the end of a step: to stop (a signal), to checkpoint (its
/// clock). They travel with the step's statistics and come back summed, so every rank acts on
/// the same step.
public struct StepRequests: Sendable, Equatable {
    public var stop: Bool
    public var checkpoint: Bool

    public init(stop: Bool = false, checkpoint: Bool = false) {
        self.stop = stop
        self.checkpoint = checkpoint
    }
}

/// The run's schedules, from the config and the run's length T (`totalSteps`).
public struct Schedules: Sendable {
    public let learningRate: LearningRateSchedule
    public let loss: LossSection
    public let totalSteps: Int

    public init(_ config: TrainingConfig, totalSteps: Int) {
        learningRate = Self.learningRate(config.optimizer, totalSteps: totalSteps)
        loss = config.loss
        self.totalSteps = totalSteps
    }

    /// The plan of step `step` (0-based). `learnedTemperature` is exp(-theta) of a learnable
    /// temperature (loss.temperature_mode learnable), read from the model; nil otherwise.
    public func plan(step: Int, requests: StepRequests, learnedTemperature: Float?) -> StepPlan {
        let l = loss
        let temperature: Float
        switch l.temperatureMode {
        case .fixed: temperature = l.temperature
        case .cosine: temperature = Self.cosine(start: l.temperature, final: l.temperatureFinal, step: step, totalSteps: totalSteps)
        case .learnable: temperature = learnedTemperature!
        }
        let beta = l.kind == .ntxent && l.usesHardNegatives
            ? Self.hardNegativeBeta(schedule: l.hardNegativeSchedule, start: l.hardNegativeBeta, final: l.hardNegativeBetaFinal,
                                    step: step, totalSteps: totalSteps) : nil
        return StepPlan(step: step, learningRate: learningRate.learningRate(atStep: step), temperature: temperature,
                        hardNegativeBeta: beta, requests: requests)
    }

    /// Linear warm-up over `warmup_steps`, then constant or cosine decay to `final_lr`.
    static func learningRate(_ o: OptimizerSection, totalSteps: Int) -> LearningRateSchedule {
        switch o.schedule {
        case .constant where o.warmupSteps == 0: return .constant(o.lr)
        case .constant: return .warmupCosine(base: o.lr, warmupSteps: o.warmupSteps, totalSteps: totalSteps, final: o.lr)
        case .cosine: return .warmupCosine(base: o.lr, warmupSteps: o.warmupSteps, totalSteps: totalSteps, final: o.finalLR)
        }
    }

    /// tau(step) = final + (start - final) (1 + cos(pi step / total)) / 2: start at step 0, final at `totalSteps`.
    public static func cosine(start: Float, final: Float, step: Int, totalSteps: Int) -> Float {
        let progress = totalSteps > 0 ? min(1, Double(step) / Double(totalSteps)) : 1
        return Float(Double(final) + Double(start - final) * (1 + cos(Double.pi * progress)) / 2)
    }

    /// beta(step) from `start` at step 0 to `final` at `totalSteps`:
    /// constant: start;  linear: start + (final - start) t;  cosine: final + (start - final)(1 + cos(pi t)) / 2,
    /// t = min(1, step / totalSteps).
    public static func hardNegativeBeta(schedule: HardNegativeSchedule, start: Float, final: Float, step: Int, totalSteps: Int) -> Float {
        let progress = totalSteps > 0 ? min(1, Double(step) / Double(totalSteps)) : 1
        switch schedule {
        case .constant: return start
        case .linear: return Float(Double(start) + Double(final - start) * progress)
        case .cosine: return cosine(start: start, final: final, step: step, totalSteps: totalSteps)
        }
    }
}
