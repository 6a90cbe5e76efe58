import Testing
@testable import NN
@testable import Tensor

/// The residual bottleneck adapter: identity at initialisation, finite-difference backward, and the
/// optimizers' parameter groups (ranges left out are never touched; scale 1 changes nothing).
@Suite struct AdapterTests {
    func adapter(width: Int = 6, bottleneck: Int = 3) -> (ResidualAdapter, ParameterArena) {
        let arena = ParameterArena()
        let layer = ResidualAdapter(width: width, bottleneck: bottleneck, name: "adapter", arena: arena)
        arena.seal()
        layer.initialise(seed: 5, stream: 0)
        return (layer, arena)
    }

    @Test func startsAsTheIdentity() {
        let (layer, arena) = adapter()
        #expect(arena.slices.map(\.name) == ["adapter.down.weight", "adapter.down.bias", "adapter.up.weight", "adapter.up.bias"])
        #expect((0..<layer.down.weight.count).contains { arena.parameters(layer.down.weight)[$0] != 0 })
        let input = Tensor(zeros: [4, 6])
        LayerGradientTests().fill(input.data, input.count, stream: 9)
        let y = layer.forward(input.data, batch: 4)
        #expect((0..<input.count).allSatisfy { y[$0] == input[$0] })
    }

    /// dL/dW_down, dL/db_down, dL/dW_up, dL/db_up and dL/dh against central differences, with W_up
    /// and b_up moved off zero so the bottleneck path carries gradient.
    @Test func backwardMatchesFiniteDifferences() {
        let (layer, arena) = adapter()
        LayerGradientTests().fill(arena.parameters(layer.up.weight), layer.up.weight.count, stream: 21, scale: 0.5)
        LayerGradientTests().fill(arena.parameters(layer.up.bias!), layer.up.bias!.count, stream: 22, scale: 0.5)
        // A small step: a larger one moves pre-activations across the bottleneck ReLU's kink.
        LayerGradientTests().check(layer, arena: arena, batch: 5, step: 1e-3)
    }

    /// Without dL/dh (a frozen encoder below) backward still accumulates every parameter gradient.
    @Test func parameterGradientsWithoutInputGradient() {
        let (layer, arena) = adapter()
        LayerGradientTests().fill(arena.parameters(layer.up.weight), layer.up.weight.count, stream: 21, scale: 0.5)
        let input = Tensor(zeros: [5, 6]), dy = Tensor(zeros: [5, 6]), dyCopy = Tensor(zeros: [5, 6])
        LayerGradientTests().fill(input.data, input.count, stream: 1)
        LayerGradientTests().fill(dy.data, dy.count, stream: 2)
        dyCopy.copy(from: dy)
        _ = layer.forward(input.data, batch: 5)
        arena.zeroGradients()
        _ = layer.backward(dy.data, batch: 5)
        let full = arena.gradients.array
        layer.computesInputGradient = false
        _ = layer.forward(input.data, batch: 5)
        arena.zeroGradients()
        #expect(layer.backward(dyCopy.data, batch: 5) == nil)
        #expect(arena.gradients.array == full)
    }

    /// Groups: the offsets outside every group keep their parameters bitwise (weight decay included), a
    /// scaled group moves by scale x the step of an unscaled one (SGD), and the default is the whole arena.
    @Test func parameterGroupsStepOnlyTheirRanges() {
        let arena = ParameterArena()
        let first = arena.allocate(name: "a", shape: [20], kind: .weight)
        let second = arena.allocate(name: "b", shape: [20], kind: .weight)
        arena.seal()
        LayerGradientTests().fill(arena.parameters.data, arena.count, stream: 3)
        LayerGradientTests().fill(arena.gradients.data, arena.count, stream: 4)
        #expect(arena.segments(groups: ParameterGroup.all(arena)).map(\.range) == arena.decaySegments.map(\.range))
        let trainable = [ParameterGroup(range: second.offset..<arena.count)]
        for optimizer in [SGD(for: arena, momentum: 0.9, weightDecay: 0.1, groups: trainable),
                          AdamW(for: arena, weightDecay: 0.1, groups: trainable),
                          LARS(for: arena, weightDecay: 0.1, groups: trainable)] as [Optimizer] {
            let before = arena.parameters.array
            optimizer.step(arena, learningRate: 0.1)
            let after = arena.parameters.array
            #expect(Array(after[first.range]) == Array(before[first.range]))
            #expect(Array(after[second.range]) != Array(before[second.range]))
        }
        let start = arena.parameters.array
        SGD(for: arena, groups: [ParameterGroup(range: first.range, learningRateScale: 0.5), ParameterGroup(range: second.range)])
            .step(arena, learningRate: 0.1)
        for i in first.range { #expect(abs((arena.parameters[i] - start[i]) + 0.05 * arena.gradients[i]) <= 1e-6) }
        for i in second.range { #expect(abs((arena.parameters[i] - start[i]) + 0.1 * arena.gradients[i]) <= 1e-6) }
    }
}
