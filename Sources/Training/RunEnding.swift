import Tensor
import Evaluation
import Checkpoint
import Foundation
import RunFiles

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
    /// A completed run's record on rank 0 also holds the final kNN accuracy, or why it was skipped.
    func recordEnd(_ ending: Ending, seconds: Double, knnAccuracy: Double = .nan) {
        var fields: [(String, JSONValue)] = [("step", .int(stepsDone)), ("interrupted", .bool(ending == .interrupted)),
                                             ("seconds", .number(seconds)), ("parameters_checksum", .string(parametersChecksum))]
        if ending == .completed && communicator.isRoot {
            fields.append(knnAccuracy.isFinite ? ("knn_accuracy", .number(knnAccuracy)) : ("knn_skipped", .string(knnSkipped ?? "not evaluated")))
        }
        log.record("end", fields)
    }

    /// Why the kNN evaluation cannot give an accuracy on this data, and what to do about it;
    /// nil when it can. Rank 0 only (the rank that holds the test split). What the log, the
    /// metrics, the report and the run's last line say instead of a NaN.
    /// - Parameter labelsUsable: whether the training labels made a kNN memory (every rank's
    ///   labels are class indices the kNN handles).
    func knnSkip(labelsUsable: Bool = true) -> (cause: String, fix: String)? {
        if data.texts != nil { return ("a text set has no classes; it is evaluated by retrieval on its test split", "") }
        guard let test = data.test else {
            return ("the data set \(config.data.path) has no test split",
                    "prepare it with --test-fraction 0.2, or point data.path at the folder holding train/ and test/")
        }
        guard data.train.labels != nil else { return ("the training data has no labels", "prepare it with --labels to evaluate") }
        guard test.labels != nil else { return ("the test split has no labels", "prepare it with --test-labels to evaluate") }
        guard labelsUsable, Evaluation.classes(test.labels) != nil else {
            return ("the labels are not all class indices in 0 ..< 256, the range the kNN evaluation handles", "renumber the classes")
        }
        return nil
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
