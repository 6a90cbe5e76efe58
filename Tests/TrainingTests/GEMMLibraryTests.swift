import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Tensor
@testable import Training

/// train.gemm_library: which library runs the fp32 GEMMs. The default picks oneDNN where it has an
/// fp32 matmul; a run with either library trains, names it in the log, and the two agree to rounding.
@Suite(.serialized)
struct GEMMLibraryTests {
    @Test func defaultAndBadValue() throws {
        let config = try ConfigLoader.load(file: nil, overrides: [])
        #expect(config.train.gemmLibrary == .auto)
        #expect(try config.train.gemmLibrary.resolved() == FP32GEMM.fastest)
        #expect(try GEMMLibraryChoice.openblas.resolved() == .openblas)
        do {
            _ = try ConfigLoader.load(file: nil, overrides: ["train.gemm_library=mkl"])
            Issue.record("train.gemm_library=mkl was accepted")
        } catch let error as ConfigError {
            #expect(error.description.contains("config key 'train.gemm_library' expects one of auto, openblas, onednn, got \"mkl\""),
                    "\(error)")
        }
    }

    /// Two short runs, one per library (separate processes: the library is process-wide), from the
    /// same seed: both log their library, and their final losses agree to float rounding's drift.
    @Test(.enabled(if: OneDNNGEMM.fp32UnavailableReason == nil, "oneDNN has no fp32 matmul on this CPU"))
    func bothLibrariesTrainTheSameRun() throws {
        var finalLoss: [String: Double] = [:]
        for library in ["openblas", "onednn"] {
            let runDirectory = temporaryDirectory("gemm-library-\(library)").appendingPathComponent("run").path
            let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                                                     "--set", "train.max_steps=10", "--set", "train.gemm_library=\(library)",
                                                     "--set", "eval.knn_every_epochs=0"])
            #expect(outcome.status == 0, "\(outcome.error)")
            let log = outcome.output + outcome.error
            #expect(log.contains("the model's GEMMs in fp32 through \(library == "onednn" ? "oneDNN" : "OpenBLAS")"), "\(log)")
            let losses = log.split(separator: "\n").filter { $0.contains("step 10/10") }
                .compactMap { line in line.split(separator: " ").drop { $0 != "loss" }.dropFirst().first.flatMap { Double($0) } }
            finalLoss[library] = losses.last
        }
        let blas = try #require(finalLoss["openblas"]), dnnl = try #require(finalLoss["onednn"])
        #expect(abs(blas - dnnl) <= 1e-3 * abs(blas), "OpenBLAS \(blas), oneDNN \(dnnl)")
    }
}
