import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// loss.temperature_mode: the cosine schedule, the learnable logit scale's exclusion from decay,
/// and the config's checks.
@Suite struct TemperatureScheduleTests {
    @Test func cosineRunsFromStartToFinal() {
        func tau(_ step: Int) -> Float { Schedules.cosine(start: 0.5, final: 0.1, step: step, totalSteps: 100) }
        #expect(tau(0) == 0.5)
        #expect(abs(tau(50) - 0.3) <= 1e-6)
        #expect(abs(tau(100) - 0.1) <= 1e-6)
        #expect(abs(tau(25) - Float(0.1 + 0.4 * (1 + cos(Double.pi / 4)) / 2)) <= 1e-6)
        #expect((1..<100).allSatisfy { tau($0) < tau($0 - 1) })
    }

    @Test func stepReportsTheScheduledTemperature() throws {
        let config = try smokeConfig(["loss.temperature_mode=cosine", "loss.temperature=0.4", "loss.temperature_final=0.2"])
        let step = try TrainingStep(config: config, inputWidth: 784, samplesPerStep: 8, totalSteps: 10)
        #expect(step.plan(0).temperature == 0.4)
        #expect(abs(step.plan(5).temperature - 0.3) <= 1e-6)
        #expect(step.model.logitScale == nil)
    }

    @Test func learnableModelHasAnUndecayedLogitScale() throws {
        let config = try smokeConfig(["loss.temperature_mode=learnable", "loss.temperature=0.25"])
        let step = try TrainingStep(config: config, inputWidth: 784, samplesPerStep: 8, totalSteps: 10)
        let theta = try #require(step.model.logitScale)
        #expect(theta.offset == step.model.arena.slices.map(\.offset).max())
        #expect(step.model.arena.parameters(theta)[0] == log(4))
        #expect(abs(step.plan(3).temperature - 0.25) <= 1e-6)

        // Zero gradients and weight decay: every weight shrinks, theta stays (SGD and AdamW).
        let arena = step.model.arena
        for optimizer in [SGD(for: arena, weightDecay: 0.5), AdamW(for: arena, weightDecay: 0.5)] as [Optimizer] {
            arena.zeroGradients()
            let before = arena.parameters.array
            optimizer.step(arena, learningRate: 0.1)
            #expect(arena.parameters(theta)[0] == log(4))
            let weight = arena.slices[0]
            #expect(arena.parameters(weight)[0] != before[weight.offset] || before[weight.offset] == 0)
        }
    }

    @Test func decaySegmentsCoverTheArena() {
        let arena = ParameterArena()
        _ = arena.allocate(name: "w", shape: [20], kind: .weight)
        let theta = arena.allocate(name: "logit_scale", shape: [1], kind: .logitScale)
        arena.seal()
        let segments = arena.decaySegments
        #expect(segments.map(\.range) == [0..<theta.offset, theta.range])
        #expect(segments.map(\.decays) == [true, false])
    }

    @Test func configChecksTheTemperatures() throws {
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.temperature_final=0"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.temperature_min=-1"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.temperature_mode=learnable", "loss.temperature_min=0.5"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.temperature_mode=warm"]) }
        let config = try smokeConfig(["loss.temperature_mode=cosine"])
        #expect(config.loss.temperatureMode == .cosine && config.loss.temperatureFinal == 0.1 && config.loss.temperatureMin == 0.01)
    }
}

/// Temperature modes through `contrast train`: the step records show the temperature in use, and
/// a learned temperature trains identically at P = 2 and P = 1.
@Suite(.serialized) struct TemperatureTrainingTests {
    struct Run {
        var parameters: [Float]
        var logitScale: Float?
        var losses: [Double]
        var temperatures: [Double]
    }

    func train(ranks: Int, steps: Int, globalBatch: Int = 64, _ overrides: [String]) throws -> Run {
        let run = try trainSmoke("temperature", ranks: ranks, steps: steps, globalBatch: globalBatch, overrides)
        return Run(parameters: run.parameters, logitScale: run.model.logitScale.map { run.model.arena.parameters($0)[0] },
                   losses: run.losses, temperatures: run.steps.compactMap { $0["temperature"] as? Double })
    }

    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    @Test func cosineRunLogsTheDecreasingTemperature() throws {
        let run = try train(ranks: 1, steps: 4, ["loss.temperature_mode=cosine", "loss.temperature=0.5", "loss.temperature_final=0.1"])
        #expect(run.temperatures.count == 4)
        for (step, logged) in run.temperatures.enumerated() {
            let expected = Schedules.cosine(start: 0.5, final: 0.1, step: step, totalSteps: 4)
            #expect(abs(logged - Double(expected)) <= 1e-6, "step \(step)")
        }
        #expect(zip(run.temperatures, run.temperatures.dropFirst()).allSatisfy { $1 < $0 })
    }

    /// One plain SGD step with a learned temperature: P = 2 equals one process on the global
    /// batch, theta included (its gradient is the sum of the ranks' shares), and theta moved.
    @Test func learnableStepEqualsOneProcessOnTheGlobalBatch() throws {
        let learnable = Self.sgd + ["loss.temperature_mode=learnable", "loss.temperature=0.2"]
        let reference = try train(ranks: 1, steps: 1, learnable)
        let distributed = try train(ranks: 2, steps: 1, learnable)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        let theta = try #require(reference.logitScale), distributedTheta = try #require(distributed.logitScale)
        let start = log(1 / Float(0.2)), update = theta - start
        #expect(update != 0)
        // theta moved by -lr dL/dtheta: compare the update itself (plus theta's own rounding).
        #expect(abs((distributedTheta - start) - update) <= 1e-5 * abs(update) + 4e-7)
        let worst = zip(distributed.parameters, reference.parameters).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0
        #expect(worst <= 1e-5)
        // exp(-log(1/0.2)) is 0.2 to float rounding.
        #expect(reference.temperatures.count == 1 && abs(reference.temperatures[0] - 0.2) <= 1e-6)
    }

    /// A large step on theta is clamped to tau >= temperature_min, and the next step logs the
    /// learned temperature.
    @Test func learnedTemperatureIsClampedAndLogged() throws {
        let run = try train(ranks: 1, steps: 2, Self.sgd + ["optimizer.lr=1000", "loss.temperature_mode=learnable",
                                                             "loss.temperature=0.2", "loss.temperature_min=0.15"])
        let theta = try #require(run.logitScale)
        #expect(theta <= log(1 / Float(0.15)))
        #expect(run.temperatures.count == 2 && abs(run.temperatures[0] - 0.2) <= 1e-6)
        #expect(run.temperatures[1] != run.temperatures[0] && run.temperatures[1] >= 0.15 * (1 - 1e-6))
    }
}
