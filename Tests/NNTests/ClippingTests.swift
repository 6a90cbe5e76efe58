import Testing
import NN
import Tensor

@Suite struct ClippingTests {
    private func arena(gradients: [Float]) -> ParameterArena {
        let arena = makeTinyArena()
        setValues(arena.gradients, arena: arena, gradients)
        return arena
    }

    @Test func normSpansAllSlices() {
        // 3 in w, 4 in b: norm 5.
        let a = arena(gradients: [3, 0, 0, 0, 0, 0, 0, 4, 0])
        #expect(globalGradientNorm(a) == 5)
    }

    @Test func clipsToMaxNorm() {
        let a = arena(gradients: [3, 0, 0, 0, 0, 0, 0, 4, 0])
        let before = clipGradientNorm(a, maxNorm: 1)
        #expect(before == 5)
        let coefficient = Float(1 / (5 + 1e-6))  // torch: max_norm / (total_norm + 1e-6)
        #expect(values(a.gradients, arena: a) == [3 * coefficient, 0, 0, 0, 0, 0, 0, 4 * coefficient, 0])
        #expect(abs(globalGradientNorm(a) - 1) < 1e-6)
    }

    @Test func leavesSmallGradientsBitIdentical() {
        let a = arena(gradients: gradientSteps[2])
        let norm = clipGradientNorm(a, maxNorm: 100)
        #expect(abs(norm - globalGradientNorm(a)) == 0)
        #expect(values(a.gradients, arena: a) == gradientSteps[2])
    }

    @Test func nonFiniteNormLeavesGradients() {
        var gradients = gradientSteps[0]
        gradients[4] = .infinity
        let a = arena(gradients: gradients)
        #expect(clipGradientNorm(a, maxNorm: 1) == .infinity)
        #expect(values(a.gradients, arena: a) == gradients)
    }
}
