import Testing
import NN
import Tensor

/// SimCLR's LARS, written out in Double for the tiny arena: w (6 values) adapts and decays,
/// b (3 values) does neither.
private func expectedLARS(momentum: Double, weightDecay: Double, trustCoefficient: Double, nesterov: Bool,
                          learningRate: Double, steps: Int) -> [Double] {
    var p = (initialWeight + initialBias).map(Double.init)
    var v = [Double](repeating: 0, count: p.count)
    let slices = [(0..<6, true), (6..<9, false)]
    for t in 0..<steps {
        for (range, adapt) in slices {
            let wd = adapt ? weightDecay : 0
            let d = range.map { Double(gradientSteps[t][$0]) + wd * p[$0] }
            var trust = 1.0
            if adapt {
                let parameterNorm = range.map { p[$0] * p[$0] }.reduce(0, +).squareRoot()
                let gradientNorm = d.map { $0 * $0 }.reduce(0, +).squareRoot()
                if parameterNorm > 0 && gradientNorm > 0 { trust = trustCoefficient * parameterNorm / gradientNorm }
            }
            let scaledRate = learningRate * trust
            for (k, i) in range.enumerated() {
                v[i] = momentum * v[i] + scaledRate * d[k]
                p[i] -= nesterov ? momentum * v[i] + scaledRate * d[k] : v[i]
            }
        }
    }
    return p
}

@Suite struct LARSTests {
    @Test(arguments: [false, true])
    func matchesHandComputedSteps(nesterov: Bool) {
        // A large lr so that the adapted weight updates (trust ≈ 1e-3) are well above rounding.
        let (arena, optimizer) = runTiny({ LARS(for: $0, momentum: 0.9, weightDecay: 1e-2, trustCoefficient: 0.001, nesterov: nesterov) },
                                         learningRate: 5)
        let expected = expectedLARS(momentum: 0.9, weightDecay: 1e-2, trustCoefficient: 0.001, nesterov: nesterov,
                                    learningRate: 5, steps: 3)
        let actual = values(arena.parameters, arena: arena)
        for i in actual.indices { #expect(isClose(actual[i], expected[i]), "element \(i): \(actual[i]) vs \(expected[i])") }
        #expect(optimizer.stepCount == 3)
    }

    @Test func firstStepByHand() {
        // Step 1, wd = 0: v = s g, p = p0 - s g with s = lr η ‖w‖ / ‖g_w‖ for w, s = lr for b.
        let (arena, _) = runTiny({ LARS(for: $0, momentum: 0.9, weightDecay: 0) }, learningRate: 2, steps: 1)
        let weightNorm = initialWeight.map { Double($0 * $0) }.reduce(0, +).squareRoot()
        let gradientNorm = gradientSteps[0][0..<6].map { Double($0 * $0) }.reduce(0, +).squareRoot()
        let s = 2 * 0.001 * weightNorm / gradientNorm
        #expect(isClose(arena.parameters[0], 0.5 - s * 0.3))
        #expect(isClose(arena.parameters[16], 0.1 - 2 * 0.05))  // bias: trust 1
    }

    @Test func zeroWeightsKeepTrustOne() {
        // ‖p‖ = 0 gives trust 1 (SimCLR's tf.where), so zero-initialised weights still move.
        let arena = makeTinyArena()
        setValues(arena.parameters, arena: arena, [Float](repeating: 0, count: 9))
        setValues(arena.gradients, arena: arena, gradientSteps[0])
        LARS(for: arena, momentum: 0.9, weightDecay: 0.1).step(arena, learningRate: 0.5)
        let expected: Float = -(0.5 * 0.3)
        #expect(arena.parameters[0] == expected)
    }
}
