import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// The convolutional encoder's C kernels (CKernels/conv.c) against their plain Swift oracles,
/// under every instruction set the kernels can run at here: im2col / col2im and the residual
/// add + ReLU bit for bit (the same arithmetic), group normalisation to rounding (its sums run in
/// lanes) and bit for bit across instruction sets; finite differences through GroupNorm at shapes
/// wide enough to run the vector lanes, not only their scalar tails.
extension ConvLayerTests {
    /// (channels, height, width, kernel, stride, padding): the CNN's shapes, the edges of
    /// `convMatchesSixLoopReference` (kernel columns wholly outside narrow images, strides past 2).
    static let im2colShapes: [(Int, Int, Int, Int, Int, Int)] = [
        (1, 28, 28, 3, 1, 1), (16, 28, 28, 3, 1, 1), (16, 28, 28, 3, 2, 1), (16, 28, 28, 1, 2, 0),
        (32, 7, 7, 3, 1, 1), (3, 9, 7, 3, 2, 1), (3, 6, 8, 5, 2, 0), (2, 4, 2, 5, 1, 2), (2, 8, 9, 3, 3, 2),
    ]

    @Test(arguments: Kernels.availableInstructionSets)
    func im2colAndCol2imEqualTheSwiftOracleBitForBit(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            for (c, h, w, k, stride, padding) in Self.im2colShapes {
                let arena = ParameterArena()
                let conv = Conv2d(inChannels: c, outChannels: 2, kernel: k, stride: stride, padding: padding,
                                  height: h, width: w, bias: false, name: "conv", arena: arena)
                let images = 3, pq = conv.outputHeight * conv.outputImageWidth, ckk = c * k * k
                // Columns one image wider than the images, so a kernel writing past its image's block shows.
                let ld = (images + 1) * pq
                let x = Tensor(zeros: [images * conv.inputWidth])
                fill(x.data, x.count, stream: 21)
                let cols = Tensor(zeros: [ckk * ld]), expected = Tensor(zeros: [ckk * ld])
                for i in 0..<cols.count { cols[i] = 7; expected[i] = 7 }
                Kernels.im2col(cols.data, images: x.data, count: images, columnStride: ld, shape: conv.geometry)
                for g in 0..<images { conv.im2colReference(expected.data + g * pq, image: x.data + g * conv.inputWidth, columnStride: ld) }
                #expect(cols.array == expected.array, "im2col c\(c) \(h)x\(w) k\(k) s\(stride) p\(padding) at \(instructionSet)")

                let dcols = Tensor(zeros: [ckk * ld])
                fill(dcols.data, dcols.count, stream: 22)
                let dx = Tensor(zeros: [images * conv.inputWidth]), dxExpected = Tensor(zeros: [images * conv.inputWidth])
                fill(dx.data, dx.count, stream: 23); dxExpected.copy(from: dx)
                Kernels.col2im(dx.data, columns: dcols.data, count: images, columnStride: ld, shape: conv.geometry)
                for g in 0..<images {
                    conv.col2imReference(dxExpected.data + g * conv.inputWidth, columns: dcols.data + g * pq, columnStride: ld)
                }
                #expect(dx.array == dxExpected.array, "col2im c\(c) \(h)x\(w) k\(k) s\(stride) p\(padding) at \(instructionSet)")
            }
        }
    }

    /// (batch, channels, groups, height, width): 28 x 28 and 7 x 7 as in the CNN, and sizes below
    /// and between the 16 lanes.
    static let groupNormShapes: [(Int, Int, Int, Int, Int)] = [(3, 16, 8, 28, 28), (2, 64, 8, 7, 7), (2, 6, 3, 3, 5), (2, 4, 1, 1, 1)]

    func groupNormKernelOutputs(_ shape: (Int, Int, Int, Int, Int)) -> [[Float]] {
        let (b, c, g, h, w) = shape, n = b * c * h * w
        let x = Tensor(zeros: [n]), dy = Tensor(zeros: [n]), gamma = Tensor(zeros: [c]), beta = Tensor(zeros: [c])
        fill(x.data, n, stream: 31, scale: 3); fill(dy.data, n, stream: 32)
        fill(gamma.data, c, stream: 33, scale: 2); fill(beta.data, c, stream: 34)
        for i in 0..<n { x[i] += 1.5 }   // an offset mean, so the centring matters
        let y = Tensor(zeros: [n]), mean = Tensor(zeros: [b * g]), inv = Tensor(zeros: [b * g])
        Kernels.groupNormForward(y.data, mean: mean.data, inverseStd: inv.data, input: x.data, gamma: gamma.data, beta: beta.data,
                                 batch: b, channels: c, groups: g, pixels: h * w, epsilon: 1e-5)
        let dx = Tensor(zeros: [n]), dgamma = Tensor(zeros: [c]), dbeta = Tensor(zeros: [c])
        for i in 0..<c { dgamma[i] = 0.5; dbeta[i] = -0.5 }
        Kernels.groupNormBackward(inputGradient: dx.data, scaleGradient: dgamma.data, shiftGradient: dbeta.data, outputGradient: dy.data,
                                  input: x.data, mean: mean.data, inverseStd: inv.data, gamma: gamma.data, beta: beta.data,
                                  batch: b, channels: c, groups: g, pixels: h * w)

        let yR = Tensor(zeros: [n]), meanR = Tensor(zeros: [b * g]), invR = Tensor(zeros: [b * g])
        GroupNorm.forwardReference(output: yR.data, mean: meanR.data, inverseStd: invR.data, input: x.data, gamma: gamma.data,
                                   beta: beta.data, batch: b, channels: c, groups: g, pixels: h * w, epsilon: 1e-5)
        let dxR = Tensor(zeros: [n]), dgammaR = Tensor(zeros: [c]), dbetaR = Tensor(zeros: [c])
        for i in 0..<c { dgammaR[i] = 0.5; dbetaR[i] = -0.5 }
        GroupNorm.backwardReference(inputGradient: dxR.data, scaleGradient: dgammaR.data, shiftGradient: dbetaR.data,
                                    outputGradient: dy.data, input: x.data, mean: meanR.data, inverseStd: invR.data, gamma: gamma.data,
                                    batch: b, channels: c, groups: g, pixels: h * w)
        func close(_ what: String, _ a: Tensor, _ r: Tensor, _ tolerance: Float) {
            let scale = max(1, (0..<r.count).map { abs(r[$0]) }.max()!)
            let error = (0..<r.count).map { abs(a[$0] - r[$0]) }.max()!
            #expect(error <= tolerance * scale, "group norm \(shape) \(what): max error \(error) against the Swift oracle (scale \(scale))")
        }
        close("y", y, yR, 1e-5); close("mean", mean, meanR, 1e-6); close("1/std", inv, invR, 1e-5)
        // Gradients sum hundreds of terms in float, in lanes here and in sequence in the oracle.
        close("dx", dx, dxR, 1e-4); close("dgamma", dgamma, dgammaR, 1e-4); close("dbeta", dbeta, dbetaR, 1e-4)
        return [y.array, mean.array, inv.array, dx.array, dgamma.array, dbeta.array]
    }

    @Test func groupNormKernelMatchesTheSwiftOracleAndIsTheSameAtEveryInstructionSet() {
        for shape in Self.groupNormShapes {
            let outputs = Kernels.availableInstructionSets.map { set in Kernels.withInstructionSet(set) { groupNormKernelOutputs(shape) } }
            for (set, output) in zip(Kernels.availableInstructionSets, outputs) {
                #expect(output == outputs[0], "group norm \(shape): \(set) differs from \(Kernels.availableInstructionSets[0])")
            }
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func addReLUAndReLUCopyEqualTheLoopsBitForBit(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let n = 1001
            let a = Tensor(zeros: [n]), b = Tensor(zeros: [n]), y = Tensor(zeros: [n])
            fill(a.data, n, stream: 41); fill(b.data, n, stream: 42)
            Kernels.addReLU(y.data, a.data, b.data, count: n)
            #expect(y.array == (0..<n).map { max(a[$0] + b[$0], 0) })
            Kernels.addReLU(a.data, a.data, b.data, count: n)   // in place, as the residual block may
            #expect(a.array == y.array)
            // The ReLU layer's one-pass copy and clamp against a copy then the reference clamp.
            let r = Tensor(zeros: [n]), expected = b.clone()
            Kernels.relu(r.data, input: b.data, count: n)
            Kernels.reluInPlaceReference(expected.data, count: n)
            #expect(r.array == expected.array)
        }
    }

    /// Finite differences through GroupNorm where every sum runs full vector lanes and a tail
    /// (7 x 7 = 49 pixels, 98 per group), at each instruction set.
    @Test(arguments: Kernels.availableInstructionSets)
    func groupNormGradientsAtLaneWidths(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let arena = ParameterArena()
            let norm = GroupNorm(groups: 2, channels: 4, height: 7, width: 7, name: "norm", arena: arena)
            arena.seal()
            norm.initialise()
            fill(arena.parameters(norm.scale), 4, stream: 9, scale: 2)
            fill(arena.parameters(norm.shift), 4, stream: 10)
            check(norm, arena: arena, batch: 2)
        }
    }

    /// Finite differences through a residual block (im2col, col2im, GroupNorm over 2 x 7 x 7 = 98
    /// values a group, the fused add + ReLU) at each instruction set. Small on purpose: at the CNN's
    /// 16 x 28 x 28 nearly every coordinate moves some ReLU across its kink within the step, and the
    /// kernels at those widths are checked bit for bit against the oracles above.
    @Test(arguments: Kernels.availableInstructionSets)
    func residualBlockGradientsAtEachInstructionSet(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let arena = ParameterArena()
            let block = ResidualBlock(inChannels: 4, outChannels: 4, stride: 1, height: 7, width: 7, groups: 2, name: "b", arena: arena)
            arena.seal()
            _ = block.initialise(seed: 3, firstStream: 0)
            check(block, arena: arena, batch: 2)
        }
    }

    /// A group's column matrix stays within `Conv2d.columnBudget` (one image at the CNN's first
    /// stage, where two made a 0.9 MB matrix), and a batch split into several groups still equals
    /// the six-loop reference.
    @Test func columnMatricesStayWithinTheBudget() {
        for (c, h, k, stride) in [(16, 28, 3, 1), (16, 28, 3, 2), (32, 14, 3, 1), (64, 7, 3, 1), (1, 28, 3, 1), (16, 28, 1, 2)] {
            let conv = Conv2d(inChannels: c, outChannels: c, kernel: k, stride: stride, padding: k / 2,
                              height: h, width: h, bias: false, name: "conv", arena: ParameterArena())
            let g = conv.groupSize(batch: 512), pq = conv.outputHeight * conv.outputImageWidth
            #expect(g >= 1 && c * k * k * g * pq <= max(Conv2d.columnBudget, c * k * k * pq), "c\(c) \(h)x\(h) k\(k) s\(stride): \(g) images")
        }
        let first = Conv2d(inChannels: 16, outChannels: 16, kernel: 3, padding: 1, height: 28, width: 28, bias: false,
                           name: "conv", arena: ParameterArena())
        #expect(first.groupSize(batch: 512) == 1)
        // 16 x 20 x 20: the budget (2 images), not groupColumns (5), sets the groups; 3 images make two.
        let bound = Conv2d(inChannels: 16, outChannels: 4, kernel: 3, padding: 1, height: 20, width: 20, bias: false,
                           name: "conv", arena: ParameterArena())
        #expect(bound.groupSize(batch: 3) == 2)
        convForwardMatchesReference(batch: 3, c: 16, o: 4, h: 20, w: 20, k: 3, stride: 1, padding: 1, bias: false)
    }
}
