import Testing
import NN
import Tensor

/// torch.optim.SGD, written out in Double for the tiny arena (9 values, no slice kinds).
private func expectedSGD(momentum: Double, dampening: Double, nesterov: Bool, weightDecay: Double,
                         learningRate: Double, steps: Int) -> [Double] {
    var p = (initialWeight + initialBias).map(Double.init)
    var b = [Double](repeating: 0, count: p.count)
    for t in 0..<steps {
        for i in p.indices {
            let d = Double(gradientSteps[t][i]) + weightDecay * p[i]
            b[i] = t == 0 ? d : momentum * b[i] + (1 - dampening) * d
            let update = momentum == 0 ? d : (nesterov ? d + momentum * b[i] : b[i])
            p[i] -= learningRate * update
        }
    }
    return p
}

@Suite struct SGDTests {
    struct Configuration: Sendable {
        var momentum: Float, dampening: Float, nesterov: Bool, weightDecay: Float
    }

    @Test(arguments: [
        Configuration(momentum: 0, dampening: 0, nesterov: false, weightDecay: 0),
        Configuration(momentum: 0, dampening: 0, nesterov: false, weightDecay: 0.1),
        Configuration(momentum: 0.9, dampening: 0, nesterov: false, weightDecay: 0.1),
        Configuration(momentum: 0.9, dampening: 0.3, nesterov: false, weightDecay: 0),
        Configuration(momentum: 0.9, dampening: 0, nesterov: true, weightDecay: 0.05),
    ])
    func matchesHandComputedSteps(configuration: Configuration) {
        let (arena, optimizer) = runTiny({
            SGD(for: $0, momentum: configuration.momentum, dampening: configuration.dampening,
                nesterov: configuration.nesterov, weightDecay: configuration.weightDecay)
        }, learningRate: 0.1)
        let expected = expectedSGD(momentum: Double(configuration.momentum), dampening: Double(configuration.dampening),
                                   nesterov: configuration.nesterov, weightDecay: Double(configuration.weightDecay),
                                   learningRate: 0.1, steps: 3)
        let actual = values(arena.parameters, arena: arena)
        for i in actual.indices { #expect(isClose(actual[i], expected[i]), "element \(i): \(actual[i]) vs \(expected[i])") }
        #expect(optimizer.stepCount == 3)
        #expect(optimizer.stateBuffers.count == (configuration.momentum == 0 ? 0 : 1))
    }

    @Test func nesterovFirstStepByHand() {
        // One step, μ = 0.9, wd = 0, lr = 0.1: b = g, u = g + 0.9 g = 1.9 g, p = p0 - 0.19 g.
        let (arena, _) = runTiny({ SGD(for: $0, momentum: 0.9, nesterov: true) }, learningRate: 0.1, steps: 1)
        #expect(isClose(arena.parameters[0], 0.5 - 0.19 * 0.3))
        #expect(isClose(arena.parameters[3], 0.0 - 0.19 * 1.5))
    }

    @Test func leavesGradientsAlone() {
        let (arena, _) = runTiny({ SGD(for: $0, momentum: 0.9, weightDecay: 0.1) }, learningRate: 0.1, steps: 1)
        #expect(values(arena.gradients, arena: arena) == gradientSteps[0])
    }
}
