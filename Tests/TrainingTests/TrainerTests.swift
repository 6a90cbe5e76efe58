import Foundation
import Contrastive
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Data
@testable import NN
@testable import Tensor
@testable import Training

@Suite struct TrainerTests {
    /// The smoke workload end to end: it learns (loss falls, kNN well above chance) and the
    /// run directory holds the resolved config, the log, one JSON object per metrics line and
    /// the weights, which `eval` reads back to the same accuracy.
    @Test func smokeRunLearnsAndWritesItsRunDirectory() throws {
        let config = try smokeConfig()
        let trainer = try Trainer(config: config)
        let summary = try trainer.run()
        #expect(summary.steps == trainer.totalSteps)
        #expect(summary.knnAccuracy > 0.6)        // chance is 0.1; measured about 0.71

        let directory = URL(fileURLWithPath: config.runDirectory)
        let resolved = try ConfigLoader.load(file: directory.appendingPathComponent("config.yaml").path, overrides: [])
        #expect(resolved == config)
        let log = try String(contentsOf: directory.appendingPathComponent("train.log"), encoding: .utf8)
        #expect(log.contains("kNN accuracy"))
        let lines = try String(contentsOf: directory.appendingPathComponent("metrics/rank-0.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let records = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let losses = records.compactMap { $0["loss"] as? Double }
        #expect(losses.count == summary.steps)
        let firstLosses = losses.prefix(8).reduce(0, +) / 8, lastLosses = losses.suffix(8).reduce(0, +) / 8
        #expect(lastLosses < firstLosses - 0.2)
        #expect(records.contains { $0["knn_accuracy"] != nil })

        let model = trainer.step.model
        let reloaded = ContrastiveModel(inputWidth: 784, hidden: config.model.hidden, representation: config.model.representation,
                                        projection: config.model.projection, activation: .relu)
        try WeightsFile.read(into: reloaded.arena, from: directory.appendingPathComponent("weights.bin"))
        #expect(reloaded.arena.parameters.array == model.arena.parameters.array)
    }

    /// Views made ahead on a background thread train the very same model as views made in the loop.
    @Test func prefetchingChangesNothingButTheTiming() throws {
        func weights(_ prefetch: Int) throws -> [UInt32] {
            let config = try smokeConfig(["data.prefetch=\(prefetch)", "train.max_steps=40", "eval.knn_every_epochs=0"])
            let trainer = try Trainer(config: config)
            _ = try trainer.run()
            return trainer.step.model.arena.parameters.array.map(\.bitPattern)
        }
        #expect(try weights(0) == weights(2))
    }

    @Test func refusesToOverwriteAnExistingRun() throws {
        let config = try smokeConfig(["train.max_steps=1"])
        try FileManager.default.createDirectory(atPath: config.runDirectory, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: config.runDirectory).appendingPathComponent("train.log"))
        #expect(throws: RunDirectory.Failure.self) { try Trainer(config: config) }
    }

    @Test func missingDataSetNamesTheFileAndTheFix() throws {
        let config = try smokeConfig(["data.path=/nonexistent/fashion"])
        do {
            _ = try Trainer(config: config)
            Issue.record("expected an error")
        } catch {
            let message = "\(error)"
            #expect(message.contains("/nonexistent/fashion"))
            #expect(message.contains("data.path"))
        }
    }
}
