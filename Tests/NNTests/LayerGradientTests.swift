import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// Finite-difference checks of every layer's backward: parameters and inputs.
/// The scalar checked is L = sum(y * w) for fixed random w, so dL/dy = w.
/// Tolerance (GradientCheck.compare): relative error 1e-2 (the truncation error is below 5e-4)
/// plus each difference's measured rounding error; coordinates where a ReLU changes sides
/// within the step are dropped, at most a tenth of them (GradientCheck has the analysis).
@Suite struct LayerGradientTests {
    static let tolerance = 1e-2

    func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int, stream: UInt64, scale: Float = 1) {
        var rng = RandomStream(seed: 11, stream: stream)
        for i in 0..<n { p[i] = rng.nextUniform(-scale, scale) }
    }

    /// Checks dL/dparams and dL/dinput of `layer` against finite differences.
    func check(_ layer: Layer, arena: ParameterArena, batch: Int, checkInput: Bool = true, step: Float = 1e-2) {
        let input = Tensor(zeros: [batch, layer.inputWidth])
        fill(input.data, input.count, stream: 1)
        let weights = Tensor(zeros: [batch, layer.outputWidth])
        fill(weights.data, weights.count, stream: 2)
        let dy = Tensor(zeros: [batch, layer.outputWidth])

        func loss() -> Double {
            let y = layer.forward(input.data, batch: batch)
            var sum = 0.0
            for i in 0..<weights.count { sum += Double(y[i]) * Double(weights[i]) }
            return sum
        }
        _ = loss()
        arena.zeroGradients()
        dy.copy(from: weights)
        let dx = layer.backward(dy.data, batch: batch)

        var kinks = 0, checked = 0
        func compare(_ what: String, at x: UnsafeMutablePointer<Float>, indices: [Int], analytic: [Double]) {
            let differences = GradientCheck.differences(of: loss, at: x, indices: indices, step: step,
                                                        activationPattern: { activationPattern(of: layer, batch: batch) })
            let result = GradientCheck.compare(analytic: analytic, differences, relativeTolerance: Self.tolerance)
            #expect(result.failures.isEmpty, "\(what): \(result.failures.joined(separator: "; "))")
            kinks += result.kinks
            checked += result.checked
        }

        var rng = RandomStream(seed: 3, stream: 4)
        let parameterIndices = (0..<min(arena.count, 40)).map { _ in rng.nextInt(below: arena.count) }
            .filter { i in arena.slices.contains { $0.range.contains(i) } }
        if !parameterIndices.isEmpty {
            compare("parameters", at: arena.parameters.data, indices: parameterIndices,
                    analytic: parameterIndices.map { Double(arena.gradients[$0]) })
        }
        if checkInput {
            // A layer asked for dL/dx must return it: a nil here is a bug, not "nothing to check".
            guard let dx else {
                Issue.record("\(type(of: layer)).backward returned no input gradient, though the test asks for one")
                return
            }
            let indices = Array(0..<min(input.count, 60))
            compare("input", at: input.data, indices: indices, analytic: indices.map { Double(dx[$0]) })
        }
        #expect(checked > 0, "no coordinate was compared: the layer has no parameters and its input gradient was not checked")
        #expect(kinks * 10 <= kinks + checked, "\(kinks) of \(kinks + checked) coordinates have a ReLU kink within every step tried")
    }

    @Test func linear() {
        let arena = ParameterArena()
        let layer = Linear(inputDimensions: 7, outputDimensions: 5, name: "fc", arena: arena)
        arena.seal()
        layer.initialise(seed: 1, stream: 0)
        check(layer, arena: arena, batch: 4)
    }

    @Test func linearWithFusedReLU() {
        let arena = ParameterArena()
        let layer = Linear(inputDimensions: 6, outputDimensions: 8, activation: .relu, name: "fc", arena: arena)
        arena.seal()
        layer.initialise(seed: 2, stream: 0)
        // A small step: a larger one moves pre-activations across the ReLU's kink.
        check(layer, arena: arena, batch: 5, step: 1e-3)
    }

    /// The check itself has teeth: a parameterless layer whose backward forgets dL/dx (returns
    /// nil) fails it, and so does one whose input gradient is wrong by 2 %.
    @Test func checkFailsABackwardThatReturnsNilOrIsWrong() {
        let arena = ParameterArena()
        arena.seal()
        withKnownIssue("a nil input gradient must fail the check") {
            check(BrokenReLU(width: 5, scale: nil), arena: arena, batch: 3, step: 1e-3)
        }
        withKnownIssue("a 2 % error must fail the check") {
            check(BrokenReLU(width: 5, scale: 1.02), arena: arena, batch: 3, step: 1e-3)
        }
        check(BrokenReLU(width: 5, scale: 1), arena: arena, batch: 3, step: 1e-3)      // the control: ReLU itself passes
    }

    @Test func relu() {
        let arena = ParameterArena(); arena.seal()
        check(ReLU(width: 9), arena: arena, batch: 3, step: 1e-3)
    }

    @Test func gelu() {
        let arena = ParameterArena(); arena.seal()
        check(GELU(width: 9), arena: arena, batch: 3)
    }

    @Test func layerNorm() {
        let arena = ParameterArena()
        let layer = LayerNorm(width: 8, name: "ln", arena: arena)
        arena.seal()
        layer.initialise()
        // Non-trivial gamma and beta so their gradients matter.
        fill(arena.parameters.data, arena.count, stream: 9)
        check(layer, arena: arena, batch: 4)
    }

    @Test func l2Normalize() {
        let arena = ParameterArena(); arena.seal()
        check(L2Normalize(width: 6), arena: arena, batch: 4)
    }

    @Test func mlpWithGELUAndNormalisedOutput() {
        let arena = ParameterArena()
        let mlp = MLP.make(widths: [5, 7, 6, 4], activation: .gelu, name: "mlp", arena: arena)
        let model = Sequential([mlp, L2Normalize(width: 4)])
        arena.seal()
        mlp.initialise(seed: 5, firstStream: 0)
        check(model, arena: arena, batch: 3)
    }

    @Test func linearMatchesPyTorchLayoutAndInitBounds() {
        let arena = ParameterArena()
        let layer = Linear(inputDimensions: 100, outputDimensions: 3, name: "fc", arena: arena)
        arena.seal()
        layer.initialise(seed: 0, stream: 0)
        #expect(layer.weight.shape == [3, 100])
        let bound: Float = 0.1
        let w = (0..<300).map { arena.parameters(layer.weight)[$0] }
        #expect(w.allSatisfy { abs($0) <= bound })
        #expect(w.max()! > 0.09 && w.min()! < -0.09)   // fills the interval
        // y = x W^T + b on a one-hot input picks a column of W plus b.
        let x = Tensor(zeros: [1, 100]); x[17] = 1
        let y = layer.forward(x.data, batch: 1)
        for o in 0..<3 {
            #expect(y[o] == arena.parameters(layer.weight)[o * 100 + 17] + arena.parameters(layer.bias!)[o])
        }
    }

    @Test func benchmarkModelHasTheDocumentedParameterCount() {
        let arena = ParameterArena()
        _ = MLP.make(widths: [784, 1024, 1024, 256], activation: .relu, name: "encoder", arena: arena)
        _ = MLP.make(widths: [256, 256, 128], activation: .relu, name: "projection", arena: arena)
        #expect(arena.parameterCount == 2_214_528)
    }
}

/// ReLU whose backward returns nil (`scale` nil) or dL/dx times `scale`: a layer the gradient
/// check must reject unless `scale` is 1.
final class BrokenReLU: Layer {
    let inner: ReLU
    let scale: Float?
    init(width: Int, scale: Float?) {
        inner = ReLU(width: width)
        self.scale = scale
    }
    var inputWidth: Int { inner.inputWidth }
    var outputWidth: Int { inner.outputWidth }
    var computesInputGradient: Bool {
        get { inner.computesInputGradient }
        set { inner.computesInputGradient = newValue }
    }
    func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> { inner.forward(input, batch: batch) }
    func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard let scale, let dx = inner.backward(outputGradient, batch: batch) else { return nil }
        for i in 0..<batch * inputWidth { dx[i] *= scale }
        return dx
    }
}
