import ArgumentParser
import Data
import Distributed
import Foundation
import Tensor
import Training

/// The `contrast` command line: argument parsing and subcommands, no logic of its own.
/// (Started by the top-level `Contrast.main()` below, not `@main`: in a module of several
/// files, main.swift is top-level code and may not hold an `@main` type.)
struct Contrast: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Contrastive representation learning, data-parallel on CPUs.",
        subcommands: [Train.self, Eval.self, Export.self, Embed.self, Prepare.self, CheckpointCommand.self, TailCommand.self, ReportCommand.self, Bench.self, CollectivesCheck.self, ReducerCheck.self])
}

/// Writes a line to standard output unbuffered, so it keeps its order with the log's lines.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

/// Options naming a config: a YAML file and `--set key=value` overrides.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "YAML config file (see docs/config.md); defaults are the benchmark workload.")
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override one config key, e.g. --set optimizer.lr=3e-4.", valueName: "key=value"))
    var overrides: [String] = []

    func load() throws -> TrainingConfig { try ConfigLoader.load(file: config, overrides: overrides) }
}

/// Runs `body`, turning errors into one line on standard error and exit code 1: a user
/// mistake never shows a stack trace.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let error as ExitCode { throw error } catch {
        FileHandle.standardError.write(Data("contrast: error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an encoder: one process, or every rank of an mpirun / srun launch.")
    @OptionGroup var options: ConfigOptions

    func run() throws {
        var interrupted = false
        var skippedStepsStop: String?
        try runOnRanks { communicator in
            let config = try options.load()
            let trainer = try Trainer(config: config, communicator: communicator)
            if communicator.rank == 0 { say("run directory: \(trainer.runDirectory.path)") }
            let summary = try trainer.run()
            interrupted = summary.interrupted
            skippedStepsStop = summary.skippedStepsStop
            if let skippedStepsStop, communicator.rank == 0 {
                FileHandle.standardError.write(Data("contrast: error: \(skippedStepsStop)\n".utf8))
            }
            if communicator.rank == 0 && !interrupted && skippedStepsStop == nil {
                say(String(format: "kNN accuracy: %.2f%% (run directory %@)", summary.knnAccuracy * 100, summary.runDirectory))
            }
        }
        // Stopped by SIGTERM / SIGUSR1 after a checkpoint: a distinct status tells a requeue script to resume.
        if interrupted { throw ExitCode(Trainer.interruptedExitCode) }
        // Every rank made the same decision (skipping is identical on every rank) and finalized MPI.
        if skippedStepsStop != nil { throw ExitCode(Trainer.skippedStepsExitCode) }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate representations.", subcommands: [KNN.self, EvalFull.self, EvalDrift.self])

    struct KNN: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "knn",
            abstract: "kNN test accuracy (k=200, cosine, exp(sim/0.1) votes) of a run's trained encoder, or of a baseline.")

        enum Baseline: String, ExpressibleByArgument, CaseIterable { case pixels, random }

        @Option(name: .customLong("run"), help: "Run directory of a finished training run (reads config.yaml and weights.bin).")
        var runDirectory: String?
        @Option(help: "Evaluate a baseline instead of a run: 'pixels' (raw pixels) or 'random' (the randomly initialised encoder).")
        var baseline: Baseline?
        @OptionGroup var options: ConfigOptions

        func validate() throws {
            if (runDirectory == nil) == (baseline == nil) { throw ValidationError("give exactly one of --run DIR or --baseline pixels|random") }
        }

        func run() throws {
            try reportingErrors {
                var config = try options.load()
                if let run = runDirectory {
                    let file = URL(fileURLWithPath: run).appendingPathComponent("config.yaml").path
                    guard FileManager.default.fileExists(atPath: file) else {
                        throw ValidationError("\(run) is not a run directory (no config.yaml); pass the run_dir of a training run")
                    }
                    config = try ConfigLoader.load(file: file, overrides: options.overrides)
                }
                BLASThreads.set(config.train.blasThreads)
                let train = try FashionMNIST.load(directory: config.data.path, split: .train, limit: config.data.trainLimit)
                let test = try FashionMNIST.load(directory: config.data.path, split: .test, limit: config.data.testLimit)
                let classifier = KNNClassifier(k: config.eval.knnK, temperature: config.eval.knnTemperature)
                let accuracy: Double
                let what: String
                if baseline == .pixels {
                    accuracy = Evaluation.knnAccuracyOnPixels(train: train, test: test, classifier: classifier)
                    what = "raw pixels"
                } else {
                    let model = ContrastiveModel(config.model, inputWidth: train.pixelsPerImage, imageShape: [train.height, train.width],
                                                 learnableTemperature: config.loss.temperatureMode == .learnable,
                                                 reconstruction: config.loss.reconstructionWeight > 0)
                    model.initialise(seed: UInt64(config.seed))
                    if let run = runDirectory {
                        try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run).appendingPathComponent("weights.bin"))
                        what = "trained encoder of \(run)"
                    } else {
                        what = "randomly initialised encoder (seed \(config.seed))"
                    }
                    accuracy = Evaluation.knnAccuracy(model: model, train: train, test: test, classifier: classifier)
                }
                say(String(format: "kNN accuracy: %.2f%% (%@; k=%d, %d train / %d test images)",
                             accuracy * 100, what, classifier.k, train.count, test.count))
            }
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure speed (figures for docs/benchmarks.md).",
                                                    subcommands: [GEMM.self, Step.self, DataPipeline.self, BenchAllReduce.self, BenchCheckpoint.self])

    struct GEMM: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "gemm",
            abstract: "sgemm GFLOP/s at the model's shapes, and the Linear layers as a fraction of it.")
        @Option(help: "Timed repeats per measurement (median reported).") var repeats = 20
        @Option(help: "OpenBLAS threads.") var threads = 1
        @OptionGroup var options: ConfigOptions

        func run() throws {
            try reportingErrors { say(Training.Bench.gemmReport(config: try options.load(), repeats: repeats, threads: threads)) }
        }
    }

    struct DataPipeline: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "data",
            abstract: "Data pipeline alone (read, decode, augment; one thread) against the step's consumption.")
        @Option(help: "Timed batches (median reported).") var repeats = 30
        @OptionGroup var options: ConfigOptions

        func run() throws {
            try reportingErrors { say(try Training.Bench.data(config: try options.load(), repeats: repeats)) }
        }
    }

    struct Step: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "step",
            abstract: "Training step time and its split, augmentation excluded and included.",
            discussion: "--ranks N starts N ranks through mpirun (or run it under mpirun / srun yourself).")
        @Option(help: "Timed steps (median reported).") var repeats = 30
        @Option(help: "Warm-up steps, not timed.") var warmup = 5
        @Option(help: "Ranks to start through mpirun when not already under a launcher.") var ranks = 1
        @Flag(help: "With --ranks: TCP between ranks instead of shared memory.") var tcp = false
        @Flag(help: "Print one JSON object instead of the table.") var json = false
        @OptionGroup var options: ConfigOptions

        func run() throws {
            try runOnRanks(relaunchingAs: ranks, tcp: tcp) { communicator in
                let (f, report) = try Training.Bench.step(config: try options.load(), communicator: communicator,
                                                          repeats: repeats, warmup: warmup)
                guard communicator.rank == 0 else { return }
                if json {
                    say(String(format: "{\"ranks\":%d,\"images_per_second_step\":%.1f,\"images_per_second_end_to_end\":%.1f,\"augmentation_ms\":%.3f,\"forward_ms\":%.3f,\"gather_ms\":%.3f,\"loss_ms\":%.3f,\"backward_ms\":%.3f,\"communication_ms\":%.3f,\"optimizer_ms\":%.3f,\"gemm_ms\":%.3f,\"resident_before_mb\":%.1f,\"resident_peak_mb\":%.1f}",
                                 communicator.size, f.imagesPerSecondStep, f.imagesPerSecondEndToEnd, f.median.augmentation * 1e3,
                                 f.median.forward * 1e3, f.median.gather * 1e3, f.median.loss * 1e3, f.median.backward * 1e3,
                                 f.median.communication * 1e3, f.median.optimizer * 1e3, f.gemmSeconds * 1e3,
                                 Double(f.residentBeforeBytes) / 1e6, Double(f.residentPeakBytes) / 1e6))
                } else {
                    say(report)
                }
            }
        }
    }
}

Contrast.main()
