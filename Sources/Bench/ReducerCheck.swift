import Training
import Distributed
import Foundation
import NN
import Tensor

/// `contrast reducer-check`'s checks on this rank: the fp16 gradient all-reduce skips an overflowing
/// step on every rank, recovers, keeps gradients near fp16's smallest normal, and grows the scale
/// back after its window. Throws a `CheckFailure` naming the first check that fails.
public enum ReducerCheck {
    public static func run(communicator: Communicator) throws {
        let p = Float(communicator.size)
        let arena = ParameterArena()
        _ = arena.allocate(name: "w", shape: [1000], kind: .weight)
        _ = arena.allocate(name: "b", shape: [10], kind: .bias)
        arena.seal()
        // Small buckets so the check covers several in flight at once.
        let reducer = GradientReducer(gradients: arena.gradients.data, tensors: arena.slices.map(\.range), communicator: communicator,
                                      precision: .fp16, bucketBytes: 64, initialScale: 1024, scaleWindow: 2)
        func reduce(_ fill: (Int) -> Float) throws -> Bool {
            for i in 0..<arena.count { arena.gradients[i] = fill(i) }
            reducer.beginStep()
            reducer.gradientsFinal(from: 0)
            return try reducer.finish()
        }
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw CheckFailure(description: "reducer-check failed on rank \(communicator.rank): \(message)") }
        }

        // 1. One rank's huge gradient overflows fp16 after scaling: skipped everywhere, scale halves.
        let huge = try reduce { i in communicator.rank == communicator.size - 1 && i == 5 ? 1e6 : 0.5 }
        try require(!huge && reducer.skippedSteps == 1 && reducer.scale == 512, "overflow not skipped (scale \(reducer.scale))")
        // 2. Ordinary gradients go through; sums are exact for these values.
        try require(try reduce { _ in 0.5 }, "clean step skipped")
        try require((0..<arena.count).allSatisfy { arena.gradients[$0] == 0.5 * p }, "wrong sum of 0.5")
        // 3. Near fp16's smallest normal (6.1e-5) and far below it (1e-7, a subnormal
        //    unscaled): the scale keeps them, to fp16's relative precision.
        try require(try reduce { i in i % 2 == 0 ? 6.2e-5 : 1e-7 }, "tiny step skipped")
        for i in 0..<arena.count {
            let expected: Float = (i % 2 == 0 ? 6.2e-5 : 1e-7) * p
            try require(abs(arena.gradients[i] - expected) <= expected * 2e-3, "gradient \(i): \(arena.gradients[i]) vs \(expected)")
        }
        // 4. After `scaleWindow` clean steps the scale has doubled again.
        try require(reducer.scale == 1024, "scale did not grow back: \(reducer.scale)")
    }
}
