import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// P ranks train exactly the model one process trains on the whole global batch
/// (DESIGN.md decision 3): the central tests of contrast, run through `contrast train`
/// under mpirun at P = 2 and 4, over shared memory and over TCP.
@Suite(.serialized) struct DistributedTrainingTests {
    /// The smoke workload with a fixed global batch of 64 images split over `ranks`.
    struct Run {
        var parameters: [Float]
        var losses: [Double]
    }

    func train(ranks: Int, transport: Transport = .sharedMemory, steps: Int, globalBatch: Int = 64,
               _ overrides: [String] = []) throws -> Run {
        let runDirectory = temporaryDirectory("dist").appendingPathComponent("run").path
        let arguments = ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                         "--set", "data.batch_per_rank=\(globalBatch / ranks)", "--set", "train.max_steps=\(steps)",
                         "--set", "communication.precision=fp32", "--set", "data.test_limit=200",
                         "--set", "eval.knn_every_epochs=0"] + overrides.flatMap { ["--set", $0] }
        let outcome = try runContrast(ranks: ranks, transport: transport, arguments)
        #expect(outcome.status == 0, "P=\(ranks) \(transport): \(outcome.error.suffix(2000))")
        let config = try ConfigLoader.load(file: runDirectory + "/config.yaml", overrides: [])
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: runDirectory + "/weights.bin"))
        let lines = try String(contentsOfFile: runDirectory + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n")
        let losses = lines.compactMap { line -> Double? in
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  record["time_forward"] != nil else { return nil }
            return record["loss"] as? Double
        }
        return Run(parameters: model.arena.parameters.array, losses: losses)
    }

    /// max_i |a_i - b_i| / max(|a_i|, |b_i|, floor): relative, without blowing up near zero.
    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    /// One plain SGD step: the update is -lr g, so the parameters carry the summed gradient
    /// itself, and every element must agree to 1e-5 relative.
    @Test(arguments: [(2, Transport.sharedMemory), (4, .sharedMemory), (2, .tcp), (4, .tcp)])
    func oneStepEqualsOneProcessOnTheGlobalBatch(ranks: Int, transport: Transport) throws {
        let reference = try train(ranks: 1, steps: 1, Self.sgd)
        let distributed = try train(ranks: ranks, transport: transport, steps: 1, Self.sgd)
        #expect(distributed.losses.count == 1 && reference.losses.count == 1)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
    }

    /// The convolutional encoder (Conv2d, GroupNorm, residual blocks): one plain SGD step on 2
    /// ranks equals one process on the global batch, and its gradients overlap the all-reduce.
    /// Channels [4, 8] keep NCHW activations and run every convolution through im2col + GEMM; [16, 16]
    /// and [16, 32] (a strided stage with a 1x1 projection) keep the activations in oneDNN's blocked
    /// layout, every convolution in oneDNN (`CNN.activationBlock`).
    @Test(arguments: ["[4,8]", "[16,16]", "[16,32]"]) func cnnStepEqualsOneProcessOnTheGlobalBatch(channels: String) throws {
        let cnn = Self.sgd + ["model.encoder=cnn", "model.channels=\(channels)", "data.train_limit=512"]
        let reference = try train(ranks: 1, steps: 1, globalBatch: 32, cnn)
        let distributed = try train(ranks: 2, steps: 1, globalBatch: 32, cnn)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
    }

    /// A CNN with blocked activations, its convolutions in oneDNN: three AdamW steps at P = 2, twice, give the same bits
    /// (oneDNN's primitives are made per rank under one OpenMP thread and sum in a fixed order).
    @Test func cnnWithOneDNNConvolutionsIsBitwiseReproducible() throws {
        let cnn = ["model.encoder=cnn", "model.channels=[16,16]", "data.train_limit=512"]
        let first = try train(ranks: 2, steps: 3, globalBatch: 32, cnn)
        let second = try train(ranks: 2, steps: 3, globalBatch: 32, cnn)
        #expect(first.losses.count == 3 && first.losses == second.losses)
        #expect(first.parameters.map(\.bitPattern) == second.parameters.map(\.bitPattern))
    }

    /// SupCon with half the samples labeled: one plain SGD step on P ranks equals one process on
    /// the global batch (labels travel with the embeddings), and the labels change the loss.
    @Test(arguments: [(2, Transport.sharedMemory), (4, .tcp)])
    func supConStepEqualsOneProcessOnTheGlobalBatch(ranks: Int, transport: Transport) throws {
        let supcon = Self.sgd + ["loss.kind=supcon", "data.labeled_fraction=0.5"]
        let reference = try train(ranks: 1, steps: 1, supcon)
        let distributed = try train(ranks: ranks, transport: transport, steps: 1, supcon)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
        let unsupervised = try train(ranks: 1, steps: 1, Self.sgd)
        #expect(abs(unsupervised.losses[0] - reference.losses[0]) > 1e-3)
    }

    /// One AdamW step (the benchmark's optimizer). Its first update is lr g / (|g| + eps): for
    /// gradients near eps = 1e-8, which only cancellation produces, it passes on the relative
    /// rounding of g (different summation orders at different P) almost undamped. So elements
    /// are not compared one by one; the update as a whole must agree to 1e-4 in norm.
    @Test(arguments: [(2, Transport.sharedMemory), (4, .tcp)])
    func oneAdamWStepEqualsOneProcessOnTheGlobalBatch(ranks: Int, transport: Transport) throws {
        let reference = try train(ranks: 1, steps: 1)
        let distributed = try train(ranks: ranks, transport: transport, steps: 1)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        let start = try initialParameters()
        var difference: Float = 0, update: Float = 0
        for i in start.indices {
            difference += (distributed.parameters[i] - reference.parameters[i]) * (distributed.parameters[i] - reference.parameters[i])
            update += (reference.parameters[i] - start[i]) * (reference.parameters[i] - start[i])
        }
        #expect((difference / update).squareRoot() <= 1e-4)
    }

    func initialParameters() throws -> [Float] {
        let config = try smokeConfig()
        let initial = ContrastiveModel(config.model, inputWidth: 784)
        initial.initialise(seed: UInt64(config.seed))
        return initial.arena.parameters.array
    }

    @Test(arguments: Transport.allCases)
    func twentyStepsTrackTheOneProcessLossCurve(transport: Transport) throws {
        let reference = try train(ranks: 1, steps: 20)
        let distributed = try train(ranks: 2, transport: transport, steps: 20)
        #expect(distributed.losses.count == 20)
        for (step, (a, b)) in zip(distributed.losses, reference.losses).enumerated() {
            #expect(abs(a - b) <= 1e-5 * abs(b), "step \(step + 1): \(a) vs \(b)")
        }
    }

    /// Reduced-precision wire formats, one plain SGD step (update = -lr g, so parameter
    /// differences are gradient differences). Each rank rounds its gradient once to the wire
    /// format and the sum is rounded once more: with unit roundoff u (bf16 2^-9, fp16 2^-11)
    /// each element's error is at most about 2u (|g_0| + |g_1|). Norm-wise, without systematic
    /// cancellation, that is about 2u |g|: tolerances 2^-7 (bf16) and 2^-9 (fp16) leave a factor 2.
    @Test(arguments: [("bf16", Float(1.0 / 128)), ("fp16", Float(1.0 / 512))])
    func reducedPrecisionStaysWithinItsRoundingBound(precision: String, tolerance: Float) throws {
        let exact = try train(ranks: 2, steps: 1, Self.sgd)
        let reduced = try train(ranks: 2, steps: 1, Self.sgd + ["communication.precision=\(precision)"])
        let start = try initialParameters()
        var errorSquared: Float = 0, updateSquared: Float = 0
        for i in start.indices {
            let update = exact.parameters[i] - start[i]
            errorSquared += (reduced.parameters[i] - exact.parameters[i]) * (reduced.parameters[i] - exact.parameters[i])
            updateSquared += update * update
        }
        #expect(updateSquared > 0)
        #expect((errorSquared / updateSquared).squareRoot() <= tolerance)
        #expect(abs(reduced.losses[0] - exact.losses[0]) <= 1e-5 * abs(exact.losses[0]))
    }

    /// A rank that fails (here: rank 1's copy of the data is damaged) ends the whole job
    /// quickly, with a message naming the rank, instead of leaving the others waiting in a
    /// collective. `data.path` may name per-rank copies with `{rank}`.
    @Test func oneFailingRankEndsTheJob() throws {
        let root = temporaryDirectory("data")
        let source = TrainingConfig().data.path
        for rank in 0..<2 {
            let directory = root.appendingPathComponent("copy\(rank)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
                let target = directory.appendingPathComponent(name)
                if rank == 1 && name.hasPrefix("train-images") {
                    let bytes = try Data(contentsOf: URL(fileURLWithPath: source + "/" + name))
                    try bytes.prefix(bytes.count / 3).write(to: target)   // cut short: a truncated copy
                } else {
                    try FileManager.default.createSymbolicLink(atPath: target.path, withDestinationPath: source + "/" + name)
                }
            }
        }
        let runDirectory = root.appendingPathComponent("run").path
        let started = Date()
        let outcome = try runContrast(ranks: 2, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                                                 "--set", "data.batch_per_rank=32", "--set", "data.train_limit=0",
                                                 "--set", "data.path=\(root.path)/copy{rank}"], timeout: 120)
        #expect(!outcome.timedOut, "the job hung")
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("rank 1"), "\(outcome.error)")
        #expect(outcome.error.contains("copy1"), "\(outcome.error)")
        #expect(Date().timeIntervalSince(started) < 60)
    }
}

@Suite(.serialized) struct ReducedPrecisionAllReduceTests {
    /// fp16: an overflowing step is skipped on every rank and training recovers; gradients
    /// near fp16's smallest normal are not flushed (see `contrast reducer-check`).
    @Test(arguments: Transport.allCases)
    func fp16OverflowIsSkippedEverywhereAndTinyGradientsSurvive(transport: Transport) throws {
        let outcome = try runContrast(ranks: 2, transport: transport, ["reducer-check"], timeout: 60)
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.contains("reducer-check: OK rank 0 of 2"))
        #expect(outcome.output.contains("reducer-check: OK rank 1 of 2"))
    }
}
