import Foundation
import Testing
import TestSupport
@testable import Data

/// Training on encoded images (`--store jpeg`): the batch maker decodes each sample with the
/// recorded size, channels and fit, so a jpeg set and a pixels set prepared from the same files
/// train to the same weights, bit for bit, held in memory or streamed, on 1 or 2 ranks; a
/// streamed jpeg run killed mid-epoch resumes exactly; evaluation (kNN, embed) reads the same
/// decoded pixels; data.hold: disk refuses an encoded set in one line.
@Suite(.serialized, .enabled(if: pillowUnavailable == nil, "\(pillowUnavailable ?? "")"))
struct EncodedImagesTrainingTests {
    /// 128 RGB JPEGs (PIL, quality 90) of smooth random images from 20 to 44 pixels a side, in
    /// four class folders; prepared with --size 16 both ways, 4 shards, a quarter held out.
    static let sets: (jpeg: String, pixels: String) = {
        let images = temporaryDirectory("encoded-jpegs").path
        let script = """
            import os, sys, numpy as np
            from PIL import Image
            rng = np.random.default_rng(7)
            for i in range(128):
                h, w = rng.integers(20, 45, size=2)
                base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
                image = Image.fromarray(base).resize((int(w), int(h)), Image.BICUBIC)
                folder = os.path.join(sys.argv[1], "class%d" % (i % 4))
                os.makedirs(folder, exist_ok=True)
                image.save(os.path.join(folder, "%04d.jpg" % i), quality=90)
            """
        let made = try! runProcess(verifyPython, ["-c", script, images], timeout: 300)
        precondition(made.status == 0, "making the JPEGs failed: \(made.error)")
        let root = temporaryDirectory("encoded-sets").path
        for store in ["jpeg", "pixels"] {
            let outcome = try! runContrast(ranks: 1, ["prepare", "images", images, "--out", root + "/" + store, "--size", "16", "--shards", "4",
                                                      "--test-fraction", "0.25", "--store", store])
            precondition(outcome.status == 0, "prepare --store \(store) failed: \(outcome.error)")
        }
        return (root + "/jpeg", root + "/pixels")
    }()

    /// 96 training samples in 4 shards of 24, global batch 16 (4 from each shard): 6 steps an epoch.
    func train(_ data: String, run: String, ranks: Int, hold: String, steps: Int = 8, _ extra: [String] = [],
               fault: String? = nil) throws -> ProcessOutcome {
        let overrides = ["run_dir=\(run)", "data.dataset=prepared", "data.path=\(data)", "data.batch_per_rank=\(16 / ranks)",
                         "train.max_steps=\(steps)", "data.train_limit=0", "data.test_limit=0", "data.hold=\(hold)", "data.shuffle_buffer=8",
                         "communication.precision=fp32", "eval.knn_every_epochs=1", "checkpoint.every_steps=4"] + extra
        return try runContrast(ranks: ranks, ["train", "--config", "configs/smoke.yaml"] + overrides.flatMap { ["--set", $0] },
                               environment: fault.map { ["CONTRAST_FAULT": $0] } ?? [:], timeout: 300)
    }

