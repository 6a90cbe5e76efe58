import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// MaxPool2d, the bottleneck block, the ResNet stems and small ResNets end to end: values against
/// direct references and every backward against finite differences (`ConvLayerTests.check`).
extension ConvLayerTests {
    // MARK: MaxPool2d

    @Test(arguments: [(7, 6, 3, 2, 1), (8, 8, 3, 2, 1), (5, 5, 2, 2, 0), (4, 6, 3, 1, 1)])
    func maxPoolMatchesDirectDefinition(h: Int, w: Int, k: Int, stride: Int, padding: Int) {
        let pool = MaxPool2d(channels: 2, height: h, width: w, kernel: k, stride: stride, padding: padding)
        let x = Tensor(zeros: [3, pool.inputWidth]); fill(x.data, x.count, stream: 30)
        let y = pool.forward(x.data, batch: 3)
        #expect(pool.outputHeight == (h + 2 * padding - k) / stride + 1 && pool.outputImageWidth == (w + 2 * padding - k) / stride + 1)
        for plane in 0..<6 {
            for p in 0..<pool.outputHeight {
                for q in 0..<pool.outputImageWidth {
                    var best = -Float.infinity
                    for i in 0..<k {
                        for j in 0..<k {
                            let r = p * stride - padding + i, c = q * stride - padding + j
                            if r >= 0 && r < h && c >= 0 && c < w { best = max(best, x[plane * h * w + r * w + c]) }
                        }
                    }
                    #expect(y[plane * pool.outputHeight * pool.outputImageWidth + p * pool.outputImageWidth + q] == best)
                }
            }
        }
    }

    @Test func maxPoolGradients() {
        let arena = ParameterArena(); arena.seal()
        check(MaxPool2d(channels: 3, height: 7, width: 6, kernel: 3, stride: 2, padding: 1), arena: arena, batch: 2,
              step: 1e-3, inputIndices: 120)
    }

    /// Equal inputs: the gradient goes to the first (as PyTorch's CPU kernel), once, not split.
    @Test func maxPoolTiesGoToTheFirst() {
        let pool = MaxPool2d(channels: 1, height: 2, width: 2, kernel: 2, stride: 2, padding: 0)
        let x = Tensor(zeros: [1, 4])
        for i in 0..<4 { x[i] = 1 }
        _ = pool.forward(x.data, batch: 1)
        let dy = Tensor(zeros: [1, 1]); dy[0] = 5
        let dx = pool.backward(dy.data, batch: 1)!
        #expect((0..<4).map { dx[$0] } == [5, 0, 0, 0])
    }

    // MARK: Bottleneck block

