import Config
import NN
import Tensor

// What the compute settings of a config (train.compute_precision, train.gemm_library) mean on this CPU.

extension ComputePrecision {
    var gemm: GEMMPrecision {
        switch self {
        case .fp32: .fp32
        case .bf16: .bf16
        }
    }

    /// Throws the one ConfigError a bf16 run gets on a CPU where oneDNN has no bf16 matmul (no
    /// AVX-512); fp32 never touches oneDNN.
    public func checkAvailable() throws {
        guard self == .bf16, let reason = OneDNNGEMM.unavailableReason else { return }
        throw ConfigError(key: "train.compute_precision",
                          problem: "config key 'train.compute_precision' is bf16, but this CPU cannot run bf16 GEMMs: \(reason)",
                          hint: "bf16 compute needs AVX-512 (avx512_core, best with avx512_bf16); use train.compute_precision=fp32")
    }
}

extension GEMMLibraryChoice {
    /// The library this choice runs on this CPU; throws the one ConfigError an explicit `onednn`
    /// gets where oneDNN has no fp32 matmul.
    public func resolved() throws -> FP32GEMM.Library {
        switch self {
        case .auto: return FP32GEMM.fastest
        case .openblas: return .openblas
        case .onednn:
            if let reason = OneDNNGEMM.fp32UnavailableReason {
                throw ConfigError(key: "train.gemm_library",
                                  problem: "config key 'train.gemm_library' is onednn, but oneDNN cannot run fp32 matmuls here: \(reason)",
                                  hint: "use train.gemm_library=auto or openblas")
            }
            return .onednn
        }
    }

    /// Sets the process-wide fp32 GEMM library (`FP32GEMM.library`) to this choice.
    public func apply() throws { FP32GEMM.library = try resolved() }
}
