import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
@testable import NN
import Testing
@testable import Tensor
@testable import Training

/// train.compute_precision bf16: the model's GEMMs in bf16 with fp32 accumulation. P = 2 equals one
/// process on the global batch, a run repeats bit for bit, and it stays within bf16 rounding of fp32.
@Suite(.serialized, .enabled(if: OneDNNGEMM.unavailableReason == nil, "needs AVX-512 (avx512_core): oneDNN has no bf16 matmul on this CPU"))
struct BF16ComputeTests {
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]
    static let bf16 = ["train.compute_precision=bf16"]

    /// |a - b| / |b - start|: the difference of two updates relative to the update's size.
    func relativeUpdateDifference(_ a: [Float], _ b: [Float], start: [Float]) -> Float {
        var difference: Float = 0, update: Float = 0
        for i in start.indices {
            difference += (a[i] - b[i]) * (a[i] - b[i])
            update += (b[i] - start[i]) * (b[i] - start[i])
        }
        return (difference / update).squareRoot()
    }

    /// One plain SGD step (update = -lr g, so parameters carry the gradient). A GEMM row, or a dW
    /// term, depends only on its own samples, so P = 2 and P = 1 round the same values to bf16, up to
    /// the fp32 differences of summation order (about 1e-6 relative, the fp32 test's scale): an
    /// input that differs by d rounds to the neighbouring bf16 with probability about d / 2^-8, and
    /// then carries a 2^-8 error. Measured 1.4e-4 of the update (fp32 compute: below 1e-5); the
    /// bound is 1e-3, and a tenth of what bf16 itself changes against fp32 (required to be between
    /// 1e-3 and 2^-5 of the update, which also tells bf16 from fp32).
    @Test func stepAtTwoRanksEqualsOneProcessAndRepeatsBitwise() throws {
        let reference = try trainSmoke("bf16-p1", ranks: 1, steps: 1, Self.sgd + Self.bf16)
        let distributed = try trainSmoke("bf16-p2", ranks: 2, steps: 1, Self.sgd + Self.bf16)
        let again = try trainSmoke("bf16-p2-again", ranks: 2, steps: 1, Self.sgd + Self.bf16)
        let fp32 = try trainSmoke("bf16-fp32", ranks: 1, steps: 1, Self.sgd)
        #expect(reference.config.train.computePrecision == .bf16)
        let start = ContrastiveModel(reference.config.model, inputWidth: 784)
        start.initialise(seed: UInt64(reference.config.seed))
        let initial = start.arena.parameters.array
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(distributed.parameters == again.parameters, "the same bf16 run twice differs")
        let ranks = relativeUpdateDifference(distributed.parameters, reference.parameters, start: initial)
        let bf16VersusFP32 = relativeUpdateDifference(reference.parameters, fp32.parameters, start: initial)
        #expect(ranks <= 1e-3 && ranks <= bf16VersusFP32 / 10, "P = 2 vs 1: \(ranks); bf16 vs fp32: \(bf16VersusFP32)")
        #expect(bf16VersusFP32 > 1e-3 && bf16VersusFP32 <= 0x1p-5, "bf16 vs fp32 update: \(bf16VersusFP32)")
        #expect(abs(reference.losses[0] - fp32.losses[0]) <= 1e-2 * abs(fp32.losses[0]))
    }
}

/// train.compute_precision's values, and the one error a bf16 run gets where oneDNN has no bf16
/// matmul: neither needs AVX-512 itself, so they run on every CPU (not in the suite above).
@Suite struct ComputePrecisionChoiceTests {
    @Test func badValueIsOneClearError() throws {
        #expect(try ConfigLoader.load(file: nil, overrides: []).train.computePrecision == .fp32)
        do {
            _ = try ConfigLoader.load(file: nil, overrides: ["train.compute_precision=fp16"])
            Issue.record("train.compute_precision=fp16 was accepted")
        } catch let error as ConfigError {
            #expect(error.description.contains("config key 'train.compute_precision' expects one of fp32, bf16, got \"fp16\""),
                    "\(error)")
        }
    }

    /// Without AVX-512 (oneDNN limited to AVX2 here) a bf16 run stops before training with one
    /// message naming the key and the fix, and leaves no run directory.
    @Test func cpuWithoutAVX512IsOneClearError() throws {
        let runDirectory = temporaryDirectory("bf16-noavx512").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                                                 "--set", "train.compute_precision=bf16"],
                                      environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("config key 'train.compute_precision' is bf16, but this CPU cannot run bf16 GEMMs"), "\(outcome.error)")
        #expect(outcome.error.contains("use train.compute_precision=fp32"))
        #expect(!FileManager.default.fileExists(atPath: runDirectory))
    }
}
