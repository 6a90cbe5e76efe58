import Checkpoint
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
@testable import NN
import Testing
@testable import Tensor
@testable import Training

/// Checkpoints through `contrast train` as users meet them: killed runs resume bit-exactly, on
/// other rank counts, past damaged or half-written checkpoints, and after a stop signal.
@Suite(.serialized) struct CheckpointResumeTests {
    /// The smoke workload: 2,048 images, global batch 64, so 32 steps per epoch.
    func arguments(_ runDirectory: String, ranks: Int, steps: Int, _ overrides: [String]) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
         "--set", "data.batch_per_rank=\(64 / ranks)", "--set", "train.max_steps=\(steps)",
         "--set", "data.test_limit=200"] + overrides.flatMap { ["--set", $0] }
    }

    @discardableResult
    func train(_ runDirectory: String, ranks: Int, steps: Int, _ overrides: [String] = [], crashAt: String? = nil,
               expectSuccess: Bool = true) throws -> ProcessOutcome {
        let outcome = try runContrast(ranks: ranks, arguments(runDirectory, ranks: ranks, steps: steps, overrides),
                                      environment: crashAt.map { ["CONTRAST_CHECKPOINT_CRASH_AT": $0] } ?? [:])
        if expectSuccess { #expect(outcome.status == 0, "\(outcome.error.suffix(1500))") }
        return outcome
    }

    /// Every buffer of the newest checkpoint, by name.
    func newestState(_ runDirectory: String) throws -> [String: [UInt32]] {
        let newest = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: runDirectory)).first)
        let manifest = try CheckpointStore.manifest(at: newest)
        let storage = manifest.buffers.map { Tensor(zeros: [$0.count]) }
        let buffers = zip(manifest.buffers, storage).map { CheckpointBuffer(name: $0.name, pointer: $1.data, count: $0.count) }
        _ = try CheckpointStore.load(newest, into: buffers)
        var result: [String: [UInt32]] = [:]
        for (buffer, values) in zip(manifest.buffers, storage) { result[buffer.name] = values.array.map(\.bitPattern) }
        return result
    }

    /// Per-step metric records without the clock and the timings (which differ run to run).
    func stepRecords(_ runDirectory: String, from first: Int) throws -> [String] {
        let text = try String(contentsOfFile: runDirectory + "/metrics/rank-0.jsonl", encoding: .utf8)
        var byStep: [Int: String] = [:]
        for line in text.split(separator: "\n") {
            guard var record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  record["time_forward"] != nil, let step = record["step"] as? Int, step >= first else { continue }
            for key in record.keys where key.hasPrefix("time") || key == "images_per_second" { record.removeValue(forKey: key) }
            let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
            byStep[step] = String(decoding: data, as: UTF8.self)
        }
        return byStep.keys.sorted().map { byStep[$0]! }
    }

    /// P = 2, 40 steps straight against 20 steps, a kill right after the step-20 checkpoint
    /// committed (before `latest` moved), and a resume: the resume starts mid-epoch and crosses
    /// the epoch boundary at step 32. Parameters, AdamW moments and the metric lines of steps
    /// 21...40 are bitwise the same.
    @Test func killedRunResumesBitExactly() throws {
        let straight = temporaryDirectory("straight").appendingPathComponent("run").path
        let killed = temporaryDirectory("killed").appendingPathComponent("run").path
        try train(straight, ranks: 2, steps: 40, ["checkpoint.every_steps=20"])
        let crash = try train(killed, ranks: 2, steps: 40, ["checkpoint.every_steps=20"], crashAt: "before-latest", expectSuccess: false)
        #expect(crash.status != 0)
        try train(killed, ranks: 2, steps: 40, ["checkpoint.every_steps=20"])
        let log = try String(contentsOfFile: killed + "/train.log", encoding: .utf8)
        #expect(log.contains("resumed from checkpoint"))
        // The done line counts the run's steps and says how many this process ran.
        #expect(log.contains("done: 40 steps (20 since the resume at step 20) in "), "\(log.suffix(600))")
        #expect(try newestState(killed) == newestState(straight))
        #expect(try stepRecords(killed, from: 21) == stepRecords(straight, from: 21))
    }

    /// The newer state resumes exactly too: a learned temperature (a parameter with its AdamW
    /// moments) and early stopping (its best value, patience and best parameters, evaluated at
    /// every epoch). P = 2, killed after the step-40 checkpoint committed; the epoch-1
    /// evaluation (step 32) happened before the kill, so the resumed run must carry its best.
    @Test func learnedTemperatureAndEarlyStoppingResumeBitExactly() throws {
        let settings = ["checkpoint.every_steps=40", "loss.temperature_mode=learnable", "eval.knn_every_epochs=1",
                        "eval.early_stopping_patience=3", "communication.precision=fp32"]
        let straight = temporaryDirectory("es-straight").appendingPathComponent("run").path
        let killed = temporaryDirectory("es-killed").appendingPathComponent("run").path
        try train(straight, ranks: 2, steps: 70, settings)
        let crash = try train(killed, ranks: 2, steps: 70, settings, crashAt: "before-latest@step=40", expectSuccess: false)
        #expect(crash.status != 0)
        try train(killed, ranks: 2, steps: 70, settings)
        #expect(try String(contentsOfFile: killed + "/train.log", encoding: .utf8).contains("resumed from checkpoint"))
        let (a, b) = (try newestState(killed), try newestState(straight))
        #expect(a.keys.contains("early_stopping.best_parameters") && a == b)
        let weights = { (run: String) in try Data(contentsOf: URL(fileURLWithPath: run + "/weights.bin")) }
        #expect(try weights(killed) == weights(straight))
    }

    /// A rank killed at every point of writing the step-10 checkpoint (8 points on rank 0, the
    /// 3 shard points on rank 1: 11 kills): the resumed run never loads a partial checkpoint,
    /// continues from step 10 if it had committed or from step 5 if not, and ends in exactly
    /// the state of an undisturbed run.
    @Test func killedWhileCheckpointingResumesFromTheLastCompleteOne() throws {
        let settings = ["checkpoint.every_steps=5", "eval.knn_every_epochs=0"]
        let straight = temporaryDirectory("points-straight").appendingPathComponent("run").path
        try train(straight, ranks: 2, steps: 10, settings)
        let expected = try newestState(straight)
        let kills = CrashPoint.allCases.map { ($0, 0) } + [CrashPoint.midShardTmp, .afterShardTmp, .afterShardRename].map { ($0, 1) }
        for (point, rank) in kills {
            let run = temporaryDirectory("points").appendingPathComponent("run").path
            let crash = try train(run, ranks: 2, steps: 10, settings, crashAt: "\(point.rawValue)@rank=\(rank)@step=10", expectSuccess: false)
            #expect(crash.status != 0, "\(point) on rank \(rank) did not kill the job")
            let complete = CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).map(\.lastPathComponent)
            let committed = [CrashPoint.afterManifestRename, .beforeLatest, .afterLatest].contains(point)
            #expect(complete.first == (committed ? "step-000000010" : "step-000000005"), "\(point) on rank \(rank): \(complete)")
            try train(run, ranks: 2, steps: 10, settings)
            #expect(try newestState(run) == expected, "\(point) on rank \(rank)")
        }
    }

    /// A checkpoint written by 2 ranks loads on 1 and on 4 (with the same global batch), gives
    /// the same parameters, and training continues on the same loss curve.
    @Test func checkpointOfTwoRanksResumesOnOneAndFour() throws {
        let first = temporaryDirectory("reshard").appendingPathComponent("run").path
        try train(first, ranks: 2, steps: 10, ["communication.precision=fp32"])
        let straight = temporaryDirectory("reshard-straight").appendingPathComponent("run").path
        try train(straight, ranks: 2, steps: 20, ["communication.precision=fp32"])
        let reference = try stepRecords(straight, from: 11).map { try lossOf($0) }
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: first)).first)
        let written = try newestState(first)["parameters"]!
        for ranks in [1, 4] {
            // Loaded and not trained further: the weights it ends with are the checkpoint's.
            let loaded = temporaryDirectory("reshard-load-\(ranks)").appendingPathComponent("run").path
            try train(loaded, ranks: ranks, steps: 10, ["communication.precision=fp32", "resume=\(checkpoint.path)"])
            let model = ContrastiveModel(try smokeConfig().model, inputWidth: 784)
            try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: loaded + "/weights.bin"))
            #expect(model.arena.parameters.array.map(\.bitPattern) == written, "P=\(ranks)")

            let run = temporaryDirectory("reshard-\(ranks)").appendingPathComponent("run").path
            try train(run, ranks: ranks, steps: 20, ["communication.precision=fp32", "resume=\(checkpoint.path)"])
            let losses = try stepRecords(run, from: 11).map { try lossOf($0) }
            #expect(losses.count == 10)
            for (a, b) in zip(losses, reference) { #expect(abs(a - b) <= 1e-5 * abs(b), "P=\(ranks): \(a) vs \(b)") }
        }
    }

    func lossOf(_ record: String) throws -> Double {
        let object = try JSONSerialization.jsonObject(with: Data(record.utf8)) as! [String: Any]
        return object["loss"] as! Double
    }

    /// A damaged newest checkpoint: `checkpoint verify` names the file and fails; auto-resume
    /// says so and falls back to the one before, then finishes exactly like an undisturbed run.
    @Test func damagedNewestCheckpointFallsBack() throws {
        let run = temporaryDirectory("damaged").appendingPathComponent("run").path
        try train(run, ranks: 1, steps: 10, ["checkpoint.every_steps=5"])
        let checkpoints = CheckpointStore.list(runDirectory: URL(fileURLWithPath: run))
        #expect(checkpoints.map(\.lastPathComponent) == ["step-000000010", "step-000000005"])
        let shard = try #require(try FileManager.default.contentsOfDirectory(atPath: checkpoints[0].path).first { $0.hasPrefix("shard-") })
        let shardURL = checkpoints[0].appendingPathComponent(shard)
        var bytes = try Data(contentsOf: shardURL)
        bytes[bytes.count / 2] ^= 0x10
        try bytes.write(to: shardURL)

        let verify = try runProcess(contrastExecutable, ["checkpoint", "verify", checkpoints[0].path])
        #expect(verify.status != 0)
        #expect(verify.error.contains(shard), "\(verify.error)")
        #expect(try runProcess(contrastExecutable, ["checkpoint", "verify", checkpoints[1].path]).status == 0)

        try train(run, ranks: 1, steps: 15, ["checkpoint.every_steps=5"])
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        #expect(log.contains("damaged"))
        #expect(log.contains("resumed from checkpoint \(checkpoints[1].path)"))
        let straight = temporaryDirectory("damaged-straight").appendingPathComponent("run").path
        try train(straight, ranks: 1, steps: 15, ["checkpoint.every_steps=5"])
        #expect(try newestState(run) == newestState(straight))
    }

    /// SIGUSR1 (what Slurm sends before the time limit) to mpirun: the ranks finish the step,
    /// write a checkpoint and exit with status 75; the run then resumes to its end.
    @Test func stopSignalCheckpointsAndExitsWithTheRequeueStatus() throws {
        let run = temporaryDirectory("signal").appendingPathComponent("run").path
        let process = Process()
        // The test runner blocks SIGUSR1 and a child inherits the mask: clear it (perl-base's
        // POSIX, in every Debian) before exec'ing mpirun, as a shell or Slurm would have it.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        if getuid() == 0 { environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" }
        process.environment = environment
        process.currentDirectoryURL = repositoryRoot
        process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die", "/usr/bin/mpirun",
                             "-np", "2", "--oversubscribe", "--bind-to", "none", contrastExecutable.path]
            + arguments(run, ranks: 2, steps: 100_000, ["checkpoint.every_steps=0", "checkpoint.every_minutes=0", "train.epochs=1000"])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until training is under way (the metrics file grows), then ask it to stop.
        let metrics = run + "/metrics/rank-0.jsonl"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? FileManager.default.attributesOfItem(atPath: metrics)[.size] as? Int) ?? 0) < 2000 {
            usleep(100_000)
        }
        kill(process.processIdentifier, SIGUSR1)      // perl exec'd mpirun: same process
        let stopDeadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < stopDeadline { usleep(50_000) }
        if process.isRunning {
            Issue.record("the job did not stop after SIGUSR1")
            kill(process.processIdentifier, SIGKILL)
            _ = try? runProcess(URL(fileURLWithPath: "/usr/bin/pkill"), ["-KILL", "-f", run])
        }
        process.waitUntilExit()
        #expect(process.terminationStatus == Trainer.interruptedExitCode)
        let checkpoints = CheckpointStore.list(runDirectory: URL(fileURLWithPath: run))
        #expect(checkpoints.count == 1)
        if let checkpoint = checkpoints.first { try CheckpointStore.verify(checkpoint) }
    }
}

