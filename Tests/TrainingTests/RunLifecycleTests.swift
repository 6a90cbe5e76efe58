import Foundation
import TestSupport
import RunFiles
import Testing

/// What a user meets around a run through the binary (issue 19, item 10): the epoch numbers the
/// log, the metrics and the report give, running a finished run's command again, a run_dir that
/// cannot be made, and one images/s for the same steps in train.log, TensorBoard and `tail`.
@Suite(.serialized) struct RunLifecycleTests {
    /// configs/smoke.yaml (32 steps per epoch) into a fresh run directory.
    func train(_ run: String, _ overrides: [String]) throws -> ProcessOutcome {
        try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "data.test_limit=256"]
                                  + overrides.flatMap { ["--set", $0] })
    }

    func records(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// A run_dir that cannot be made (its parent is a file) is one line in our words naming the
    /// path, the reason and the fix, not Foundation's "(NSCocoaErrorDomain error 512.)".
    @Test func unwritableRunDirectoryIsExplained() throws {
        let parent = temporaryDirectory("unwritable").appendingPathComponent("a-file")
        try Data("not a directory\n".utf8).write(to: parent)
        let outcome = try train(parent.path + "/runs/run", ["train.max_steps=2"])
        #expect(outcome.status == 1)
        let lines = outcome.error.split(separator: "\n")
        #expect(lines.count == 1, "\(outcome.error)")
        #expect(outcome.error.contains("cannot create directory \(parent.path)/runs/run: \(parent.path) is a file, not a directory"),
                "\(outcome.error)")
        #expect(outcome.error.contains("--set run_dir=") && !outcome.error.contains("NSCocoaErrorDomain"), "\(outcome.error)")
    }
}
