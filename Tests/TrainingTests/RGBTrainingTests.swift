import Foundation
import TestSupport
import Config
import Evaluation
import Data
import Testing
@testable import NN
@testable import Training

/// Training on RGB images ([3, H, W] uint8 from `contrast prepare npy`) with SimCLR's views.
@Suite(.serialized) struct RGBTrainingTests {
    /// 256 RGB images of 16 x 16 in four colour classes, prepared into 8 shards with a test split.
    static let prepared: String = {
        let directory = temporaryDirectory("rgb-views")
        let (count, side) = (256, 16)
        var pixels = [UInt8](), labels = [Int64]()
        var state: UInt32 = 99
        func next() -> UInt32 { state = state &* 1_664_525 &+ 1_013_904_223; return state >> 24 }
        for sample in 0..<count {
            let label = sample % 4
            labels.append(Int64(label))
            for channel in 0..<3 {
                for i in 0..<(side * side) {
                    let lit = (label == channel || label == 3) && (i / side + i % side) % 8 < 5
                    pixels.append(UInt8(min(255, (lit ? 150 : 20) + Int(next() % 100))))
                }
            }
        }
        // A uint8 .npy by hand (format 1.0): Data writes float32 and int64 ones only.
        var header = "{'descr': '|u1', 'fortran_order': False, 'shape': (\(count), 3, \(side), \(side)), }"
        header += String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
        var npy = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xff), UInt8(header.count >> 8)])
        npy.append(contentsOf: Array(header.utf8) + pixels)
        let features = directory.appendingPathComponent("x.npy"), labelFile = directory.appendingPathComponent("y.npy")
        try! npy.write(to: features)
        try! NPYArray.encode(int64: labels, shape: [count]).write(to: labelFile)
        let out = directory.appendingPathComponent("rgb").path
        let outcome = try! runProcess(contrastExecutable, ["prepare", "npy", "--features", features.path, "--labels", labelFile.path,
                                                           "--test-fraction", "0.25", "--shards", "8", "--out", out])
        precondition(outcome.status == 0, "contrast prepare npy failed: \(outcome.error)")
        return out
    }()

    static let model = ["model.encoder=resnet", "model.resnet.preset=none", "model.resnet.stages=[[8, 1, 1], [16, 1, 2]]",
                        "model.resnet.stem=small", "model.pool_cells=1", "model.pool_stages=1", "model.representation=0",
                        "model.projection=[32, 16]"]
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    func train(ranks: Int, batchPerRank: Int, steps: Int, _ extra: [String] = []) throws -> (outcome: ProcessOutcome, run: String) {
        let run = temporaryDirectory("rgb-run").appendingPathComponent("run").path
        let overrides = ["run_dir=\(run)", "data.dataset=prepared", "data.path=\(Self.prepared)", "data.batch_per_rank=\(batchPerRank)",
                         "data.train_limit=0", "data.test_limit=0", "train.max_steps=\(steps)", "communication.precision=fp32",
                         "eval.knn_every_epochs=0", "views.preset=simclr", "views.blur_p=0.5", "views.solarize_p=0.2"]
            + Self.model + Self.sgd + extra
        let arguments = ["train", "--config", "configs/smoke.yaml"] + overrides.flatMap { ["--set", $0] }
        return (try runContrast(ranks: ranks, arguments), run)
    }

    func parameters(_ run: String) throws -> [Float] {
        let config = try ConfigLoader.load(file: run + "/config.yaml", overrides: [])
        let model = ContrastiveModel(config.model, inputWidth: 3 * 16 * 16, imageShape: [3, 16, 16])
        try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run + "/weights.bin"))
        return model.arena.parameters.array
    }

    /// Two SGD steps with every RGB view step on: P = 2 (each rank making the views of its own
    /// samples) ends with the weights of one process on the global batch, to 1e-5 relative.
    @Test func rgbRunOnTwoRanksEqualsOneProcess() throws {
        let one = try train(ranks: 1, batchPerRank: 32, steps: 2)
        #expect(one.outcome.status == 0, "\(one.outcome.error.suffix(1500))")
        let two = try train(ranks: 2, batchPerRank: 16, steps: 2)
        #expect(two.outcome.status == 0, "\(two.outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: one.run + "/train.log", encoding: .utf8)
        #expect(log.contains("image views of 3x16x16 images: crop, flip, jitter, grayscale, blur, solarize\n"), "\(log.prefix(1500))")
        let (a, b) = (try parameters(one.run), try parameters(two.run))
        #expect(a.count == b.count && !a.isEmpty)
        let worst = zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0
        #expect(worst <= 1e-5, "largest relative difference \(worst)")
        // And the views mattered: without them (the same run, no augmentation steps) the weights differ.
        let plain = try train(ranks: 1, batchPerRank: 32, steps: 2, ["views.preset=none"])
        #expect(plain.outcome.status == 0)
        #expect(try parameters(plain.run) != a)
    }

    @Test func blurKernelTooLargeForTheImagesStopsBeforeTheRun() throws {
        let run = try train(ranks: 1, batchPerRank: 32, steps: 1, ["views.blur_kernel=33"])
        #expect(run.outcome.status != 0)
        let lines = run.outcome.error.split(separator: "\n").filter { $0.contains("views.blur_kernel") }
        #expect(lines.count == 1 && lines[0].contains("too large for 16 x 16 images") && lines[0].contains("use at most 31"),
                "\(run.outcome.error.suffix(800))")
        #expect(!FileManager.default.fileExists(atPath: run.run))
    }
}