/// Evaluation and export load a trained model from a run or a checkpoint.
@Suite(.serialized) struct TrainedModelTests {
    /// A run's newest checkpoint and its final weights give the model the trainer had, and a
    /// folder that is neither says so in one line.
    @Test func loadsFromCheckpointAndFromWeights() throws {
        let run = temporaryDirectory("trained").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "train.max_steps=6", "--set", "checkpoint.every_steps=6",
                                                 "--set", "eval.knn_every_epochs=0", "--set", "data.test_limit=100"])
        #expect(outcome.status == 0, "\(outcome.error)")
        let fromWeights = try TrainedModel.load(run)
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first)
        let fromCheckpoint = try TrainedModel.load(checkpoint.path)
        #expect(fromWeights.source.hasPrefix("weights of") && fromCheckpoint.source.contains("step 6"))
        #expect(fromWeights.model.arena.parameters.array.map(\.bitPattern) == fromCheckpoint.model.arena.parameters.array.map(\.bitPattern))
        #expect(fromCheckpoint.config.model.hidden == [64])
        // An empty folder is neither: one error naming it and what to give instead.
        let empty = temporaryDirectory("empty").path
        let error = try #require(throws: CheckpointError.self) { try TrainedModel.load(empty) }
        #expect(error.description.contains(empty) && error.description.contains("RUN/checkpoints/latest"), "\(error)")
    }
}
