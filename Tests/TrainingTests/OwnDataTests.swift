import Data
import Foundation
import TestSupport
import Testing

/// Bring-your-own-data (issue 19, item 3), through the binary: `prepare npy --test-fraction`
/// gives a run a test split; a run without one, or without labels, says what it skipped (no
/// "nan" on stdout, in train.log, the metrics or report.html); a batch that does not fit a
/// prepared set's shard files names the files and `prepare --shards`, not data.virtual_shards.
@Suite(.serialized) struct OwnDataTests {
    func run(_ arguments: [String]) throws -> ProcessOutcome { try runProcess(contrastExecutable, arguments, timeout: 300) }

    /// 400 samples of 16 float32 features in 4 well-separated classes, sorted by class (as a
    /// user's export often is), and their int64 labels.
    func writeArrays(in folder: URL) throws -> (features: String, labels: String) {
        let features = folder.appendingPathComponent("x.npy").path, labels = folder.appendingPathComponent("y.npy").path
        var random = SystemRandomNumberGenerator()
        var values: [Float] = []
        for row in 0..<400 {
            for column in 0..<16 { values.append((column % 4 == row / 100 ? 3 : 0) + Float.random(in: -0.5...0.5, using: &random)) }
        }
        try NPYArray.encode(float32: values, shape: [400, 16]).write(to: URL(fileURLWithPath: features))
        try NPYArray.encode(int64: (0..<400).map { Int64($0 / 100) }, shape: [400]).write(to: URL(fileURLWithPath: labels))
        return (features, labels)
    }

    /// A short run of the smoke model on the prepared set `data`; returns its outcome and run directory.
    func train(_ data: String, in folder: URL, name: String, _ extra: [String] = []) throws -> (ProcessOutcome, URL) {
        let runDirectory = folder.appendingPathComponent(name)
        let outcome = try run(["train", "--config", "configs/smoke.yaml", "--set", "data.dataset=prepared", "--set", "data.path=\(data)",
                               "--set", "data.train_limit=0", "--set", "data.test_limit=0", "--set", "run_dir=\(runDirectory.path)",
                               "--set", "data.batch_per_rank=32", "--set", "data.prefetch=0"] + extra.flatMap { ["--set", $0] })
        return (outcome, runDirectory)
    }

    /// What a run showed a user: stdout, train.log, the metrics and the report.
    func everythingShown(_ outcome: ProcessOutcome, _ runDirectory: URL) throws -> String {
        let report = try run(["report", runDirectory.path])
        #expect(report.status == 0, "\(report.error)")
        let files = ["train.log", "metrics/rank-0.jsonl", "report.html"].map { runDirectory.appendingPathComponent($0) }
        return try ([outcome.output, outcome.error] + files.map { try String(contentsOf: $0, encoding: .utf8) }).joined(separator: "\n")
    }

    func endRecord(_ runDirectory: URL) throws -> [String: Any] {
        let lines = try String(contentsOf: runDirectory.appendingPathComponent("metrics/rank-0.jsonl"), encoding: .utf8).split(separator: "\n")
        let records = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return records.last { $0["type"] as? String == "end" } ?? [:]
    }

