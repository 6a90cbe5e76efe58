import Tensor
import Evaluation
import RunFiles
import Config
import Checkpoint
import Data
import Distributed
import Foundation
import NN

/// Everything besides the flat buffers that an exact continuation needs (stored in the
/// checkpoint manifest as its "state" object). Randomness needs no state: every draw is a pure
/// function of (seed, stream, position), and the seed is in the config.
struct TrainingState: Codable, Equatable {
    /// contrast's checkpoint-state version (not the file format's, which the manifest carries).
    var version = 1
    /// The contrast release that wrote it.
    var library = contrastVersion
    var step: Int
    var epoch: Int
    var batch: Int
    var globalBatch: Int
    var worldSize: Int
    var optimizerSteps: Int
    var lossScale: Float
    var cleanSteps: Int
    var skippedSteps: Int
    /// Skipped steps in a row at the checkpoint (train.max_skipped_steps counts on across a resume;
    /// absent in checkpoints written before it existed: 0).
    var skippedInARow: Int? = nil
    /// Running sums of the epoch in progress, so its mean loss is logged exactly after a resume.
    var epochLossSum: Double
    var epochSteps: Int
    /// The resolved config of the run that wrote it (YAML).
    var config: String
    /// Early stopping's best value and how long ago (absent when early stopping is off).
    var earlyStopping: EarlyStoppingState? = nil
    /// The MoCo queue's write position and fill (absent without loss.moco_queue).
    var momentumQueue: MomentumQueue.State? = nil
    /// The model's input shape, so evaluation and export rebuild it without the data set
    /// (absent in checkpoints written before it was recorded: read from the data set).
    var inputs: ModelInputs? = nil
}

/// Early stopping's memory: the best monitored value, the epoch it was reached (0: none yet),
/// and the evaluations since. Its parameters are checkpointed as `early_stopping.best_parameters`.
struct EarlyStoppingState: Codable, Equatable {
    var value: Double
    var epoch: Int
    var evaluationsSince: Int
}


/// Stop requests: SIGTERM and SIGUSR1 (Slurm sends them before a job's time limit), SIGINT
/// (Ctrl-C), SIGHUP (the terminal closed) and SIGUSR2 (launch/mpirun.sh's stand-in for a Ctrl-C,
/// which mpirun would not forward) set a flag that the trainer reads between steps; it finishes
/// the step, checkpoints and exits with `Trainer.interruptedExitCode`.
///
/// A user who presses Ctrl-C again wants out now: while a stop asked by SIGINT, SIGHUP or
/// SIGUSR2 is pending, any further stop signal, and SIGINT or SIGHUP after any stop, ends the
/// process at once with 128 + its number, after one line (rank 0) saying no checkpoint was
/// written and which one a resume starts from. (Under mpirun that second signal reaches the
/// ranks as SIGTERM from mpirun, which sends SIGKILL a second later anyway.) A scheduler's
/// repeated SIGTERM or SIGUSR1 (scancel signals srun and its tasks both) stays one graceful stop.
///
/// The handler is async-signal-safe: it stores a number, write(2)s a line prepared beforehand
/// and calls _exit(2); it allocates nothing and touches no Foundation or Swift runtime state.
/// Under launch/mpirun.sh it also leaves the rank's `signalled` marker (`RankMarkers`): a rank
/// that mpirun ended after another was lost is not named as lost itself.
enum StopSignal {
    nonisolated(unsafe) static var received: Int32 = 0
    static let handled = [SIGTERM, SIGUSR1, SIGINT, SIGHUP, SIGUSR2]

    /// The line a second signal writes (rank 0; empty elsewhere), in one of two buffers: the
    /// trainer fills the one not in use, then publishes it, so the handler never reads a half-
    /// written line.
    private nonisolated(unsafe) static var lines: (UnsafeMutablePointer<UInt8>, UnsafeMutablePointer<UInt8>) = (
        .allocate(capacity: lineCapacity), .allocate(capacity: lineCapacity))
    private nonisolated(unsafe) static var lineLengths: (Int, Int) = (0, 0)
    private nonisolated(unsafe) static var current: Int = 0
    private static let lineCapacity = 4096
    private nonisolated(unsafe) static var printsLine = false

