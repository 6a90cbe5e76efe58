import NN
import Bench
import Evaluation
import Config
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
        // `contrast --version`: the release and the linker's build id, which ranks compare to
        // make sure they run the same binary (one line, exit 0).
        version: "contrast \(contrastVersion) (build id \(BuildID.hex.isEmpty ? "none" : BuildID.hex))",
        subcommands: [Train.self, Eval.self, Export.self, Embed.self, Prepare.self, VocabCommand.self, CheckpointCommand.self, TailCommand.self, ReportCommand.self, BenchCommand.self, CollectivesCheckCommand.self, ReducerCheckCommand.self])
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
        // Loading and validating the config is the same on every rank, so it happens before
        // MPI starts: a mistake in it is printed once (by rank 0) and every rank exits 1 on its
        // own, with no MPI_Abort and none of Open MPI's abort text after the message.
        let config: TrainingConfig
        do { config = try options.load() } catch {
            if Launch.environmentRank() == 0 { FileHandle.standardError.write(Data("contrast: error: \(error)\n".utf8)) }
            throw ExitCode(1)
        }
        try runOnRanks { communicator in
            let trainer = try Trainer(config: config, communicator: communicator)
            if communicator.rank == 0 { say("run directory: \(trainer.runDirectory.path)") }
            let summary = try trainer.run()
            interrupted = summary.interrupted
            skippedStepsStop = summary.skippedStepsStop
            if let skippedStepsStop, communicator.rank == 0 {
                FileHandle.standardError.write(Data("contrast: error: \(skippedStepsStop)\n".utf8))
            }
            if communicator.rank == 0 && summary.alreadyFinished {
                say(Trainer.alreadyFinishedLine(summary))
            } else if communicator.rank == 0 && !interrupted && skippedStepsStop == nil {
                // A run without labels or a test split says what it skipped, not "nan%".
                say(summary.knnAccuracy.isFinite ? String(format: "kNN accuracy: %.2f%% (run directory %@)", summary.knnAccuracy * 100, summary.runDirectory)
                                                 : "kNN skipped: \(summary.knnSkipped ?? "not evaluated") (run directory \(summary.runDirectory))")
            }
        }
        // Stopped by a stop signal (StopSignal) after a checkpoint: a distinct status tells a requeue script to resume.
        if interrupted { throw ExitCode(Trainer.interruptedExitCode) }
        // Every rank made the same decision (skipping is identical on every rank) and finalized MPI.
        if skippedStepsStop != nil { throw ExitCode(Trainer.skippedStepsExitCode) }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate representations.", subcommands: [EvalKNN.self, EvalFull.self, EvalDrift.self])
}

// The C kernels read CONTRAST_KERNELS_ISA on first use; using them here, before any subcommand,
// makes a value that names no instruction set one line and exit status 1 at once, not a stop in
// the middle of a run that has made its directory.
_ = Kernels.instructionSet
Contrast.main()
