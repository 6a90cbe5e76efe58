import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// Activations kept in oneDNN's blocked layout (nChw8c / nChw16c) across an encoder's layers (issue
/// 20 item 1: reorders only at the encoder's edges). The NCHW layers are the oracle: each blocked
/// kernel and layer is run on the blocked copy of the NCHW input and its results, reordered back,
/// equal the NCHW ones to rounding (the GroupNorm sums and oneDNN's convolutions add in another
/// order; 2e-6 of the largest value) or bit for bit where the arithmetic is the same (the pools).
/// Both blocks are exercised at every instruction set the kernels run at here (the kernels take the
/// block as an argument; which block oneDNN's convolutions pick depends on the CPU, asked by
/// `OneDNNConvolution.blockedActivationBlock`).
extension ConvLayerTests {
    /// x (B x C HW, NCHW) in blocks of `block` channels (a plain Swift oracle, independent of oneDNN).
    static func blocked(_ x: [Float], batch: Int, channels: Int, pixels: Int, block: Int) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for b in 0..<batch { for c in 0..<channels { for p in 0..<pixels {
            y[b * channels * pixels + (c / block) * pixels * block + p * block + c % block] = x[(b * channels + c) * pixels + p]
        } } }
        return y
    }

    /// The inverse of `blocked`.
    static func unblocked(_ y: [Float], batch: Int, channels: Int, pixels: Int, block: Int) -> [Float] {
        var x = [Float](repeating: 0, count: y.count)
        for b in 0..<batch { for c in 0..<channels { for p in 0..<pixels {
            x[(b * channels + c) * pixels + p] = y[b * channels * pixels + (c / block) * pixels * block + p * block + c % block]
        } } }
        return x
    }

    /// max |a - b| over max |b| (0 when b is all zero and a equals it).
    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max() ?? 0
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        return scale == 0 ? worst : worst / scale
    }

    static let blockedTolerance: Float = 2e-6

    /// Group counts chosen so a group is part of a block, exactly a block, or spans several (at block 8).
    static let blockedGroupNormShapes: [(b: Int, c: Int, g: Int, h: Int, w: Int)] = [(3, 16, 8, 7, 7), (2, 32, 4, 5, 3), (2, 48, 3, 4, 4), (1, 16, 1, 28, 28)]

    @Test(arguments: Kernels.availableInstructionSets, [8, 16])
    func blockedGroupNormKernelsEqualTheNCHWKernels(instructionSet: Kernels.InstructionSet, block: Int) {
        Kernels.withInstructionSet(instructionSet) {
            for (b, c, g, h, w) in Self.blockedGroupNormShapes {
                let n = b * c * h * w, hw = h * w
                let x = Tensor(zeros: [n]), dy = Tensor(zeros: [n]), skip = Tensor(zeros: [n])
                let gamma = Tensor(zeros: [c]), beta = Tensor(zeros: [c])
                fill(x.data, n, stream: 81, scale: 3); fill(dy.data, n, stream: 82); fill(skip.data, n, stream: 83)
                fill(gamma.data, c, stream: 84, scale: 2); fill(beta.data, c, stream: 85)
                func toBlocks(_ t: Tensor) -> Tensor { Tensor(shape: [n], values: Self.blocked(t.array, batch: b, channels: c, pixels: hw, block: block)) }
                func fromBlocks(_ t: Tensor) -> [Float] { Self.unblocked(t.array, batch: b, channels: c, pixels: hw, block: block) }
                let xb = toBlocks(x), skipB = toBlocks(skip)
                for activation in [Kernels.GroupNormActivation.none, .relu, .addReLU] {
                    let what = "\(b)x\(c)x\(h)x\(w), \(g) groups, block \(block), \(activation) at \(instructionSet)"
                    let y = Tensor(zeros: [n]), mean = Tensor(zeros: [b * g]), inv = Tensor(zeros: [b * g])
                    let yB = Tensor(zeros: [n]), meanB = Tensor(zeros: [b * g]), invB = Tensor(zeros: [b * g])
                    let residual = activation == .addReLU ? skip : nil, residualB = activation == .addReLU ? skipB : nil
                    Kernels.groupNormForward(y.data, mean: mean.data, inverseStd: inv.data, input: x.data, gamma: gamma.data, beta: beta.data,
                                             activation: activation, residual: residual.map { UnsafePointer($0.data) },
                                             batch: b, channels: c, groups: g, pixels: hw, epsilon: 1e-5)
                    Kernels.groupNormForwardBlocked(yB.data, mean: meanB.data, inverseStd: invB.data, input: xb.data, gamma: gamma.data,
                                                    beta: beta.data, activation: activation, residual: residualB.map { UnsafePointer($0.data) },
                                                    batch: b, channels: c, groups: g, pixels: hw, epsilon: 1e-5, block: block)
                    #expect(Self.relativeDifference(fromBlocks(yB), y.array) <= Self.blockedTolerance, "forward \(what)")
                    #expect(Self.relativeDifference(meanB.array, mean.array) <= Self.blockedTolerance
                            && Self.relativeDifference(invB.array, inv.array) <= Self.blockedTolerance, "statistics \(what)")
                    if activation != .none { #expect(y.array.contains(0) && y.array.contains { $0 > 0 }, "both ReLU sides \(what)") }

                    let dx = Tensor(zeros: [n]), dgamma = Tensor(zeros: [c]), dbeta = Tensor(zeros: [c]), g1 = dy.clone()
                    let dxB = Tensor(zeros: [n]), dgammaB = Tensor(zeros: [c]), dbetaB = Tensor(zeros: [c]), g1B = toBlocks(dy)
                    for i in 0..<c { dgamma[i] = 0.5; dbeta[i] = -0.5; dgammaB[i] = 0.5; dbetaB[i] = -0.5 }
                    Kernels.groupNormBackward(inputGradient: dx.data, scaleGradient: dgamma.data, shiftGradient: dbeta.data,
                                              outputGradient: g1.data, input: x.data, mean: mean.data, inverseStd: inv.data,
                                              gamma: gamma.data, beta: beta.data, activation: activation,
                                              output: activation == .addReLU ? UnsafePointer(y.data) : nil,
                                              batch: b, channels: c, groups: g, pixels: hw)
                    Kernels.groupNormBackwardBlocked(inputGradient: dxB.data, scaleGradient: dgammaB.data, shiftGradient: dbetaB.data,
                                                     outputGradient: g1B.data, input: xb.data, mean: meanB.data, inverseStd: invB.data,
                                                     gamma: gamma.data, beta: beta.data, activation: activation,
                                                     output: activation == .addReLU ? UnsafePointer(yB.data) : nil,
                                                     batch: b, channels: c, groups: g, pixels: hw, block: block)
                    #expect(Self.relativeDifference(fromBlocks(dxB), dx.array) <= 1e-5, "dx \(what)")
                    #expect(Self.relativeDifference(dgammaB.array, dgamma.array) <= 1e-5
                            && Self.relativeDifference(dbetaB.array, dbeta.array) <= 1e-5, "dgamma, dbeta \(what)")
                    // The masked dy left for the skip path (add + ReLU), in place.
                    #expect(fromBlocks(g1B) == g1.array, "dy after the backward \(what)")
                    // Without dx: the parameter gradients alone.
                    let dgammaOnly = Tensor(zeros: [c]), dbetaOnly = Tensor(zeros: [c]), g2B = toBlocks(dy)
                    for i in 0..<c { dgammaOnly[i] = 0.5; dbetaOnly[i] = -0.5 }
                    Kernels.groupNormBackwardBlocked(inputGradient: nil, scaleGradient: dgammaOnly.data, shiftGradient: dbetaOnly.data,
                                                     outputGradient: g2B.data, input: xb.data, mean: meanB.data, inverseStd: invB.data,
                                                     gamma: gamma.data, beta: beta.data, activation: activation,
                                                     output: activation == .addReLU ? UnsafePointer(yB.data) : nil,
                                                     batch: b, channels: c, groups: g, pixels: hw, block: block)
                    #expect(dgammaOnly.array == dgammaB.array && dbetaOnly.array == dbetaB.array, "parameter gradients without dx \(what)")
                }
            }
        }
    }

    /// The blocked kernels give the same bits at every instruction set (each lane's sums run in order).
    @Test(arguments: [8, 16])
    func blockedGroupNormKernelsAgreeAcrossInstructionSets(block: Int) {
        let (b, c, g, h, w) = (2, 32, 4, 7, 7), n = b * c * h * w
        let x = Tensor(zeros: [n]), gamma = Tensor(zeros: [c]), beta = Tensor(zeros: [c]), dy = Tensor(zeros: [n])
        fill(x.data, n, stream: 91, scale: 3); fill(gamma.data, c, stream: 92); fill(beta.data, c, stream: 93); fill(dy.data, n, stream: 94)
        let outputs = Kernels.availableInstructionSets.map { set in
            Kernels.withInstructionSet(set) { () -> [[Float]] in
                let y = Tensor(zeros: [n]), mean = Tensor(zeros: [b * g]), inv = Tensor(zeros: [b * g])
                Kernels.groupNormForwardBlocked(y.data, mean: mean.data, inverseStd: inv.data, input: x.data, gamma: gamma.data, beta: beta.data,
                                                activation: .relu, batch: b, channels: c, groups: g, pixels: h * w, epsilon: 1e-5, block: block)
                let dx = Tensor(zeros: [n]), dgamma = Tensor(zeros: [c]), dbeta = Tensor(zeros: [c]), d = dy.clone()
                Kernels.groupNormBackwardBlocked(inputGradient: dx.data, scaleGradient: dgamma.data, shiftGradient: dbeta.data,
                                                 outputGradient: d.data, input: x.data, mean: mean.data, inverseStd: inv.data,
                                                 gamma: gamma.data, beta: beta.data, activation: .relu,
                                                 batch: b, channels: c, groups: g, pixels: h * w, block: block)
                return [y.array, dx.array, dgamma.array, dbeta.array]
            }
        }
        for (set, output) in zip(Kernels.availableInstructionSets, outputs) {
            #expect(output.map { $0.map(\.bitPattern) } == outputs[0].map { $0.map(\.bitPattern) }, "block \(block): \(set) differs")
        }
    }

    /// Finite differences through the blocked GroupNorm with its ReLU fused (the layer maps its input
    /// vector to its output vector whatever the layout; 7 x 7 pixels, groups inside and across blocks).
    @Test(arguments: Kernels.availableInstructionSets, [8, 16])
    func blockedGroupNormGradients(instructionSet: Kernels.InstructionSet, block: Int) {
        Kernels.withInstructionSet(instructionSet) {
            for groups in [8, 2] {
                let arena = ParameterArena()
                let norm = GroupNorm(groups: groups, channels: 16, height: 7, width: 7, activation: .relu, block: block, name: "norm", arena: arena)
                arena.seal()
                fill(arena.parameters(norm.scale), 16, stream: 9, scale: 2)
                fill(arena.parameters(norm.shift), 16, stream: 10)
                check(norm, arena: arena, batch: 2, step: 1e-3)
            }
        }
    }

    @Test(arguments: [8, 16])
    func blockedPoolsEqualTheNCHWPoolsBitwise(block: Int) {
        let (b, c, h, w) = (3, 16, 7, 7), n = b * c * h * w
        let x = Tensor(zeros: [n]), xb = Tensor(zeros: [n])
        fill(x.data, n, stream: 95)
        xb.data.update(from: Self.blocked(x.array, batch: b, channels: c, pixels: h * w, block: block), count: n)
        let pools: [(Layer, Layer)] = [(AdaptiveAveragePool(channels: c, height: h, width: w, cells: 3),
                                        AdaptiveAveragePool(channels: c, height: h, width: w, cells: 3, block: block)),
                                       (GlobalAveragePool(channels: c, height: h, width: w), GlobalAveragePool(channels: c, height: h, width: w, block: block))]
        for (plain, blocked) in pools {
            let y = Array(UnsafeBufferPointer(start: plain.forward(x.data, batch: b), count: b * plain.outputWidth))
            let yb = Array(UnsafeBufferPointer(start: blocked.forward(xb.data, batch: b), count: b * plain.outputWidth))
            #expect(y == yb, "\(type(of: plain)) forward, block \(block)")
            let dy = Tensor(zeros: [b * plain.outputWidth])
            fill(dy.data, dy.count, stream: 96)
            let dy1 = dy.clone(), dy2 = dy.clone()
            let dx = Array(UnsafeBufferPointer(start: plain.backward(dy1.data, batch: b)!, count: n))
            let dxb = Array(UnsafeBufferPointer(start: blocked.backward(dy2.data, batch: b)!, count: n))
            withExtendedLifetime((dy1, dy2)) {}
            #expect(Self.unblocked(dxb, batch: b, channels: c, pixels: h * w, block: block) == dx, "\(type(of: plain)) backward, block \(block)")
        }
    }

    /// `layer` built twice over arenas with the same parameters, NCHW and blocked: the blocked one on the
    /// blocked copy of x and dy; outputs (reordered back by `outputToNCHW`), dx and every parameter gradient
    /// equal to `tolerance` of the largest value.
    func expectBlockedEqualsNCHW(_ make: (ParameterArena, Int) -> Layer, batch: Int, channels: (in: Int, out: Int), pixels: (in: Int, out: Int),
                                 block: Int, outputBlocked: Bool = true, initialise: (Layer) -> Void, _ what: String,
                                 sourceLocation: SourceLocation = #_sourceLocation) {
        let plainArena = ParameterArena(), blockedArena = ParameterArena()
        let plain = make(plainArena, 0), blocked = make(blockedArena, block)
        plainArena.seal(); blockedArena.seal()
        initialise(plain)
        // Weights the initialiser did not reach (layers nested in a multi-scale pool) drawn here.
        for slice in plainArena.slices where (slice.kind == .weight || slice.kind == .bias)
            && UnsafeBufferPointer(start: plainArena.parameters(slice), count: slice.count).allSatisfy({ $0 == 0 }) {
            fill(plainArena.parameters(slice), slice.count, stream: 171 + UInt64(slice.offset), scale: 0.2)
        }
        for slice in plainArena.slices where slice.kind == .normScale || slice.kind == .normShift {
            fill(plainArena.parameters(slice), slice.count, stream: 71 + UInt64(slice.offset), scale: 0.5)
            if slice.kind == .normScale { for i in 0..<slice.count { plainArena.parameters(slice)[i] += 1 } }
        }
        blockedArena.parameters.copy(from: plainArena.parameters)
        let x = Tensor(zeros: [batch * plain.inputWidth]), v = Tensor(zeros: [batch * plain.outputWidth])
        fill(x.data, x.count, stream: 72); fill(v.data, v.count, stream: 73)
        let inputBlocked = channels.in % block == 0 && blocked.inputWidth == plain.inputWidth && !(blocked is Sequential)
        func blocks(_ a: [Float], _ c: Int, _ p: Int) -> [Float] { Self.blocked(a, batch: batch, channels: c, pixels: p, block: block) }
        func unblocks(_ a: [Float], _ c: Int, _ p: Int) -> [Float] { Self.unblocked(a, batch: batch, channels: c, pixels: p, block: block) }
        func run(_ layer: Layer, _ arena: ParameterArena, blockedIO: Bool) -> [[Float]] {
            arena.zeroGradients()
            let input = blockedIO && inputBlocked ? Tensor(shape: [x.count], values: blocks(x.array, channels.in, pixels.in)) : x.clone()
            let y = layer.forward(input.data, batch: batch)
            var output = Array(UnsafeBufferPointer(start: y, count: v.count))
            let dy = blockedIO && outputBlocked ? Tensor(shape: [v.count], values: blocks(v.array, channels.out, pixels.out)) : v.clone()
            let dxPointer = layer.backward(dy.data, batch: batch)!
            var dx = Array(UnsafeBufferPointer(start: dxPointer, count: x.count))
            if blockedIO && outputBlocked { output = unblocks(output, channels.out, pixels.out) }
            if blockedIO && inputBlocked { dx = unblocks(dx, channels.in, pixels.in) }
            withExtendedLifetime((input, dy)) {}
            return [output, dx, arena.gradients.array]
        }
        let expected = run(plain, plainArena, blockedIO: false), got = run(blocked, blockedArena, blockedIO: true)
        for (part, name) in ["outputs", "dx", "parameter gradients"].enumerated() {
            let difference = Self.relativeDifference(got[part], expected[part])
            #expect(difference <= 1e-5, "\(what): \(name) differ by \(difference) of the largest", sourceLocation: sourceLocation)
        }
    }

    /// Residual blocks (identity and projection skips, drop path off and on) and the whole CNN encoder,
    /// blocked against NCHW, in oneDNN's own block for this CPU.
    @Test(.enabled(if: OneDNNConvolution.blockedActivationBlock != nil, "oneDNN's blocked convolutions are not available here"),
          arguments: [false, true])
    func blockedResidualBlocksAndCNNEqualNCHW(dropPath: Bool) {
        let block = OneDNNConvolution.blockedActivationBlock!
        let rate: Float = dropPath ? 0.5 : 0
        func key() -> DropoutKey {
            let key = DropoutKey()
            if dropPath { key.train(seed: 2, step: 11) }
            return key
        }
        for (c, o, stride) in [(16, 16, 1), (16, 32, 2)] {
            let p = (7 + 2 - 3) / stride + 1
            expectBlockedEqualsNCHW({ ResidualBlock(inChannels: c, outChannels: o, stride: stride, height: 7, width: 7, groups: 8,
                                                    dropPath: rate, key: key(), activationBlock: $1, name: "block", arena: $0) },
                                    batch: 4, channels: (c, o), pixels: (49, p * p), block: block,
                                    initialise: { _ = ($0 as! ResidualBlock).initialise(seed: 3, firstStream: 0) },
                                    "block \(c) -> \(o) stride \(stride), drop path \(dropPath), block \(block)")
        }
        // The encoder: NCHW images in, pooled rows out in either layout (the edge reorder inside).
        for (cells, stages) in [(3, 2), (1, 1)] {
            expectBlockedEqualsNCHW({ CNN.make(channels: [16, 32], inputHeight: 12, inputWidth: 12, representation: 0, poolCells: cells,
                                               poolStages: stages, dropPath: rate, key: key(), activationBlock: $1, name: "cnn", arena: $0) },
                                    batch: 3, channels: (1, 0), pixels: (144, 0), block: block, outputBlocked: false,
                                    initialise: { _ in },
                                    "CNN [16, 32], pool cells \(cells), stages \(stages), drop path \(dropPath), block \(block)")
        }
    }

    /// Finite differences through a blocked residual block with a projection (its convolutions in
    /// oneDNN on the blocked layout, its GroupNorms the blocked kernels).
    @Test(.enabled(if: OneDNNConvolution.blockedActivationBlock != nil, "oneDNN's blocked convolutions are not available here"))
    func blockedResidualBlockGradients() {
        let block = OneDNNConvolution.blockedActivationBlock!
        let arena = ParameterArena()
        let layer = ResidualBlock(inChannels: 16, outChannels: 32, stride: 2, height: 5, width: 5, groups: 8, activationBlock: block,
                                  name: "block", arena: arena)
        arena.seal()
        _ = layer.initialise(seed: 4, firstStream: 0)
        check(layer, arena: arena, batch: 2, step: 1e-2)
    }

    /// bf16 compute cannot reach a blocked convolution (im2col, its only bf16 path, reads NCHW): it stays
    /// fp32 oneDNN, the same bits as with fp32 compute.
    @Test(.enabled(if: OneDNNConvolution.blockedActivationBlock != nil, "oneDNN's blocked convolutions are not available here"))
    func bf16ComputeLeavesABlockedConvolutionInFP32() {
        let block = OneDNNConvolution.blockedActivationBlock!
        let arena = ParameterArena()
        let conv = Conv2d(inChannels: 16, outChannels: 16, kernel: 3, padding: 1, height: 6, width: 6, bias: false,
                          activationBlock: block, name: "conv", arena: arena)
        arena.seal()
        conv.initialise(seed: 1, stream: 0)
        let x = Tensor(zeros: [2 * conv.inputWidth])
        fill(x.data, x.count, stream: 97)
        let fp32 = Array(UnsafeBufferPointer(start: conv.forward(x.data, batch: 2), count: 2 * conv.outputWidth))
        conv.computePrecision = .bf16
        #expect(conv.backends == .onednn)
        let bf16 = Array(UnsafeBufferPointer(start: conv.forward(x.data, batch: 2), count: 2 * conv.outputWidth))
        #expect(bf16.map(\.bitPattern) == fp32.map(\.bitPattern))
    }

    /// The model builds the blocked encoder where oneDNN's block divides every stage, NCHW elsewhere.
    @Test func theCNNIsBlockedExactlyWhereTheBlockFillsItsChannels() {
        let block = OneDNNConvolution.blockedActivationBlock
        #expect(CNN.activationBlock(channels: [16, 32, 64]) == (block ?? 0))
        #expect(CNN.activationBlock(channels: [4, 8]) == 0)
        if let block {
            #expect(CNN.activationBlock(channels: [block, 2 * block + 4]) == 0)
            let arena = ParameterArena()
            let cnn = CNN.make(channels: [16, 32], inputHeight: 8, inputWidth: 8, representation: 0, activationBlock: block, name: "cnn", arena: arena)
            let stem = cnn.flattened.first as! Conv2d
            #expect(stem.inputBlock == 0 && stem.activationBlock == block, "the stem reads NCHW images and writes blocked maps")
            #expect(stem.backends == .onednn)
        }
    }
}
