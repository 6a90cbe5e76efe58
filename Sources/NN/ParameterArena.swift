import Tensor

/// All parameters of a model in one contiguous Float32 buffer, with gradients in a parallel
/// buffer of the same length (DESIGN.md decision 1).
///
/// Layers register their parameters while the model is built (`allocate`), then `seal()`
/// allocates the buffers once; layers keep `ParameterSlice`s (offsets) into them. All-reduce
/// buckets, optimizer steps, clipping and checkpoint shards are then loops over ranges.
public final class ParameterArena: @unchecked Sendable {
    /// What a parameter is; optimizers treat kinds differently (LARS and weight decay skip
    /// biases and normalisation parameters).
    public enum Kind: String, Sendable, Codable {
        case weight, bias, normScale, normShift
        /// A learned token or position embedding (a Transformer's [CLS] token and positions): like a bias,
        /// excluded from LARS adaptation (timm's ViT excludes them from weight decay too).
        case embedding
        /// A learned log inverse temperature theta = log(1 / tau) of the logits (CLIP's logit scale).
        case logitScale
        /// A learned bias b added to every logit (SigLIP's, started at -10): never decayed either.
        case logitBias
        /// Biases, norm parameters and the logit scale: excluded from LARS adaptation and weight decay.
        public var isExcludedFromDecay: Bool { self != .weight }
        /// The logit scale: no optimizer decays it (SGD and AdamW decay every other kind, as PyTorch
        /// does), since decay would pull the temperature towards 1 (CLIP trains it without decay).
        public var isNeverDecayed: Bool { self == .logitScale || self == .logitBias }
    }

    public private(set) var slices: [ParameterSlice] = []
    public private(set) var count = 0
    public private(set) var isSealed = false

    /// Parameters and gradients; valid after `seal()`.
    public private(set) var parameters: Tensor = Tensor(zeros: [0])
    public private(set) var gradients: Tensor = Tensor(zeros: [0])

    public init() {}

    /// Reserves `shape.reduce(1, *)` consecutive parameters. Alignment of 16 floats keeps
    /// every slice 64-byte aligned.
    public func allocate(name: String, shape: [Int], kind: Kind) -> ParameterSlice {
        precondition(!isSealed, "ParameterArena: allocate(\(name)) after seal()")
        precondition(!slices.contains { $0.name == name }, "ParameterArena: duplicate parameter name \(name)")
        let offset = (count + 15) / 16 * 16
        let slice = ParameterSlice(name: name, offset: offset, shape: shape, kind: kind)
        slices.append(slice)
        count = offset + slice.count
        return slice
    }

    /// Allocates the parameter and gradient buffers (zeroed); no more `allocate` after this.
    public func seal() {
        precondition(!isSealed, "ParameterArena sealed twice")
        isSealed = true
        parameters = Tensor(zeros: [count])
        gradients = Tensor(zeros: [count])
    }

    /// Number of actual parameters (excluding alignment padding).
    public var parameterCount: Int { slices.reduce(0) { $0 + $1.count } }

    public func zeroGradients() { gradients.zero() }

    /// Pointer to a slice's parameters.
    @inline(__always)
    public func parameters(_ slice: ParameterSlice) -> UnsafeMutablePointer<Float> {
        parameters.data + slice.offset
    }

    /// Pointer to a slice's gradients.
    @inline(__always)
    public func gradients(_ slice: ParameterSlice) -> UnsafeMutablePointer<Float> {
        gradients.data + slice.offset
    }

    public func slice(named name: String) -> ParameterSlice? { slices.first { $0.name == name } }

    /// The arena 0 ..< count cut into consecutive ranges that are decayed or not (`Kind.isNeverDecayed`),
    /// for optimizers that decay every parameter but those.
    public var decaySegments: [(range: Range<Int>, decays: Bool)] {
        var segments: [(range: Range<Int>, decays: Bool)] = []
        var start = 0
        for slice in slices.sorted(by: { $0.offset < $1.offset }) where slice.kind.isNeverDecayed {
            if slice.offset > start { segments.append((start..<slice.offset, true)) }
            segments.append((slice.range, false))
            start = slice.range.upperBound
        }
        if count > start { segments.append((start..<count, true)) }
        return segments
    }
}

/// A parameter tensor's place in the arena.
public struct ParameterSlice: Sendable, Equatable {
    public let name: String
    public let offset: Int
    public let shape: [Int]
    public let kind: ParameterArena.Kind
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}
