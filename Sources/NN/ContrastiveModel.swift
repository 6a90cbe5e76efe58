import Tensor

/// The SimCLR network: encoder f (an MLP, the residual CNN or the Vision Transformer: docs/encoders.md)
/// giving the representation h, projection head g (an MLP) and L2 normalisation giving the embedding
/// z = g(f(x)) / |g(f(x))|.
///
/// Shapes: B rows (views), I input width, R representation width, E embedding width.
/// With a pair tower (two-tower CLIP training) a second encoder and head of the same form embed
/// the second modality (W wide) into the same E-dimensional space.
/// All parameters live in one `ParameterArena`: encoder, [adapter], head, [decoder], then the pair tower's
/// encoder and head, then (learnable temperature) the logit scale theta = log(1/tau), one element. The encoder
/// is a prefix of the arena, so a frozen encoder is one range that no gradient, bucket or optimizer touches.
/// With an adapter (model.adapter) the representation is h' = adapter(f(x)) and z = g(h') / |g(h')|.
/// With a decoder (the hybrid objective, loss.reconstruction_weight > 0) an MLP maps the representation
/// back to the input: x_hat = d(h), B x I.
public final class ContrastiveModel {
    public let arena: ParameterArena
    public let encoder: Sequential
    public let head: Sequential
    /// The second modality's encoder and head (nil without pairs).
    public let pairEncoder: Sequential?
    public let pairHead: Sequential?
    /// The residual bottleneck adapter between the first tower's encoder and head (nil: none).
    public let adapter: ResidualAdapter?
    /// Freeze the first tower's encoder: backward stops above it (no encoder gradients, no dL/dh).
    public var freezesEncoder = false {
        didSet {
            if let adapter { adapter.computesInputGradient = !freezesEncoder } else { head.computesInputGradient = !freezesEncoder }
        }
    }
    /// The reconstruction decoder h (R) -> hidden... -> I, linear output (nil without the hybrid objective).
    public let decoder: Sequential?
    /// theta = log(1/tau) of a learnable temperature (nil when the temperature is not learned). Last in
    /// the arena, so its bucket is the first the gradient all-reduce starts: the loss writes its gradient
    /// before backward begins.
    public let logitScale: ParameterSlice?
    /// b of a learned logit bias (SigLIP; nil otherwise), beside theta at the end of the arena for the same reason.
    public let logitBias: ParameterSlice?
    public let inputWidth: Int
    public let pairInputWidth: Int
    /// Width of the pair tower's representation (its encoder's output): R for an MLP pair tower, BERT's D for a text one.
    public let pairRepresentationWidth: Int
    public let representationWidth: Int
    public let embeddingWidth: Int
    /// What the encoders' dropout and drop-path masks are drawn under; in training mode only while a
    /// training step runs (`DropoutKey`), so every other forward is inference.
    public let dropoutKey: DropoutKey

