import Foundation
import Testing
@testable import Tensor

/// Every fast kernel against the plain reference beside it, under every instruction set the
/// C kernels can run at here (`Kernels.withInstructionSet`; CI also caps the whole process with
/// CONTRAST_KERNELS_ISA, launch/test.sh).
@Suite struct KernelTests {
    func random(_ count: Int, stream: UInt64, low: Float = -2, high: Float = 2) -> Tensor {
        var rng = RandomStream(seed: 7, stream: stream)
        let t = Tensor(zeros: [count])
        for i in 0..<count { t[i] = rng.nextUniform(low, high) }
        return t
    }

    /// A thread's cap sets the level its kernels report (and run at), never above the process's,
    /// and is lifted afterwards; the portable bodies are always there.
    @Test func instructionSetCapIsTheThreadsAndIsLifted() {
        let available = Kernels.availableInstructionSets, best = available.last!
        #expect(available.first == .sse2)
        #expect(Kernels.instructionSet == best.rawValue)
        for set in Kernels.InstructionSet.allCases {
            Kernels.withInstructionSet(set) { #expect(Kernels.instructionSet == min(set, best).rawValue) }
        }
        #expect(Kernels.instructionSet == best.rawValue)
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func biasAddMatchesReference(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let rows = 13, cols = 67
            let y = random(rows * cols, stream: 1), bias = random(cols, stream: 2)
            let expected = y.clone()
            Kernels.addBiasRows(y.data, bias: bias.data, rows: rows, columns: cols)
            Kernels.addBiasRowsReference(expected.data, bias: bias.data, rows: rows, columns: cols)
            #expect(y.array == expected.array)
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func reluForwardAndBackwardMatchReference(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let n = 1001
            let y = random(n, stream: 3), expected = y.clone()
            Kernels.reluInPlace(y.data, count: n)
            Kernels.reluInPlaceReference(expected.data, count: n)
            #expect(y.array == expected.array)
            let dy = random(n, stream: 4)
            let dx = Tensor(zeros: [n]), dxReference = Tensor(zeros: [n])
            Kernels.reluBackward(inputGradient: dx.data, outputGradient: dy.data, output: y.data, count: n)
            Kernels.reluBackwardReference(inputGradient: dxReference.data, outputGradient: dy.data, output: y.data, count: n)
            #expect(dx.array == dxReference.array)
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func biasGradientMatchesReference(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let rows = 40, cols = 33
            let dy = random(rows * cols, stream: 5)
            let db = random(cols, stream: 6), expected = db.clone()
            Kernels.biasGradient(db.data, outputGradient: dy.data, rows: rows, columns: cols)
            Kernels.biasGradientReference(expected.data, outputGradient: dy.data, rows: rows, columns: cols)
            for c in 0..<cols { #expect(abs(db[c] - expected[c]) <= 1e-5, "column \(c)") }
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func expSumMatchesFoundationExp(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let n = 517
            let x = random(n, stream: 8, low: -80, high: 10)
            x[3] = -.infinity
            let y = Tensor(zeros: [n]), expected = Tensor(zeros: [n])
            let sum = Kernels.expSum(y.data, input: x.data, count: n, shift: 1.5)
            let sumReference = Kernels.expSumReference(expected.data, input: x.data, count: n, shift: 1.5)
            #expect(y[3] == 0)
            for i in 0..<n {
                let tolerance = 4 * expected[i].ulp
                #expect(abs(y[i] - expected[i]) <= tolerance, "exp(\(x[i]) - 1.5): \(y[i]) vs \(expected[i])")
            }
            #expect(abs(sum - sumReference) <= 1e-5 * sumReference)
            #expect(Kernels.maximum(x.data, count: n) == x.array.max()!)
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func allFiniteFindsInfinityAndNaN(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let x = random(1003, stream: 13)
            #expect(Kernels.allFinite(x.data, count: x.count))
            for bad in [Float.infinity, -.infinity, .nan, .signalingNaN] {
                let saved = x[777]
                x[777] = bad
                #expect(!Kernels.allFinite(x.data, count: x.count))
                x[777] = saved
            }
            x[0] = .greatestFiniteMagnitude
            #expect(Kernels.allFinite(x.data, count: x.count))
        }
    }

    @Test func sumOfSquaresMatchesDouble() {
        let x = random(10_007, stream: 9)
        let expected = x.array.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(Kernels.sumOfSquares(x.data, count: x.count) - expected) <= 1e-6 * expected)
    }

    @Test func l2NormalizeRowsGivesUnitRows() {
        let rows = 5, cols = 9
        let u = random(rows * cols, stream: 10)
        let z = Tensor(zeros: [rows, cols]), norms = Tensor(zeros: [rows])
        Kernels.l2NormalizeRows(z.data, norms: norms.data, input: u.data, rows: rows, columns: cols)
        for r in 0..<rows {
            var sum: Float = 0
            for c in 0..<cols { sum += z[r * cols + c] * z[r * cols + c] }
            #expect(abs(sum - 1) < 1e-5)
        }
    }

    @Test func logSoftmaxRowsExponentiateToOne() {
        let rows = 4, cols = 11
        let x = random(rows * cols, stream: 11, low: -30, high: 30)
        let y = Tensor(zeros: [rows, cols]), lse = Tensor(zeros: [rows])
        Kernels.logSoftmaxRows(y.data, logSumExp: lse.data, input: x.data, rows: rows, columns: cols)
        for r in 0..<rows {
            var sum = 0.0
            for c in 0..<cols { sum += exp(Double(y[r * cols + c])) }
            #expect(abs(sum - 1) < 1e-5)
        }
    }

    /// The vectorised GELU (rational erf, polynomial exp) against its definition in Double, over
    /// the range where erf bends and past its clamp at |x/√2| = 4, forward and backward.
    @Test(arguments: Kernels.availableInstructionSets)
    func geluMatchesDefinition(instructionSet: Kernels.InstructionSet) {
        let n = 4099
        let x = random(n, stream: 12, low: -9, high: 9), dy = random(n, stream: 13)
        let y = Tensor(zeros: [n]), dx = Tensor(zeros: [n])
        for i in 0..<40 { x[i] = Float(i - 20) / 4 }
        Kernels.withInstructionSet(instructionSet) {
            Kernels.gelu(y.data, input: x.data, count: n)
            Kernels.geluBackward(inputGradient: dx.data, outputGradient: dy.data, input: x.data, count: n)
        }
        var worstForward = 0.0, worstBackward = 0.0
        for i in 0..<n {
            let v = Double(x[i]), cdf = 0.5 * (1 + erf(v / 2.0.squareRoot()))
            let pdf = exp(-0.5 * v * v) / (2 * Double.pi).squareRoot()
            worstForward = max(worstForward, abs(Double(y[i]) - v * cdf) / max(1, abs(v)))
            worstBackward = max(worstBackward, abs(Double(dx[i]) - Double(dy[i]) * (cdf + v * pdf)))
        }
        #expect(worstForward < 1e-6, "GELU \(instructionSet): worst error \(worstForward)")
        #expect(worstBackward < 1e-6, "GELU backward \(instructionSet): worst error \(worstBackward)")
    }
}

@Suite struct FusedKernelTests {
    @Test(arguments: Kernels.availableInstructionSets)
    func biasReLUForwardAndBackwardMatchReference(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let rows = 9, cols = 70
            var rng = RandomStream(seed: 1, stream: 77)
            let y = Tensor(zeros: [rows, cols]), bias = Tensor(zeros: [cols])
            for i in 0..<y.count { y[i] = rng.nextUniform(-1, 1) }
            for i in 0..<cols { bias[i] = rng.nextUniform(-0.5, 0.5) }
            let expected = y.clone()
            Kernels.addBiasReLURows(y.data, bias: bias.data, rows: rows, columns: cols)
            Kernels.addBiasReLURowsReference(expected.data, bias: bias.data, rows: rows, columns: cols)
            #expect(y.array == expected.array)

            let dy = Tensor(zeros: [rows, cols])
            for i in 0..<dy.count { dy[i] = rng.nextUniform(-1, 1) }
            let dyReference = dy.clone()
            let db = Tensor(shape: [cols], repeating: 0.25), dbReference = Tensor(shape: [cols], repeating: 0.25)
            Kernels.reluBiasBackward(dy.data, output: y.data, biasGradient: db.data, rows: rows, columns: cols)
            Kernels.reluBiasBackwardReference(dyReference.data, output: y.data, biasGradient: dbReference.data, rows: rows, columns: cols)
            #expect(dy.array == dyReference.array)
            for c in 0..<cols { #expect(abs(db[c] - dbReference[c]) <= 1e-5) }
        }
    }
}
