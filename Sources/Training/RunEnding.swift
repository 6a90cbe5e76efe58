import Tensor
import Evaluation
import Checkpoint
import Foundation

/// How a run's training loop ended.
enum Ending: Equatable {
    /// The last step, or early stopping: evaluated, weights written.
    case completed
    /// A stop signal, honoured with a checkpoint.
    case interrupted
    /// train.max_skipped_steps, with the message that says why and what to do.
    case skippedSteps(String)

    var message: String? {
        if case .skippedSteps(let message) = self { return message }
        return nil
    }
}

extension Trainer {
    /// The run's `end` record, whatever ended it.
    func recordEnd(_ ending: Ending, seconds: Double) {
        log.record("end", [("step", .int(stepsDone)), ("interrupted", .bool(ending == .interrupted)), ("seconds", .number(seconds)),
                           ("parameters_checksum", .string(parametersChecksum))])
    }

    /// FNV-1a checksum of this rank's parameters (16 hex digits) for the `end` record: equal on
    /// every rank of a healthy data-parallel run, so a rank that drifted (an update applied on
    /// one rank but not another) shows.
    var parametersChecksum: String {
        let arena = model.arena
        let checksum = WeightsFile.checksum(UnsafeRawBufferPointer(start: arena.parameters.data, count: arena.count * 4))
        return String(format: "%016llx", checksum)
    }

    /// train.max_skipped_steps: the message that stops the run when the step just done makes K
    /// skipped steps in a row (the same decision on every rank: skipping is); nil otherwise.
    func skippedStepsStop(_ result: TrainingStep.Result) -> String? {
        let limit = config.train.maxSkippedSteps, inARow = step.reducer.skippedInARow
        guard !result.applied, limit > 0, inARow >= limit else { return nil }
        let newest = CheckpointStore.list(runDirectory: runDirectory).first?.lastPathComponent
        return "stopping at step \(stepsDone): \(inARow) steps in a row were skipped (train.max_skipped_steps \(limit)) because "
            + "the summed loss or gradients were not finite (loss \(result.loss)). Likely causes: a learning rate too high "
            + "(lower optimizer.lr or raise optimizer.warmup_steps), fp16 gradients overflowing (communication.precision bf16), "
            + "NaN or inf in the input data, or a learned temperature out of range. Nothing was written for these steps; "
            + (newest.map { "the newest checkpoint (\($0)) is intact: fix the cause and resume from it" } ?? "there is no checkpoint yet")
            + ", or raise train.max_skipped_steps (0 = never stop)."
    }
}
