import NN
import Tensor

// A tiny arena for optimizer tests: weight "w" (2 x 3, kind .weight) and bias "b" (3, kind
// .bias). The bias starts at offset 16 (slice alignment), so the padding between them is
// exercised too. `values` lists w then b: 9 numbers.

let initialWeight: [Float] = [0.5, -1.25, 2.0, 0.0, 0.75, -0.3]
let initialBias: [Float] = [0.1, -0.2, 0.0]

/// Gradients per step (w then b), deliberately uneven in scale and including exact zeros.
let gradientSteps: [[Float]] = [
    [0.3, -0.1, 0.02, 1.5, 0.0, -0.7, 0.05, -0.5, 0.0],
    [-0.2, 0.4, 0.01, 1.0, 0.05, -0.6, 0.06, 0.3, 1e-4],
    [0.1, 0.1, -0.03, -0.5, 0.2, 0.0, -0.01, 0.2, 2.0],
]

func makeTinyArena() -> ParameterArena {
    let arena = ParameterArena()
    _ = arena.allocate(name: "w", shape: [2, 3], kind: .weight)
    _ = arena.allocate(name: "b", shape: [3], kind: .bias)
    arena.seal()
    setValues(arena.parameters, arena: arena, initialWeight + initialBias)
    return arena
}

/// Writes 9 values (w then b) into a buffer laid out like the tiny arena.
func setValues(_ tensor: Tensor, arena: ParameterArena, _ values: [Float]) {
    var k = 0
    for slice in arena.slices { for i in slice.range { tensor[i] = values[k]; k += 1 } }
}

/// Reads the 9 values (w then b) of a buffer laid out like the tiny arena.
func values(_ tensor: Tensor, arena: ParameterArena) -> [Float] {
    arena.slices.flatMap { slice in slice.range.map { tensor[$0] } }
}

/// Expected Float result vs Double expectation: |a - e| ≤ 1e-6 + 1e-5 |e|.
func isClose(_ actual: Float, _ expected: Double) -> Bool {
    abs(Double(actual) - expected) <= 1e-6 + 1e-5 * abs(expected)
}

/// Distance in units in the last place between two finite Floats of the same sign (or zero).
func ulpDistance(_ a: Float, _ b: Float) -> Int {
    func ordered(_ x: Float) -> Int64 {
        let bits = Int64(x.bitPattern & 0x7fff_ffff)
        return x.sign == .minus ? -bits : bits
    }
    return Int(abs(ordered(a) - ordered(b)))
}

/// Runs `steps` steps of an optimizer on the tiny arena with `gradientSteps`.
func runTiny(_ make: (ParameterArena) -> any Optimizer, learningRate: Float, steps: Int = 3) -> (arena: ParameterArena, optimizer: any Optimizer) {
    let arena = makeTinyArena()
    let optimizer = make(arena)
    for t in 0..<steps {
        setValues(arena.gradients, arena: arena, gradientSteps[t])
        optimizer.step(arena, learningRate: learningRate)
    }
    return (arena, optimizer)
}
