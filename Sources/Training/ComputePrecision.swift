import NN
import Tensor

/// What the model's GEMMs multiply in (train.compute_precision). bf16: the encoder's, adapter's,
/// head's (and pair tower's and decoder's) Linear and Conv2d GEMMs, forward, dW and dX, round their
/// inputs to bf16 and accumulate in fp32 (oneDNN, AVX-512 BF16); their outputs, the gradients, the
/// master weights, the optimizer, normalisation and the loss stay fp32. Evaluation runs in fp32.
public enum ComputePrecision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16
    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }

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

/// Which library runs the fp32 GEMMs of training (train.gemm_library): `auto` takes oneDNN where it
/// has an fp32 matmul for the CPU (AVX-512 brgemm, about 6 % faster than Debian's OpenBLAS on the
/// benchmark's GEMMs), otherwise OpenBLAS. bf16 compute always runs in oneDNN.
public enum GEMMLibraryChoice: String, Codable, Sendable, CaseIterable {
    case auto, openblas, onednn
    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }

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

extension ContrastiveModel {
    /// The precision of every GEMM layer of the model (see `ComputePrecision`); fp32 when built.
    public var computePrecision: GEMMPrecision {
        get { gemmLayers.first.map(\.precision) ?? .fp32 }
        set { for layer in gemmLayers { layer.set(newValue) } }
    }

    /// Every Linear and Conv2d, through sequences, residual blocks and the adapter.
    private var gemmLayers: [(precision: GEMMPrecision, set: (GEMMPrecision) -> Void)] {
        var found: [(GEMMPrecision, (GEMMPrecision) -> Void)] = []
        func visit(_ layer: Layer) {
            switch layer {
            case let linear as Linear: found.append((linear.computePrecision, { linear.computePrecision = $0 }))
            case let conv as Conv2d: found.append((conv.computePrecision, { conv.computePrecision = $0 }))
            case let sequence as Sequential: sequence.layers.forEach(visit)
            case let block as ResidualBlock:
                visit(block.main)
                if let projection = block.projection { visit(projection) }
            case let adapter as ResidualAdapter:
                visit(adapter.down)
                visit(adapter.up)
            default: break
            }
        }
        let towers: [Layer?] = [encoder, adapter, head, decoder, pairEncoder, pairHead]
        for case let layer? in towers { visit(layer) }
        return found
    }

}
