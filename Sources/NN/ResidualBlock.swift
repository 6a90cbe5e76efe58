import Tensor

/// A basic ResNet block (He et al. 2016) with group normalisation:
/// y = relu(GN(conv3x3(relu(GN(conv3x3_stride(x))))) + skip(x)), where skip is the identity
/// when shape is kept and a strided 1x1 convolution (with bias) when channels or size change.
/// With stochastic depth (training only) the main path is a `DropPath`: y = relu(DP(main(x)) + skip(x)).
///
/// Fused (the default): each GroupNorm followed by a ReLU runs it in its own pass (`GroupNorm`'s
/// `activation`), and the last GroupNorm of the main path runs the add of the skip and the final
/// ReLU in its pass too (`GroupNorm.forward(_:addingReLU:into:batch:)`), except while a drop path
/// scales the main path (then it is its own pass, as unfused). The same bits as the unfused layers,
/// which `fused: false` builds (the tests' oracle).
///
/// With `activationBlock` 8 or 16 x, y and everything between are in oneDNN's blocked layout
/// (nChw8c / nChw16c): the convolutions (the projection's too) run oneDNN's direct kernels without
/// reorders, the GroupNorms their blocked kernels; the add, the ReLU and the drop path are per value
/// or per sample, the same in either layout.
///
/// Shapes: B batch, C input channels, O output channels, H x W input, P x Q output
/// (P = ceil(H / stride)). x: B x (C H W), y: B x (O P Q).
public final class ResidualBlock: Layer {
    public let main: Sequential
    /// nil for the identity skip.
    public let projection: Conv2d?
    /// Drop-path of the main path (probability 0: none).
    public let dropPath: DropPath
    public let outputChannels: Int, outputHeight: Int, outputImageWidth: Int
    public var inputWidth: Int { main.inputWidth }
    public var outputWidth: Int { main.outputWidth }
    /// Internal, not private: finite-difference tests read the final ReLU's sides (y > 0) from it.
    let output = ScratchBuffer()
    /// The main path up to its last GroupNorm, and that GroupNorm (run with the add + ReLU fused);
    /// nil when the block is built unfused.
    private let body: Sequential?, lastNorm: GroupNorm?
    /// Whether the last forward fused the last GroupNorm with the add + ReLU (its backward must match).
    private var fusedLastForward = false
    private let skipGradient = ScratchBuffer()

    public var computesInputGradient: Bool {
        get { main.computesInputGradient }
        set { main.computesInputGradient = newValue; projection?.computesInputGradient = newValue }
    }

    /// Registers `<name>.conv1`, `<name>.norm1`, `<name>.conv2`, `<name>.norm2` and, when the
    /// shape changes, `<name>.projection`. GroupNorm uses `groups` groups (must divide O).
    /// `fused: false` keeps the ReLUs and the add as their own passes (the fused block's test oracle).
    public convenience init(inChannels: Int, outChannels: Int, stride: Int, height: Int, width: Int, groups: Int,
                            dropPath: Float = 0, key: DropoutKey = DropoutKey(), fused: Bool = true, activationBlock: Int = 0,
                            name: String, arena: ParameterArena) {
        let conv1 = Conv2d(inChannels: inChannels, outChannels: outChannels, kernel: 3, stride: stride, padding: 1,
                           height: height, width: width, bias: false, activationBlock: activationBlock, name: "\(name).conv1", arena: arena)
        let p = conv1.outputHeight, q = conv1.outputImageWidth
        let norm1 = GroupNorm(groups: groups, channels: outChannels, height: p, width: q, activation: fused ? .relu : .identity,
                              block: activationBlock, name: "\(name).norm1", arena: arena)
        let conv2 = Conv2d(inChannels: outChannels, outChannels: outChannels, kernel: 3, padding: 1,
                           height: p, width: q, bias: false, activationBlock: activationBlock, name: "\(name).conv2", arena: arena)
        let norm2 = GroupNorm(groups: groups, channels: outChannels, height: p, width: q, block: activationBlock,
                              name: "\(name).norm2", arena: arena)
        let layers: [Layer] = fused ? [conv1, norm1, conv2, norm2] : [conv1, norm1, ReLU(width: outChannels * p * q), conv2, norm2]
        self.init(main: Sequential(layers), inChannels: inChannels, outChannels: outChannels, stride: stride, height: height, width: width,
                  outputHeight: p, outputWidth: q, dropPath: dropPath, key: key, fused: fused, activationBlock: activationBlock,
                  name: name, arena: arena)
    }

