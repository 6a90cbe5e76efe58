import Checkpoint
import Distributed
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Tensor
@testable import Training

/// Issue 10's in-process fault handling: `CONTRAST_FAULT` injection, non-finite steps skipped
/// alike on every rank, train.max_skipped_steps, and the collective watchdog, through
/// `contrast train` at P = 2 where ranks matter and in process where they do not.
@Suite(.serialized) struct FaultInjectionTests {
    // MARK: - Parsing

    @Test func parsesFaultsAndTheirDueSteps() throws {
        let faults = try FaultInjection("nan-grad@rank=1@step=3, kill@rank=0@step=5-6@phase=allreduce,hang")
        #expect(faults.faults.count == 3)
        #expect(faults.due(rank: 1, step: 3) == StepFaults(rank: 1, step: 3, nanGradient: true, hang: true))
        #expect(faults.due(rank: 0, step: 3) == StepFaults(rank: 0, step: 3, hang: true))
        #expect(faults.due(rank: 0, step: 6)?.kill == .allreduce)
        #expect(faults.due(rank: 1, step: 6)?.kill == nil)
        let once = try FaultInjection("nan-loss@rank=1@step=2")
        #expect(once.due(rank: 1, step: 2)?.nanLoss == true)
        #expect(once.due(rank: 1, step: 3) == nil && once.due(rank: 0, step: 2) == nil)
    }

    @Test(arguments: [
        ("", "no fault given"), ("nan", "unknown fault 'nan'"), ("kill@rank=1@step=2", "kill needs @phase"),
        ("hang@phase=forward", "only kill takes a phase"), ("nan-grad@rank=x", "rank 'x'"), ("nan-grad@step=0", "step '0'"),
        ("nan-grad@step=5-3", "step '5-3'"), ("kill@phase=backward", "phase 'backward'"), ("hang@when=3", "unknown key 'when'"),
        ("hang@3", "'3' is not key=value"),
    ])
    func malformedValuesNameTheProblemAndTheForm(_ value: String, _ problem: String) {
        do {
            _ = try FaultInjection(value)
            Issue.record("\(value) parsed")
        } catch {
            let message = "\(error)"
            #expect(message.hasPrefix("CONTRAST_FAULT=\(value): \(problem)"), "\(message)")
            #expect(message.contains("KIND[@rank=R][@step=S|@step=S-T][@phase=forward|allreduce|optimizer]"))
        }
    }

