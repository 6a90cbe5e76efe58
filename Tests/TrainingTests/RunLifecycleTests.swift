import Distributed
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

    /// A run that train.max_steps ends in its second epoch (40 steps of 32 per epoch): the step
    /// line says "epoch 2", and so must the final evaluation's line, its record and the report
    /// (they said "eval epoch 1" and "after epoch 1": the number of epochs completed).
    @Test func epochNumbersAgreeWhenMaxStepsEndsMidEpoch() throws {
        let run = temporaryDirectory("epochs").appendingPathComponent("run").path
        let outcome = try train(run, ["train.max_steps=40", "eval.knn_every_epochs=0", "train.log_every_steps=40"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        #expect(log.contains("step 40/40 epoch 2 "), "\(log)")
        #expect(log.contains("eval epoch 2: kNN accuracy"), "\(log)")
        let evaluation = try #require(try records(run).last { $0["type"] as? String == "eval" })
        #expect(evaluation["epoch"] as? Int == 2)
        let pca = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/eval/pca-step-40.json"))) as? [String: Any])
        #expect(pca["epoch"] as? Int == 2)
        let page = try Report.html(runDirectory: URL(fileURLWithPath: run))
        #expect(page.contains("(after epoch 2, step 40)"))
        #expect(page.contains("step 40 (epoch 2)"))
    }

    /// The getting-started path: `prepare fashion-mnist`, a one-rank run on it, `report`. The PCA
    /// legend names Fashion-MNIST's classes (it said "class 0" ... "class 9": the prepared set had
    /// no names), and the precision row says there is no wire (it said "bf16 gradients on the wire").
    @Test func reportOfAPreparedFashionMNISTRunNamesItsClasses() throws {
        let root = temporaryDirectory("named")
        let data = root.appendingPathComponent("data").path, run = root.appendingPathComponent("run").path
        let prepared = try runContrast(ranks: 1, ["prepare", "fashion-mnist", "--limit", "2048", "--out", data])
        #expect(prepared.status == 0, "\(prepared.error)")
        let outcome = try train(run, ["data.dataset=prepared", "data.path=\(data)", "data.train_limit=0", "data.test_limit=0",
                                      "train.max_steps=4", "communication.precision=bf16"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let report = try runContrast(ranks: 1, ["report", run])
        #expect(report.status == 0, "\(report.error)")
        let page = try String(contentsOfFile: run + "/report.html", encoding: .utf8)
        for name in ["0 T-shirt/top", "1 Trouser", "9 Ankle boot"] { #expect(page.contains(name), "no legend entry \(name)") }
        #expect(!page.contains("class 0"))
        #expect(page.contains("single process, no all-reduce") && !page.contains("on the wire"))
    }

    /// The same command again on a finished run: nothing is trained or evaluated again, the
    /// command says so with the run's last kNN accuracy and exits 0, and neither train.log nor the
    /// metrics gain a line (they gained a "final loss nan" and a second end record).
    @Test func rerunningAFinishedRunSaysSoAndWritesNothing() throws {
        let run = temporaryDirectory("rerun").appendingPathComponent("run").path
        let overrides = ["train.max_steps=10", "eval.knn_every_epochs=0"]
        let first = try train(run, overrides)
        #expect(first.status == 0, "\(first.error.suffix(1500))")
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        let metrics = try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8)
        let knn = try #require(try records(run).last { $0["type"] as? String == "eval" }?["knn_accuracy"] as? Double)

        let again = try train(run, overrides)
        #expect(again.status == 0, "\(again.error.suffix(1500))")
        #expect(again.output.contains("run already finished at step 10 (\(run)/weights.bin); nothing to do"), "\(again.output)")
        #expect(again.output.contains(String(format: "its last kNN accuracy was %.2f%%", knn * 100)), "\(again.output)")
        #expect(!again.output.contains("nan"), "\(again.output)")
        #expect(try String(contentsOfFile: run + "/train.log", encoding: .utf8) == log)
        #expect(try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8) == metrics)
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

    /// run_dir on a folder bound read-only (root: a mount, as permissions do not stop root):
    /// both ranks find before the run directory is made that they cannot write the checkpoint
    /// folder, and the job ends with one line naming them, the folder, errno's text and the fix.
    @Test(.enabled(if: getuid() == 0, "needs root to bind a folder read-only"))
    func aReadOnlyCheckpointFolderIsNamedBeforeTheRunStarts() throws {
        let folder = temporaryDirectory("readonly").appendingPathComponent("shared")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let mount = URL(fileURLWithPath: "/usr/bin/mount"), umount = URL(fileURLWithPath: "/usr/bin/umount")
        #expect(try runProcess(mount, ["--bind", folder.path, folder.path]).status == 0)
        defer { _ = try? runProcess(umount, [folder.path]) }
        let remount = try runProcess(mount, ["-o", "remount,bind,ro", folder.path])
        #expect(remount.status == 0, "\(remount.error)")
        let run = folder.appendingPathComponent("runs/run").path
        let outcome = try runContrast(ranks: 2, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "train.max_steps=2"])
        #expect(outcome.status == 1, "\(outcome.error)")
        let line = "contrast: error: ranks 0, 1 on \(Launch.localHostname()) cannot write the checkpoint folder \(run)/checkpoints: "
            + "creating a file in \(folder.path) (the part of it that exists) failed: Read-only file system (errno 30); "
        #expect(outcome.error.contains(line), "\(outcome.error)")
        #expect(outcome.error.components(separatedBy: "cannot write the checkpoint folder").count == 2, "printed once: \(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("runs").path))
    }

    /// train.log's step lines, TensorBoard's speed/images_per_second and `contrast tail` give the
    /// same images/s for the same steps (they gave 9,776 against 25,884: tail averaged the steps'
    /// own rates): the global batch of the interval's steps over their wall time.
    @Test func imagesPerSecondAgreeInLogTensorBoardAndTail() throws {
        let run = temporaryDirectory("throughput").appendingPathComponent("run").path
        // A checkpoint and an evaluation inside the run: wall time between steps must count the same everywhere.
        let outcome = try train(run, ["train.max_steps=40", "train.log_every_steps=5", "monitor.tensorboard=true",
                                      "checkpoint.every_steps=10"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")

        let tensorboard = URL(fileURLWithPath: run + "/tensorboard")
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: tensorboard.path).first { $0.hasPrefix("events.out.tfevents.") })
        let board = try TensorBoardReader.scalars(file: tensorboard.appendingPathComponent(file)).filter { $0.tag == "speed/images_per_second" }
        #expect(board.map(\.step) == Array(stride(from: 5, through: 40, by: 5)))

        let follower = MetricsFollower(runDirectory: URL(fileURLWithPath: run), every: 5)
        let rows = try follower.poll()
        #expect(rows.map(\.step) == board.map(\.step))

        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        let logged = log.split(separator: "\n").compactMap { line -> Int? in
            let words = line.split(separator: " ")
            guard let unit = words.firstIndex(of: "img/s"), words.contains("pos_acc") else { return nil }
            return Int(words[unit - 1])
        }
        #expect(logged.count == rows.count)
        for (index, row) in rows.enumerated() where index < board.count && index < logged.count {
            let value = Double(board[index].value)
            #expect(abs(row.imagesPerSecond - value) <= 1e-6 * value, "step \(row.step): tail \(row.imagesPerSecond), TensorBoard \(value)")
            #expect(Int(row.imagesPerSecond.rounded()) == logged[index], "step \(row.step): tail \(row.imagesPerSecond), train.log \(logged[index])")
        }
    }
}