    /// `convolution` (channels and the image's [height, width]) makes the first tower's encoder
    /// the residual CNN of `CNN.make` instead of an MLP of `hidden`; `transformer` makes it the
    /// Vision Transformer of `VisionTransformer.make` (its dropout and drop-path are the shape's); `resnet` the
    /// ResNet of `ResNet.make` (its drop-path is the shape's).
    /// `dropout`: after each hidden layer of the MLP encoders; `dropPath`: stochastic depth of the CNN's blocks.
    public init(inputWidth: Int, hidden: [Int], representation: Int, projection: [Int], activation: MLP.Activation,
                pairInputWidth: Int = 0, pairHidden: [Int] = [], convolution: (channels: [Int], imageShape: [Int], poolCells: Int, poolStages: Int)? = nil,
                transformer: VisionTransformer.Shape? = nil, resnet: ResNet.Shape? = nil, text: BERT.Shape? = nil,
                pairText: BERT.Shape? = nil, learnableTemperature: Bool = false, learnableBias: Bool = false, adapter adapterWidth: Int = 0,
                decoderHidden: [Int]? = nil, dropout: Float = 0, dropPath: Float = 0) {
        precondition(!projection.isEmpty, "the projection head needs at least one width")
        precondition([convolution != nil, transformer != nil, resnet != nil, text != nil].filter { $0 }.count <= 1,
                     "one encoder: a CNN, a Vision Transformer, a ResNet or BERT")
        // A CNN (ViT) with representation 0 has no Linear after pooling: h is the pooled maps (token).
        let fcWidth = representation
        let representation = representation > 0 ? representation
            : convolution.map { CNN.pooledWidth(channels: $0.channels, poolCells: $0.poolCells, poolStages: $0.poolStages) }
            ?? transformer?.dim ?? resnet?.pooledWidth ?? text?.width ?? representation
        self.inputWidth = inputWidth
        self.pairInputWidth = pairInputWidth
        pairRepresentationWidth = pairText?.width ?? representation
        self.representationWidth = representation
        self.embeddingWidth = projection.last!
        let arena = ParameterArena()
        self.arena = arena
        let dropoutKey = DropoutKey()
        self.dropoutKey = dropoutKey
        // Allocated right after the first tower's encoder, before its head.
        var adapterLayer: ResidualAdapter? = nil
        func makeAdapter() {
            if adapterWidth > 0 { adapterLayer = ResidualAdapter(width: representation, bottleneck: adapterWidth, name: "adapter", arena: arena) }
        }
        func tower(_ width: Int, _ hidden: [Int], _ prefix: String) -> (Sequential, Sequential) {
            let encoder = MLP.make(widths: [width] + hidden + [representation], activation: activation, dropout: dropout, key: dropoutKey,
                                   name: prefix + "encoder", arena: arena)
            if prefix.isEmpty { makeAdapter() }
            let projectionMLP = MLP.make(widths: [representation] + projection, activation: activation, name: prefix + "projection", arena: arena)
            // The first layer never needs dL/d(input): skip that GEMM.
            encoder.computesInputGradient = false
            return (encoder, Sequential([projectionMLP, L2Normalize(width: projection.last!)]))
        }
        if let convolution {
            precondition(convolution.imageShape.count == 2 && convolution.imageShape.reduce(1, *) == inputWidth,
                         "the CNN encoder needs the [height, width] of \(inputWidth)-pixel images, got \(convolution.imageShape)")
            let cnn = CNN.make(channels: convolution.channels, inputHeight: convolution.imageShape[0], inputWidth: convolution.imageShape[1],
                               representation: fcWidth, poolCells: convolution.poolCells,
                               poolStages: convolution.poolStages, dropPath: dropPath, key: dropoutKey,
                               activationBlock: CNN.activationBlock(channels: convolution.channels), name: "encoder", arena: arena)
            cnn.computesInputGradient = false
            makeAdapter()
            let projectionMLP = MLP.make(widths: [representation] + projection, activation: activation, name: "projection", arena: arena)
            (encoder, head) = (cnn, Sequential([projectionMLP, L2Normalize(width: projection.last!)]))
        } else if let resnet {
            precondition(resnet.channels * resnet.height * resnet.width == inputWidth,
                         "the ResNet encoder's \(resnet.channels) x \(resnet.height) x \(resnet.width) images are not \(inputWidth) wide")
            let net = ResNet.make(resnet, representation: fcWidth, key: dropoutKey, name: "encoder", arena: arena)
            net.computesInputGradient = false
            makeAdapter()
            let projectionMLP = MLP.make(widths: [representation] + projection, activation: activation, name: "projection", arena: arena)
            (encoder, head) = (net, Sequential([projectionMLP, L2Normalize(width: projection.last!)]))
        } else if let transformer {
            precondition(transformer.channels * transformer.height * transformer.width == inputWidth,
                         "the ViT encoder's \(transformer.channels) x \(transformer.height) x \(transformer.width) images are not \(inputWidth) wide")
            let vit = VisionTransformer.make(transformer, representation: fcWidth, key: dropoutKey, name: "encoder", arena: arena)
            vit.computesInputGradient = false
            makeAdapter()
            let projectionMLP = MLP.make(widths: [representation] + projection, activation: activation, name: "projection", arena: arena)
            (encoder, head) = (vit, Sequential([projectionMLP, L2Normalize(width: projection.last!)]))
        } else if let text {
            precondition(text.inputWidth == inputWidth, "the BERT encoder's rows of 3 x \(text.tokens) values are not \(inputWidth) wide")
            let bert = BERT.make(text, representation: fcWidth, key: dropoutKey, name: "encoder", arena: arena)
            makeAdapter()
            let projectionMLP = MLP.make(widths: [representation] + projection, activation: activation, name: "projection", arena: arena)
            (encoder, head) = (bert, Sequential([projectionMLP, L2Normalize(width: projection.last!)]))
        } else {
            (encoder, head) = tower(inputWidth, hidden, "")
        }
        // After the head, so backward finishes the decoder's gradients first (it runs first).
        decoder = decoderHidden.map {
            MLP.make(widths: [representation] + $0 + [inputWidth], activation: activation, name: "decoder", arena: arena)
        }
        if let pairText {
            // Image <-> text (CLIP with a text tower): BERT embeds the pairs (token rows), and its own head
            // projects its width to the image tower's embedding width E.
            precondition(pairText.inputWidth == pairInputWidth, "the BERT pair tower's rows of 3 x \(pairText.tokens) values are not \(pairInputWidth) wide")
            pairEncoder = BERT.make(pairText, representation: 0, key: dropoutKey, name: "pair_encoder", arena: arena)
            let projectionMLP = MLP.make(widths: [pairText.width] + projection, activation: activation, name: "pair_projection", arena: arena)
            pairHead = Sequential([projectionMLP, L2Normalize(width: projection.last!)])
        } else if pairInputWidth > 0 {
            let (e, h) = tower(pairInputWidth, pairHidden, "pair_")
            pairEncoder = e
            pairHead = h
        } else {
            pairEncoder = nil
            pairHead = nil
        }
        adapter = adapterLayer
        logitScale = learnableTemperature ? arena.allocate(name: "logit_scale", shape: [1], kind: .logitScale) : nil
        logitBias = learnableBias ? arena.allocate(name: "logit_bias", shape: [1], kind: .logitBias) : nil
        arena.seal()
    }

