import Testing
import NN
import Tensor

@Suite struct DeterminismTests {
    static let makers: [@Sendable (ParameterArena) -> any Optimizer] = [
        { SGD(for: $0, momentum: 0.9, nesterov: true, weightDecay: 1e-2) },
        { AdamW(for: $0, weightDecay: 1e-2) },
        { LARS(for: $0, momentum: 0.9, weightDecay: 1e-2) },
    ]

    /// An update depends on nothing but the tensor's own values and state (PyTorch's
    /// per-parameter semantics): three steps of the tiny arena, where w and b sit side by side
    /// (b at offset 16, padding between), give the bits of w and b each stepped alone in an arena
    /// of its own. Another slice, the padding or a tensor's position leaking into an update
    /// (or anything left over from an earlier call) would show as a difference.
    @Test(arguments: 0..<3)
    func sameInputsGiveBitIdenticalResults(index: Int) {
        let together = runTiny(Self.makers[index], learningRate: 0.5)
        let start = initialWeight + initialBias
        var alone: [Float] = [], aloneState: [String: [Float]] = [:]
        for (name, shape, kind, range) in [("w", [2, 3], ParameterArena.Kind.weight, 0..<6), ("b", [3], .bias, 6..<9)] {
            let arena = ParameterArena()
            let slice = arena.allocate(name: name, shape: shape, kind: kind)
            arena.seal()
            for (k, i) in range.enumerated() { arena.parameters[slice.offset + k] = start[i] }
            let optimizer = Self.makers[index](arena)
            for t in 0..<3 {
                for (k, i) in range.enumerated() { arena.gradients[slice.offset + k] = gradientSteps[t][i] }
                optimizer.step(arena, learningRate: 0.5)
            }
            alone += values(arena.parameters, arena: arena)
            for state in optimizer.stateBuffers { aloneState[state.name, default: []] += values(state.tensor, arena: arena) }
        }
        #expect(values(together.arena.parameters, arena: together.arena).map(\.bitPattern) == alone.map(\.bitPattern))
        #expect(alone != start)
        #expect(together.optimizer.stateBuffers.count == aloneState.count)
        for state in together.optimizer.stateBuffers {
            #expect(values(state.tensor, arena: together.arena).map(\.bitPattern) == aloneState[state.name]?.map(\.bitPattern), "\(state.name)")
        }
    }

    /// Saving stateBuffers and stepCount after step 1 and restoring them into a fresh optimizer
    /// continues exactly as the uninterrupted run (what checkpoints rely on).
    @Test(arguments: 0..<3)
    func restoredStateContinuesExactly(index: Int) {
        let uninterrupted = runTiny(Self.makers[index], learningRate: 0.5, steps: 3)

        let (arena, first) = runTiny(Self.makers[index], learningRate: 0.5, steps: 1)
        let saved = first.stateBuffers.map { (name: $0.name, tensor: $0.tensor.clone()) }
        let resumed = Self.makers[index](arena)
        #expect(resumed.stateBuffers.map(\.name) == saved.map(\.name))
        for (live, copy) in zip(resumed.stateBuffers, saved) {
            #expect(live.tensor.count == arena.count)
            live.tensor.copy(from: copy.tensor)
        }
        resumed.stepCount = first.stepCount
        for t in 1..<3 {
            setValues(arena.gradients, arena: arena, gradientSteps[t])
            resumed.step(arena, learningRate: 0.5)
        }
        #expect(arena.parameters.array.map(\.bitPattern) == uninterrupted.arena.parameters.array.map(\.bitPattern))
    }
}
