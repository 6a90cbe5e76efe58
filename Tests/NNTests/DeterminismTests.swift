import Testing
import NN
import Tensor

@Suite struct DeterminismTests {
    static let makers: [@Sendable (ParameterArena) -> any Optimizer] = [
        { SGD(for: $0, momentum: 0.9, nesterov: true, weightDecay: 1e-2) },
        { AdamW(for: $0, weightDecay: 1e-2) },
        { LARS(for: $0, momentum: 0.9, weightDecay: 1e-2) },
    ]

    @Test(arguments: 0..<3)
    func sameInputsGiveBitIdenticalResults(index: Int) {
        let a = runTiny(Self.makers[index], learningRate: 0.5)
        let b = runTiny(Self.makers[index], learningRate: 0.5)
        #expect(a.arena.parameters.array.map(\.bitPattern) == b.arena.parameters.array.map(\.bitPattern))
        for (x, y) in zip(a.optimizer.stateBuffers, b.optimizer.stateBuffers) {
            #expect(x.name == y.name)
            #expect(x.tensor.array.map(\.bitPattern) == y.tensor.array.map(\.bitPattern))
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
