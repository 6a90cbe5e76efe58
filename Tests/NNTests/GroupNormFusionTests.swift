import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// GroupNorm fused with the ReLU after it, and with the residual block's add + ReLU (issue 20
/// item 1): the fused kernels and layers give the unfused passes' bits, forward and backward, at
/// every instruction set the kernels can run at here (the fused forms do the same float operations
/// in the same order: the mask is applied to dy before the normalisation's sums, which run in the
/// same lanes); finite differences through the fused layers.
extension ConvLayerTests {
    /// Every output of one shape's fused kernels, after checking each against the unfused passes.
    func fusedGroupNormOutputs(_ shape: (Int, Int, Int, Int, Int), at set: Kernels.InstructionSet) -> [[Float]] {
        let (b, c, g, h, w) = shape, n = b * c * h * w, hw = h * w
        let x = Tensor(zeros: [n]), dy = Tensor(zeros: [n]), skip = Tensor(zeros: [n])
        let gamma = Tensor(zeros: [c]), beta = Tensor(zeros: [c])
        fill(x.data, n, stream: 51, scale: 3); fill(dy.data, n, stream: 52); fill(skip.data, n, stream: 53)
        fill(gamma.data, c, stream: 54, scale: 2); fill(beta.data, c, stream: 55)

        func forward(_ activation: Kernels.GroupNormActivation, residual: Tensor? = nil) -> (y: Tensor, mean: Tensor, inv: Tensor) {
            let y = Tensor(zeros: [n]), mean = Tensor(zeros: [b * g]), inv = Tensor(zeros: [b * g])
            Kernels.groupNormForward(y.data, mean: mean.data, inverseStd: inv.data, input: x.data, gamma: gamma.data, beta: beta.data,
                                     activation: activation, residual: residual.map { UnsafePointer($0.data) },
                                     batch: b, channels: c, groups: g, pixels: hw, epsilon: 1e-5)
            return (y, mean, inv)
        }
        /// dx, dgamma, dbeta (accumulated onto 0.5 and -0.5) of the backward through `activation` from `gradient`.
        func backward(_ gradient: Tensor, _ activation: Kernels.GroupNormActivation, mean: Tensor, inv: Tensor,
                      output: Tensor? = nil) -> [[Float]] {
            let dx = Tensor(zeros: [n]), dgamma = Tensor(zeros: [c]), dbeta = Tensor(zeros: [c])
            for i in 0..<c { dgamma[i] = 0.5; dbeta[i] = -0.5 }
            Kernels.groupNormBackward(inputGradient: dx.data, scaleGradient: dgamma.data, shiftGradient: dbeta.data,
                                      outputGradient: gradient.data, input: x.data, mean: mean.data, inverseStd: inv.data,
                                      gamma: gamma.data, beta: beta.data, activation: activation,
                                      output: output.map { UnsafePointer($0.data) }, batch: b, channels: c, groups: g, pixels: hw)
            return [dx.array, dgamma.array, dbeta.array]
        }

        let plain = forward(.none)
        // A skip that cancels some outputs exactly (v = 0 must be masked, as the ReLU layer's y > 0 does).
        for i in Swift.stride(from: 0, to: n, by: 7) { skip[i] = -plain.y[i] }

        // GroupNorm + ReLU against GroupNorm, then the ReLU layer's kernels.
        let fusedReLU = forward(.relu)
        let relu = Tensor(zeros: [n])
        Kernels.relu(relu.data, input: plain.y.data, count: n)
        #expect(fusedReLU.y.array == relu.array && fusedReLU.mean.array == plain.mean.array && fusedReLU.inv.array == plain.inv.array,
                "GroupNorm + ReLU forward \(shape) at \(set)")
        #expect(relu.array.contains(0) && relu.array.contains { $0 > 0 }, "both sides of the ReLU should be exercised")
        let masked = Tensor(zeros: [n])
        Kernels.reluBackward(inputGradient: masked.data, outputGradient: dy.data, output: relu.data, count: n)
        let dyCopy = dy.clone()
        let fusedReLUBackward = backward(dyCopy, .relu, mean: fusedReLU.mean, inv: fusedReLU.inv)
        #expect(fusedReLUBackward == backward(masked, .none, mean: plain.mean, inv: plain.inv), "GroupNorm + ReLU backward \(shape) at \(set)")
        #expect(dyCopy.array == dy.array, "GroupNorm + ReLU backward leaves dy as it was")