    /// `printsLine`: this rank writes the second signal's line (rank 0). The line is prepared
    /// before the handlers exist, so the handler finds the buffers initialised.
    static func install(printsLine: Bool, resumeFrom: String?) {
        self.printsLine = printsLine
        prepareImmediateStopLine(resumeFrom: resumeFrom)
        for signalNumber in handled {
            signal(signalNumber) { number in
                RankMarkers.noteSignal()
                let pending = StopSignal.received
                guard pending != 0 else { StopSignal.received = number; return }
                let pendingIsInteractive = pending == SIGINT || pending == SIGHUP || pending == SIGUSR2
                guard pendingIsInteractive || number == SIGINT || number == SIGHUP else { return }
                let (line, length) = StopSignal.current == 0 ? (StopSignal.lines.0, StopSignal.lineLengths.0)
                                                              : (StopSignal.lines.1, StopSignal.lineLengths.1)
                if length > 0 { _ = write(2, line, length) }
                _exit(128 + number)
            }
        }
    }

    /// Prepares the line a second signal prints: `resumeFrom` names the checkpoint a resume
    /// would start from (nil: none yet, the run starts again from step 0).
    static func prepareImmediateStopLine(resumeFrom: String?) {
        let text = "contrast: stopped at once by a second signal: no checkpoint written for this stop; "
            + (resumeFrom.map { "running the same command resumes from checkpoint \($0)\n" }
               ?? "no checkpoint yet, so running the same command starts the run again from step 0\n")
        let bytes = printsLine ? Array(text.utf8.prefix(lineCapacity)) : []
        let spare = current == 0 ? lines.1 : lines.0
        spare.update(from: bytes, count: bytes.count)
        if current == 0 { lineLengths.1 = bytes.count; current = 1 } else { lineLengths.0 = bytes.count; current = 0 }
    }

    static var name: String {
        switch received {
        case SIGUSR1: "SIGUSR1"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        case SIGUSR2: "SIGUSR2 (launch/mpirun.sh's Ctrl-C)"
        default: "SIGTERM"
        }
    }
}

extension TrainingStep {
    /// What a checkpoint stores of the step: parameters, then every optimizer state buffer.
    public var checkpointBuffers: [CheckpointBuffer] {
        let arena = model.arena
        return [CheckpointBuffer(name: "parameters", pointer: arena.parameters.data, count: arena.count)]
            + optimizer.stateBuffers.map { CheckpointBuffer(name: "optimizer.\($0.name)", pointer: $0.tensor.data, count: $0.tensor.count) }
            + objective.checkpointBuffers
    }
}

extension Trainer {
    var checkpointBuffers: [CheckpointBuffer] {
        step.checkpointBuffers + (bestParameters.map {
            [CheckpointBuffer(name: "early_stopping.best_parameters", pointer: $0.data, count: $0.count)]
        } ?? [])
    }

    /// Collective: writes a checkpoint of the current state, then (rank 0) prunes old ones.
    func saveCheckpoint(reason: String) throws {
        let t0 = monotonicSeconds()
        var state = TrainingState(
            step: stepsDone, epoch: position.epoch, batch: position.batch,
            globalBatch: config.data.batchPerRank * communicator.size, worldSize: communicator.size,
            optimizerSteps: step.optimizer.stepCount, lossScale: step.reducer.scale, cleanSteps: step.reducer.cleanSteps,
            skippedSteps: step.reducer.skippedSteps, skippedInARow: step.reducer.skippedInARow, epochLossSum: epochLossSum, epochSteps: epochStepCount, config: config.yaml(),
            earlyStopping: earlyStoppingState)
        step.objective.save(into: &state)
        state.inputs = data.modelInputs
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let directory = try CheckpointStore.save(
            runDirectory: runDirectory, step: stepsDone, buffers: checkpointBuffers, state: try encoder.encode(state),
            communicator: communicator,
            settings: CheckpointSettings(level: Int32(config.checkpoint.level), shuffle: config.checkpoint.shuffle))
        lastCheckpointTime = monotonicSeconds()
        StopSignal.prepareImmediateStopLine(resumeFrom: directory.path)
        if communicator.isRoot {
            try CheckpointStore.prune(runDirectory: runDirectory, keepLast: config.checkpoint.keepLast, keepEvery: config.checkpoint.keepEvery)
            log.info(String(format: "checkpoint %@ (%@) written in %.2f s", directory.lastPathComponent, reason, lastCheckpointTime - t0))
        }
        log.record("event", [("step", .int(stepsDone)), ("level", .string("info")), ("checkpoint", .string(directory.lastPathComponent)),
                    ("checkpoint_seconds", .number(lastCheckpointTime - t0))])
    }

