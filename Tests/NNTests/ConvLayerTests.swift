import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// Conv2d against the six-loop reference, and finite-difference checks of every convolutional
/// layer's backward. The scalar checked is L = sum(y * v) for fixed random v, so dL/dy = v.
/// Tolerance as in LayerGradientTests (GradientCheck.compare): relative error 1e-2 plus each
/// difference's measured rounding error, coordinates with a ReLU kink within the step dropped.
@Suite struct ConvLayerTests {
    static let tolerance = 1e-2

    func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int, stream: UInt64, scale: Float = 1) {
        var rng = RandomStream(seed: 17, stream: stream)
        for i in 0..<n { p[i] = rng.nextUniform(-scale, scale) }
    }

    /// Checks dL/d(every parameter slice, up to `perSlice` entries each) and dL/dinput. A
    /// coordinate where a ReLU changes sides within every step tried is dropped (GradientCheck
    /// explains why no tolerance could cover it); at most a tenth of them may be.
    func check(_ layer: Layer, arena: ParameterArena, batch: Int, step: Float = 1e-2, perSlice: Int = 12,
               inputIndices: Int = 60, sourceLocation: SourceLocation = #_sourceLocation) {
        let input = Tensor(zeros: [batch, layer.inputWidth])
        fill(input.data, input.count, stream: 1)
        let v = Tensor(zeros: [batch, layer.outputWidth])
        fill(v.data, v.count, stream: 2)
        let dy = Tensor(zeros: [batch, layer.outputWidth])

        func loss() -> Double {
            let y = layer.forward(input.data, batch: batch)
            var sum = 0.0
            for i in 0..<v.count { sum += Double(y[i]) * Double(v[i]) }
            return sum
        }
        _ = loss()
        arena.zeroGradients()
        dy.copy(from: v)
        let dxPointer = layer.backward(dy.data, batch: batch)
        let dx = dxPointer.map { p in (0..<input.count).map { Double(p[$0]) } }

        var kinks = 0, checked = 0
        func compare(_ what: String, at x: UnsafeMutablePointer<Float>, indices: [Int], analytic: [Double]) {
            let differences = GradientCheck.differences(of: loss, at: x, indices: indices, step: step,
                                                        activationPattern: { activationPattern(of: layer, batch: batch) })
            let result = GradientCheck.compare(analytic: analytic, differences, relativeTolerance: Self.tolerance)
            #expect(result.failures.isEmpty, "\(what): \(result.failures.joined(separator: "; "))", sourceLocation: sourceLocation)
            kinks += result.kinks
            checked += result.checked
        }

        var rng = RandomStream(seed: 3, stream: 4)
        for slice in arena.slices {
            let indices = (0..<min(slice.count, perSlice)).map { _ in slice.offset + rng.nextInt(below: slice.count) }
            compare(slice.name, at: arena.parameters.data, indices: indices, analytic: indices.map { Double(arena.gradients[$0]) })
        }
        if layer.computesInputGradient {
            guard let dx else { Issue.record("no input gradient", sourceLocation: sourceLocation); return }
            let indices = (0..<min(input.count, inputIndices)).map { _ in rng.nextInt(below: input.count) }
            compare("input", at: input.data, indices: indices, analytic: indices.map { dx[$0] })
        }
        #expect(kinks * 10 <= kinks + checked, "\(kinks) of \(kinks + checked) coordinates have a ReLU kink within every step tried",
                sourceLocation: sourceLocation)
    }

    // MARK: Conv2d

    func convForwardMatchesReference(batch: Int, c: Int, o: Int, h: Int, w: Int, k: Int, stride: Int, padding: Int, bias: Bool) {
        let arena = ParameterArena()
        let conv = Conv2d(inChannels: c, outChannels: o, kernel: k, stride: stride, padding: padding,
                          height: h, width: w, bias: bias, name: "conv", arena: arena)
        arena.seal()
        conv.initialise(seed: 5, stream: 0)
        let x = Tensor(zeros: [batch, conv.inputWidth])
        fill(x.data, x.count, stream: 7)
        let expected = Tensor(zeros: [batch, conv.outputWidth])
        Conv2d.forwardReference(output: expected.data, input: x.data, weight: arena.parameters(conv.weight),
                                bias: conv.bias.map { arena.parameters($0) }, batch: batch, inChannels: c, outChannels: o,
                                height: h, width: w, kernel: k, stride: stride, padding: padding)
        let y = conv.forward(x.data, batch: batch)
        let error = (0..<expected.count).map { abs(y[$0] - expected[$0]) }.max()!
        #expect(error < 1e-5, "forward c\(c) o\(o) \(h)x\(w) k\(k) s\(stride) p\(padding): max error \(error)")

        // Backward against the reference backward, both adding onto the same non-zero start.
        let dy = Tensor(zeros: [batch, conv.outputWidth])
        fill(dy.data, dy.count, stream: 8)
        let dyCopy = Tensor(zeros: [batch, conv.outputWidth]); dyCopy.copy(from: dy)
        let dxReference = Tensor(zeros: [batch, conv.inputWidth])
        let dwReference = Tensor(zeros: [conv.weight.count]), dbReference = Tensor(zeros: [o])
        for i in 0..<conv.weight.count { dwReference.data[i] = 0.5; arena.gradients(conv.weight)[i] = 0.5 }
        if let b = conv.bias { for i in 0..<o { dbReference.data[i] = -0.25; arena.gradients(b)[i] = -0.25 } }
        Conv2d.backwardReference(inputGradient: dxReference.data, weightGradient: dwReference.data,
                                 biasGradient: bias ? dbReference.data : nil, outputGradient: dyCopy.data, input: x.data,
                                 weight: arena.parameters(conv.weight), batch: batch, inChannels: c, outChannels: o,
                                 height: h, width: w, kernel: k, stride: stride, padding: padding)
        let dx = conv.backward(dy.data, batch: batch)!
        let dxError = (0..<dxReference.count).map { abs(dx[$0] - dxReference[$0]) }.max()!
        let dwError = (0..<conv.weight.count).map { abs(arena.gradients(conv.weight)[$0] - dwReference[$0]) }.max()!
        #expect(dxError < 1e-4 && dwError < 1e-4, "backward: dx error \(dxError), dW error \(dwError)")
        if let b = conv.bias {
            let dbError = (0..<o).map { abs(arena.gradients(b)[$0] - dbReference[$0]) }.max()!
            #expect(dbError < 1e-4, "backward: db error \(dbError)")
        }
    }

    @Test func convMatchesSixLoopReference() {
        convForwardMatchesReference(batch: 3, c: 2, o: 4, h: 7, w: 5, k: 3, stride: 1, padding: 1, bias: true)
        convForwardMatchesReference(batch: 2, c: 3, o: 5, h: 9, w: 7, k: 3, stride: 2, padding: 1, bias: true)
        convForwardMatchesReference(batch: 2, c: 3, o: 2, h: 6, w: 8, k: 5, stride: 2, padding: 0, bias: false)
        convForwardMatchesReference(batch: 2, c: 4, o: 3, h: 7, w: 7, k: 1, stride: 2, padding: 0, bias: true)
        // Edges where a kernel column falls wholly outside narrow images, and strides past 2.
        convForwardMatchesReference(batch: 2, c: 2, o: 3, h: 4, w: 2, k: 5, stride: 1, padding: 2, bias: true)
        convForwardMatchesReference(batch: 2, c: 2, o: 2, h: 8, w: 9, k: 3, stride: 3, padding: 2, bias: false)
        convForwardMatchesReference(batch: 1, c: 1, o: 2, h: 3, w: 3, k: 3, stride: 2, padding: 1, bias: true)
        // 900 output pixels: two images per GEMM (Conv2d.groupColumns), so 3 images make a full and a partial group.
        convForwardMatchesReference(batch: 3, c: 2, o: 3, h: 30, w: 30, k: 3, stride: 1, padding: 1, bias: true)
    }

    @Test func convGradients() {
        let arena = ParameterArena()
        let conv = Conv2d(inChannels: 3, outChannels: 4, kernel: 3, stride: 2, padding: 1, height: 7, width: 5,
                          name: "conv", arena: arena)
        arena.seal()
        conv.initialise(seed: 1, stream: 0)
        check(conv, arena: arena, batch: 2)
    }

    @Test func convWithoutInputGradientStillAccumulatesParameters() {
        let arena = ParameterArena()
        let conv = Conv2d(inChannels: 2, outChannels: 3, kernel: 3, padding: 1, height: 5, width: 5, name: "conv", arena: arena)
        arena.seal()
        conv.initialise(seed: 1, stream: 0)
        conv.computesInputGradient = false
        check(conv, arena: arena, batch: 2)
    }

    // MARK: GroupNorm, pooling

    @Test func groupNormGradients() {
        let arena = ParameterArena()
        let norm = GroupNorm(groups: 2, channels: 6, height: 3, width: 5, name: "norm", arena: arena)
        arena.seal()
        norm.initialise()
        // Non-trivial gamma and beta, so their gradients matter in dx.
        fill(arena.parameters(norm.scale), 6, stream: 9, scale: 2)
        fill(arena.parameters(norm.shift), 6, stream: 10)
        check(norm, arena: arena, batch: 3)
    }

    @Test func groupNormForwardNormalisesEachGroup() {
        let arena = ParameterArena()
        let norm = GroupNorm(groups: 3, channels: 6, height: 2, width: 3, name: "norm", arena: arena)
        arena.seal()
        norm.initialise()
        let x = Tensor(zeros: [2, norm.inputWidth])
        fill(x.data, x.count, stream: 11, scale: 5)
        let y = norm.forward(x.data, batch: 2)
        let n = 2 * 2 * 3
        for group in 0..<(2 * 3) {
            let values = (0..<n).map { Double(y[group * n + $0]) }
            let mean = values.reduce(0, +) / Double(n)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            #expect(abs(mean) < 1e-5 && abs(variance - 1) < 1e-3, "group \(group): mean \(mean) variance \(variance)")
        }
    }

    @Test func globalAveragePoolGradientsAndValues() {
        let arena = ParameterArena(); arena.seal()
        let pool = GlobalAveragePool(channels: 3, height: 3, width: 5)
        check(pool, arena: arena, batch: 2)
        let x = Tensor(zeros: [1, 30]); for i in 0..<30 { x.data[i] = Float(i) }
        let small = GlobalAveragePool(channels: 2, height: 3, width: 5)
        let y = small.forward(x.data, batch: 1)
        #expect(abs(y[0] - 7) < 1e-5 && abs(y[1] - 22) < 1e-5)
    }

    @Test func adaptiveAveragePoolGradientsAndValues() {
        let arena = ParameterArena(); arena.seal()
        // 7 -> 2 cells overlap (rows [0, 4) and [3, 7)), 5 -> 3 too: the adjoint must count the overlap twice.
        check(AdaptiveAveragePool(channels: 2, height: 7, width: 5, cells: 2), arena: arena, batch: 2)
        check(AdaptiveAveragePool(channels: 1, height: 5, width: 5, cells: 3), arena: arena, batch: 1)
        // PyTorch: AdaptiveAvgPool2d(2)(arange(35.).view(1, 1, 7, 5)) = [[8.5, 10.5], [23.5, 25.5]] (rows [0, 4), [3, 7); columns [0, 3), [2, 5)).
        let x = Tensor(zeros: [1, 35]); for i in 0..<35 { x.data[i] = Float(i) }
        let pool = AdaptiveAveragePool(channels: 1, height: 7, width: 5, cells: 2)
        let y = pool.forward(x.data, batch: 1)
        #expect((0..<4).map { y[$0] } == [8.5, 10.5, 23.5, 25.5])
        // One cell is the global average.
        let onePool = AdaptiveAveragePool(channels: 1, height: 7, width: 5, cells: 1)
        let global = onePool.forward(x.data, batch: 1)
        #expect(abs(global[0] - 17) < 1e-5)
    }

    @Test func cnnWithPoolCellsGradients() {
        let arena = ParameterArena()
        let cnn = CNN.make(channels: [4, 8], inputHeight: 7, inputWidth: 6, inputChannels: 2, representation: 5, poolCells: 2,
                           name: "encoder", arena: arena)
        arena.seal()
        cnn.initialise(seed: 4, firstStream: 0)
        #expect(cnn.outputWidth == 5 && arena.slice(named: "encoder.fc.weight")?.shape == [5, 8 * 2 * 2])
        check(cnn, arena: arena, batch: 2, step: 1e-3, perSlice: 6)
    }

    @Test func multiScalePoolGradients() {
        let arena = ParameterArena()
        let stage = ResidualBlock(inChannels: 2, outChannels: 4, stride: 2, height: 7, width: 5, groups: 2, name: "block", arena: arena)
        let layer = MultiScalePool(pool: AdaptiveAveragePool(channels: 2, height: 7, width: 5, cells: 2), stage: stage,
                                   inner: AdaptiveAveragePool(channels: 4, height: 4, width: 3, cells: 2))
        arena.seal()
        _ = stage.initialise(seed: 5, firstStream: 0)
        #expect(layer.inputWidth == 2 * 7 * 5 && layer.outputWidth == 2 * 4 + 4 * 4)
        check(layer, arena: arena, batch: 2, step: 1e-3)
    }

    @Test func nestedMultiScalePoolGradients() {
        // Two nested MultiScalePools: [pool(x) | pool(s1(x)) | pool(s2(s1(x)))], as CNN.make builds for pool_stages 3.
        let arena = ParameterArena()
        let s1 = ResidualBlock(inChannels: 2, outChannels: 3, stride: 2, height: 7, width: 5, groups: 3, name: "s1", arena: arena)
        let s2 = ResidualBlock(inChannels: 3, outChannels: 4, stride: 2, height: 4, width: 3, groups: 2, name: "s2", arena: arena)
        let inner = MultiScalePool(pool: AdaptiveAveragePool(channels: 3, height: 4, width: 3, cells: 2), stage: s2,
                                   inner: AdaptiveAveragePool(channels: 4, height: 2, width: 2, cells: 2))
        let layer = MultiScalePool(pool: AdaptiveAveragePool(channels: 2, height: 7, width: 5, cells: 2), stage: s1, inner: inner)
        arena.seal()
        _ = s2.initialise(seed: 6, firstStream: s1.initialise(seed: 6, firstStream: 0))
        #expect(layer.outputWidth == (2 + 3 + 4) * 4)
        check(layer, arena: arena, batch: 2, step: 1e-3)
    }

    @Test func cnnWithPoolStagesHasNoLinearAndPooledWidth() {
        let arena = ParameterArena()
        let cnn = CNN.make(channels: [4, 8, 8], inputHeight: 12, inputWidth: 12, representation: 0, poolCells: 2, poolStages: 3,
                           name: "encoder", arena: arena)
        arena.seal()
        #expect(cnn.outputWidth == (4 + 8 + 8) * 4 && cnn.outputWidth == CNN.pooledWidth(channels: [4, 8, 8], poolCells: 2, poolStages: 3))
        #expect(arena.slice(named: "encoder.fc.weight") == nil)
    }

    @Test func poolStagesAppendShallowerMapsToTheSameNetwork() {
        // The same parameters (same arena layout and initialisation) with one or two pooled stages:
        // the two-stage output is [pooled stage-0 maps | the one-stage output].
        func make(_ stages: Int) -> (Sequential, ParameterArena) {
            let arena = ParameterArena()
            let cnn = CNN.make(channels: [4, 8], inputHeight: 8, inputWidth: 8, representation: 0, poolCells: 2,
                               poolStages: stages, name: "encoder", arena: arena)
            arena.seal()
            cnn.initialise(seed: 9, firstStream: 0)
            return (cnn, arena)
        }
        let (one, arenaOne) = make(1), (two, arenaTwo) = make(2)
        #expect(arenaOne.count == arenaTwo.count && arenaOne.slices.map(\.name) == arenaTwo.slices.map(\.name))
        #expect((0..<arenaOne.count).allSatisfy { arenaOne.parameters[$0] == arenaTwo.parameters[$0] })
        let x = Tensor(zeros: [3, 64]); fill(x.data, x.count, stream: 6)
        let yOne = one.forward(x.data, batch: 3), yTwo = two.forward(x.data, batch: 3)
        #expect(one.outputWidth == 8 * 4 && two.outputWidth == 4 * 4 + 8 * 4)
        for row in 0..<3 {
            #expect((0..<32).allSatisfy { yTwo[row * 48 + 16 + $0] == yOne[row * 32 + $0] })
        }
    }

    // MARK: Residual block and the whole CNN

    @Test func residualBlockWithIdentitySkip() {
        let arena = ParameterArena()
        let block = ResidualBlock(inChannels: 4, outChannels: 4, stride: 1, height: 5, width: 5, groups: 2, name: "block", arena: arena)
        arena.seal()
        #expect(block.projection == nil)
        _ = block.initialise(seed: 2, firstStream: 0)
        // ReLUs inside: h = 1e-3 keeps most pre-activations on their side of the kink; `check`
        // drops the coordinates where one still crosses.
        check(block, arena: arena, batch: 2, step: 1e-3)
    }

    @Test func residualBlockWithProjectionSkip() {
        let arena = ParameterArena()
        let block = ResidualBlock(inChannels: 2, outChannels: 4, stride: 2, height: 7, width: 5, groups: 2, name: "block", arena: arena)
        arena.seal()
        #expect(block.projection != nil && block.outputHeight == 4 && block.outputImageWidth == 3)
        _ = block.initialise(seed: 3, firstStream: 0)
        check(block, arena: arena, batch: 2, step: 1e-3)
    }

    func smallCNN() -> (Sequential, ParameterArena) {
        let arena = ParameterArena()
        let cnn = CNN.make(channels: [4, 8], inputHeight: 7, inputWidth: 6, inputChannels: 2, representation: 5,
                           name: "encoder", arena: arena)
        arena.seal()
        cnn.initialise(seed: 4, firstStream: 0)
        return (cnn, arena)
    }

    @Test func wholeCNNGradients() {
        let (cnn, arena) = smallCNN()
        #expect(cnn.inputWidth == 2 * 7 * 6 && cnn.outputWidth == 5)
        check(cnn, arena: arena, batch: 2, step: 1e-3, perSlice: 6)
    }

    @Test func backwardAddsIntoGradients() {
        let (cnn, arena) = smallCNN()
        let batch = 3
        let x = Tensor(zeros: [batch, cnn.inputWidth]); fill(x.data, x.count, stream: 12)
        let v = Tensor(zeros: [batch, cnn.outputWidth]); fill(v.data, v.count, stream: 13)
        let dy = Tensor(zeros: [batch, cnn.outputWidth])
        func pass() { _ = cnn.forward(x.data, batch: batch); dy.copy(from: v); _ = cnn.backward(dy.data, batch: batch) }
        arena.zeroGradients()
        pass()
        let once = (0..<arena.count).map { arena.gradients[$0] }
        pass()
        let error = (0..<arena.count).map { abs(arena.gradients[$0] - 2 * once[$0]) / max(abs(once[$0]), 1e-3) }.max()!
        #expect(once.contains { $0 != 0 } && error < 1e-4, "second backward should double every gradient, error \(error)")
    }

    @Test func deterministic() {
        let previous = BLASThreads.current
        BLASThreads.set(1)
        defer { BLASThreads.set(previous) }
        func run() -> ([Float], [Float]) {
            let (cnn, arena) = smallCNN()
            let x = Tensor(zeros: [4, cnn.inputWidth]); fill(x.data, x.count, stream: 14)
            let y = cnn.forward(x.data, batch: 4)
            let output = (0..<(4 * cnn.outputWidth)).map { y[$0] }
            let dy = Tensor(zeros: [4, cnn.outputWidth]); fill(dy.data, dy.count, stream: 15)
            arena.zeroGradients()
            _ = cnn.backward(dy.data, batch: 4)
            return (output, (0..<arena.count).map { arena.gradients[$0] })
        }
        let a = run(), b = run()
        #expect(a.0 == b.0 && a.1 == b.1)
    }
}
