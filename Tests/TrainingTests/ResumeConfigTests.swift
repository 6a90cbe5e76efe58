import Foundation
import TestSupport
import Testing
@testable import Training

/// Resuming with a config that differs from the checkpoint's, through `contrast train`: every
/// changed key is logged (old -> new); a change of what the run trains is refused in one line
/// before anything is written, unless resume_config_changes is allow; an unchanged config
/// resumes without a word about it.
@Suite(.serialized) struct ResumeConfigTests {
    func arguments(_ run: String, steps: Int, _ overrides: [String]) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "train.max_steps=\(steps)",
         "--set", "data.test_limit=200", "--set", "eval.knn_every_epochs=0"] + overrides.flatMap { ["--set", $0] }
    }

    /// A finished 5-step run (checkpoint step-000000005) at P = `ranks`.
    func finishedRun(_ label: String, ranks: Int = 1) throws -> String {
        let run = temporaryDirectory(label).appendingPathComponent("run").path
        let outcome = try runContrast(ranks: ranks, arguments(run, steps: 5, ["data.batch_per_rank=\(64 / ranks)"]))
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        return run
    }

    /// Every file of the run directory with its bytes, to show a refusal wrote nothing.
    func snapshot(_ run: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = try #require(FileManager.default.enumerator(atPath: run))
        for case let path as String in enumerator {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: run + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files[path] = try Data(contentsOf: URL(fileURLWithPath: run + "/" + path))
            }
        }
        return files
    }

    @Test func allowedChangesAreLoggedWithOldAndNewValues() throws {
        let run = try finishedRun("resume-lr")
        let outcome = try runContrast(ranks: 1, arguments(run, steps: 8, ["optimizer.lr=0.1"]))
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let line = "config changed since checkpoint step-000000005: optimizer.lr 0.001 -> 0.1, train.max_steps 5 -> 8"
        #expect(outcome.output.contains(line), "\(outcome.output.prefix(1500))")
        #expect(try String(contentsOfFile: run + "/train.log", encoding: .utf8).contains(line))
        #expect(try String(contentsOfFile: run + "/train.log", encoding: .utf8).contains("resumed from checkpoint"))
    }

    @Test func theSameConfigResumesWithoutAWordAboutIt() throws {
        let run = try finishedRun("resume-same")
        let outcome = try runContrast(ranks: 1, arguments(run, steps: 5, []))
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        #expect(!outcome.output.contains("config changed") && !outcome.error.contains("config"), "\(outcome.output.prefix(1500))")
    }

    @Test func changesOfWhatTheRunTrainsAreRefusedBeforeAnythingIsWritten() throws {
        let run = try finishedRun("resume-refused")
        let before = try snapshot(run)
        let outcome = try runContrast(ranks: 1, arguments(run, steps: 8, ["optimizer.lr=0.1", "model.hidden=[32]", "seed=3"]))
        #expect(outcome.status == 1)
        #expect(outcome.error == "contrast: error: resuming from checkpoint step-000000005 with seed 0 -> 3, model.hidden [64] -> [32] "
                + "would change what the run trains; run with the checkpoint's values, start a new run (--set run_dir=...), "
                + "or --set resume_config_changes=allow to resume with the change\n", "\(outcome.error)")
        #expect(outcome.output.isEmpty, "\(outcome.output)")
        #expect(try snapshot(run) == before)
    }

    @Test func allowLetsAChangeOfWhatTheRunTrainsThroughAndLogsIt() throws {
        let run = try finishedRun("resume-allow")
        let outcome = try runContrast(ranks: 1, arguments(run, steps: 8, ["seed=3", "resume_config_changes=allow"]))
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        #expect(outcome.output.contains("config changed since checkpoint step-000000005: seed 0 -> 3, train.max_steps 5 -> 8 "
                                        + "(resume_config_changes: allow)"), "\(outcome.output.prefix(1500))")
    }

    /// Two ranks decide alike (rank 0 compares, every rank is told): one line, every rank exits 1,
    /// no MPI_Abort; and the global batch is checked before anything is written too.
    @Test func refusalUnderMpirunIsOneLineWithoutMPIAbort() throws {
        let run = try finishedRun("resume-refused-p2", ranks: 2)
        let before = try snapshot(run)
        let outcome = try runContrast(ranks: 2, arguments(run, steps: 8, ["data.batch_per_rank=32", "loss.kind=supcon"]), timeout: 120)
        #expect(outcome.status == 1, "\(outcome.error)")
        let lines = outcome.error.split(separator: "\n").filter { $0.hasPrefix("contrast") }
        #expect(lines == ["contrast: error: resuming from checkpoint step-000000005 with loss.kind \"ntxent\" -> \"supcon\" would change what "
                          + "the run trains; run with the checkpoint's values, start a new run (--set run_dir=...), "
                          + "or --set resume_config_changes=allow to resume with the change"], "\(outcome.error)")
        #expect(!outcome.error.contains("MPI_ABORT"), "\(outcome.error)")

        let otherBatch = try runContrast(ranks: 2, arguments(run, steps: 8, ["data.batch_per_rank=16"]), timeout: 120)
        #expect(otherBatch.status == 1, "\(otherBatch.error)")
        #expect(otherBatch.error.contains("contrast: error: checkpoint step-000000005 was written with a global batch of 64 images "
                                          + "(2 ranks x 32); to continue the same run on 2 rank(s) set data.batch_per_rank=32"), "\(otherBatch.error)")
        #expect(!otherBatch.error.contains("MPI_ABORT"), "\(otherBatch.error)")
        #expect(try snapshot(run) == before)
    }
}
