import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Data
@testable import NN
@testable import Training

/// Training from a data set written by `contrast prepare`: the same run as from the IDX files,
/// ranks that open only their own shard files, and damaged shards stopped before the first step.
@Suite(.serialized) struct PreparedDataTests {
    /// The first 2,048 images of each split in 8 shards of 256: exactly the smoke config's
    /// 8 virtual shards of its 2,048 training images.
    static let prepared: String = {
        let out = temporaryDirectory("prepared").appendingPathComponent("fmnist").path
        let outcome = try! runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--out", out, "--shard-size", "256", "--limit", "2048"])
        precondition(outcome.status == 0, "contrast prepare failed: \(outcome.error)")
        return out
    }()

    /// The same 2,048 + 2,048 images with 64-wide projection pairs (docs/data-format.md), 8 shards.
    static let paired: String = {
        let out = temporaryDirectory("paired").appendingPathComponent("fmnist-pairs").path
        let outcome = try! runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--out", out, "--shards", "8", "--limit", "2048",
                                                          "--pairs", "projection", "--pair-width", "64"])
        precondition(outcome.status == 0, "contrast prepare --pairs failed: \(outcome.error)")
        return out
    }()

    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    func parameters(_ run: String, pairWidth: Int = 0) throws -> [Float] {
        let config = try ConfigLoader.load(file: run + "/config.yaml", overrides: [])
        let model = ContrastiveModel(config.model, inputWidth: 784, pairInputWidth: pairWidth)
        try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run + "/weights.bin"))
        return model.arena.parameters.array
    }

    func train(ranks: Int, transport: Transport = .sharedMemory, path: String, batchPerRank: Int = 64, steps: Int = 4,
               dataset: String = "prepared", _ extra: [String] = []) throws -> (outcome: ProcessOutcome, run: String) {
        let run = temporaryDirectory("prepared-run").appendingPathComponent("run").path
        var overrides = ["run_dir=\(run)", "data.dataset=\(dataset)", "data.path=\(path)", "data.batch_per_rank=\(batchPerRank)",
                         "train.max_steps=\(steps)", "communication.precision=fp32", "eval.knn_every_epochs=0"]
        if dataset == "prepared" { overrides.append("data.train_limit=0") }
        let arguments = ["train", "--config", "configs/smoke.yaml"] + (overrides + extra).flatMap { ["--set", $0] }
        return (try runContrast(ranks: ranks, transport: transport, arguments), run)
    }

    func losses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  record["time_forward"] != nil else { return nil }
            return record["loss"] as? Double
        }
    }

    /// Prepared shards equal to the virtual shards give the same batches, views and updates:
    /// the final weights are bit for bit those of the run on the IDX files.
    @Test func preparedDataTrainsExactlyAsTheIDXFiles() throws {
        let fromShards = try train(ranks: 1, path: Self.prepared, steps: 6)
        #expect(fromShards.outcome.status == 0, "\(fromShards.outcome.error.suffix(1500))")
        let fromIDX = try train(ranks: 1, path: FashionMNIST.defaultDirectory, steps: 6, dataset: "fashion-mnist")
        #expect(fromIDX.outcome.status == 0, "\(fromIDX.outcome.error.suffix(1500))")
        let a = try Data(contentsOf: URL(fileURLWithPath: fromShards.run + "/weights.bin"))
        let b = try Data(contentsOf: URL(fileURLWithPath: fromIDX.run + "/weights.bin"))
        #expect(a == b)
        #expect(try losses(fromShards.run) == losses(fromIDX.run))
        let log = try String(contentsOfFile: fromShards.run + "/train.log", encoding: .utf8)
        #expect(log.contains("kNN accuracy"))
    }

    /// Each rank gets a folder holding the manifest and only the shard files the sampler gives
    /// it (data.path with {rank}); a rank that opened any other shard would fail on the missing
    /// file. P = 2 divides the 8 shards; P = 3 does not, so two shards are copied to two ranks.
    /// The loss curve is the one-process curve, and so is the final kNN accuracy.
    @Test(arguments: [(2, 32), (3, 16)])
    func eachRankOpensOnlyItsOwnShards(ranks: Int, batchPerRank: Int) throws {
        let root = temporaryDirectory("per-rank")
        let manifest = try ShardedDataset.readManifest(directory: Self.prepared + "/train")
        let sampler = try Sampler(shardRanges: manifest.shards.map { $0.firstSample ..< $0.firstSample + $0.sampleCount },
                                  globalBatchSize: ranks * batchPerRank, seed: 0)
        var copies = 0
        for rank in 0..<ranks {
            let folder = root.appendingPathComponent("rank-\(rank)")
            let train = folder.appendingPathComponent("train")
            try FileManager.default.createDirectory(at: train, withIntermediateDirectories: true)
            let files = try sampler.shards(rank: rank, worldSize: ranks).map { manifest.shards[$0].file } + [ShardManifest.fileName]
            for file in files {
                try FileManager.default.copyItem(atPath: Self.prepared + "/train/" + file, toPath: train.appendingPathComponent(file).path)
            }
            copies += files.count - 1
            if rank == 0 { try FileManager.default.copyItem(atPath: Self.prepared + "/test", toPath: folder.appendingPathComponent("test").path) }
        }
        #expect(copies == (8 % ranks == 0 ? 8 : 8 + 2))
        let distributed = try train(ranks: ranks, path: root.path + "/rank-{rank}", batchPerRank: batchPerRank)
        #expect(distributed.outcome.status == 0, "\(distributed.outcome.error.suffix(1500))")
        let reference = try train(ranks: 1, path: Self.prepared, batchPerRank: ranks * batchPerRank)
        #expect(reference.outcome.status == 0, "\(reference.outcome.error.suffix(1500))")
        let (a, b) = (try losses(distributed.run), try losses(reference.run))
        #expect(a.count == 4 && b.count == 4)
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-5 * abs(y)) }
        // The final kNN evaluation: each rank embeds its part of the training set, rank 0
        // gathers them all; the accuracy is the one process's.
        let (knn, knnAlone) = (try knnAccuracies(distributed.run), try knnAccuracies(reference.run))
        #expect(knn.count == 1 && knn == knnAlone)
    }

    /// A damaged shard stops the run before the first step with one line naming the file, and
    /// leaves no run directory behind; on two ranks the job ends naming the rank that read it.
    @Test func damagedShardStopsTrainingBeforeItStarts() throws {
        let copy = temporaryDirectory("damaged").appendingPathComponent("set").path
        try FileManager.default.copyItem(atPath: Self.prepared, toPath: copy)
        let shard = copy + "/train/" + ShardedDatasetWriter.shardFileName(5)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: shard))

        let single = try train(ranks: 1, path: copy)
        #expect(single.outcome.status != 0)
        #expect(single.outcome.error.contains("shard-00005.bin") && single.outcome.error.contains("crc32"), "\(single.outcome.error)")
        #expect(!single.outcome.error.contains("Fatal error"))
        #expect(!FileManager.default.fileExists(atPath: single.run))

        let two = try train(ranks: 2, path: copy)
        #expect(two.outcome.status != 0)
        #expect(two.outcome.error.contains("rank 1") && two.outcome.error.contains("shard-00005.bin"), "\(two.outcome.error.suffix(1500))")

        // A truncated shard is caught when the manifest is checked against the files.
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: shard))
        let truncated = try train(ranks: 1, path: copy)
        #expect(truncated.outcome.status != 0)
        #expect(truncated.outcome.error.contains("shard-00005.bin") && truncated.outcome.error.contains("truncated"))
    }

    /// Two-tower CLIP training on image/projection pairs: one plain SGD step on P = 2 and 4
    /// ranks (shared memory and TCP) equals one process on the global batch to 1e-5 relative in
    /// every parameter of both towers; the loss is the same; recall@1/@5 is evaluated both ways.
    @Test(arguments: [(2, Transport.sharedMemory), (4, .tcp)])
    func clipStepOnRanksEqualsOneProcess(ranks: Int, transport: Transport) throws {
        let clip = ["loss.kind=clip", "loss.temperature=0.1", "model.pair_hidden=[48]"] + Self.sgd
        let reference = try train(ranks: 1, path: Self.paired, batchPerRank: 64, steps: 1, clip + ["eval.knn_every_epochs=0"])
        #expect(reference.outcome.status == 0, "\(reference.outcome.error.suffix(1500))")
        let distributed = try train(ranks: ranks, transport: transport, path: Self.paired, batchPerRank: 64 / ranks, steps: 1, clip)
        #expect(distributed.outcome.status == 0, "\(distributed.outcome.error.suffix(1500))")
        let (a, b) = (try losses(distributed.run), try losses(reference.run))
        #expect(a.count == 1 && b.count == 1 && abs(a[0] - b[0]) <= 1e-5 * abs(b[0]))
        let (x, y) = (try parameters(distributed.run, pairWidth: 64), try parameters(reference.run, pairWidth: 64))
        let initial = ContrastiveModel(try ConfigLoader.load(file: reference.run + "/config.yaml", overrides: []).model,
                                       inputWidth: 784, pairInputWidth: 64)
        #expect(x.count == initial.arena.count && x.count == y.count)
        let worst = zip(x, y).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0
        #expect(worst <= 1e-5)
        let log = try String(contentsOfFile: reference.run + "/train.log", encoding: .utf8)
        #expect(log.contains("recall@1") && log.contains("recall@5"), "\(log.suffix(800))")
        let metrics = try String(contentsOfFile: reference.run + "/metrics/rank-0.jsonl", encoding: .utf8)
        #expect(metrics.contains("recall_at_5_pairs_to_features"))
    }

    /// Two CLIP epochs of a small model learn: recall@5 (features to pairs among 2,048 test
    /// pairs) passes ten times chance (5 / 2,048; measured 6.7 %) and the loss falls.
    @Test func clipTrainingLearnsToRetrieve() throws {
        let clip = ["loss.kind=clip", "loss.temperature=0.1", "model.pair_hidden=[48]", "train.epochs=2", "train.max_steps=0"]
        let run = try train(ranks: 1, path: Self.paired, batchPerRank: 64, steps: 0, clip)
        #expect(run.outcome.status == 0, "\(run.outcome.error.suffix(1500))")
        let losses = try losses(run.run)
        #expect(losses.count == 64 && losses.suffix(8).reduce(0, +) / 8 < losses.prefix(4).reduce(0, +) / 4 - 0.5)
        let last = try String(contentsOfFile: run.run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .last { $0["recall_at_5_features_to_pairs"] != nil }
        let recall = last?["recall_at_5_features_to_pairs"] as? Double ?? 0
        #expect(recall > 10 * 5.0 / 2048, "recall@5 \(recall)")
    }

    /// The kNN accuracies a run's metrics recorded, in order.
    func knnAccuracies(_ run: String) throws -> [Double] {
        try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            // The eval records' (the end record repeats the final one).
            guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], record["type"] as? String == "eval" else { return nil }
            return record["knn_accuracy"] as? Double
        }
    }

    /// `data.hold: disk` trains exactly as `memory`: the same weights bit for bit, losses and
    /// kNN accuracy (whose evaluation reads every held row and the test split from disk too),
    /// on the IDX files in one process and on CLIP pairs from a prepared set over two ranks.
    /// The unnamed sample files leave nothing in `data.spill_dir`.
    @Test(arguments: [(1, false), (2, true)])
    func samplesOnDiskTrainExactlyAsInMemory(ranks: Int, clip: Bool) throws {
        let spill = temporaryDirectory("spill").path
        let path = clip ? Self.paired : FashionMNIST.defaultDirectory
        let dataset = clip ? "prepared" : "fashion-mnist"
        let extra = (clip ? ["loss.kind=clip", "loss.temperature=0.1", "model.pair_hidden=[48]"] : []) + ["eval.knn_every_epochs=1"]
        let memory = try train(ranks: ranks, path: path, batchPerRank: 32, steps: 5, dataset: dataset, extra)
        #expect(memory.outcome.status == 0, "\(memory.outcome.error.suffix(1500))")
        let disk = try train(ranks: ranks, path: path, batchPerRank: 32, steps: 5, dataset: dataset,
                             extra + ["data.hold=disk", "data.spill_dir=\(spill)"])
        #expect(disk.outcome.status == 0, "\(disk.outcome.error.suffix(1500))")
        let a = try Data(contentsOf: URL(fileURLWithPath: memory.run + "/weights.bin"))
        let b = try Data(contentsOf: URL(fileURLWithPath: disk.run + "/weights.bin"))
        #expect(a == b)
        #expect(try losses(memory.run) == losses(disk.run))
        let (knn, knnInMemory) = (try knnAccuracies(disk.run), try knnAccuracies(memory.run))
        #expect(!knn.isEmpty && knn == knnInMemory)
        let log = try String(contentsOfFile: disk.run + "/train.log", encoding: .utf8)
        #expect(log.contains("samples kept on disk in unnamed files in \(spill)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: spill).isEmpty)
    }

    /// A spill directory that cannot take the files stops the run before it starts, with one
    /// line naming the key and the fix, and leaves no run directory; on two ranks too.
    @Test func unusableSpillDirectoryStopsBeforeTheRun() throws {
        let missing = "/nonexistent-\(UUID().uuidString)"
        for ranks in [1, 2] {
            let run = try train(ranks: ranks, path: Self.prepared, ["data.hold=disk", "data.spill_dir=\(missing)"])
            #expect(run.outcome.status != 0)
            #expect(run.outcome.error.contains(missing) && run.outcome.error.contains("data.spill_dir")
                    && run.outcome.error.contains("data.hold: memory"), "\(run.outcome.error.suffix(1500))")
            #expect(!run.outcome.error.contains("Fatal error"))
            #expect(!FileManager.default.fileExists(atPath: run.run))
        }
    }

    /// Non-image augmentation end to end: the images as 784 plain features with feature views.
    @Test func featureViewsTrain() throws {
        let run = try train(ranks: 1, path: Self.paired, steps: 5, ["data.augment=features", "feature_views.mask=0.2"])
        #expect(run.outcome.status == 0, "\(run.outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: run.run + "/train.log", encoding: .utf8)
        #expect(log.contains("feature views (dropout 0.1, mask 0.2"))
        #expect(try losses(run.run).count == 5)
    }

    /// Settings that cannot work are config errors naming the key before anything runs.
    @Test func impossibleDataSettingsNameTheKey() throws {
        let imageViewsOnPairs = try train(ranks: 1, path: Self.paired, ["loss.kind=clip", "data.augment=none", "data.dataset=fashion-mnist",
                                                                         "data.path=\(FashionMNIST.defaultDirectory)"])
        #expect(imageViewsOnPairs.outcome.status != 0 && imageViewsOnPairs.outcome.error.contains("loss.kind"))
        let noViews = try train(ranks: 1, path: Self.prepared, ["data.augment=none"])
        #expect(noViews.outcome.status != 0 && noViews.outcome.error.contains("data.augment"))
        // data.train_limit applies to prepared data (smokeLimitsApplyToPreparedData); a limit whose
        // last shard (256..<270) cannot give a batch its share is refused naming it.
        let limit = try train(ranks: 1, path: Self.prepared, ["data.train_limit=270"])
        #expect(limit.outcome.status != 0 && limit.outcome.error.contains("data.train_limit"), "\(limit.outcome.error)")

        // A CNN on feature vectors is refused before the run directory exists.
        let folder = temporaryDirectory("features")
        let npy = folder.appendingPathComponent("x.npy").path
        try Data(NPYArray.encode(float32: (0..<(300 * 16)).map { Float($0 % 7) }, shape: [300, 16])).write(to: URL(fileURLWithPath: npy))
        let prepared = try runProcess(contrastExecutable, ["prepare", "npy", "--features", npy, "--out", folder.path + "/set", "--shards", "4"])
        #expect(prepared.status == 0, "\(prepared.error)")
        let cnn = try train(ranks: 1, path: folder.path + "/set", batchPerRank: 16, ["model.encoder=cnn"])
        #expect(cnn.outcome.status != 0 && cnn.outcome.error.contains("model.encoder"))
        #expect(!FileManager.default.fileExists(atPath: cnn.run))

        // So is a pooling grid larger than the CNN's last feature maps (7 x 7 for 28 x 28 images).
        let poolRun = temporaryDirectory("pool").appendingPathComponent("run").path
        let pool = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(poolRun)",
                                              "--set", "model.encoder=cnn", "--set", "model.pool_cells=9"])
        #expect(pool.status != 0 && pool.error.contains("model.pool_cells") && pool.error.contains("at most 7"), "\(pool.error)")
        #expect(!FileManager.default.fileExists(atPath: poolRun))
    }

    /// configs/smoke.yaml works unchanged on a prepared set larger than its limits (issue 19,
    /// item 2): it trains on the first 2,048 samples (data.train_limit cuts the shards at 2,048;
    /// the shard files past it are deleted here, so opening one would fail) and evaluates on the
    /// first 512 test samples (data.test_limit, as `eval` uses), and the log says so. Two ranks
    /// under mpirun cut the same shards and evaluate the same samples to the same accuracy.
    @Test func smokeLimitsApplyToPreparedData() throws {
        let folder = temporaryDirectory("limits").appendingPathComponent("set").path
        let prepared = try runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--out", folder, "--shards", "8", "--limit", "4096"])
        #expect(prepared.status == 0, "\(prepared.error)")
        // 512 samples per shard: the first 2,048 training samples are shards 0-3, the first 512 test samples shard 0.
        for shard in 4..<8 { try FileManager.default.removeItem(atPath: folder + "/train/" + ShardedDatasetWriter.shardFileName(shard)) }
        for shard in 1..<8 { try FileManager.default.removeItem(atPath: folder + "/test/" + ShardedDatasetWriter.shardFileName(shard)) }
        var accuracies: [[Double]] = []
        for ranks in [1, 2] {
            let run = temporaryDirectory("limits-run").appendingPathComponent("run").path
            let overrides = ["run_dir=\(run)", "data.dataset=prepared", "data.path=\(folder)", "data.batch_per_rank=\(64 / ranks)",
                             "monitor.progress=never", "communication.precision=fp32"]
            let outcome = try runContrast(ranks: ranks, ["train", "--config", "configs/smoke.yaml"] + overrides.flatMap { ["--set", $0] })
            #expect(outcome.status == 0, "\(ranks) rank(s): \(outcome.error.suffix(1500))")
            let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
            for expected in ["the first 2048 of 4096 samples (data.train_limit) in 4 of its 8 shards",
                             "test: the first 512 of 4096 samples (data.test_limit)",
                             "evaluating: kNN on 512 test samples against 2048 training samples"] {
                #expect(log.contains(expected), "\(ranks) rank(s): the log lacks \"\(expected)\": \(log.prefix(2000))")
            }
            accuracies.append(try knnAccuracies(run))
        }
        // The same 512 test samples against the same 2,048: the accuracies agree up to the float
        // rounding of two ranks' all-reduce (a query or two).
        #expect(accuracies[0].count == 2 && accuracies[1].count == 2, "\(accuracies)")
        for (a, b) in zip(accuracies[0], accuracies[1]) { #expect(abs(a - b) <= 2.0 / 512, "\(accuracies)") }
    }

    /// A batch that the shards under data.train_limit cannot share equally is refused naming
    /// the shards that hold those samples and what to change.
    @Test func batchErrorOfALimitedPreparedSetNamesItsShards() throws {
        let folder = temporaryDirectory("limits-batch").appendingPathComponent("set").path
        let prepared = try runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--out", folder, "--shards", "8", "--limit", "4096"])
        #expect(prepared.status == 0, "\(prepared.error)")
        let run = temporaryDirectory("limits-batch-run").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "data.dataset=prepared",
                                                 "--set", "data.path=\(folder)", "--set", "data.batch_per_rank=30"])
        expectOneLineError(outcome, mentioning: ["global batch 30", "4 shard(s) that hold the first 2048 samples (data.train_limit)",
                                                 "data.batch_per_rank"])
        #expect(!FileManager.default.fileExists(atPath: run))
    }
}
