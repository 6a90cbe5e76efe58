import Checkpoint
import Data
import Foundation
import TestSupport
import Testing

/// A user's mistake through the binary: exit status 1 and one line naming every word.
func expectOneLineError(_ outcome: ProcessOutcome, mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(outcome.status == 1, "status \(outcome.status): \(outcome.error)", sourceLocation: sourceLocation)
    #expect(outcome.error.split(separator: "\n").count == 1, "expected one line, got: \(outcome.error)", sourceLocation: sourceLocation)
    for word in words {
        #expect(outcome.error.contains(word), "\(outcome.error) should mention \(word)", sourceLocation: sourceLocation)
    }
}

/// The paths users hand to `contrast` for a checkpoint (issue 19, item 8), through the binary:
/// every command that takes one accepts a run directory, a checkpoint directory or
/// `RUN/checkpoints/latest`, and says plainly when a path does not exist.
@Suite(.serialized) struct CheckpointPathTests {
    func run(_ arguments: [String]) throws -> ProcessOutcome { try runProcess(contrastExecutable, arguments, timeout: 300) }

    @Test func checkpointPathsResolveTheSameEverywhere() throws {
        let folder = temporaryDirectory("checkpoint-paths")
        defer { try? FileManager.default.removeItem(at: folder) }
        let runDir = folder.appendingPathComponent("run").path
        let trained = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDir)",
                                                 "--set", "train.max_steps=10", "--set", "checkpoint.every_steps=5",
                                                 "--set", "eval.knn_every_epochs=0", "--set", "data.test_limit=200"])
        try #require(trained.status == 0, "\(trained.error.suffix(1500))")
        let newest = runDir + "/checkpoints/step-000000010"
        let latest = runDir + "/checkpoints/latest"

        for path in [runDir, latest, newest, runDir + "/checkpoints"] {
            let verify = try run(["checkpoint", "verify", path])
            #expect(verify.status == 0 && verify.output.contains("step-000000010: OK"), "\(path): \(verify.output) \(verify.error)")
        }
        let older = try run(["checkpoint", "verify", runDir + "/checkpoints/step-000000005"])
        #expect(older.status == 0 && older.output.contains("step-000000005: OK"), "\(older.error)")

        // inspect: the state as indented key: value lines and the config as YAML, not one escaped JSON line.
        let inspect = try run(["checkpoint", "inspect", runDir])
        #expect(inspect.status == 0, "\(inspect.error)")
        let lines = inspect.output.split(separator: "\n").map(String.init)
        #expect(lines.first == "checkpoint \(newest)", "\(lines.first ?? "")")
        #expect(lines.contains("  state:") && lines.contains("    step: 10") && lines.contains("    config:"), "\(inspect.output)")
        #expect(lines.contains { $0.hasPrefix("      ") && $0.contains("max_steps: 10") }, "\(inspect.output)")
        #expect(!inspect.output.contains("\\n") && !inspect.output.contains("\\\""), "escaped JSON: \(inspect.output)")
        #expect(lines.allSatisfy { $0.count < 200 }, "\(inspect.output)")

        // Missing paths say so; a step directory without a manifest is an unfinished save.
        let missing = folder.appendingPathComponent("no-such-run").path
        for command in [["checkpoint", "verify", missing], ["checkpoint", "inspect", missing],
                        ["export", "--checkpoint", missing, "--out", folder.appendingPathComponent("m.safetensors").path],
                        ["eval", "full", "--checkpoint", missing]] {
            expectOneLineError(try run(command), mentioning: [missing, "does not exist", "run directory"])
        }
        let unfinished = runDir + "/checkpoints/step-000000099"
        try FileManager.default.createDirectory(atPath: unfinished, withIntermediateDirectories: true)
        expectOneLineError(try run(["checkpoint", "verify", unfinished]), mentioning: [unfinished, "not a complete checkpoint"])
        let file = runDir + "/train.log"
        expectOneLineError(try run(["checkpoint", "inspect", file]), mentioning: [file, "not a checkpoint"])
        #expect(!(try run(["checkpoint", "verify", unfinished])).error.contains("CheckpointStore"))

        // export / embed take `latest` too; an --out folder that does not exist is named.
        let exported = folder.appendingPathComponent("model.safetensors").path
        let export = try run(["export", "--checkpoint", latest, "--out", exported])
        #expect(export.status == 0 && export.output.contains("step 10"), "\(export.output) \(export.error)")
        let embed = try run(["embed", "--checkpoint", latest, "--out", folder.appendingPathComponent("h.npy").path, "--limit", "20"])
        #expect(embed.status == 0, "\(embed.error)")
        #expect(try NPYArray(path: folder.appendingPathComponent("h.npy").path).shape.first == 20)
        let absent = folder.appendingPathComponent("absent/deeper").path
        expectOneLineError(try run(["export", "--checkpoint", runDir, "--out", absent + "/model.safetensors"]),
                           mentioning: ["folder \(absent) does not exist", "mkdir -p"])
        expectOneLineError(try run(["embed", "--checkpoint", runDir, "--out", absent + "/h.npy"]), mentioning: ["folder \(absent) does not exist"])
    }
}
