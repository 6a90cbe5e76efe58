import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Contrastive
@testable import Training

/// loss.hard_negative_beta / hard_negative_schedule / debiased_tau_plus: the beta curriculum, the
/// config's checks and which loss the step uses.
@Suite struct HardNegativeScheduleTests {
    @Test func scheduleRunsFromStartToFinal() {
        func beta(_ schedule: HardNegativeSchedule, _ step: Int) -> Float {
            Schedules.hardNegativeBeta(schedule: schedule, start: 0.5, final: 2.5, step: step, totalSteps: 100)
        }
        #expect((0...120).allSatisfy { beta(.constant, $0) == 0.5 })
        #expect(beta(.linear, 0) == 0.5 && abs(beta(.linear, 25) - 1) <= 1e-6 && abs(beta(.linear, 50) - 1.5) <= 1e-6)
        #expect(beta(.linear, 100) == 2.5 && beta(.linear, 150) == 2.5)
        #expect(beta(.cosine, 0) == 0.5 && abs(beta(.cosine, 50) - 1.5) <= 1e-6 && abs(beta(.cosine, 100) - 2.5) <= 1e-6)
        #expect(abs(beta(.cosine, 25) - Float(2.5 - 2 * (1 + cos(Double.pi / 4)) / 2)) <= 1e-6)
        #expect((1...100).allSatisfy { beta(.linear, $0) > beta(.linear, $0 - 1) && beta(.cosine, $0) > beta(.cosine, $0 - 1) })
        // A decreasing curriculum works the same way.
        #expect(Schedules.hardNegativeBeta(schedule: .linear, start: 2, final: 0, step: 3, totalSteps: 4) == 0.5)
    }

    /// The SimCLR objective's loss when it is the hard-negative form, else nil.
    func hardNegativeLoss(_ step: TrainingStep) -> HardNegativeNTXentLoss? {
        guard let simCLR = step.objective as? SimCLR, case .hardNegative(let loss) = simCLR.ntxent else { return nil }
        return loss
    }

    @Test func stepUsesTheHardNegativeLossOnlyWhenAsked() throws {
        let plain = try TrainingStep(config: try smokeConfig([]), inputWidth: 784, samplesPerStep: 8, totalSteps: 10)
        #expect(plain.objective is SimCLR && hardNegativeLoss(plain) == nil && plain.plan(0).hardNegativeBeta == nil)
        let config = try smokeConfig(["loss.hard_negative_beta=0", "loss.hard_negative_beta_final=2",
                                      "loss.hard_negative_schedule=linear", "loss.debiased_tau_plus=0.1", "loss.logit_chunk=5"])
        let step = try TrainingStep(config: config, inputWidth: 784, samplesPerStep: 8, totalSteps: 10)
        let loss = try #require(hardNegativeLoss(step))
        #expect(loss.tauPlus == 0.1 && loss.beta == 0 && loss.logitChunk == 5)
        #expect(step.plan(0).hardNegativeBeta == 0 && abs(step.plan(5).hardNegativeBeta! - 1) <= 1e-6)
        #expect(step.plan(10).hardNegativeBeta == 2)
    }

    @Test func configChecksTheHardNegativeKeys() throws {
        func problem(_ overrides: [String]) -> ConfigError? {
            do { _ = try smokeConfig(overrides); return nil } catch let error as ConfigError { return error } catch { return nil }
        }
        #expect(problem(["loss.hard_negative_beta=-1"])?.key == "loss.hard_negative_beta")
        #expect(problem(["loss.hard_negative_beta_final=-0.5"])?.key == "loss.hard_negative_beta_final")
        #expect(problem(["loss.debiased_tau_plus=1"])?.key == "loss.debiased_tau_plus")
        #expect(problem(["loss.debiased_tau_plus=-0.1"])?.key == "loss.debiased_tau_plus")
        #expect(problem(["loss.hard_negative_schedule=warm"]) != nil)
        let supcon = problem(["loss.kind=supcon", "loss.hard_negative_beta=1"])
        #expect(supcon?.key == "loss.hard_negative_beta")
        #expect(supcon?.problem.contains("loss.kind ntxent") == true)
        #expect(problem(["loss.kind=supcon", "loss.debiased_tau_plus=0.1"])?.key == "loss.debiased_tau_plus")
        #expect(problem(["loss.kind=supcon", "loss.hard_negative_schedule=linear", "loss.hard_negative_beta_final=1"])?.key
                == "loss.hard_negative_beta_final")
        let config = try smokeConfig(["loss.hard_negative_beta=1", "loss.debiased_tau_plus=0.1", "loss.temperature_mode=learnable"])
        #expect(config.loss.usesHardNegatives && config.loss.hardNegativeSchedule == .constant)
        #expect(try !smokeConfig([]).loss.usesHardNegatives)
    }
}

/// Hard negatives through `contrast train`: the step records show the scheduled beta, and one
/// SGD step on P ranks equals one process on the whole global batch.
@Suite(.serialized) struct HardNegativeTrainingTests {
    struct Run {
        var parameters: [Float]
        var losses: [Double]
        var betas: [Double]
        var records: Int
    }

    func train(ranks: Int, transport: Transport = .sharedMemory, steps: Int, globalBatch: Int = 64, _ overrides: [String]) throws -> Run {
        let run = try trainSmoke("hardneg", ranks: ranks, transport: transport, steps: steps, globalBatch: globalBatch, overrides)
        return Run(parameters: run.parameters, losses: run.losses, betas: run.steps.compactMap { $0["hard_negative_beta"] as? Double },
                   records: run.steps.count)
    }

    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]
    static let hard = ["loss.hard_negative_beta=1", "loss.debiased_tau_plus=0.1"]

    @Test func scheduledRunLogsTheBeta() throws {
        let run = try train(ranks: 1, steps: 4, ["loss.hard_negative_beta=0", "loss.hard_negative_beta_final=2",
                                                 "loss.hard_negative_schedule=linear", "loss.debiased_tau_plus=0.1"])
        #expect(run.betas == [0, 0.5, 1, 1.5])
        #expect(run.losses.allSatisfy { $0.isFinite })
        let plain = try train(ranks: 1, steps: 1, [])
        #expect(plain.records == 1 && plain.betas.isEmpty)
    }

    func expectSameStep(_ distributed: Run, _ reference: Run) {
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        let worst = zip(distributed.parameters, reference.parameters).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0
        #expect(worst <= 1e-5, "largest relative parameter difference \(worst)")
    }

    /// One plain SGD step with beta = 1, tau+ = 0.1: P ranks equal one process on the global batch,
    /// and the step differs from plain NT-Xent's (the option does something).
    @Test(arguments: [(2, Transport.sharedMemory), (4, .tcp)])
    func stepEqualsOneProcessOnTheGlobalBatch(ranks: Int, transport: Transport) throws {
        let reference = try train(ranks: 1, steps: 1, Self.sgd + Self.hard)
        let distributed = try train(ranks: ranks, transport: transport, steps: 1, Self.sgd + Self.hard)
        expectSameStep(distributed, reference)
        let plain = try train(ranks: 1, steps: 1, Self.sgd)
        #expect(abs(plain.losses[0] - reference.losses[0]) > 1e-3)
    }

    /// The same with a learned temperature (dL/dtheta includes the clamp's term) and logit chunks.
    @Test func learnableChunkedStepEqualsOneProcess() throws {
        let overrides = Self.sgd + Self.hard + ["loss.temperature_mode=learnable", "loss.logit_chunk=24"]
        expectSameStep(try train(ranks: 2, steps: 1, overrides), try train(ranks: 1, steps: 1, overrides))
    }
}
