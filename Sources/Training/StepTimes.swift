import Tensor
import Foundation

/// Where a training step spends its time, in seconds.
public struct StepTimes: Sendable {
    /// Waiting for the batch: making it in the loop, or the prefetcher's wait for it.
    public var dataWait = 0.0
    public var forward = 0.0
    /// All-gather of embeddings and reduce-scatter of their gradients (zero in one process).
    public var gather = 0.0
    public var loss = 0.0
    public var backward = 0.0
    /// Waiting for the gradient all-reduce after backward, and the step's statistics.
    public var communication = 0.0
    public var optimizer = 0.0
    public var total: Double { dataWait + compute }
    /// Everything but the data wait.
    public var compute: Double { forward + gather + loss + backward + communication + optimizer }

    public init() {}

    public static func + (a: StepTimes, b: StepTimes) -> StepTimes {
        var s = StepTimes()
        s.dataWait = a.dataWait + b.dataWait
        s.forward = a.forward + b.forward
        s.gather = a.gather + b.gather
        s.communication = a.communication + b.communication
        s.loss = a.loss + b.loss
        s.backward = a.backward + b.backward
        s.optimizer = a.optimizer + b.optimizer
        return s
    }
}

/// Splits a step's wall time into `StepTimes` fields: each `lap` charges the time since the
/// previous lap (or since the clock started) to one field.
struct StepClock {
    private(set) var times = StepTimes()
    private var last = monotonicSeconds()

    mutating func lap(_ field: WritableKeyPath<StepTimes, Double>) {
        let now = monotonicSeconds()
        times[keyPath: field] += now - last
        last = now
    }
}