    /// PyTorch-default initialisation from the counter RNG: layer l draws from stream l.
    public func initialise(seed: UInt64) {
        var next = encoder.initialise(seed: seed, firstStream: 0)
        next = head.initialise(seed: seed, firstStream: next)
        if let pairEncoder, let pairHead {
            next = pairEncoder.initialise(seed: seed, firstStream: next)
            next = pairHead.initialise(seed: seed, firstStream: next)
        }
        if let decoder { next = decoder.initialise(seed: seed, firstStream: next) }
        // Last, so a model with an adapter draws every other layer as one without does.
        adapter?.initialise(seed: seed, stream: next)
    }

    /// Forward through the pair tower: z_b (B x E) of `batch` rows of W, owned by the model.
    public func pairForward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        guard let pairEncoder, let pairHead else { preconditionFailure("the model has no pair tower") }
        return pairHead.forward(pairEncoder.forward(input, batch: batch), batch: batch)
    }

    /// Backward through the pair tower from dL/dz_b (consumed); see `backward`.
    public func pairBackward(_ embeddingGradient: UnsafeMutablePointer<Float>, batch: Int, gradientsFinal: ((Int) -> Void)? = nil) {
        guard let pairEncoder, let pairHead else { preconditionFailure("the model has no pair tower") }
        let report = Self.reporter(gradientsFinal)
        guard let dh = pairHead.backward(embeddingGradient, batch: batch, afterLayer: report) else {
            preconditionFailure("head must return dL/dh")
        }
        _ = pairEncoder.backward(dh, batch: batch, afterLayer: report)
    }

    static func reporter(_ gradientsFinal: ((Int) -> Void)?) -> ((Layer) -> Void)? {
        gradientsFinal.map { callback in
            { layer in if let offset = Self.lowestParameterOffset(layer) { callback(offset) } }
        }
    }

    /// Forward through encoder, adapter and head. Returns (h: B x R, z: B x E), both owned by the
    /// model; h is the adapter's output h' when there is one.
    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> (representation: UnsafeMutablePointer<Float>, embedding: UnsafeMutablePointer<Float>) {
        let h = represent(input, batch: batch)
        let z = head.forward(h, batch: batch)
        return (h, z)
    }

    /// Backward from dL/dz (B x E, consumed); accumulates into the arena's gradients.
    /// `gradientsFinal(offset)` is called as backward proceeds: every gradient at arena offset
    /// >= `offset` is final for this step (layers sit in the arena in forward order).
    /// `reconstructionGradient` (B x I, consumed) is dL/dx_hat of the last `reconstruct`: the decoder's
    /// backward runs first and its dL/dh adds to the head's, dL/dh = dL/dh|head + dL/dh|decoder.
    public func backward(_ embeddingGradient: UnsafeMutablePointer<Float>, batch: Int,
                         gradientsFinal: ((Int) -> Void)? = nil, reconstructionGradient: UnsafeMutablePointer<Float>? = nil) {
        let report = Self.reporter(gradientsFinal)
        var decoderGradient: UnsafeMutablePointer<Float>?
        if let reconstructionGradient {
            guard let decoder else { preconditionFailure("a reconstruction gradient, but the model has no decoder") }
            decoderGradient = decoder.backward(reconstructionGradient, batch: batch, afterLayer: report)
        }
        var dh = head.backward(embeddingGradient, batch: batch, afterLayer: report)
        // The decoder reads the representation (h', after the adapter): its gradient joins the head's there.
        if let decoderGradient, let dh { Kernels.axpy(dh, alpha: 1, x: decoderGradient, count: batch * representationWidth) }
        if let adapter, let dAdapted = dh {
            dh = adapter.backward(dAdapted, batch: batch)
            report?(adapter)
        }
        if freezesEncoder { return }
        guard let dh else { preconditionFailure("head must return dL/dh") }
        _ = encoder.backward(dh, batch: batch, afterLayer: report)
    }

    /// The decoder's reconstruction x_hat (B x I, owned by the decoder) of the representations h (B x R)
    /// of the last forward.
    public func reconstruct(_ representation: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        guard let decoder else { preconditionFailure("the model has no decoder") }
        return decoder.forward(representation, batch: batch)
    }

    /// h (B x R) of the first tower: the encoder's output, through the adapter when there is one.
    func represent(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let h = encoder.forward(input, batch: batch)
        return adapter.map { $0.forward(h, batch: batch) } ?? h
    }

    /// Arena offsets of the first tower's encoder, a prefix of the arena: 0 ..< the first other parameter.
    public var encoderRange: Range<Int> {
        0 ..< (arena.slices.first { !$0.name.hasPrefix("encoder.") }?.offset ?? arena.count)
    }

    /// The parameters the optimizer steps: everything, or everything above a frozen encoder.
    public var trainableRange: Range<Int> {
        freezesEncoder ? encoderRange.upperBound ..< arena.count : 0 ..< arena.count
    }

    /// Sets the hook every Linear layer calls between chunks of its backward GEMMs.
    public func setBackwardProgress(_ progress: (() -> Void)?) {
        let layers = [encoder, head, pairEncoder, pairHead, decoder].compactMap { $0 }.flatMap(\.flattened)
        let blockLinears = layers.compactMap { $0 as? TransformerBlock }.flatMap(\.linears)
        for case let linear as Linear in layers + blockLinears + (adapter.map { [$0.down, $0.up] } ?? []) { linear.progress = progress }
    }

    static func lowestParameterOffset(_ layer: Layer) -> Int? {
        switch layer {
        case let linear as Linear: return min(linear.weight.offset, linear.bias?.offset ?? .max)
        case let norm as LayerNorm: return min(norm.scale.offset, norm.shift.offset)
        case let conv as Conv2d: return min(conv.weight.offset, conv.bias?.offset ?? .max)
        case let norm as GroupNorm: return min(norm.scale.offset, norm.shift.offset)
        case let adapter as ResidualAdapter: return adapter.down.weight.offset
        case let block as ResidualBlock:
            return ([lowestParameterOffset(block.main)] + [block.projection.flatMap { lowestParameterOffset($0) }]).compactMap { $0 }.min()
        case let sequence as Sequential: return sequence.layers.compactMap { lowestParameterOffset($0) }.min()
        case let multiScale as MultiScalePool: return [multiScale.stage, multiScale.inner].compactMap { lowestParameterOffset($0) }.min()
        case let patches as PatchEmbedding: return min(patches.weight.offset, patches.bias.offset)
        case let positions as PositionEmbedding: return min(positions.positions.offset, positions.classToken?.offset ?? .max)
        case let embeddings as BertEmbeddings: return embeddings.words.offset
        case let block as TransformerBlock:
            return ([block.norm1, block.norm2] + block.linears as [Layer]).compactMap { lowestParameterOffset($0) }.min()
        case let perToken as PerToken: return lowestParameterOffset(perToken.inner)
        default: return nil
        }
    }

    /// Representations h of `count` rows of `inputs` (count x I, or count x W through the pair
    /// tower's encoder when `pair`) into `out` (count x R, or of `pairRepresentationWidth`), in batches of `batch` rows. Used by
    /// evaluation on un-augmented images and by `contrast embed`.
    public func representations(of inputs: UnsafePointer<Float>, count: Int, pair: Bool = false, into out: UnsafeMutablePointer<Float>,
                                batch: Int = 1024) {
        guard let tower = pair ? pairEncoder : encoder else { preconditionFailure("the model has no pair tower") }
        let width = pair ? pairInputWidth : inputWidth
        var start = 0
        while start < count {
            let rows = min(batch, count - start)
            let h = pair ? tower.forward(inputs + start * width, batch: rows) : represent(inputs + start * width, batch: rows)
            let r = pair ? pairRepresentationWidth : representationWidth
            (out + start * r).update(from: h, count: rows * r)
            start += rows
        }
    }

    /// Embeddings z (count x E) of `count` rows of `inputs`, through the first tower or (`pair`)
    /// the pair tower, in batches of `batch` rows. Used by retrieval evaluation.
    public func embeddings(of inputs: UnsafePointer<Float>, count: Int, pair: Bool = false, into out: UnsafeMutablePointer<Float>,
                           batch: Int = 1024) {
        let width = pair ? pairInputWidth : inputWidth
        var start = 0
        while start < count {
            let rows = min(batch, count - start)
            let z = pair ? pairForward(inputs + start * width, batch: rows) : forward(inputs + start * width, batch: rows).embedding
            (out + start * embeddingWidth).update(from: z, count: rows * embeddingWidth)
            start += rows
        }
    }
}

extension ContrastiveModel {
    /// The precision of every GEMM layer of the model (see `ComputePrecision`); fp32 when built.
    public var computePrecision: GEMMPrecision {
        get { gemmLayers.first.map(\.precision) ?? .fp32 }
        set { for layer in gemmLayers { layer.set(newValue) } }
    }

    /// Every Linear, Conv2d and patch embedding, through sequences, residual and Transformer blocks, multi-scale
    /// pools and the adapter.
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
            case let patches as PatchEmbedding: found.append((patches.computePrecision, { patches.computePrecision = $0 }))
            case let block as TransformerBlock: block.linears.forEach(visit)
            case let perToken as PerToken: visit(perToken.inner)
            // A multi-scale h (pool_stages >= 2) holds the later stages inside the pool.
            case let multiScale as MultiScalePool:
                visit(multiScale.stage)
                visit(multiScale.inner)
            default: break
            }
        }
        let towers: [Layer?] = [encoder, adapter, head, decoder, pairEncoder, pairHead]
        for case let layer? in towers { visit(layer) }
        return found
    }

}
