import Tensor
import RunFiles
import Foundation
import NN

/// The named points where the fault harness and tests reach into a step, outside the
/// algorithm's lines (docs/reliability.md, docs/monitoring.md): `CONTRAST_FAULT`'s faults
/// (FaultInjection.swift) and `CONTRAST_SLOW_RANK`'s delay. Unset, each point costs a comparison.
///
/// The points, in the order a step meets them: `begin` (which faults are due, kill@forward, the
/// delay), `loss` (nan-loss), `statistics` (hang), the gradients' reports during backward
/// (nan-grad), `allReduce` (kill@allreduce), `update` (kill@optimizer).
public final class StepHooks {
    /// The run's faults (nil: none); each step acts on those due on this rank at that step.
    public var faults: FaultInjection?
    /// Seconds this rank sleeps in every forward: a straggler for tests of the warning.
    public var delay = 0.0
    let rank: Int
    /// The faults due in the step in progress.
    private(set) var due: StepFaults?
    /// nan-grad: the arena offset still to poison in this step's backward, else -1.
    private var poisonOffset = -1

    init(rank: Int) { self.rank = rank }

    /// `CONTRAST_SLOW_RANK=rank:milliseconds`: the delay of `rank` (0 unless it is the one named).
    public static func slowRankDelay(rank: Int, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Double {
        guard let slow = environment["CONTRAST_SLOW_RANK"] else { return 0 }
        let parts = slow.split(separator: ":").compactMap { Double($0) }
        guard parts.count == 2 else {
            throw RunDirectory.Failure(description: "CONTRAST_SLOW_RANK=\(slow) must be rank:milliseconds, e.g. 1:50")
        }
        return Int(parts[0]) == rank ? parts[1] / 1000 : 0
    }

    /// Step `step` (0-based) begins, before its forward pass: the faults due at it (logs count
    /// steps from 1), kill@forward, then the delay (inside the step's clock, so it shows as compute).
    func begin(step: Int) {
        due = faults?.due(rank: rank, step: step + 1)
        due?.reach(.forward)
        if delay > 0 { usleep(UInt32(delay * 1e6)) }
    }

    /// This rank's share of the loss as the statistics carry it.
    func loss(_ share: Double) -> Double {
        due?.nanLoss == true ? .nan : share
    }

    /// Before the statistics' all-reduce starts.
    func statistics() {
        due?.hangIfDue()
    }

    /// Before backward: arms nan-grad on this rank's first trainable gradient, to be written just
    /// before its bucket starts.
    func backwardBegins(firstTrainable: Int) {
        poisonOffset = due?.nanGradient == true ? firstTrainable : -1
    }

    /// Backward reports gradients at and above `offset` final.
    @inline(__always)
    func gradientsFinal(from offset: Int, _ arena: ParameterArena) {
        if poisonOffset >= 0 && offset <= poisonOffset { poison(arena) }
    }

    /// After backward: the poison, if no report reached its offset.
    func backwardEnded(_ arena: ParameterArena) {
        if poisonOffset >= 0 { poison(arena) }
    }

    private func poison(_ arena: ParameterArena) {
        arena.gradients.data[poisonOffset] = .nan
        poisonOffset = -1
    }

    /// Backward is done; the gradient all-reduces are in flight.
    func allReduce() { due?.reach(.allreduce) }

    /// The update is about to be applied.
    func update() { due?.reach(.optimizer) }
}