    /// A malformed value stops `contrast train` before anything is written.
    @Test func malformedEnvironmentStopsBeforeTraining() throws {
        let run = temporaryDirectory("fault-bad").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)"],
                                      environment: ["CONTRAST_FAULT": "kill@rank=1"], timeout: 60)
        #expect(outcome.status == 1)
        #expect(outcome.error.contains("CONTRAST_FAULT=kill@rank=1: kill needs @phase"), "\(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: run))
    }

    // MARK: - Non-finite steps (one process)

    /// Every way a NaN enters a step skips it with the parameters bitwise unchanged: a NaN pixel
    /// (ReLU maps NaN to 0, so the loss stays finite, but the first layer's weight gradient
    /// x^T dy is NaN); a NaN parameter in the head (every embedding, the loss and, through dL/dz,
    /// the gradients are NaN: a NaN loss reaches the gradients); an injected NaN loss with finite
    /// gradients (the summed loss is part of the rule). A clean step then applies and resets the count.
    @Test func nonFiniteStepsAreSkipped() throws {
        let config = try smokeConfig(["communication.precision=fp32", "optimizer.lr=0.01"])
        let step = try TrainingStep(config: config, inputWidth: 784, imageShape: [28, 28], samplesPerStep: 8, totalSteps: 10)
        for i in 0..<step.batch.count { step.batch.data[i] = Float(sin(Double(i) * 0.37)) }
        let arena = step.model.arena
        var parameters: [UInt32] { arena.parameters.array.map(\.bitPattern) }
        var gradientsFinite: Bool { Kernels.allFinite(arena.gradients.data, count: arena.count) }

        let initial = parameters
        var result = try step.step(0, input: step.batch.data)
        #expect(result.applied && result.loss.isFinite && parameters != initial)

        var before = parameters
        step.batch.data[5] = .nan
        result = try step.step(1, input: step.batch.data)
        #expect(!result.applied && result.loss.isFinite && !gradientsFinite && result.gradientNorm.isNaN)
        #expect(parameters == before)
        step.batch.data[5] = 0.5

        let head = try #require(arena.slices.last).offset, saved = arena.parameters.data[head]
        arena.parameters.data[head] = .nan
        before = parameters
        result = try step.step(2, input: step.batch.data)
        #expect(!result.applied && result.loss.isNaN && !gradientsFinite)
        #expect(parameters == before)
        arena.parameters.data[head] = saved

        before = parameters
        step.hooks.faults = try FaultInjection("nan-loss@rank=0@step=4")
        result = try step.step(3, input: step.batch.data)
        #expect(!result.applied && result.loss.isNaN && gradientsFinite)
        #expect(parameters == before)
        #expect(step.reducer.skippedInARow == 3 && step.reducer.skippedSteps == 3)

        step.hooks.faults = nil
        result = try step.step(4, input: step.batch.data)
        #expect(result.applied && result.loss.isFinite && parameters != before)
        #expect(step.reducer.skippedInARow == 0 && step.reducer.skippedSteps == 3)
    }

    /// The count of skipped steps in a row survives a checkpoint: 2 skipped at the end of the first
    /// run, 1 more after the resume reaches train.max_skipped_steps 3; nothing new is written.
    @Test func resumeContinuesTheSkippedCount() throws {
        var config = try smokeConfig(["train.max_steps=4", "eval.knn_every_epochs=0", "data.test_limit=200",
                                      "train.max_skipped_steps=3"])
        let first = try FaultInjection.$simulated.withValue(try FaultInjection("nan-loss@step=3-4")) {
            try Trainer(config: config).run()
        }
        #expect(first.steps == 4 && first.skippedStepsStop == nil)
        config.train.maxSteps = 8
        try FaultInjection.$simulated.withValue(try FaultInjection("nan-loss@step=5")) {
            let trainer = try Trainer(config: config)
            #expect(trainer.step.reducer.skippedInARow == 2)
            let summary = try trainer.run()
            #expect(summary.steps == 5)
            let message = try #require(summary.skippedStepsStop)
            #expect(message.hasPrefix("stopping at step 5: 3 steps in a row were skipped (train.max_skipped_steps 3)"))
            #expect(message.contains("step-000000004") && message.contains("optimizer.lr"))
        }
        let checkpoints = CheckpointStore.list(runDirectory: URL(fileURLWithPath: config.runDirectory)).map(\.lastPathComponent)
        #expect(checkpoints == ["step-000000004"])
        let log = try String(contentsOfFile: config.runDirectory + "/train.log", encoding: .utf8)
        #expect(log.contains("ERROR stopping at step 5"))
    }

    // MARK: - Through `contrast train` at P = 2

    func arguments(_ run: String, steps: Int, _ overrides: [String]) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "data.batch_per_rank=32",
         "--set", "train.max_steps=\(steps)", "--set", "data.test_limit=200", "--set", "eval.knn_every_epochs=0",
         "--set", "communication.precision=fp32"] + overrides.flatMap { ["--set", $0] }
    }

    func train(_ label: String, steps: Int, fault: String?, _ overrides: [String] = [], run: String? = nil,
               timeout: Double = 120) throws -> (outcome: ProcessOutcome, run: String) {
        let run = run ?? temporaryDirectory(label).appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 2, arguments(run, steps: steps, overrides),
                                      environment: fault.map { ["CONTRAST_FAULT": $0] } ?? [:], timeout: timeout)
        return (outcome, run)
    }

    /// The records of one type in a rank's metrics file.
    func records(_ run: String, rank: Int, type: String) throws -> [[String: Any]] {
        try String(contentsOfFile: run + "/metrics/rank-\(rank).jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == type }
    }

    func skippedSteps(_ run: String, rank: Int) throws -> [Int] {
        try records(run, rank: rank, type: "step").filter { $0["skipped"] as? Bool == true }.compactMap { $0["step"] as? Int }
    }

    /// One rank stops answering: its partner's watchdog names itself, the collective's number,
    /// operation and size, and ends the job well within a minute.
    @Test func watchdogEndsAJobWhoseRankHangs() throws {
        let started = Date()
        let (outcome, run) = try train("fault-hang", steps: 10, fault: "hang@rank=1@step=3", ["communication.watchdog_seconds=2"],
                                       timeout: 60)
        #expect(!outcome.timedOut && Date().timeIntervalSince(started) < 60)
        #expect(outcome.status == CollectiveWatchdog.exitCode, "\(outcome.error.suffix(1500))")
        let line = try #require(outcome.error.split(separator: "\n").first { $0.contains("has not completed") }, "\(outcome.error)")
        #expect(line.contains("rank 0 on \(Launch.localHostname()): collective #") && line.contains("(allreduce, ") && line.contains("bytes)"))
        #expect(line.hasSuffix("s; aborting the job (communication.watchdog_seconds)"))
        #expect(outcome.error.contains("rank 1: CONTRAST_FAULT: hanging at step 3"))
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        #expect(log.contains("ERROR rank 0 on \(Launch.localHostname()): collective #"))
    }

    /// A rank stops answering in evaluation, where rank 0 may legitimately classify alone for
    /// minutes: the training limit does not apply, the evaluation limit does, and the line says so.
    @Test func watchdogHoldsEvaluationToItsOwnLimit() throws {
        let started = Date()
        let (outcome, _) = try train("fault-hang-eval", steps: 64, fault: "hang-eval@rank=1",
                                     ["communication.watchdog_seconds=4", "communication.eval_watchdog_seconds=10",
                                      "eval.knn_every_epochs=1", "data.train_limit=512"], timeout: 120)
        #expect(!outcome.timedOut && Date().timeIntervalSince(started) < 120)
        #expect(outcome.status == CollectiveWatchdog.exitCode, "\(outcome.error.suffix(1500))")
        let line = try #require(outcome.error.split(separator: "\n").first { $0.contains("has not completed") }, "\(outcome.error)")
        #expect(line.contains("rank 0 on \(Launch.localHostname()): collective #") && line.hasSuffix("s in evaluation; aborting the job (communication.eval_watchdog_seconds)"))
        // It waited past the training limit of 4 s: the evaluation limit of 10 s is the one that
        // fired (the line rounds to 0.1 s, so a wait of 10.04 s reads 10.0).
        let waited = line.split(separator: " ").firstIndex(of: "after").map { line.split(separator: " ")[$0 + 1] }.flatMap { Double($0) }
        #expect((waited ?? 0) >= 10, "\(line)")
        #expect(outcome.error.contains("rank 1: CONTRAST_FAULT: hanging in the evaluation after step"))
    }

    /// NaN in rank 1's gradient at step 3: the step is skipped on both ranks and nowhere else, the
    /// ranks end with bitwise equal parameters, and those equal a run that skips step 3 because
    /// rank 0's loss was NaN instead (a different rank, a different path to the same skip).
    @Test func nanGradientOnOneRankSkipsTheStepOnBoth() throws {
        let (gradient, gradientRun) = try train("fault-nan-grad", steps: 6, fault: "nan-grad@rank=1@step=3")
        let (loss, lossRun) = try train("fault-nan-loss", steps: 6, fault: "nan-loss@rank=0@step=3")
        #expect(gradient.status == 0 && loss.status == 0, "\(gradient.error.suffix(1000)) \(loss.error.suffix(1000))")
        for run in [gradientRun, lossRun] {
            #expect(try skippedSteps(run, rank: 0) == [3] && skippedSteps(run, rank: 1) == [3])
            let checksums = try (0..<2).map { try #require(records(run, rank: $0, type: "end").last?["parameters_checksum"] as? String) }
            #expect(checksums[0] == checksums[1] && checksums[0].count == 16)
        }
        let weights = try [gradientRun, lossRun].map { try Data(contentsOf: URL(fileURLWithPath: $0 + "/weights.bin")) }
        #expect(weights[0] == weights[1])
        let log = try String(contentsOfFile: gradientRun + "/train.log", encoding: .utf8)
        #expect(log.contains("step 3: summed gradients or loss not finite, update skipped on every rank"))
    }

    /// K skipped steps in a row stop every rank with the documented status and one message; no
    /// weights or checkpoint are written.
    @Test func maxSkippedStepsStopsWithItsExitCode() throws {
        let (outcome, run) = try train("fault-max-skipped", steps: 10, fault: "nan-grad@rank=1@step=2-4", ["train.max_skipped_steps=3"])
        #expect(outcome.status == Trainer.skippedStepsExitCode, "\(outcome.error.suffix(1500))")
        #expect(outcome.error.components(separatedBy: "stopping at step 4: 3 steps in a row were skipped").count == 2, "\(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: run + "/weights.bin"))
        #expect(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).isEmpty)
        for rank in 0..<2 { #expect(try records(run, rank: rank, type: "end").last?["step"] as? Int == 4) }
    }

    /// A kill at the other two phases also ends the job promptly, naming the rank (the all-reduce
    /// phase, with its resume, is the next test).
    @Test(arguments: [FaultInjection.Phase.forward, .optimizer])
    func killEndsTheJobNamingTheRank(_ phase: FaultInjection.Phase) throws {
        let started = Date()
        let (outcome, _) = try train("fault-kill-\(phase.rawValue)", steps: 6, fault: "kill@rank=0@step=2@phase=\(phase.rawValue)", timeout: 60)
        #expect(outcome.status != 0 && !outcome.timedOut && Date().timeIntervalSince(started) < 60)
        #expect(outcome.error.contains("rank 0: CONTRAST_FAULT: kill at step 2, phase \(phase.rawValue): raising SIGKILL"), "\(outcome.error)")
    }

    /// SIGKILL on rank 1 while step 6's gradient all-reduces are in flight: the job ends non-zero
    /// naming the rank, and resuming from the step-4 checkpoint ends bitwise where an
    /// uninterrupted run ends (parameters, AdamW moments, the step records of steps 5...8).
    @Test func killDuringAllReduceResumesBitExactly() throws {
        let settings = ["checkpoint.every_steps=4"]
        let (straight, straightRun) = try train("fault-straight", steps: 8, fault: nil, settings)
        #expect(straight.status == 0, "\(straight.error.suffix(1000))")
        let (killed, killedRun) = try train("fault-killed", steps: 8, fault: "kill@rank=1@step=6@phase=allreduce", settings, timeout: 60)
        #expect(killed.status != 0 && !killed.timedOut)
        #expect(killed.error.contains("rank 1: CONTRAST_FAULT: kill at step 6, phase allreduce"), "\(killed.error.suffix(1500))")
        #expect(CheckpointStore.list(runDirectory: URL(fileURLWithPath: killedRun)).map(\.lastPathComponent) == ["step-000000004"])
        let (resumed, _) = try train("fault-killed", steps: 8, fault: nil, settings, run: killedRun)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1000))")
        let checkpoints = CheckpointResumeTests()
        #expect(try checkpoints.newestState(killedRun) == checkpoints.newestState(straightRun))
        #expect(try checkpoints.stepRecords(killedRun, from: 5) == checkpoints.stepRecords(straightRun, from: 5))
    }
}