    /// A bottleneck block (torchvision's ResNet v1.5: the stride sits on the 3x3 convolution):
    /// main = GN(conv1x1(relu(GN(conv3x3_stride(relu(GN(conv1x1(x))))))), from C to `bottleneck` (B')
    /// channels, then B' to B' (strided), then B' to O. Registers `<name>.conv1` ... `<name>.norm3` and,
    /// when the shape changes, `<name>.projection` (the strided 1x1 convolution with bias, as the basic block's).
    /// GroupNorm uses `bottleneckGroups` groups on B' channels (norm1, norm2) and `groups` on O (norm3).
    public convenience init(inChannels: Int, bottleneck: Int, outChannels: Int, stride: Int, height: Int, width: Int,
                            bottleneckGroups: Int, groups: Int, dropPath: Float = 0, key: DropoutKey = DropoutKey(), fused: Bool = true,
                            name: String, arena: ParameterArena) {
        let relu: Linear.Activation = fused ? .relu : .identity
        let conv1 = Conv2d(inChannels: inChannels, outChannels: bottleneck, kernel: 1, height: height, width: width,
                           bias: false, name: "\(name).conv1", arena: arena)
        let norm1 = GroupNorm(groups: bottleneckGroups, channels: bottleneck, height: height, width: width, activation: relu,
                              name: "\(name).norm1", arena: arena)
        let conv2 = Conv2d(inChannels: bottleneck, outChannels: bottleneck, kernel: 3, stride: stride, padding: 1,
                           height: height, width: width, bias: false, name: "\(name).conv2", arena: arena)
        let p = conv2.outputHeight, q = conv2.outputImageWidth
        let norm2 = GroupNorm(groups: bottleneckGroups, channels: bottleneck, height: p, width: q, activation: relu,
                              name: "\(name).norm2", arena: arena)
        let conv3 = Conv2d(inChannels: bottleneck, outChannels: outChannels, kernel: 1, height: p, width: q,
                           bias: false, name: "\(name).conv3", arena: arena)
        let norm3 = GroupNorm(groups: groups, channels: outChannels, height: p, width: q, name: "\(name).norm3", arena: arena)
        let layers: [Layer] = fused ? [conv1, norm1, conv2, norm2, conv3, norm3]
            : [conv1, norm1, ReLU(width: conv1.outputWidth), conv2, norm2, ReLU(width: conv2.outputWidth), conv3, norm3]
        self.init(main: Sequential(layers), inChannels: inChannels, outChannels: outChannels, stride: stride, height: height, width: width,
                  outputHeight: p, outputWidth: q, dropPath: dropPath, key: key, fused: fused, name: name, arena: arena)
    }

    /// `main` maps C x H x W to O x P x Q; the skip is added after it (a projection when the shape changes).
    /// `fused`: the last GroupNorm of `main` (when it ends in one) runs the add + ReLU in its pass.
    init(main: Sequential, inChannels: Int, outChannels: Int, stride: Int, height: Int, width: Int, outputHeight p: Int,
         outputWidth q: Int, dropPath: Float, key: DropoutKey, fused: Bool, activationBlock: Int = 0, name: String, arena: ParameterArena) {
        self.main = main
        if fused, main.layers.count >= 2, let norm = main.layers.last as? GroupNorm {
            body = Sequential(Array(main.layers.dropLast()))
            lastNorm = norm
        } else {
            body = nil
            lastNorm = nil
        }
        projection = stride == 1 && inChannels == outChannels ? nil
            : Conv2d(inChannels: inChannels, outChannels: outChannels, kernel: 1, stride: stride,
                     height: height, width: width, activationBlock: activationBlock, name: "\(name).projection", arena: arena)
        outputChannels = outChannels
        outputHeight = p
        outputImageWidth = q
        self.dropPath = DropPath(width: outChannels * p * q, probability: dropPath, key: key)
    }

