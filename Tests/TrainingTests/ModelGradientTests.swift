import Contrastive
import TestSupport
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// The whole network and loss together against finite differences: catches wiring mistakes
/// (which gradient goes where) that per-layer checks cannot.
@Suite struct ModelGradientTests {
    @Test func modelAndNTXentGradientMatchesFiniteDifferences() {
        let b = 3, v = 2 * b
        let model = ContrastiveModel(inputWidth: 6, hidden: [8], representation: 5, projection: [5, 4], activation: .gelu)
        model.initialise(seed: 1)
        let loss = NTXentLoss(temperature: 0.5)
        var rng = RandomStream(seed: 2, stream: 3)
        let input = Tensor(zeros: [v, 6])
        for i in 0..<input.count { input[i] = rng.nextUniform(-1, 1) }
        var selfIndex = [Int32](repeating: 0, count: v), positive = [Int32](repeating: 0, count: v)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        let ga = Tensor(zeros: [v, 4]), gc = Tensor(zeros: [v, 4])

        func evaluate() -> Double {
            let (_, z) = model.forward(input.data, batch: v)
            return loss.forwardBackward(anchors: z, anchorCount: v, candidates: z, candidateCount: v, dimension: 4,
                                        selfIndex: selfIndex, positiveIndex: positive, normalization: v,
                                        anchorGradient: ga.data, candidateGradient: gc.data).loss
        }
        _ = evaluate()
        Kernels.axpy(ga.data, alpha: 1, x: gc.data, count: ga.count)
        model.arena.zeroGradients()
        model.backward(ga.data, batch: v)
        let analytic = model.arena.gradients.array
        let indices = model.arena.slices.flatMap { Array($0.range) }
        let numerical = GradientCheck.numericalGradient(of: evaluate, at: model.arena.parameters.data, indices: indices, step: 1e-2)
        let error = GradientCheck.maxRelativeError(analytic: indices.map { Double(analytic[$0]) }, numerical: numerical)
        #expect(error < 2e-2)
    }
}
