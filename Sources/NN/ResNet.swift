import Tensor

/// 2-D max pooling, PyTorch's `nn.MaxPool2d(kernel, stride, padding)` (floor mode, no dilation):
/// each output is the largest input of its window; padding never wins (it counts as -infinity).
///
/// Shapes: B batch, C channels, H x W input, P x Q output with P = (H + 2 pad - K) / stride + 1
/// (Q likewise). x: B x (C H W), y: B x (C P Q). Backward sends dy to the window's first largest
/// input (PyTorch's CPU kernel keeps the first of equal values too), so dx is dy scattered.
public final class MaxPool2d: Layer {
    public let channels: Int, height: Int, width: Int
    public let kernel: Int, stride: Int, padding: Int
    public let outputHeight: Int, outputImageWidth: Int
    public var inputWidth: Int { channels * height * width }
    public var outputWidth: Int { channels * outputHeight * outputImageWidth }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()
    /// Per output, the index in its H x W plane of the input that won; read by backward (and by the
    /// finite-difference tests, where a changed winner is a kink).
    private(set) var winners: [Int32] = []

    public init(channels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
        precondition(channels >= 1 && kernel >= 1 && stride >= 1 && padding >= 0 && 2 * padding <= kernel,
                     "MaxPool2d: channels, kernel and stride at least 1, padding at most half the kernel")
        precondition(height + 2 * padding >= kernel && width + 2 * padding >= kernel,
                     "MaxPool2d: kernel \(kernel) larger than the padded \(height) x \(width) input")
        self.channels = channels
        self.height = height
        self.width = width
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        outputHeight = (height + 2 * padding - kernel) / stride + 1
        outputImageWidth = (width + 2 * padding - kernel) / stride + 1
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let planes = batch * channels, hw = height * width, pq = outputHeight * outputImageWidth
        let y = output.pointer(count: planes * pq)
        if winners.count < planes * pq { winners = Array(repeating: 0, count: planes * pq) }
        winners.withUnsafeMutableBufferPointer { winners in
            for plane in 0..<planes {
                let x = input + plane * hw
                for p in 0..<outputHeight {
                    // padding <= kernel / 2, so every window holds at least one real input.
                    let rows = max(0, p * stride - padding)..<min(height, p * stride - padding + kernel)
                    for q in 0..<outputImageWidth {
                        let columns = max(0, q * stride - padding)..<min(width, q * stride - padding + kernel)
                        var best = rows.lowerBound * width + columns.lowerBound
                        for r in rows {
                            for c in columns where x[r * width + c] > x[best] { best = r * width + c }
                        }
                        let o = plane * pq + p * outputImageWidth + q
                        y[o] = x[best]
                        winners[o] = Int32(best)
                    }
                }
            }
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let planes = batch * channels, hw = height * width, pq = outputHeight * outputImageWidth
        let dx = inputGradient.pointer(count: planes * hw)
        dx.initialize(repeating: 0, count: planes * hw)
        for plane in 0..<planes {
            for o in 0..<pq { dx[plane * hw + Int(winners[plane * pq + o])] += outputGradient[plane * pq + o] }
        }
        return dx
    }
}

/// ResNet-style encoders (He et al. 2016) for NCHW-flattened images of any size and channel count,
/// with GroupNorm in place of BatchNorm (docs/encoders.md says why): a stem, stages of basic or
/// bottleneck `ResidualBlock`s, and global or multi-scale average pooling.
public enum ResNet {
    /// The block every stage is made of.
    public enum Block: Equatable, Sendable {
        /// Two 3x3 convolutions; a stage of `channels` outputs `channels`.
        case basic
        /// 1x1 down to `channels`, 3x3, 1x1 up to `channels` x `expansion` (torchvision's 4).
        case bottleneck(expansion: Int)
    }