    /// Convolutions get PyTorch's default draws from streams `firstStream`, ...; norms gamma 1, beta 0.
    /// Returns the next unused stream.
    public func initialise(seed: UInt64, firstStream: UInt64) -> UInt64 {
        var stream = main.initialise(seed: seed, firstStream: firstStream)
        if let projection { projection.initialise(seed: seed, stream: stream); stream += 1 }
        return stream
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let n = batch * outputWidth
        let y = output.pointer(count: n)
        if let body, let lastNorm, !dropPath.active {
            fusedLastForward = true
            let h = body.forward(input, batch: batch)
            let skip = projection.map { UnsafePointer($0.forward(input, batch: batch)) } ?? input
            lastNorm.forward(h, addingReLU: skip, into: y, batch: batch)
            return y
        }
        fusedLastForward = false
        let mainOutput = dropPath.forward(main.forward(input, batch: batch), batch: batch)
        // The sum and the ReLU in one pass (main + skip, the order the plain loop added them in).
        let skip = projection.map { UnsafePointer($0.forward(input, batch: batch)) } ?? input
        Kernels.addReLU(y, mainOutput, skip, count: n)
        return y
    }

    /// Through the final ReLU, then the sum's gradient goes down both paths; dx is their sum.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let n = batch * outputWidth
        let dy = outputGradient
        let dMain: UnsafeMutablePointer<Float>?, skipInput: UnsafeMutablePointer<Float>
        if fusedLastForward, let body, let lastNorm {
            // The ReLU's mask and the last GroupNorm's backward in one pass; dy is left masked, the skip's
            // gradient, which nothing on the main path writes to: no copy.
            dMain = body.backward(lastNorm.backward(dy, throughAddReLU: output.tensor.data, batch: batch)!, batch: batch)
            skipInput = dy
        } else {
            Kernels.reluBackward(inputGradient: dy, outputGradient: dy, output: output.tensor.data, count: n)
            // The main path may consume its gradient (the drop path scales it in place), so the skip path gets a copy.
            skipInput = skipGradient.pointer(count: n)
            skipInput.update(from: dy, count: n)
            dMain = main.backward(dropPath.backward(dy, batch: batch)!, batch: batch)
        }
        let dSkip: UnsafeMutablePointer<Float>?
        if let projection { dSkip = projection.backward(skipInput, batch: batch) } else { dSkip = skipInput }
        guard computesInputGradient, let dMain, let dSkip else { return nil }
        // dx = dMain + dSkip, into dMain (the main path's first layer's gradient buffer, ours to consume):
        // no buffer of its own to stream through. axpy with alpha 1 rounds as the plain sum does.
        Kernels.axpy(dMain, alpha: 1, x: dSkip, count: batch * inputWidth)
        return dMain
    }
}

/// A small ResNet-style encoder for NCHW-flattened images.
public enum CNN {
    /// The activation layout `make` should be given for these stage channels: oneDNN's channel block
    /// (`OneDNNConvolution.blockedActivationBlock`: 16 at AVX-512, 8 at AVX2) when every stage fills
    /// whole blocks, else 0 (NCHW, each oneDNN convolution reordering its operands).
    public static func activationBlock(channels: [Int]) -> Int {
        guard let block = OneDNNConvolution.blockedActivationBlock, channels.allSatisfy({ $0 % block == 0 }) else { return 0 }
        return block
    }

    /// The largest group count of at most 8 that divides `channels` (GroupNorm's groups).
    public static func groups(for channels: Int) -> Int {
        (1...min(8, channels)).last { channels % $0 == 0 }!
    }

    /// Width of the pooled maps of the last `poolStages` stages (the output when representation is 0):
    /// sum of C G G over them, G = poolCells.
    public static func pooledWidth(channels: [Int], poolCells: Int, poolStages: Int) -> Int {
        channels.suffix(poolStages).reduce(0) { $0 + $1 * poolCells * poolCells }
    }

