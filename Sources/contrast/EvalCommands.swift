import Bench
import Config
import Evaluation
import ArgumentParser
import Foundation
import NN
import Tensor
import Training

/// `contrast eval knn`: the kNN accuracy a training run logs, of a trained model or a baseline.
struct EvalKNN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knn",
        abstract: "kNN test accuracy of a trained encoder, or of a baseline: the classifier a training run logs "
            + "(cosine, the k = eval.knn_k nearest training samples vote exp(sim / eval.knn_temperature)).",
        discussion: "With --run, the data set, the model and the kNN settings come from the run's config, so the accuracy is the one "
            + "the run's log reports; --data evaluates on another data set of the model's input shape, and --set changes data.* "
            + "and eval.* keys (e.g. --set data.test_limit=1000). A baseline without --run takes its data set and architecture "
            + "from --config and --set (or --data). Progress goes to standard error.")

    enum Baseline: String, ExpressibleByArgument, CaseIterable { case pixels, random }

    @Option(name: .customLong("run"), help: ArgumentHelp(trainedModelHelp))
    var runDirectory: String?
    @Option(help: ArgumentHelp("Evaluate a baseline instead of the trained model: 'pixels' (the raw inputs, pixels or features) or 'random' "
            + "(the encoder initialised with the config's seed); with --run, on that run's data and architecture."))
    var baseline: Baseline?
    @Option(help: ArgumentHelp(dataHelp)) var data: String?
    @OptionGroup var options: ConfigOptions

    func validate() throws {
        if runDirectory == nil && baseline == nil { throw ValidationError("give --run RUN (a trained model) or --baseline pixels|random") }
        if runDirectory != nil && options.config != nil {
            throw ValidationError("--config: --run takes its config from the run; choose the data with --data or --set data.* / eval.* keys")
        }
    }

    func run() throws {
        try reportingErrors {
            let trained = try runDirectory.map { try TrainedModel.load($0, data: data) }
            var config = try trained.map { try Evaluation.evaluationConfig($0.config, overrides: options.overrides) } ?? options.load()
            if let data { config = try Evaluation.config(config, data: data) }
            try useComputeSettings(of: config)
            let folder = data ?? config.data.path
            let train = try Evaluation.evaluationSplit(config, .train)
            try trained?.check(fits: train, data: folder)
            let test = try Evaluation.evaluationSplit(config, .test)
            let model: ContrastiveModel?
            let what: String
            switch baseline {
            case .pixels:
                model = nil
                what = Evaluation.Encoder.rawName(images: train.isImage)
            case .random:
                model = TrainedModel.makeModel(config, inputs: trained?.inputs ?? ModelInputs(train))
                model!.initialise(seed: UInt64(config.seed))
                what = "randomly initialised encoder (seed \(config.seed))"
            case nil:
                model = trained!.model
                what = "trained encoder, \(trained!.source)"
            }
            let accuracy = try Evaluation.knnAccuracy(model: model, train: train, test: test, k: config.eval.knnK,
                                                      temperature: config.eval.knnTemperature, progress: progressToStandardError())
            say(String(format: "kNN accuracy: %.2f%% (%@; k=%d, %d train / %d test samples of %@)",
                       accuracy * 100, what, config.eval.knnK, train.count, test.count, folder))
        }
    }
}

/// `contrast eval full`: the evaluation suite (docs/evaluation.md) of a checkpoint or run.
struct EvalFull: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "full",
        abstract: "kNN, linear probe, calibration and robustness to corrupted test images: raw inputs, random init and the trained encoder.",
        discussion: "The data set comes from the model's config (or --data); --set overrides data.* keys (e.g. --set data.test_limit=1000) "
            + "and eval.* keys; everything else comes from the checkpoint. Progress goes to standard error.")

    @Option(help: ArgumentHelp(trainedModelHelp))
    var checkpoint: String
    @Option(help: ArgumentHelp(dataHelp)) var data: String?
    @Option(help: "OpenBLAS threads (default: every core; evaluation runs in one process).")
    var threads: Int?
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a data or eval key, e.g. --set data.test_limit=1000.", valueName: "key=value"))
    var overrides: [String] = []

    func run() throws {
        try reportingErrors {
            let started = monotonicSeconds()
            let trained = try TrainedModel.load(checkpoint, data: data)
            var config = try Evaluation.evaluationConfig(trained.config, overrides: overrides)
            if let data { config = try Evaluation.config(config, data: data) }
            try useComputeSettings(of: config, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let report = try Evaluation.suite(trained: trained, config: config, data: data) { line in
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

/// Help of every `--data` option.
let dataHelp = "Evaluate on this data set instead of the model's (its config's data.path): a folder `contrast prepare` wrote, "
    + "or a folder of Fashion-MNIST's IDX files; its samples must have the model's input shape."

/// Evaluation computes as the run's evaluation did: train.blas_threads (or `threads`) OpenBLAS
/// threads and the run's GEMM library (train.gemm_library), so its numbers are the run's.
func useComputeSettings(of config: TrainingConfig, threads: Int? = nil) throws {
    BLASThreads.set(threads ?? config.train.blasThreads)
    try config.train.gemmLibrary.apply()
}

/// Progress of a long evaluation on standard error, a line at least every 10 s of work.
func progressToStandardError() -> EvaluationProgress {
    EvaluationProgress { FileHandle.standardError.write(Data(("eval: " + $0 + "\n").utf8)) }
}
