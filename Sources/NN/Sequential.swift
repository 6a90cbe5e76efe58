import Tensor

/// Layers applied in order; backward in reverse. Shapes: B x (first layer's I) in,
/// B x (last layer's O) out.
public final class Sequential: Layer {
    public let layers: [Layer]
    public var inputWidth: Int { layers.first!.inputWidth }
    public var outputWidth: Int { layers.last!.outputWidth }

    public var computesInputGradient: Bool {
        get { layers.first!.computesInputGradient }
        set { layers.first!.computesInputGradient = newValue }
    }

    public init(_ layers: [Layer]) {
        precondition(!layers.isEmpty, "Sequential needs at least one layer")
        for (a, b) in zip(layers, layers.dropFirst()) {
            precondition(a.outputWidth == b.inputWidth,
                         "Sequential: a layer of output width \(a.outputWidth) feeds one of input width \(b.inputWidth)")
        }
        self.layers = layers
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        var x = layers[0].forward(input, batch: batch)
        for layer in layers.dropFirst() { x = layer.forward(x, batch: batch) }
        return x
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        backward(outputGradient, batch: batch, afterLayer: nil)
    }

    /// Backward that reports each finished layer (nested sequences report their own layers):
    /// once a layer is done, its parameter gradients are final for this step.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int,
                         afterLayer: ((Layer) -> Void)?) -> UnsafeMutablePointer<Float>? {
        var gradient: UnsafeMutablePointer<Float>? = outputGradient
        for layer in layers.reversed() {
            guard let g = gradient else { return nil }
            if let nested = layer as? Sequential {
                gradient = nested.backward(g, batch: batch, afterLayer: afterLayer)
            } else {
                gradient = layer.backward(g, batch: batch)
                afterLayer?(layer)
            }
        }
        return gradient
    }

    /// Every layer, nested sequences flattened, in forward order.
    public var flattened: [Layer] {
        layers.flatMap { ($0 as? Sequential)?.flattened ?? [$0] }
    }
}

/// A multilayer perceptron: Linear layers of the given widths with an activation between
/// them (none after the last). widths = [I, H1, ..., O]. With `dropout` > 0 a `Dropout` of that rate
/// (drawn under `key`) follows each activation: the hidden layers' outputs, never the last's.
public enum MLP {
    public enum Activation: String, Sendable { case relu, gelu }

    public static func make(widths: [Int], activation: Activation, dropout: Float = 0, key: DropoutKey = DropoutKey(),
                            name: String, arena: ParameterArena) -> Sequential {
        precondition(widths.count >= 2, "MLP needs at least an input and an output width, got \(widths)")
        var layers: [Layer] = []
        for i in 0..<(widths.count - 1) {
            let last = i == widths.count - 2
            let fuseReLU = !last && activation == .relu
            layers.append(Linear(inputDimensions: widths[i], outputDimensions: widths[i + 1],
                                 activation: fuseReLU ? .relu : .identity, name: "\(name).\(i)", arena: arena))
            if !last && activation == .gelu { layers.append(GELU(width: widths[i + 1])) }
            // Only when on: the layer list (and what walks it) stays as it was without dropout.
            if !last && dropout > 0 { layers.append(Dropout(width: widths[i + 1], probability: dropout, key: key)) }
        }
        return Sequential(layers)
    }
}

extension Sequential {
    /// Initialises every Linear and Conv2d (PyTorch defaults), LayerNorm and GroupNorm, and the Transformer's layers in order; stream ids are
    /// `firstStream`, `firstStream + 1`, ... so each layer's draws are independent.
    @discardableResult
    public func initialise(seed: UInt64, firstStream: UInt64) -> UInt64 {
        var stream = firstStream
        for layer in layers {
            switch layer {
            case let linear as Linear: linear.initialise(seed: seed, stream: stream); stream += 1
            case let norm as LayerNorm: norm.initialise()
            case let conv as Conv2d: conv.initialise(seed: seed, stream: stream); stream += 1
            case let norm as GroupNorm: norm.initialise()
            case let block as ResidualBlock: stream = block.initialise(seed: seed, firstStream: stream)
            case let patches as PatchEmbedding: patches.initialise(seed: seed, stream: stream); stream += 1
            case let positions as PositionEmbedding: positions.initialise(seed: seed, stream: stream); stream += 1
            case let embeddings as BertEmbeddings: embeddings.initialise(seed: seed, stream: stream); stream += 1
            case let block as TransformerBlock: stream = block.initialise(seed: seed, firstStream: stream)
            case let perToken as PerToken: stream = Sequential([perToken.inner]).initialise(seed: seed, firstStream: stream)
            case let multiScale as MultiScalePool: stream = Sequential([multiScale.stage, multiScale.inner]).initialise(seed: seed, firstStream: stream)
            case let nested as Sequential: stream = nested.initialise(seed: seed, firstStream: stream)
            default: break
            }
        }
        return stream
    }
}