    /// stem (3x3 conv, GroupNorm, ReLU) to channels[0] -> one ResidualBlock per entry of
    /// `channels` (stride 1 for the first, 2 between stages) -> average pool over `poolCells` x
    /// `poolCells` cells (1: global) of the last `poolStages` stages' maps, concatenated shallowest
    /// first (`MultiScalePool`) -> Linear to `representation`, or (representation 0) the pooled
    /// maps themselves are the output, C G G summed over the pooled stages wide.
    /// `dropPath`: stochastic depth of the last block's main path, rising linearly from 0 at the first
    /// (`DropPath.rates`), drawn under `key`.
    /// Input: B x (inputChannels inputHeight inputWidth), output: B x representation.
    public static func make(channels: [Int], inputHeight: Int, inputWidth: Int, inputChannels: Int = 1,
                            representation: Int, poolCells: Int = 1, poolStages: Int = 1, dropPath: Float = 0, key: DropoutKey = DropoutKey(),
                            activationBlock: Int = 0, name: String, arena: ParameterArena) -> Sequential {
        precondition(activationBlock == 0 || channels.allSatisfy { $0 % activationBlock == 0 },
                     "CNN: channels \(channels) do not fill blocks of \(activationBlock) (see CNN.activationBlock)")
        precondition(!channels.isEmpty && channels.allSatisfy { $0 >= 1 }, "CNN needs at least one stage, got \(channels)")
        precondition(poolStages >= 1 && poolStages <= channels.count, "CNN pools 1...\(channels.count) stages, got \(poolStages)")
        // Blocked: the encoder's one layout edge is the stem, a oneDNN convolution reading the NCHW images
        // and writing blocked maps; everything after it is blocked, and the pools read the blocked maps and
        // write the same rows as NCHW ones.
        let stem = Conv2d(inChannels: inputChannels, outChannels: channels[0], kernel: 3, padding: 1, height: inputHeight, width: inputWidth,
                          bias: false, activationBlock: activationBlock, inputBlock: 0, name: "\(name).stem", arena: arena)
        // The stem's ReLU runs in its GroupNorm's pass.
        var layers: [Layer] = [
            stem,
            GroupNorm(groups: groups(for: channels[0]), channels: channels[0], height: inputHeight, width: inputWidth,
                      activation: .relu, block: activationBlock, name: "\(name).stem_norm", arena: arena),
        ]
        func pool(_ c: Int, _ h: Int, _ w: Int) -> AdaptiveAveragePool {
            AdaptiveAveragePool(channels: c, height: h, width: w, cells: poolCells, block: activationBlock)
        }
        var c = channels[0], h = inputHeight, w = inputWidth
        var blocks: [(block: ResidualBlock, channels: Int, height: Int, width: Int)] = []
        let dropPaths = DropPath.rates(dropPath, count: channels.count)
        for (i, o) in channels.enumerated() {
            let block = ResidualBlock(inChannels: c, outChannels: o, stride: i == 0 ? 1 : 2, height: h, width: w,
                                      groups: groups(for: o), dropPath: dropPaths[i], key: key, activationBlock: activationBlock,
                                      name: "\(name).stage\(i)", arena: arena)
            blocks.append((block, c, h, w))
            c = o; h = block.outputHeight; w = block.outputImageWidth
        }
        // Stages before the pooled ones run in sequence; the last poolStages - 1 nest inside each other.
        let firstNested = channels.count - poolStages + 1
        layers += blocks[..<firstNested].map(\.block)
        var tail: Layer = poolCells == 1 ? GlobalAveragePool(channels: c, height: h, width: w, block: activationBlock) : pool(c, h, w)
        for (block, ci, hi, wi) in blocks[firstNested...].reversed() {
            tail = MultiScalePool(pool: pool(ci, hi, wi), stage: block, inner: tail)
        }
        layers.append(tail)
        if representation > 0 {
            layers.append(Linear(inputDimensions: tail.outputWidth, outputDimensions: representation, name: "\(name).fc", arena: arena))
        }
        return Sequential(layers)
    }
}
