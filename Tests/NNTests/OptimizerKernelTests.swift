import Testing
import NN
import Tensor

@Suite struct OptimizerKernelTests {
    /// Kernels.adamW (C, compiled per instruction set; the avx2 and avx512 ones may contract to
    /// FMA) against adamWReference (Swift, no fusion), under every instruction set the kernels
    /// can run at here: each step starts both from the same state, on a large random buffer whose
    /// length is not a multiple of the vector width. Fusion changes roundings, so the tolerance
    /// is a few ulps of the terms summed, not of the (possibly cancelling) result:
    ///   m, v: 4 ε (|β m| + |(1-β) g|)  (v likewise with g²)
    ///   p:    4 ε (|p| + lr/c1 (|β1 m| + |(1-β1) g|) / (√v̂ + ε))
    @Test(arguments: Kernels.availableInstructionSets)
    func adamWMatchesReference(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let count = (1 << 16) + 3
            var random = RandomStream(seed: 7, stream: 1)
            let p = Tensor(zeros: [count]), m = Tensor(zeros: [count]), v = Tensor(zeros: [count]), g = Tensor(zeros: [count])
            for i in 0..<count { p[i] = random.nextNormal() }
            let (beta1, beta2, learningRate): (Float, Float, Float) = (0.9, 0.999, 1e-3)
            let epsilon = Double(Float.ulpOfOne)
            for step in 1...5 {
                for i in 0..<count { g[i] = random.nextNormal() * (i % 7 == 0 ? 1e-3 : 1) }
                let (p1, m1, v1) = (p.clone(), m.clone(), v.clone())
                Kernels.adamW(parameters: p1.data, gradients: g.data, firstMoment: m1.data, secondMoment: v1.data, count: count,
                              learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: 1e-8, weightDecay: 1e-4, step: step)
                let (p2, m2, v2) = (p.clone(), m.clone(), v.clone())
                Kernels.adamWReference(parameters: p2.data, gradients: g.data, firstMoment: m2.data, secondMoment: v2.data, count: count,
                                       learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: 1e-8, weightDecay: 1e-4, step: step)
                let c = Kernels.adamBiasCorrections(beta1: beta1, beta2: beta2, step: step)
                var failures = 0
                for i in 0..<count {
                    let gi = Double(g[i])
                    let mScale = abs(Double(beta1) * Double(m[i])) + abs(Double(1 - beta1) * gi)
                    let vScale = abs(Double(beta2) * Double(v[i])) + abs(Double(1 - beta2) * gi * gi)
                    let denominator = (Double(v2[i]) / Double(c.second)).squareRoot() + 1e-8
                    let pScale = abs(Double(p[i])) + Double(learningRate) / Double(c.first) * mScale / denominator
                    if abs(Double(m1[i]) - Double(m2[i])) > 4 * epsilon * mScale
                        || abs(Double(v1[i]) - Double(v2[i])) > 4 * epsilon * vScale
                        || abs(Double(p1[i]) - Double(p2[i])) > 4 * epsilon * pScale { failures += 1 }
                }
                #expect(failures == 0, "step \(step): \(failures) elements outside tolerance (instruction set \(Kernels.instructionSet))")
                p.copy(from: p2); m.copy(from: m2); v.copy(from: v2)
            }
        }
    }

    @Test func biasCorrectionsInDouble() {
        let c = Kernels.adamBiasCorrections(beta1: 0.9, beta2: 0.999, step: 1)
        #expect(c.first == Float(1 - Double(Float(0.9))))
        #expect(c.second == Float(1 - Double(Float(0.999))))
    }
}
