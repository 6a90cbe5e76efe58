import Foundation
import TestSupport
import Testing
import Data

/// `contrast eval`, `embed` and `export` on every kind of run, through the binary (issue 19,
/// item 1): the data set and the model come from the run's config, not from Fashion-MNIST's
/// IDX files, and `--data` evaluates on another set.
@Suite(.serialized) struct EvalCommandTests {
    /// `contrast prepare fashion-mnist --limit 2048` as getting-started has it (64 shards of 32).
    static let prepared: String = {
        let out = temporaryDirectory("eval-prepared").appendingPathComponent("fmnist").path
        let outcome = try! runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--limit", "2048", "--out", out])
        precondition(outcome.status == 0, "contrast prepare failed: \(outcome.error)")
        return out
    }()

    func contrast(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessOutcome {
        let outcome = try runContrast(ranks: 1, arguments)
        #expect(outcome.status == 0, "contrast \(arguments.joined(separator: " ")): \(outcome.error.suffix(1500))", sourceLocation: sourceLocation)
        return outcome
    }

    /// The smoke run on prepared data, as getting-started trains it.
    func trainSmoke(data: String, _ extra: [String] = []) throws -> (run: String, output: String) {
        let run = temporaryDirectory("eval-run").appendingPathComponent("run").path
        let overrides = ["run_dir=\(run)", "data.dataset=prepared", "data.path=\(data)", "monitor.progress=never"] + extra
        let outcome = try contrast(["train", "--config", "configs/smoke.yaml"] + overrides.flatMap { ["--set", $0] })
        return (run, outcome.output)
    }

    /// The percentage of the first "kNN accuracy: X%" in `text`.
    func accuracy(_ text: String) -> String? {
        guard let range = text.range(of: #"kNN accuracy: [0-9.]+%"#, options: .regularExpression) else { return nil }
        return String(text[range].dropFirst("kNN accuracy: ".count))
    }

    /// The defect: `eval knn --run` read the IDX files whatever the run trained on. Now it
    /// prints the accuracy the run's own last line printed (same data, limits, k, temperature
    /// and classifier), from the run's weights and from its checkpoint; the pixel baseline works
    /// on the prepared set too. When the data folder has moved, export still works (the input
    /// shape is recorded with the weights), evaluation names --data as the fix, and --data gives
    /// the same number.
    @Test func evalKNNOfAPreparedRunPrintsTheRunsOwnAccuracy() throws {
        let (run, output) = try trainSmoke(data: Self.prepared)
        let logged = try #require(accuracy(output), "\(output)")
        let fromWeights = try contrast(["eval", "knn", "--run", run])
        #expect(accuracy(fromWeights.output) == logged, "\(fromWeights.output) against the run's \(logged)")
        #expect(fromWeights.output.contains("2048 train / 512 test samples of \(Self.prepared)"), "\(fromWeights.output)")
        let fromCheckpoint = try contrast(["eval", "knn", "--run", run + "/checkpoints/latest"])
        #expect(accuracy(fromCheckpoint.output) == logged, "\(fromCheckpoint.output)")
        let pixels = try contrast(["eval", "knn", "--run", run, "--baseline", "pixels"])
        #expect(pixels.output.contains("raw pixels") && accuracy(pixels.output) != nil, "\(pixels.output)")
        let random = try contrast(["eval", "knn", "--baseline", "random", "--data", Self.prepared, "--set", "data.test_limit=100"])
        #expect(random.output.contains("randomly initialised") && random.output.contains("/ 100 test samples"), "\(random.output)")

        let moved = temporaryDirectory("eval-moved").appendingPathComponent("fmnist").path
        try FileManager.default.copyItem(atPath: Self.prepared, toPath: moved)
        let copy = temporaryDirectory("eval-copy").appendingPathComponent("run").path
        try FileManager.default.copyItem(atPath: run, toPath: copy)
        // The copied run names a data folder that does not exist.
        let config = try String(contentsOfFile: copy + "/config.yaml", encoding: .utf8)
        try config.replacingOccurrences(of: Self.prepared, with: moved + "-gone").write(toFile: copy + "/config.yaml", atomically: true, encoding: .utf8)
        let exported = try contrast(["export", "--checkpoint", copy, "--out", copy + "/model.safetensors"])
        #expect(exported.output.contains("8 tensors"), "\(exported.output)")
        expectOneLineError(try runContrast(ranks: 1, ["eval", "knn", "--run", copy]), mentioning: [moved + "-gone", "--data"])
        let elsewhere = try contrast(["eval", "knn", "--run", copy, "--data", moved])
        #expect(accuracy(elsewhere.output) == logged, "\(elsewhere.output)")
    }

    /// --data with samples of another shape is one line naming both shapes; a folder that is no
    /// data set is one line too.
    @Test func dataOfAnotherShapeIsRefused() throws {
        let folder = temporaryDirectory("eval-shape")
        let features = folder.appendingPathComponent("x.npy").path, labels = folder.appendingPathComponent("y.npy").path
        let values = (0..<(64 * 12)).map { Float($0 % 7) }
        try NPYArray.encode(float32: values, shape: [64, 12]).write(to: URL(fileURLWithPath: features))
        try NPYArray.encode(int64: (0..<64).map { Int64($0 % 3) }, shape: [64]).write(to: URL(fileURLWithPath: labels))
        let other = folder.appendingPathComponent("set").path
        _ = try contrast(["prepare", "npy", "--features", features, "--labels", labels, "--out", other, "--shards", "2"])
        let (run, _) = try trainSmoke(data: Self.prepared, ["train.max_steps=2", "eval.knn_every_epochs=0"])
        expectOneLineError(try runContrast(ranks: 1, ["eval", "knn", "--run", run, "--data", other]), mentioning: [other, "[12]", "[28, 28]"])
        expectOneLineError(try runContrast(ranks: 1, ["embed", "--checkpoint", run, "--data", other, "--split", "train",
                                                      "--out", folder.appendingPathComponent("h.npy").path]), mentioning: [other, "[12]"])
        expectOneLineError(try runContrast(ranks: 1, ["eval", "knn", "--run", run, "--data", folder.path]),
                           mentioning: [folder.path, "neither a prepared data set"])
    }

    /// A two-tower CLIP run on image/projection pairs: eval knn prints its logged accuracy,
    /// embed writes both towers' outputs, export writes both towers.
    @Test func clipPairsRunWorksWithEvalEmbedAndExport() throws {
        let paired = temporaryDirectory("eval-pairs").appendingPathComponent("set").path
        _ = try contrast(["prepare", "fashion-mnist", "--out", paired, "--shards", "8", "--limit", "2048", "--pairs", "projection", "--pair-width", "64"])
        let (run, output) = try trainSmoke(data: paired, ["loss.kind=clip", "loss.temperature=0.1", "model.pair_hidden=[48]", "train.max_steps=8"])
        let logged = try #require(accuracy(output), "\(output)")
        let knn = try contrast(["eval", "knn", "--run", run])
        #expect(accuracy(knn.output) == logged, "\(knn.output) against the run's \(logged)")
        let folder = temporaryDirectory("eval-pairs-out")
        let h = try contrast(["embed", "--checkpoint", run, "--out", folder.appendingPathComponent("h.npy").path])
        #expect(h.output.contains("2048 x 32"), "\(h.output)")
        let pairs = try contrast(["embed", "--checkpoint", run, "--pairs", "--what", "embedding", "--out", folder.appendingPathComponent("z.npy").path])
        #expect(pairs.output.contains("(pairs)") && pairs.output.contains("2048 x 16"), "\(pairs.output)")
        let exported = try contrast(["export", "--checkpoint", run, "--out", folder.appendingPathComponent("clip.safetensors").path])
        #expect(exported.output.contains("of weights of \(run)"), "\(exported.output)")
        let header = try Safetensors.readHeader(Data(contentsOf: folder.appendingPathComponent("clip.safetensors")), path: "clip")
        #expect(header.entries.contains { $0.name.hasPrefix("pair_encoder.") }, "\(header.entries.map(\.name))")
    }

    /// A CNN run on prepared images (with a residual adapter): eval knn prints its logged
    /// accuracy, eval full and embed run on the run's data, export writes the CNN's tensors.
    @Test func cnnRunWorksWithEvalEmbedAndExport() throws {
        let (run, output) = try trainSmoke(data: Self.prepared, ["model.encoder=cnn", "model.channels=[4]", "model.adapter=4", "train.max_steps=4"])
        let logged = try #require(accuracy(output), "\(output)")
        let knn = try contrast(["eval", "knn", "--run", run])
        #expect(accuracy(knn.output) == logged, "\(knn.output) against the run's \(logged)")
        let full = try contrast(["eval", "full", "--checkpoint", run, "--set", "data.train_limit=300", "--set", "data.test_limit=100"])
        #expect(full.output.contains("raw pixels") && full.output.contains("trained"), "\(full.output)")
        // The per-class table names the classes the prepared set's manifest records.
        #expect(full.output.contains("Ankle boot") && !full.output.contains("class 9"), "\(full.output)")
        let folder = temporaryDirectory("eval-cnn-out")
        let h = try contrast(["embed", "--checkpoint", run, "--limit", "100", "--out", folder.appendingPathComponent("h.npy").path])
        #expect(h.output.contains("100 test samples of \(Self.prepared)"), "\(h.output)")
        let exported = try contrast(["export", "--checkpoint", run, "--what", "encoder", "--out", folder.appendingPathComponent("cnn.safetensors").path])
        #expect(exported.output.contains("adapter"), "\(exported.output)")
    }

    /// Feature vectors are no pixels: eval full calls their baseline "raw features".
    @Test func evalFullNamesTheBaselineOfFeatureVectorsRawFeatures() throws {
        let folder = temporaryDirectory("eval-features")
        var random = SystemRandomNumberGenerator()
        let n = 400, width = 16
        let labels = (0..<n).map { Int64($0 % 4) }
        let values = (0..<(n * width)).map { i in Float(labels[i / width] == Int64(i % 4) ? 2 : 0) + Float.random(in: -1...1, using: &random) }
        let features = folder.appendingPathComponent("x.npy").path, labelFile = folder.appendingPathComponent("y.npy").path
        try NPYArray.encode(float32: values, shape: [n, width]).write(to: URL(fileURLWithPath: features))
        try NPYArray.encode(int64: labels, shape: [n]).write(to: URL(fileURLWithPath: labelFile))
        let set = folder.appendingPathComponent("set").path
        _ = try contrast(["prepare", "npy", "--features", features, "--labels", labelFile, "--out", set + "/train", "--shards", "4"])
        _ = try contrast(["prepare", "npy", "--features", features, "--labels", labelFile, "--out", set + "/test", "--shards", "2"])
        let (run, output) = try trainSmoke(data: set, ["train.max_steps=4", "data.train_limit=0", "data.test_limit=0"])
        let logged = try #require(accuracy(output), "\(output)")
        let knn = try contrast(["eval", "knn", "--run", run])
        #expect(accuracy(knn.output) == logged, "\(knn.output) against the run's \(logged)")
        let full = try contrast(["eval", "full", "--checkpoint", run])
        #expect(full.output.contains("raw features") && !full.output.contains("raw pixels"), "\(full.output)")
        let baseline = try contrast(["eval", "knn", "--run", run, "--baseline", "pixels"])
        #expect(baseline.output.contains("raw features"), "\(baseline.output)")
    }
}
