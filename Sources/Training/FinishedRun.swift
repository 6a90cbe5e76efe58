import RunFiles
import Foundation

extension Trainer {
    /// The same command run again on a run that completed: `resume: auto` finds its final
    /// checkpoint and there is nothing left to train. Evaluating again would log a "final loss
    /// nan" (no step ran) and append a second `end` record to a run that already has its own.
    /// Finished means resumed at the last step with weights.bin written (the final evaluation
    /// and the weights come after the last checkpoint: without them the run still finishes them).
    /// Rank 0 decides (it writes weights.bin); every rank returns the same.
    /// - Returns: the summary of the finished run (kNN accuracy: its last evaluation's), or nil.
    func finishedRun() throws -> Summary? {
        guard resumedFrom != nil, stepsDone >= totalSteps else { return nil }
        var finished = [communicator.isRoot && FileManager.default.fileExists(atPath: weightsFile.path) ? 1.0 : 0.0]
        try communicator.allReduceMax(&finished)
        guard finished[0] != 0 else { return nil }
        let knn = communicator.isRoot ? Self.lastKNNAccuracy(runDirectory: runDirectory) : .nan
        return Summary(steps: stepsDone, finalLoss: .nan, knnAccuracy: knn, runDirectory: runDirectory.path,
                       epochMeanLosses: [], interrupted: false, alreadyFinished: true)
    }

    var weightsFile: URL { runDirectory.appendingPathComponent("weights.bin") }

    /// The kNN accuracy of rank 0's last `eval` record that has one; NaN when there is none.
    static func lastKNNAccuracy(runDirectory: URL) -> Double {
        guard let metrics = try? RunMetrics.read(runDirectory: runDirectory) else { return .nan }
        return metrics.primary.records(.eval).last { $0["knn_accuracy"] != nil }?["knn_accuracy"] ?? .nan
    }

    /// The line the command prints for a run that was already finished.
    public static func alreadyFinishedLine(_ summary: Summary) -> String {
        "run already finished at step \(summary.steps) (\(summary.runDirectory)/weights.bin); nothing to do"
            + (summary.knnAccuracy.isFinite ? String(format: "; its last kNN accuracy was %.2f%%", summary.knnAccuracy * 100) : "")
    }
}
