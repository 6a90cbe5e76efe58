import Checkpoint
import Config
import Foundation
import TestSupport
import Testing
@testable import Training

/// Ctrl-C (SIGINT) and SIGHUP through the built `contrast`, alone and under launch/mpirun.sh:
/// the run finishes its step, writes a checkpoint, says where it stopped and how to resume and
/// exits 75; the resumed run ends bit-exactly where an uninterrupted one does; a second signal
/// ends the process at once without a checkpoint.
@Suite(.serialized) struct StopSignalTests {
    /// The smoke workload (32 steps per epoch) for `steps` steps, no evaluation until the end and
    /// no scheduled checkpoints unless `overrides` asks: the only checkpoint is the stop's own.
    func arguments(_ runDirectory: String, ranks: Int = 1, steps: Int, _ overrides: [String] = []) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
         "--set", "data.batch_per_rank=\(64 / ranks)", "--set", "train.max_steps=\(steps)", "--set", "train.epochs=10",
         "--set", "data.test_limit=200", "--set", "eval.knn_every_epochs=0",
         "--set", "checkpoint.every_steps=0", "--set", "checkpoint.every_minutes=0"] + overrides.flatMap { ["--set", $0] }
    }

    typealias Started = StartedProcess

    /// Starts `command` as a user's shell would (`startProcess`: SIGINT and SIGHUP at their defaults).
    func start(_ command: [String], environment extra: [String: String] = [:], name: String) throws -> Started {
        try startProcess(command, environment: extra, label: "\(name)-output")
    }

    /// The number of step records rank 0 has written so far.
    func stepsLogged(_ runDirectory: String) -> Int {
        let text = (try? String(contentsOfFile: runDirectory + "/metrics/rank-0.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("\"time_forward\"") }.count
    }

    /// Waits until rank 0 has logged `steps` steps (training is under way, the handlers installed).
    func waitForSteps(_ runDirectory: String, _ steps: Int, _ started: Started) throws {
        let deadline = Date().addingTimeInterval(120)
        while stepsLogged(runDirectory) < steps {
            guard Date() < deadline, started.process.isRunning else {
                Issue.record("training did not reach step \(steps): \(started.error.suffix(1500))")
                throw CancellationError()
            }
            usleep(50_000)
        }
    }

    /// The exit status, after at most `timeout` seconds (then the process group is killed).
    func waitForExit(_ started: Started, runDirectory: String, timeout: Double = 120) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while started.process.isRunning && Date() < deadline { usleep(50_000) }
        if started.process.isRunning {
            Issue.record("the process did not stop")
            kill(started.process.processIdentifier, SIGKILL)
            _ = try? runProcess(URL(fileURLWithPath: "/usr/bin/pkill"), ["-KILL", "-f", runDirectory])
        }
        started.process.waitUntilExit()
        return started.process.terminationStatus
    }

    /// The `end` record's parameters checksum (rank 0's last, so a resumed run's own).
    func endChecksum(_ runDirectory: String) throws -> String {
        let text = try String(contentsOfFile: runDirectory + "/metrics/rank-0.jsonl", encoding: .utf8)
        let ends = try text.split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["type"] as? String == "end" }
        return try #require(ends.last?["parameters_checksum"] as? String)
    }

    /// One signal to a run at P = 1: exit 75, one checkpoint at the step the message names, the
    /// message on stdout and in train.log. Returns the stopped step.
    func stopOnce(_ signalNumber: Int32, run: String, steps: Int) throws -> Int {
        // 30 ms per step (a sleep, which changes no result) so the signal lands mid-run.
        let started = try start([contrastExecutable.path] + arguments(run, steps: steps),
                                environment: ["CONTRAST_SLOW_RANK": "0:30"], name: "stop-\(signalNumber)")
        try waitForSteps(run, 10, started)
        kill(started.process.processIdentifier, signalNumber)
        let status = waitForExit(started, runDirectory: run)
        #expect(status == Trainer.interruptedExitCode, "\(started.error.suffix(1500))")
        let checkpoints = CheckpointStore.list(runDirectory: URL(fileURLWithPath: run))
        #expect(checkpoints.count == 1)
        let checkpoint = try #require(checkpoints.first)
        try CheckpointStore.verify(checkpoint)
        let stoppedAt = try #require(Int(checkpoint.lastPathComponent.dropFirst("step-".count)))
        #expect(stoppedAt >= 10 && stoppedAt < steps)
        let message = "stopped at step \(stoppedAt); run the same command to resume"
        #expect(started.output.contains(message), "\(started.output.suffix(1500))")
        #expect(try String(contentsOfFile: run + "/train.log", encoding: .utf8).contains(message))
        return stoppedAt
    }

    /// Ctrl-C at P = 1, then the same command again: it resumes from the stop's checkpoint and
    /// ends with the parameters of a run never interrupted, bit for bit.
    @Test func sigintCheckpointsAndTheSameCommandResumesBitExactly() throws {
        let steps = 200
        let straight = temporaryDirectory("sigint-straight").appendingPathComponent("run").path
        let stopped = temporaryDirectory("sigint-stopped").appendingPathComponent("run").path
        let straightRun = try runContrast(ranks: 1, arguments(straight, steps: steps))
        #expect(straightRun.status == 0, "\(straightRun.error.suffix(1500))")
        let stoppedAt = try stopOnce(SIGINT, run: stopped, steps: steps)
        let resumed = try runContrast(ranks: 1, arguments(stopped, steps: steps))
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        #expect(resumed.output.contains("resumed from checkpoint") && resumed.output.contains("at step \(stoppedAt) ("))
        #expect(try endChecksum(stopped) == endChecksum(straight))
    }

    /// SIGHUP (the terminal closed) is a stop like SIGINT.
    @Test func sighupCheckpointsAndExitsWithTheRequeueStatus() throws {
        _ = try stopOnce(SIGHUP, run: temporaryDirectory("sighup").appendingPathComponent("run").path, steps: 200)
    }

    /// A second Ctrl-C while the stop is pending ends the process at once: status 130 (the normal
    /// stop's is 75), no checkpoint for the stop, and one line naming the checkpoint a resume
    /// starts from, which is the newest on disk.
    @Test func secondSigintStopsAtOnceWithoutACheckpoint() throws {
        let run = temporaryDirectory("sigint-twice").appendingPathComponent("run").path
        // 300 ms steps: the stop is taken after the step following the signal, so the second
        // signal 50 ms after the first finds it still pending. Checkpoints every 3 steps give the
        // line a checkpoint to name.
        let started = try start([contrastExecutable.path] + arguments(run, steps: 1000, ["checkpoint.every_steps=3"]),
                                environment: ["CONTRAST_SLOW_RANK": "0:300"], name: "sigint-twice")
        try waitForSteps(run, 4, started)
        kill(started.process.processIdentifier, SIGINT)
        usleep(50_000)
        kill(started.process.processIdentifier, SIGINT)
        let status = waitForExit(started, runDirectory: run, timeout: 10)
        #expect(status == 130, "\(started.error.suffix(1500))")
        let newest = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first)
        let lines = started.error.split(separator: "\n").filter { $0.contains("second signal") }
        #expect(lines.count == 1, "\(started.error.suffix(1500))")
        #expect(lines.first?.contains("no checkpoint written for this stop") == true)
        #expect(lines.first?.hasSuffix("resumes from checkpoint \(newest.path)") == true, "\(lines) against \(newest.path)")
        #expect(!started.output.contains("stopped at step"))
    }

    /// A scheduler's SIGTERM twice (scancel signals srun and its tasks both) is one graceful stop:
    /// only a user's signals (SIGINT, SIGHUP, launch/mpirun.sh's SIGUSR2) make a second one final.
    @Test func repeatedSigtermStillCheckpoints() throws {
        let run = temporaryDirectory("sigterm-twice").appendingPathComponent("run").path
        let started = try start([contrastExecutable.path] + arguments(run, steps: 1000),
                                environment: ["CONTRAST_SLOW_RANK": "0:300"], name: "sigterm-twice")
        try waitForSteps(run, 4, started)
        kill(started.process.processIdentifier, SIGTERM)
        usleep(50_000)
        kill(started.process.processIdentifier, SIGTERM)
        let status = waitForExit(started, runDirectory: run)
        #expect(status == Trainer.interruptedExitCode, "\(started.error.suffix(1500))")
        let checkpoints = CheckpointStore.list(runDirectory: URL(fileURLWithPath: run))
        #expect(checkpoints.count == 1)
        #expect(started.output.contains("SIGTERM received: stopping after step"))
    }

    /// Open MPI 4.1's mpirun answers SIGINT by SIGTERM to the ranks and SIGKILL a second later:
    /// launch/mpirun.sh keeps the terminal's SIGINT from mpirun and forwards it as SIGUSR2. Ctrl-C
    /// to the script: the P = 2 job checkpoints and exits 75.
    @Test func sigintToTheLaunchScriptStopsTwoRanksWithACheckpoint() throws {
        let run = temporaryDirectory("sigint-mpirun").appendingPathComponent("run").path
        let started = try start(["launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe", contrastExecutable.path]
                                + arguments(run, ranks: 2, steps: 100_000), name: "sigint-mpirun")
        try waitForSteps(run, 10, started)
        kill(started.process.processIdentifier, SIGINT)
        let status = waitForExit(started, runDirectory: run)
        #expect(status == Trainer.interruptedExitCode, "\(started.error.suffix(2500))")
        let checkpoints = CheckpointStore.list(runDirectory: URL(fileURLWithPath: run))
        #expect(checkpoints.count == 1)
        if let checkpoint = checkpoints.first {
            try CheckpointStore.verify(checkpoint)
            let stoppedAt = Int(checkpoint.lastPathComponent.dropFirst("step-".count)) ?? -1
            #expect(started.output.contains("stopped at step \(stoppedAt); run the same command to resume"))
        }
        #expect(started.error.contains("launch/mpirun.sh: SIGINT: asking the ranks"))
    }

    /// A second Ctrl-C to launch/mpirun.sh: mpirun gets SIGINT and sends the ranks SIGTERM, which
    /// with a stop pending ends them at once; the script exits 130 and no checkpoint is written.
    /// mpirun sends that SIGTERM about a second after its SIGINT (SIGCONT first), so rank 0's
    /// steps take 2 s here to keep the first stop pending until it arrives.
    @Test func secondSigintToTheLaunchScriptStopsAtOnce() throws {
        let run = temporaryDirectory("sigint-twice-mpirun").appendingPathComponent("run").path
        let started = try start(["launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe", contrastExecutable.path]
                                + arguments(run, ranks: 2, steps: 1000),
                                environment: ["CONTRAST_SLOW_RANK": "0:2000"], name: "sigint-twice-mpirun")
        try waitForSteps(run, 2, started)
        kill(started.process.processIdentifier, SIGINT)
        usleep(50_000)
        kill(started.process.processIdentifier, SIGINT)
        let status = waitForExit(started, runDirectory: run, timeout: 20)
        #expect(status == 130, "\(started.error.suffix(2500))")
        #expect(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).isEmpty)
        #expect(started.error.contains("launch/mpirun.sh: SIGINT, a second stop signal: stopping at once, without a checkpoint"))
        #expect(started.error.contains("no checkpoint yet, so running the same command starts the run again from step 0"),
                "\(started.error.suffix(2500))")
    }

    /// `contrast --version`: the release and the build id on one line, status 0.
    @Test func versionPrintsTheReleaseAndTheBuildID() throws {
        let outcome = try runProcess(contrastExecutable, ["--version"])
        #expect(outcome.status == 0)
        let lines = outcome.output.split(separator: "\n")
        #expect(lines.count == 1)
        let prefix = "contrast \(contrastVersion) (build id "
        let line = String(lines.first ?? "")
        #expect(line.hasPrefix(prefix) && line.hasSuffix(")"), "\(line)")
        let id = line.dropFirst(prefix.count).dropLast()
        #expect(id.count >= 16 && id.allSatisfy(\.isHexDigit), "\(id)")
        // The id is the binary's own: the one binutils reads from its ELF notes.
        let notes = try runProcess(URL(fileURLWithPath: "/usr/bin/readelf"), ["-n", contrastExecutable.path])
        #expect(notes.output.contains("Build ID: \(id)"), "\(notes.output)")
    }
}