    @Test func bottleneckWithProjectionSkip() {
        let arena = ParameterArena()
        let block = ResidualBlock(inChannels: 3, bottleneck: 2, outChannels: 8, stride: 2, height: 7, width: 5,
                                  bottleneckGroups: 2, groups: 4, name: "block", arena: arena)
        arena.seal()
        #expect(block.projection != nil && block.outputHeight == 4 && block.outputImageWidth == 3 && block.outputWidth == 8 * 4 * 3)
        #expect(arena.slices.map(\.name) == ["block.conv1.weight", "block.norm1.weight", "block.norm1.bias", "block.conv2.weight",
                                             "block.norm2.weight", "block.norm2.bias", "block.conv3.weight", "block.norm3.weight",
                                             "block.norm3.bias", "block.projection.weight", "block.projection.bias"])
        _ = block.initialise(seed: 5, firstStream: 0)
        check(block, arena: arena, batch: 2, step: 1e-3)
    }

    @Test func bottleneckWithIdentitySkip() {
        let arena = ParameterArena()
        let block = ResidualBlock(inChannels: 8, bottleneck: 2, outChannels: 8, stride: 1, height: 5, width: 4,
                                  bottleneckGroups: 1, groups: 2, name: "block", arena: arena)
        arena.seal()
        #expect(block.projection == nil)
        _ = block.initialise(seed: 6, firstStream: 0)
        check(block, arena: arena, batch: 2, step: 1e-3)
    }

    // MARK: Stems and whole ResNets

    /// 8 x 6 images: few enough ReLU units that a step of 1e-3 seldom flips one somewhere in the network.
    func smallResNet(_ stem: ResNet.Stem, _ block: ResNet.Block, poolCells: Int = 1, poolStages: Int = 1,
                     representation: Int = 5) -> (Sequential, ParameterArena) {
        let arena = ParameterArena()
        let shape = ResNet.Shape(channels: 3, height: 8, width: 6, stem: stem, block: block,
                                 stages: [.init(channels: 4, blocks: 2, stride: 1), .init(channels: 6, blocks: 1, stride: 2)],
                                 poolCells: poolCells, poolStages: poolStages)
        let net = ResNet.make(shape, representation: representation, name: "encoder", arena: arena)
        arena.seal()
        net.initialise(seed: 7, firstStream: 0)
        return (net, arena)
    }

    /// The stems alone: the first layers of a ResNet, up to (imagenet) the max pool.
    @Test(arguments: [ResNet.Stem.small, .imagenet])
    func stemGradients(stem: ResNet.Stem) {
        let (net, arena) = smallResNet(stem, .basic)
        let stemLayers = Sequential(Array(net.layers.prefix(stem == .small ? 3 : 4)))
        #expect(stemLayers.outputWidth == 4 * (stem == .small ? 8 * 6 : 2 * 2))
        check(stemLayers, arena: arena, batch: 2, step: 1e-3, perSlice: 8)
    }

    @Test(arguments: [(ResNet.Stem.small, ResNet.Block.basic, 1, 1), (.imagenet, .bottleneck(expansion: 2), 1, 1),
                      (.small, .bottleneck(expansion: 4), 2, 2), (.imagenet, .basic, 1, 2)])
    func wholeResNetGradients(stem: ResNet.Stem, block: ResNet.Block, poolCells: Int, poolStages: Int) {
        let (net, arena) = smallResNet(stem, block, poolCells: poolCells, poolStages: poolStages)
        #expect(net.inputWidth == 3 * 8 * 6 && net.outputWidth == 5)
        net.computesInputGradient = true
        check(net, arena: arena, batch: 2, step: 1e-3, perSlice: 4)
    }

    @Test func resNetNamesAndPooledWidth() {
        let (net, arena) = smallResNet(.small, .bottleneck(expansion: 4), poolCells: 2, poolStages: 2, representation: 0)
        let shape = ResNet.Shape(channels: 3, height: 8, width: 6, stem: .small, block: .bottleneck(expansion: 4),
                                 stages: [.init(channels: 4, blocks: 2, stride: 1), .init(channels: 6, blocks: 1, stride: 2)],
                                 poolCells: 2, poolStages: 2)
        #expect(net.outputWidth == shape.pooledWidth && shape.pooledWidth == (16 + 24) * 4)
        let names = arena.slices.map(\.name)
        #expect(names.prefix(3) == ["encoder.conv1.weight", "encoder.norm1.weight", "encoder.norm1.bias"])
        #expect(names.contains("encoder.layer1.0.projection.weight") && !names.contains("encoder.layer1.1.projection.weight"))
        #expect(names.contains("encoder.layer2.0.conv3.weight") && !names.contains { $0.hasPrefix("encoder.fc") })
    }

    /// resnet18's layer shapes: torchvision's ResNet-18 (with GroupNorm, and a bias on each skip convolution instead of its BatchNorm).
    @Test func resnet18HasTorchvisionShapes() throws {
        let arena = ParameterArena()
        let net = ResNet.make(.resnet18(channels: 3, height: 32, width: 32), representation: 0, name: "encoder", arena: arena)
        arena.seal()
        let shapes = Dictionary(uniqueKeysWithValues: arena.slices.map { ($0.name, $0.shape) })
        #expect(shapes["encoder.conv1.weight"] == [64, 3, 7, 7])
        #expect(shapes["encoder.layer1.1.conv2.weight"] == [64, 64, 3, 3])
        #expect(shapes["encoder.layer2.0.conv1.weight"] == [128, 64, 3, 3] && shapes["encoder.layer2.0.projection.weight"] == [128, 64, 1, 1])
        #expect(shapes["encoder.layer4.1.conv2.weight"] == [512, 512, 3, 3])
        #expect(net.outputWidth == 512)
        // torchvision's ResNet-18 has 11,166,912 convolution weights (stem, blocks, downsamples).
        let convolutions = arena.slices.filter { $0.name.hasSuffix(".weight") && $0.shape.count == 4 }.reduce(0) { $0 + $1.count }
        #expect(convolutions == 11_166_912)
        // 32 x 32 x 3 images end in 1 x 1 maps after the stem (8 x 8) and three stride-2 stages.
        net.initialise(seed: 1, firstStream: 0)
        let x = Tensor(zeros: [2, net.inputWidth]); fill(x.data, x.count, stream: 18)
        let y = net.forward(x.data, batch: 2)
        #expect((0..<(2 * 512)).allSatisfy { y[$0].isFinite } && (0..<512).contains { y[$0] != y[512 + $0] })
        let last = try #require(net.layers.compactMap { $0 as? Sequential }.last?.layers.last as? ResidualBlock)
        #expect(last.outputHeight == 1 && last.outputImageWidth == 1)
    }

    @Test func resNetDeterministic() {
        func run() -> ([Float], [Float]) {
            let (net, arena) = smallResNet(.imagenet, .bottleneck(expansion: 2))
            let x = Tensor(zeros: [4, net.inputWidth]); fill(x.data, x.count, stream: 16)
            let y = net.forward(x.data, batch: 4)
            let output = (0..<(4 * net.outputWidth)).map { y[$0] }
            let dy = Tensor(zeros: [4, net.outputWidth]); fill(dy.data, dy.count, stream: 17)
            arena.zeroGradients()
            _ = net.backward(dy.data, batch: 4)
            return (output, (0..<arena.count).map { arena.gradients[$0] })
        }
        let a = run(), b = run()
        #expect(a.0 == b.0 && a.1 == b.1)
    }
}