    func weights(_ run: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: run + "/weights.bin")) }

    /// The kNN accuracy lines of a run's log (the evaluation reads the decoded pixels too).
    func knnLines(_ run: String) throws -> [String] {
        // "eval epoch 1: kNN accuracy 21.88% (k=20)", without the time stamp and the seconds.
        try String(contentsOfFile: run + "/train.log", encoding: .utf8).split(separator: "\n").filter { $0.contains(": kNN accuracy") }
            .map { line in String(line.drop { $0 != " " }.prefix { $0 != "(" }) }
    }

    @Test(arguments: [("memory", 1), ("memory", 2), ("stream", 1), ("stream", 2)])
    func jpegAndPixelsSetsTrainToTheSameWeights(hold: String, ranks: Int) throws {
        let a = temporaryDirectory("encoded-jpeg-run").appendingPathComponent("run").path
        let b = temporaryDirectory("encoded-pixels-run").appendingPathComponent("run").path
        let jpeg = try train(Self.sets.jpeg, run: a, ranks: ranks, hold: hold)
        #expect(jpeg.status == 0, "\(jpeg.error.suffix(1500))")
        let pixels = try train(Self.sets.pixels, run: b, ranks: ranks, hold: hold)
        #expect(pixels.status == 0, "\(pixels.error.suffix(1500))")
        let weightsA = try weights(a), weightsB = try weights(b)
        #expect(weightsA == weightsB, "\(hold), P=\(ranks)")
        let knn = try knnLines(a)
        let knnB = try knnLines(b)
        #expect(!knn.isEmpty && knn == knnB, "\(knn)")
        let log = try String(contentsOfFile: a + "/train.log", encoding: .utf8)
        #expect(log.contains("image views of 3x16x16 images"), "\(log.prefix(2000))")
    }

    /// Killed on rank 1 in step 6's all-reduce, a streamed jpeg run resumes from its step-4
    /// checkpoint and ends as the uninterrupted run, bit for bit, across the epoch boundary.
    @Test func killedStreamedJPEGRunResumesExactly() throws {
        let checkpoints = CheckpointResumeTests()
        let straight = temporaryDirectory("encoded-straight").appendingPathComponent("run").path
        let outcome = try train(Self.sets.jpeg, run: straight, ranks: 2, hold: "stream", steps: 10)
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let killed = temporaryDirectory("encoded-killed").appendingPathComponent("run").path
        let crash = try train(Self.sets.jpeg, run: killed, ranks: 2, hold: "stream", steps: 10, fault: "kill@rank=1@step=6@phase=allreduce")
        #expect(crash.status != 0 && crash.error.contains("kill at step 6"), "\(crash.error.suffix(1500))")
        let resumed = try train(Self.sets.jpeg, run: killed, ranks: 2, hold: "stream", steps: 10)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        #expect(try checkpoints.newestState(killed) == checkpoints.newestState(straight))
        #expect(try checkpoints.stepRecords(killed, from: 5) == checkpoints.stepRecords(straight, from: 5))
        let killedWeights = try weights(killed), straightWeights = try weights(straight)
        #expect(killedWeights == straightWeights)
    }

    /// embed reads the jpeg set's test split decoded: the same representations as the pixels
    /// set's; data.hold: disk refuses the jpeg set before the run directory exists, in one line.
    @Test func embedDecodesAndDiskHoldIsRefused() throws {
        let run = temporaryDirectory("encoded-embed").appendingPathComponent("run").path
        #expect(try train(Self.sets.pixels, run: run, ranks: 1, hold: "memory", steps: 2).status == 0)
        let folder = temporaryDirectory("encoded-embed-out").path
        for (name, data) in [("jpeg", Self.sets.jpeg), ("pixels", Self.sets.pixels)] {
            let outcome = try runContrast(ranks: 1, ["embed", "--checkpoint", run, "--data", data, "--out", folder + "/\(name).npy"])
            #expect(outcome.status == 0, "\(outcome.error)")
        }
        let a = try Data(contentsOf: URL(fileURLWithPath: folder + "/jpeg.npy"))
        let b = try Data(contentsOf: URL(fileURLWithPath: folder + "/pixels.npy"))
        #expect(a.count > 1000 && a == b)

        let refusedRun = temporaryDirectory("encoded-disk").appendingPathComponent("run").path
        let refused = try train(Self.sets.jpeg, run: refusedRun, ranks: 1, hold: "disk")
        #expect(refused.status != 0 && refused.error.split(separator: "\n").count == 1, "\(refused.error)")
        #expect(refused.error.contains("data.hold") && refused.error.contains("use data.hold: memory or stream"), "\(refused.error)")
        #expect(!FileManager.default.fileExists(atPath: refusedRun))
    }
}
