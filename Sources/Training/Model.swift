import NN
import Tensor

/// The SimCLR network: encoder f (an MLP) giving the representation h, projection head g
/// (an MLP) and L2 normalisation giving the embedding z = g(f(x)) / |g(f(x))|.
///
/// Shapes: B rows (views), I input width, R representation width, E embedding width.
/// All parameters live in one `ParameterArena`: encoder first, then the head.
public final class ContrastiveModel {
    public let arena = ParameterArena()
    public let encoder: Sequential
    public let head: Sequential
    public let inputWidth: Int
    public let representationWidth: Int
    public let embeddingWidth: Int

    public init(inputWidth: Int, hidden: [Int], representation: Int, projection: [Int], activation: MLP.Activation) {
        precondition(!projection.isEmpty, "the projection head needs at least one width")
        self.inputWidth = inputWidth
        self.representationWidth = representation
        self.embeddingWidth = projection.last!
        encoder = MLP.make(widths: [inputWidth] + hidden + [representation], activation: activation, name: "encoder", arena: arena)
        let projectionMLP = MLP.make(widths: [representation] + projection, activation: activation, name: "projection", arena: arena)
        head = Sequential([projectionMLP, L2Normalize(width: projection.last!)])
        arena.seal()
        // The first layer never needs dL/d(input): skip that GEMM.
        encoder.computesInputGradient = false
    }

    /// PyTorch-default initialisation from the counter RNG: layer l draws from stream l.
    public func initialise(seed: UInt64) {
        let next = encoder.initialise(seed: seed, firstStream: 0)
        head.initialise(seed: seed, firstStream: next)
    }

    /// Forward through encoder and head. Returns (h: B x R, z: B x E), both owned by the model.
    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> (representation: UnsafeMutablePointer<Float>, embedding: UnsafeMutablePointer<Float>) {
        let h = encoder.forward(input, batch: batch)
        let z = head.forward(h, batch: batch)
        return (h, z)
    }

    /// Backward from dL/dz (B x E, consumed); accumulates into the arena's gradients.
    /// `gradientsFinal(offset)` is called as backward proceeds: every gradient at arena offset
    /// >= `offset` is final for this step (layers sit in the arena in forward order).
    public func backward(_ embeddingGradient: UnsafeMutablePointer<Float>, batch: Int,
                         gradientsFinal: ((Int) -> Void)? = nil) {
        let report: ((Layer) -> Void)? = gradientsFinal.map { callback in
            { layer in if let offset = Self.lowestParameterOffset(layer) { callback(offset) } }
        }
        guard let dh = head.backward(embeddingGradient, batch: batch, afterLayer: report) else {
            preconditionFailure("head must return dL/dh")
        }
        _ = encoder.backward(dh, batch: batch, afterLayer: report)
    }

    /// Sets the hook every Linear layer calls between chunks of its backward GEMMs.
    public func setBackwardProgress(_ progress: (() -> Void)?) {
        for case let linear as Linear in encoder.flattened + head.flattened { linear.progress = progress }
    }

    static func lowestParameterOffset(_ layer: Layer) -> Int? {
        switch layer {
        case let linear as Linear: return min(linear.weight.offset, linear.bias?.offset ?? .max)
        case let norm as LayerNorm: return min(norm.scale.offset, norm.shift.offset)
        default: return nil
        }
    }

    /// Representations h of `count` rows of `inputs` (count x I) into `out` (count x R), in
    /// batches of `batch` rows. Used by evaluation on un-augmented images.
    public func representations(of inputs: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>, batch: Int = 1024) {
        var start = 0
        while start < count {
            let rows = min(batch, count - start)
            let h = encoder.forward(inputs + start * inputWidth, batch: rows)
            (out + start * representationWidth).update(from: h, count: rows * representationWidth)
            start += rows
        }
    }
}

extension ContrastiveModel {
    /// The model a config's `model` section describes.
    public convenience init(_ section: ModelSection, inputWidth: Int) {
        let activation: MLP.Activation = switch section.activation {
        case .relu: .relu
        case .gelu: .gelu
        }
        self.init(inputWidth: inputWidth, hidden: section.hidden, representation: section.representation,
                  projection: section.projection, activation: activation)
    }
}