    /// The layers before the first stage.
    public enum Stem: Equatable, Sendable {
        /// 3x3 convolution, stride 1 (small images: 28 x 28, 32 x 32): the image keeps its size.
        case small
        /// torchvision's: 7x7 convolution stride 2 padding 3, then 3x3 max pool stride 2 padding 1: a quarter of the size.
        case imagenet

        /// How much the stem shrinks each side (for images its strides divide).
        public var downsampling: Int { self == .small ? 1 : 4 }
    }

    /// One stage: `blocks` blocks of `channels` (the bottleneck width for bottleneck blocks), the first with `stride`.
    public struct Stage: Equatable, Sendable {
        public var channels: Int, blocks: Int, stride: Int
        public init(channels: Int, blocks: Int, stride: Int) { (self.channels, self.blocks, self.stride) = (channels, blocks, stride) }
    }

    /// Everything `make` builds from.
    public struct Shape: Equatable, Sendable {
        public var channels: Int, height: Int, width: Int
        public var stem: Stem
        public var block: Block
        public var stages: [Stage]
        /// The last stage's maps are average-pooled over poolCells x poolCells cells (1: global), and h
        /// concatenates the pooled maps of the last `poolStages` stages (`MultiScalePool`), shallowest first.
        public var poolCells: Int, poolStages: Int
        /// Stochastic depth of the last block's main path, rising linearly from 0 at the first block (`DropPath.rates`).
        public var dropPath: Float

        public init(channels: Int, height: Int, width: Int, stem: Stem, block: Block, stages: [Stage],
                    poolCells: Int = 1, poolStages: Int = 1, dropPath: Float = 0) {
            (self.channels, self.height, self.width, self.stem, self.block, self.stages) = (channels, height, width, stem, block, stages)
            (self.poolCells, self.poolStages, self.dropPath) = (poolCells, poolStages, dropPath)
        }

        /// torchvision's ResNet-18: imagenet stem of 64 channels, basic blocks, stages of 64, 128, 256, 512 channels,
        /// two blocks each, strides 1, 2, 2, 2.
        public static func resnet18(channels: Int, height: Int, width: Int) -> Shape {
            Shape(channels: channels, height: height, width: width, stem: .imagenet, block: .basic,
                  stages: [Stage(channels: 64, blocks: 2, stride: 1), Stage(channels: 128, blocks: 2, stride: 2),
                           Stage(channels: 256, blocks: 2, stride: 2), Stage(channels: 512, blocks: 2, stride: 2)])
        }

        /// Output channels of stage `i`'s blocks.
        public func outputChannels(_ i: Int) -> Int {
            switch block {
            case .basic: stages[i].channels
            case .bottleneck(let expansion): stages[i].channels * expansion
            }
        }

        /// The stem's output channels: the first stage's width (torchvision: 64 for every ResNet).
        public var stemChannels: Int { stages[0].channels }

        /// Width of h without a Linear after pooling: C G G summed over the pooled stages.
        public var pooledWidth: Int {
            (stages.count - poolStages..<stages.count).reduce(0) { $0 + outputChannels($1) * poolCells * poolCells }
        }
    }

    /// GroupNorm's groups on `channels`: the largest count of at most 32 that divides it (Wu and He's
    /// GroupNorm paper uses 32; 64 channels -> 32 groups of 2, 48 -> 24).
    public static func groups(for channels: Int) -> Int {
        (1...min(groupLimit, channels)).last { channels % $0 == 0 }!
    }

    /// The most groups a GroupNorm of the ResNet has (exported as `norm_groups_max`).
    public static let groupLimit = 32