    @Test func aRunWithoutATestSplitSaysSoInsteadOfNaN() throws {
        let folder = temporaryDirectory("own-no-test")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (features, labels) = try writeArrays(in: folder)
        let data = folder.appendingPathComponent("mine").path
        let prepared = try run(["prepare", "npy", "--features", features, "--labels", labels, "--out", data, "--shards", "8"])
        #expect(prepared.status == 0, "\(prepared.error)")
        #expect(prepared.output.contains("no test split") && prepared.output.contains("--test-fraction"), "\(prepared.output)")

        let (outcome, runDirectory) = try train(data, in: folder, name: "run")
        #expect(outcome.status == 0, "\(outcome.error.suffix(2000))")
        let last = outcome.output.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("kNN skipped: the data set \(data) has no test split; prepare it with --test-fraction"), "\(last)")
        let shown = try everythingShown(outcome, runDirectory)
        #expect(!shown.lowercased().contains("nan"), "\(shown.suffix(3000))")
        #expect(shown.contains("eval: kNN will be skipped: the data set \(data) has no test split"))
        #expect(shown.contains("Best kNN accuracy</th><td>skipped: the data set"))
        #expect((try endRecord(runDirectory))["knn_skipped"] as? String == "the data set \(data) has no test split; "
                + "prepare it with --test-fraction 0.2, or point data.path at the folder holding train/ and test/")
    }

    @Test func testFractionGivesARunItsTestSplitAndUnlabeledDataSaysSo() throws {
        let folder = temporaryDirectory("own-fraction")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (features, labels) = try writeArrays(in: folder)
        let data = folder.appendingPathComponent("mine").path
        let prepared = try run(["prepare", "npy", "--features", features, "--labels", labels, "--test-fraction", "0.2", "--out", data,
                                "--shards", "8"])
        #expect(prepared.status == 0, "\(prepared.error)")
        #expect(ShardedDataset.splits(of: data) == (data + "/train", data + "/test"))
        #expect(try ShardedDataset(directory: data + "/test").sampleCount == 80)
        // The random draw takes every class of the sorted input into the test split.
        let testRows = try NPYArray(path: data + "/test-rows.npy").int64Values() ?? []
        #expect(testRows.count == 80 && Set(testRows.map { $0 / 100 }) == [0, 1, 2, 3])

        let (outcome, runDirectory) = try train(data, in: folder, name: "run")
        #expect(outcome.status == 0, "\(outcome.error.suffix(2000))")
        #expect(outcome.output.contains("320 train / 80 test samples"), "\(outcome.output)")
        let accuracy = outcome.output.split(separator: "\n").last.flatMap { line -> Double? in
            guard line.hasPrefix("kNN accuracy: ") else { return nil }
            return Double(line.dropFirst(14).prefix { $0 != "%" })
        }
        #expect((accuracy ?? 0) > 90, "\(outcome.output.suffix(500))")
        #expect(abs(((try endRecord(runDirectory))["knn_accuracy"] as? Double ?? -1) * 100 - (accuracy ?? 0)) < 0.01)

        // The same features without labels: trained, and the kNN skipped in words.
        let unlabeled = folder.appendingPathComponent("unlabeled").path
        #expect(try run(["prepare", "npy", "--features", features, "--test-fraction", "0.2", "--out", unlabeled, "--shards", "8"]).status == 0)
        let (plain, plainDirectory) = try train(unlabeled, in: folder, name: "plain")
        #expect(plain.status == 0, "\(plain.error.suffix(2000))")
        #expect(plain.output.split(separator: "\n").last?.hasPrefix("kNN skipped: the training data has no labels; prepare it with --labels") == true,
                "\(plain.output.suffix(500))")
        let shown = try everythingShown(plain, plainDirectory)
        #expect(!shown.lowercased().contains("nan"), "\(shown.suffix(3000))")
        #expect(shown.contains("eval epoch 1: kNN skipped (the training data has no labels)"))
    }

    @Test func prepareTestSplitOptionsAreCheckedWithOneLine() throws {
        let folder = temporaryDirectory("own-options")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (features, labels) = try writeArrays(in: folder)
        let out = folder.appendingPathComponent("set").path
        func refused(_ arguments: [String], _ words: [String]) throws {
            let outcome = try run(["prepare", "npy", "--features", features, "--out", out] + arguments)
            #expect(outcome.status != 0, "\(outcome.error)")
            for word in words { #expect(outcome.error.contains(word), "\(outcome.error) should mention \(word)") }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
        try refused(["--test-fraction", "1.5"], ["--test-fraction must be between 0 and 1"])
        try refused(["--test-fraction", "0.2", "--test-features", features], ["give one of them"])
        try refused(["--split-seed", "3"], ["--split-seed", "add --test-fraction"])
        try refused(["--test-labels", labels], ["add --test-features"])
        try refused(["--labels", labels, "--test-features", features], ["--labels needs --test-labels"])
        try refused(["--test-fraction", "0.001", "--shards", "4"], ["--test-fraction 0.001 of 400 samples leaves no test sample"])

        // A test split of one's own: written beside the training split, same checks.
        let own = try run(["prepare", "npy", "--features", features, "--labels", labels, "--test-features", features, "--test-labels", labels,
                           "--out", out, "--shards", "4"])
        #expect(own.status == 0, "\(own.error)")
        #expect(try ShardedDataset(directory: out + "/test").sampleCount == 400)
    }

    @Test func aBatchThatDoesNotFitThePreparedShardsNamesThem() throws {
        let folder = temporaryDirectory("own-batch")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (features, labels) = try writeArrays(in: folder)
        let data = folder.appendingPathComponent("mine").path
        #expect(try run(["prepare", "npy", "--features", features, "--labels", labels, "--test-fraction", "0.2", "--out", data,
                         "--shards", "4"]).status == 0)
        let (outcome, runDirectory) = try train(data, in: folder, name: "run", ["data.batch_per_rank=6"])
        expectOneLineError(outcome, mentioning: ["global batch 6 (data.batch_per_rank 6 x 1 rank)", "4 shard files of the prepared data set \(data)/train",
                                                 "contrast prepare --shards", "set data.batch_per_rank to 8", "--shards 3"])
        #expect(!outcome.error.contains("data.virtual_shards ="))
        #expect(!FileManager.default.fileExists(atPath: runDirectory.path))
        let (tooBig, _) = try train(data, in: folder, name: "run", ["data.batch_per_rank=400"])
        expectOneLineError(tooBig, mentioning: ["320 samples in 4 shard files", "the smallest of 80", "lower data.batch_per_rank to 320 or less"])
        // Fashion-MNIST's virtual shards keep their own message.
        let virtual = try run(["train", "--config", "configs/smoke.yaml", "--set", "data.batch_per_rank=60",
                               "--set", "run_dir=\(folder.appendingPathComponent("fmnist").path)"])
        if !virtual.error.contains("not found") {   // the IDX files may not be installed
            expectOneLineError(virtual, mentioning: ["data.virtual_shards = 8"])
        }
    }
}
