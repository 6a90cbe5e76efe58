import Bench
import Evaluation
import ArgumentParser
import Foundation
import Tensor
import Training

/// `contrast eval full`: the evaluation suite (docs/evaluation.md) of a checkpoint or run.
struct EvalFull: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "full",
        abstract: "kNN, linear probe, calibration and robustness to corrupted test images: raw pixels, random init and the trained encoder.",
        discussion: "--set overrides data.* keys (e.g. --set data.test_limit=1000) and eval.* keys; "
            + "everything else comes from the checkpoint. Progress goes to standard error.")

    @Option(help: ArgumentHelp(trainedModelHelp))
    var checkpoint: String
    @Option(help: "OpenBLAS threads (default: every core; evaluation runs in one process).")
    var threads: Int?
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a data or eval key, e.g. --set data.test_limit=1000.", valueName: "key=value"))
    var overrides: [String] = []

    func run() throws {
        try reportingErrors {
            let started = monotonicSeconds()
            let trained = try TrainedModel.load(checkpoint)
            let config = try Evaluation.evaluationConfig(trained.config, overrides: overrides)
            BLASThreads.set(threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let report = try Evaluation.suite(trained: trained, config: config) { line in
                FileHandle.standardError.write(Data(("eval: " + line + "\n").utf8))
            }
            if json {
                say(report.json())
            } else {
                say(report.table())
                say(String(format: "total time: %.1f s", monotonicSeconds() - started))
            }
        }
    }
}