    /// stem -> stages -> pool -> Linear to `representation` (0: the pooled maps are the output, `Shape.pooledWidth`).
    /// Names follow torchvision's ResNet: `<name>.conv1`, `<name>.norm1` (its bn1), `<name>.layer<s>.<b>.conv1` ...
    /// (`ResidualBlock`; its skip convolution is `projection`), `<name>.fc`.
    /// Input: B x (C H W), output: B x representation.
    public static func make(_ shape: Shape, representation: Int, key: DropoutKey = DropoutKey(),
                            name: String, arena: ParameterArena) -> Sequential {
        precondition(!shape.stages.isEmpty && shape.stages.allSatisfy { $0.channels >= 1 && $0.blocks >= 1 && $0.stride >= 1 },
                     "ResNet needs stages of at least one channel, block and stride, got \(shape.stages)")
        precondition(shape.poolStages >= 1 && shape.poolStages <= shape.stages.count,
                     "ResNet pools 1...\(shape.stages.count) stages, got \(shape.poolStages)")
        let c0 = shape.stemChannels
        let stem = shape.stem == .small
            ? Conv2d(inChannels: shape.channels, outChannels: c0, kernel: 3, padding: 1, height: shape.height, width: shape.width,
                     bias: false, name: "\(name).conv1", arena: arena)
            : Conv2d(inChannels: shape.channels, outChannels: c0, kernel: 7, stride: 2, padding: 3, height: shape.height, width: shape.width,
                     bias: false, name: "\(name).conv1", arena: arena)
        // The stem's ReLU runs in its GroupNorm's pass.
        var layers: [Layer] = [
            stem,
            GroupNorm(groups: groups(for: c0), channels: c0, height: stem.outputHeight, width: stem.outputImageWidth,
                      activation: .relu, name: "\(name).norm1", arena: arena),
        ]
        var c = c0, h = stem.outputHeight, w = stem.outputImageWidth
        if shape.stem == .imagenet {
            let pool = MaxPool2d(channels: c0, height: h, width: w, kernel: 3, stride: 2, padding: 1)
            layers.append(pool)
            h = pool.outputHeight; w = pool.outputImageWidth
        }
        let rates = DropPath.rates(shape.dropPath, count: shape.stages.reduce(0) { $0 + $1.blocks })
        var stages: [(stage: Sequential, channels: Int, height: Int, width: Int)] = []
        var blockIndex = 0
        for (i, stage) in shape.stages.enumerated() {
            let o = shape.outputChannels(i)
            var blocks: [Layer] = []
            let (ci, hi, wi) = (c, h, w)
            for b in 0..<stage.blocks {
                let blockName = "\(name).layer\(i + 1).\(b)", stride = b == 0 ? stage.stride : 1
                let block = switch shape.block {
                case .basic:
                    ResidualBlock(inChannels: c, outChannels: o, stride: stride, height: h, width: w, groups: groups(for: o),
                                  dropPath: rates[blockIndex], key: key, name: blockName, arena: arena)
                case .bottleneck:
                    ResidualBlock(inChannels: c, bottleneck: stage.channels, outChannels: o, stride: stride, height: h, width: w,
                                  bottleneckGroups: groups(for: stage.channels), groups: groups(for: o),
                                  dropPath: rates[blockIndex], key: key, name: blockName, arena: arena)
                }
                blocks.append(block)
                blockIndex += 1
                c = o; h = block.outputHeight; w = block.outputImageWidth
            }
            stages.append((Sequential(blocks), ci, hi, wi))
        }
        func pool(_ c: Int, _ h: Int, _ w: Int) -> AdaptiveAveragePool {
            AdaptiveAveragePool(channels: c, height: h, width: w, cells: shape.poolCells)
        }
        // As CNN.make: stages before the pooled ones run in sequence, the last poolStages - 1 nest inside each other.
        let firstNested = shape.stages.count - shape.poolStages + 1
        layers += stages[..<firstNested].map(\.stage)
        var tail: Layer = shape.poolCells == 1 ? GlobalAveragePool(channels: c, height: h, width: w) : pool(c, h, w)
        for (stage, ci, hi, wi) in stages[firstNested...].reversed() {
            tail = MultiScalePool(pool: pool(ci, hi, wi), stage: stage, inner: tail)
        }
        layers.append(tail)
        if representation > 0 {
            layers.append(Linear(inputDimensions: tail.outputWidth, outputDimensions: representation, name: "\(name).fc", arena: arena))
        }
        return Sequential(layers)
    }
}