    /// Which checkpoint `resume` names, decided on rank 0 (it verifies, and falls back past a
    /// damaged newest one) and sent to every rank. nil: start fresh.
    static func checkpointToResume(_ config: TrainingConfig, runDirectory: URL, communicator: Communicator,
                                   note: (String) -> Void) throws -> URL? {
        var choice = ""
        var failure = ""
        if communicator.isRoot {
            do {
                if let checkpoint = try chooseCheckpoint(config, runDirectory: runDirectory, note: note) {
                    try checkConfigChanges(config, checkpoint: checkpoint, worldSize: communicator.size, note: note)
                    choice = checkpoint.path
                }
            } catch {
                failure = "\(error)"
            }
        }
        failure = try communicator.broadcast(failure)
        if !failure.isEmpty {
            // Every rank throws rank 0's message: no rank need abort the job.
            let error = RunDirectory.Failure(description: failure)
            throw communicator.size > 1 ? SameOnEveryRank(error) : error
        }
        choice = try communicator.broadcast(choice)
        return choice.isEmpty ? nil : URL(fileURLWithPath: choice)
    }

    private static func chooseCheckpoint(_ config: TrainingConfig, runDirectory: URL, note: (String) -> Void) throws -> URL? {
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory.path)) ?? []
        switch config.resume {
        case "never":
            guard existing.isEmpty else {
                throw RunDirectory.Failure(description: "run directory \(runDirectory.path) already holds files and resume is 'never'; "
                                       + "choose a new one (--set run_dir=...), remove it, or --set resume=auto to continue it")
            }
            return nil
        case "auto":
            let checkpoints = CheckpointStore.list(runDirectory: runDirectory)
            if checkpoints.isEmpty {
                // A contrast run that died before its first checkpoint committed has nothing to
                // lose: start it again. Anything else in the directory is not ours to overwrite.
                let isOurRun = existing.contains("config.yaml")
                guard existing.isEmpty || isOurRun else {
                    throw RunDirectory.Failure(description: "run directory \(runDirectory.path) already holds files but no complete checkpoint; "
                                           + "choose a new one (--set run_dir=...) or remove it")
                }
                if isOurRun { note("no complete checkpoint in \(runDirectory.path): starting the run from the beginning") }
                return nil
            }
            for candidate in checkpoints {
                do {
                    try CheckpointStore.verify(candidate)
                    return candidate
                } catch {
                    note("checkpoint \(candidate.path) is damaged (\(error)); trying the one before it")
                }
            }
            throw RunDirectory.Failure(description: "every checkpoint in \(runDirectory.path)/checkpoints is damaged; "
                                   + "start a new run (--set run_dir=...) or pass a checkpoint with --set resume=PATH")
        default:
            // A checkpoint directory, RUN/checkpoints/latest or another run's newest checkpoint.
            let url = try CheckpointStore.resolve(config.resume)
            try CheckpointStore.verify(url)
            return url
        }
    }

    /// Compares the config with the one `checkpoint` was written with (its state's `config`),
    /// before anything is written: every changed key is noted (old -> new); a change of a key
    /// that alters what the run trains (`ResumeChanges.fixedKeys`) is refused unless
    /// resume_config_changes is allow, and a different global batch always is (the sampler's
    /// position counts batches of it).
    static func checkConfigChanges(_ config: TrainingConfig, checkpoint: URL, worldSize: Int, note: (String) -> Void) throws {
        let state = try savedState(checkpoint)
        let globalBatch = config.data.batchPerRank * worldSize
        guard state.globalBatch == globalBatch else {
            throw RunDirectory.Failure(description:
                "checkpoint \(checkpoint.lastPathComponent) was written with a global batch of \(state.globalBatch) images "
                + "(\(state.worldSize) ranks x \(state.globalBatch / max(1, state.worldSize))); to continue the same run on "
                + "\(worldSize) rank(s) set data.batch_per_rank=\(state.globalBatch / worldSize)"
                + (state.globalBatch % worldSize == 0 ? "" : " (it does not divide evenly: choose another rank count)"))
        }
        let saved: TrainingConfig
        do { saved = try ConfigLoader.load(yaml: state.config, source: "\(checkpoint.path)/manifest.json (state.config)") } catch {
            // A config this release no longer reads is no reason to refuse a resume that worked before.
            note("config not compared with checkpoint \(checkpoint.lastPathComponent)'s: \(error)")
            return
        }
        let changes = ResumeChanges.changes(from: saved, to: config)
        guard !changes.isEmpty else { return }
        let fixed = changes.filter { ResumeChanges.isFixed($0) }
        if !fixed.isEmpty && config.resumeConfigChanges == .refuse {
            throw RunDirectory.Failure(description:
                "resuming from checkpoint \(checkpoint.lastPathComponent) with \(fixed.map(\.description).joined(separator: ", ")) "
                + "would change what the run trains; run with the checkpoint's values, start a new run (--set run_dir=...), "
                + "or --set resume_config_changes=allow to resume with the change")
        }
        note("config changed since checkpoint \(checkpoint.lastPathComponent): \(changes.map(\.description).joined(separator: ", "))"
             + (fixed.isEmpty ? "" : " (resume_config_changes: allow)"))
    }

    /// The training state `checkpoint`'s manifest holds.
    static func savedState(_ checkpoint: URL) throws -> TrainingState {
        let manifest = try CheckpointStore.manifest(at: checkpoint)
        do { return try JSONDecoder().decode(TrainingState.self, from: manifest.state) } catch {
            throw RunDirectory.Failure(description: "\(checkpoint.path)/manifest.json: its training state is unreadable (\(error)); resume from another checkpoint")
        }
    }

    /// Loads `checkpoint` into the model, optimizer and scaler, and restores the data position.
    func restore(from checkpoint: URL) throws {
        try step.objective.checkResumable(from: checkpoint)
        let data = try CheckpointStore.load(checkpoint, into: checkpointBuffers)
        let state: TrainingState
        do { state = try JSONDecoder().decode(TrainingState.self, from: data) } catch {
            throw RunDirectory.Failure(description: "\(checkpoint.path)/manifest.json: its training state is unreadable (\(error)); resume from another checkpoint")
        }
        // The global batch was compared before the run directory was touched (checkConfigChanges).
        stepsDone = state.step
        position = SamplerPosition(epoch: state.epoch, batch: state.batch)
        step.optimizer.stepCount = state.optimizerSteps
        // The fp16 scale carries over; a run that was not on fp16 before starts from the initial scale.
        let scale = step.reducer.precision != .fp16 ? 1 : (state.lossScale == 1 ? config.communication.fp16InitialScale : state.lossScale)
        step.reducer.restore(scale: scale, cleanSteps: state.cleanSteps, skippedSteps: state.skippedSteps,
                             skippedInARow: state.skippedInARow ?? 0)
        epochLossSum = state.epochLossSum
        epochStepCount = state.epochSteps
        if earlyStoppingState != nil, let saved = state.earlyStopping { earlyStoppingState = saved }
        try step.objective.restore(from: state, checkpoint: checkpoint)
    }
}