        // GroupNorm + add + ReLU against GroupNorm, then the residual block's addReLU and in-place ReLU backward.
        let fusedAdd = forward(.addReLU, residual: skip)
        let added = Tensor(zeros: [n])
        Kernels.addReLU(added.data, plain.y.data, skip.data, count: n)
        #expect(fusedAdd.y.array == added.array, "GroupNorm + add + ReLU forward \(shape) at \(set)")
        let blockMasked = dy.clone()
        Kernels.reluBackward(inputGradient: blockMasked.data, outputGradient: blockMasked.data, output: added.data, count: n)
        let dyFused = dy.clone()
        let fusedAddBackward = backward(dyFused, .addReLU, mean: fusedAdd.mean, inv: fusedAdd.inv, output: fusedAdd.y)
        #expect(fusedAddBackward == backward(blockMasked.clone(), .none, mean: plain.mean, inv: plain.inv),
                "GroupNorm + add + ReLU backward \(shape) at \(set)")
        #expect(dyFused.array == blockMasked.array, "the fused backward leaves the masked dy for the skip path")
        return [fusedReLU.y.array, fusedAdd.y.array, dyFused.array] + fusedReLUBackward + fusedAddBackward
    }

    @Test func fusedGroupNormKernelsEqualTheUnfusedPassesAtEveryInstructionSet() {
        for shape in Self.groupNormShapes {
            let outputs = Kernels.availableInstructionSets.map { set in Kernels.withInstructionSet(set) { fusedGroupNormOutputs(shape, at: set) } }
            for (set, output) in zip(Kernels.availableInstructionSets, outputs) {
                #expect(output == outputs[0], "fused group norm \(shape): \(set) differs from \(Kernels.availableInstructionSets[0])")
            }
        }
    }

    /// The in-place forms of the ReLU backward and the add + ReLU (vector loops of their own since
    /// the overlap guard sent them scalar) against their loops.
    @Test(arguments: Kernels.availableInstructionSets)
    func inPlaceReLUBackwardAndAddReLUEqualTheLoops(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let n = 1001
            let y = Tensor(zeros: [n]), dy = Tensor(zeros: [n]), b = Tensor(zeros: [n])
            fill(y.data, n, stream: 61); fill(dy.data, n, stream: 62); fill(b.data, n, stream: 63)
            let expected = (0..<n).map { y[$0] > 0 ? dy[$0] : 0 }
            Kernels.reluBackward(inputGradient: dy.data, outputGradient: dy.data, output: y.data, count: n)
            #expect(dy.array == expected)
            let sums = (0..<n).map { max(y[$0] + b[$0], 0) }
            Kernels.addReLU(y.data, y.data, b.data, count: n)
            #expect(y.array == sums)
        }
    }

    /// A fused layer and its unfused twin over arenas holding the same parameters (the same names and
    /// shapes in the same order: the fused layers register exactly what the unfused ones do), then
    /// forward and backward of a fixed dy through both: the outputs, dx and every parameter gradient
    /// the same bits.
    func expectFusedEqualsUnfused(_ fused: (ParameterArena) -> Layer, _ unfused: (ParameterArena) -> Layer, batch: Int,
                                  initialise: (Layer) -> Void = { _ in }, inspect: (Layer) -> Void = { _ in }, _ what: String,
                                  sourceLocation: SourceLocation = #_sourceLocation) {
        let fusedArena = ParameterArena(), unfusedArena = ParameterArena()
        let a = fused(fusedArena), b = unfused(unfusedArena)
        fusedArena.seal(); unfusedArena.seal()
        #expect(fusedArena.slices.map(\.name) == unfusedArena.slices.map(\.name)
                && fusedArena.slices.map(\.shape) == unfusedArena.slices.map(\.shape), "\(what): parameter layouts differ",
                sourceLocation: sourceLocation)
        initialise(a)
        // Norm scales and shifts off their defaults (1 and 0), so every parameter matters.
        for slice in fusedArena.slices where slice.kind == .normScale || slice.kind == .normShift {
            fill(fusedArena.parameters(slice), slice.count, stream: 71 + UInt64(slice.offset), scale: 0.5)
            if slice.kind == .normScale { for i in 0..<slice.count { fusedArena.parameters(slice)[i] += 1 } }
        }
        unfusedArena.parameters.copy(from: fusedArena.parameters)

        let x = Tensor(zeros: [batch * a.inputWidth]), v = Tensor(zeros: [batch * a.outputWidth])
        fill(x.data, x.count, stream: 72); fill(v.data, v.count, stream: 73)
        func run(_ layer: Layer, _ arena: ParameterArena) -> [[Float]] {
            arena.zeroGradients()
            let y = layer.forward(x.data, batch: batch)
            let output = Array(UnsafeBufferPointer(start: y, count: v.count))
            let dy = v.clone()
            let dx = layer.backward(dy.data, batch: batch)!
            return [output, Array(UnsafeBufferPointer(start: dx, count: x.count)), arena.gradients.array]
        }
        let fusedRun = run(a, fusedArena), unfusedRun = run(b, unfusedArena)
        inspect(a)
        for (part, name) in ["outputs", "dx", "parameter gradients"].enumerated() {
            let first = fusedRun[part].indices.first { fusedRun[part][$0].bitPattern != unfusedRun[part][$0].bitPattern }
            #expect(first == nil, "\(what): \(name) differ first at \(first ?? 0): fused \(fusedRun[part][first ?? 0]), unfused \(unfusedRun[part][first ?? 0])",
                    sourceLocation: sourceLocation)
        }
        #expect(fusedRun[0].contains(0) && fusedRun[0].contains { $0 > 0 }, "\(what): the output ReLU should see both sides",
                sourceLocation: sourceLocation)
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func groupNormWithItsReLUFusedEqualsGroupNormThenReLU(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            expectFusedEqualsUnfused({ GroupNorm(groups: 4, channels: 8, height: 7, width: 7, activation: .relu, name: "norm", arena: $0) },
                                     { Sequential([GroupNorm(groups: 4, channels: 8, height: 7, width: 7, name: "norm", arena: $0),
                                                   ReLU(width: 8 * 7 * 7)]) },
                                     batch: 3, "GroupNorm + ReLU at \(instructionSet)")
        }
    }

    /// Basic and bottleneck blocks, identity and projection skips, with and without an active drop
    /// path (which keeps the last GroupNorm apart from the add), against the same blocks built unfused.
    @Test(arguments: Kernels.availableInstructionSets, [false, true])
    func fusedResidualBlocksEqualTheUnfusedLayers(instructionSet: Kernels.InstructionSet, dropPath: Bool) {
        Kernels.withInstructionSet(instructionSet) {
            // A key each: a key numbers the layers registered with it, and both builds must draw as layer 0.
            let rate: Float = dropPath ? 0.5 : 0
            func key() -> DropoutKey {
                let key = DropoutKey()
                if dropPath { key.train(seed: 2, step: 11) }
                return key
            }
            let initialise = { (layer: Layer) in _ = (layer as! ResidualBlock).initialise(seed: 3, firstStream: 0) }
            let inspect = { (layer: Layer) in
                let factors = Set((layer as! ResidualBlock).dropPath.factors)
                #expect(factors == (dropPath ? [0, 2] : []), "the drop path should drop some samples and keep others: \(factors)")
            }
            for (c, o, stride) in [(4, 4, 1), (2, 4, 2)] {
                expectFusedEqualsUnfused({ ResidualBlock(inChannels: c, outChannels: o, stride: stride, height: 7, width: 6, groups: 2,
                                                         dropPath: rate, key: key(), name: "block", arena: $0) },
                                         { ResidualBlock(inChannels: c, outChannels: o, stride: stride, height: 7, width: 6, groups: 2,
                                                         dropPath: rate, key: key(), fused: false, name: "block", arena: $0) },
                                         batch: 4, initialise: initialise, inspect: inspect,
                                         "basic block \(c) -> \(o), stride \(stride), drop path \(dropPath) at \(instructionSet)")
                expectFusedEqualsUnfused({ ResidualBlock(inChannels: c, bottleneck: 2, outChannels: o, stride: stride, height: 7, width: 6,
                                                         bottleneckGroups: 2, groups: 2, dropPath: rate, key: key(), name: "block", arena: $0) },
                                         { ResidualBlock(inChannels: c, bottleneck: 2, outChannels: o, stride: stride, height: 7, width: 6,
                                                         bottleneckGroups: 2, groups: 2, dropPath: rate, key: key(), fused: false,
                                                         name: "block", arena: $0) },
                                         batch: 4, initialise: initialise, inspect: inspect,
                                         "bottleneck block \(c) -> \(o), stride \(stride), drop path \(dropPath) at \(instructionSet)")
            }
        }
    }

    /// Finite differences through GroupNorm with its ReLU fused, where every sum runs full vector
    /// lanes and a tail (7 x 7 = 49 pixels, 98 a group), at each instruction set.
    @Test(arguments: Kernels.availableInstructionSets)
    func groupNormWithFusedReLUGradients(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let arena = ParameterArena()
            let norm = GroupNorm(groups: 2, channels: 4, height: 7, width: 7, activation: .relu, name: "norm", arena: arena)
            arena.seal()
            fill(arena.parameters(norm.scale), 4, stream: 9, scale: 2)
            fill(arena.parameters(norm.shift), 4, stream: 10)
            check(norm, arena: arena, batch: 2, step: 1e-3)
        }
    }

    /// Finite differences through a bottleneck block with a projection skip (three fused GroupNorms:
    /// two with their ReLU, the last with the add + ReLU) at each instruction set.
    @Test(arguments: Kernels.availableInstructionSets)
    func fusedBottleneckBlockGradients(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let arena = ParameterArena()
            let block = ResidualBlock(inChannels: 3, bottleneck: 4, outChannels: 8, stride: 2, height: 7, width: 7,
                                      bottleneckGroups: 2, groups: 4, name: "block", arena: arena)
            arena.seal()
            _ = block.initialise(seed: 5, firstStream: 0)
            check(block, arena: arena, batch: 2, step: 1e-3)
        }
    }
}
