import Checkpoint
import Foundation
import TestSupport
import Testing
@testable import Training

/// How a run ended, as `contrast report` and `contrast tail` tell it through the built binary:
/// ended, stopped by a signal (the end record says interrupted) with the command to resume,
/// killed without an end record (its pid gone); `tail` stops following a run that is over and
/// waits, up to its timeout, for one that has not started.
@Suite(.serialized) struct StoppedRunTests {
    /// The smoke workload at P = 1, no evaluation until the end.
    func arguments(_ run: String, steps: Int, _ overrides: [String] = []) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "train.max_steps=\(steps)",
         "--set", "train.epochs=1000", "--set", "data.test_limit=200", "--set", "eval.knn_every_epochs=0",
         "--set", "checkpoint.every_minutes=0"] + overrides.flatMap { ["--set", $0] }
    }

    /// The step records rank 0 has written so far.
    func stepsLogged(_ run: String) -> Int {
        let text = (try? String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("\"time_forward\"") }.count
    }

    /// Starts a long run slowed to 30 ms a step and returns once it has logged `steps` steps.
    func startLongRun(_ run: String, steps: Int) throws -> StartedProcess {
        let started = try startContrast(arguments(run, steps: 100_000, ["checkpoint.every_steps=5"]),
                                        environment: ["CONTRAST_SLOW_RANK": "0:30"])
        let deadline = Date().addingTimeInterval(120)
        while stepsLogged(run) < steps {
            guard Date() < deadline, started.process.isRunning else {
                Issue.record("training did not reach step \(steps): \(started.error.suffix(1500))")
                kill(started.process.processIdentifier, SIGKILL)
                throw CancellationError()
            }
            usleep(50_000)
        }
        return started
    }

    /// The Status row of `contrast report RUN`.
    func reportStatus(_ run: String) throws -> String {
        let outcome = try runProcess(contrastExecutable, ["report", run], timeout: 120)
        #expect(outcome.status == 0, "\(outcome.error)")
        let page = try String(contentsOfFile: run + "/report.html", encoding: .utf8)
        let row = try #require(page.range(of: "<th>Status</th><td>"), "no Status row in the report")
        return String(page[row.upperBound...].prefix { $0 != "<" })
    }

    /// `contrast tail RUN` (following, not --once); fails the test when it does not exit within a minute.
    func tail(_ run: String, _ extra: [String] = []) throws -> ProcessOutcome {
        let outcome = try runProcess(contrastExecutable, ["tail", run, "--interval", "0.1"] + extra, timeout: 60)
        #expect(!outcome.timedOut, "tail did not exit: \(outcome.output.suffix(500))")
        return outcome
    }

    @Test func aFinishedRunSaysEndedAndTailExits() throws {
        let run = temporaryDirectory("ended").appendingPathComponent("run").path
        let training = try runProcess(contrastExecutable, arguments(run, steps: 6))
        try #require(training.status == 0, "\(training.error.suffix(1500))")
        #expect(try reportStatus(run) == "ended at step 6 (weights.bin written)")
        let outcome = try tail(run)
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.hasSuffix("run ended at step 6 (weights.bin written)\n"), "\(outcome.output)")
    }

    @Test func aSignalledRunSaysStoppedAtItsStepWithTheResumeCommand() throws {
        let run = temporaryDirectory("stopped").appendingPathComponent("run").path
        let started = try startLongRun(run, steps: 8)
        kill(started.process.processIdentifier, SIGUSR1)
        #expect(started.exitStatus(within: 120) == Trainer.interruptedExitCode, "\(started.error.suffix(1500))")
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first)
        let step = try #require(Int(checkpoint.lastPathComponent.dropFirst("step-".count)))
        let expected = "stopped at step \(step) by a stop signal: run the same command to resume from checkpoint \(checkpoint.lastPathComponent)"
        #expect(try reportStatus(run) == expected)
        let outcome = try tail(run)
        #expect(outcome.status == 0)
        #expect(outcome.output.hasSuffix("run \(expected)\n"), "\(outcome.output)")
    }

    @Test func aKilledRunSaysItStoppedWithoutAnEndRecordAndTailExits() throws {
        let run = temporaryDirectory("killed").appendingPathComponent("run").path
        let started = try startLongRun(run, steps: 12)
        kill(started.process.processIdentifier, SIGKILL)
        started.process.waitUntilExit()
        let step = stepsLogged(run)
        // Checkpoints every 5 steps: the newest complete one is where a resume starts.
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first).lastPathComponent
        let expected = "stopped without an end record at step \(step) (killed or crashed): "
            + "run the same command to resume from checkpoint \(checkpoint)"
        #expect(try reportStatus(run) == expected)
        let outcome = try tail(run)
        #expect(outcome.status == 0)
        #expect(outcome.output.hasSuffix("run \(expected)\n"), "\(outcome.output)")
    }

    /// A run that dies after making its directory but before its start record (here: resuming
    /// another run's checkpoint into a model of another shape, which fails as the checkpoint is
    /// loaded) leaves metrics/ and no pid: tail gives up once nothing in the directory has changed
    /// for --timeout seconds, instead of following it forever.
    @Test func tailGivesUpOnARunThatDiedBeforeItsStartRecord() throws {
        let first = temporaryDirectory("died-starting-a").appendingPathComponent("run").path
        let done = try runProcess(contrastExecutable, arguments(first, steps: 2))
        try #require(done.status == 0, "\(done.error.suffix(1500))")
        let run = temporaryDirectory("died-starting").appendingPathComponent("run").path
        let failed = try runProcess(contrastExecutable, arguments(run, steps: 4, ["resume=\(first)", "model.hidden=[32]",
                                                                                 "resume_config_changes=allow"]))
        try #require(failed.status == 1 && FileManager.default.fileExists(atPath: run + "/metrics"), "\(failed.error)")
        let begun = Date()
        let outcome = try tail(run, ["--timeout", "1"])
        #expect(Date().timeIntervalSince(begun) >= 1)
        #expect(outcome.status == 1)
        #expect(outcome.error.contains("no run started in \(run): no start record, and nothing in it changed for 0m01s, "
                                       + "so the run died while starting or was never started"), "\(outcome.error)")
    }

    @Test func tailWaitsForARunThatHasNotStartedAndGivesUpAfterItsTimeout() throws {
        let missing = temporaryDirectory("not-started").appendingPathComponent("run").path
        let begun = Date()
        let outcome = try tail(missing, ["--timeout", "1"])
        #expect(Date().timeIntervalSince(begun) >= 1)
        #expect(outcome.status == 1)
        #expect(outcome.error.contains("no run started in \(missing) within 0m01s (no metrics/ folder)"), "\(outcome.error)")

        // Started before the run: it waits, then follows the run to its end.
        let run = temporaryDirectory("later").appendingPathComponent("run").path
        let follower = try startContrast(["tail", run, "--interval", "0.1", "--timeout", "300"])
        usleep(1_000_000)
        #expect(follower.process.isRunning, "tail exited before the run started: \(follower.error)")
        let training = try runProcess(contrastExecutable, arguments(run, steps: 20, ["train.log_every_steps=10"]))
        try #require(training.status == 0, "\(training.error.suffix(1500))")
        #expect(follower.exitStatus(within: 60) == 0, "\(follower.error)")
        let lines = follower.output.split(separator: "\n")
        #expect(lines.first?.hasPrefix("waiting for a run to start in \(run)") == true, "\(follower.output)")
        #expect(lines.contains { $0.hasPrefix("    20 ") }, "\(follower.output)")
        #expect(lines.last == "run ended at step 20 (weights.bin written)", "\(follower.output)")
    }
}
