import Foundation
import TestSupport
import Testing
@testable import Tensor

/// GradientCheck's own accounting, on functions whose derivative, noise and kinks are known:
/// the noise level it measures, the kinks it finds, and that a wrong derivative fails.
@Suite struct GradientCheckTests {
    /// Uniform noise of standard deviation `sigma`, a fixed function of the Float's bits (so
    /// repeatable, and uncorrelated between neighbouring Floats, like rounding error).
    func noise(_ value: Float, sigma: Double) -> Double {
        var z = UInt64(value.bitPattern) &* 0x9E37_79B9_7F4A_7C15
        z ^= z >> 29; z = z &* 0xBF58_476D_1CE4_E5B9; z ^= z >> 32
        return (Double(z % 1_000_001) / 500_000 - 1) * 3.0.squareRoot() * sigma
    }

    @Test func measuresTheNoiseLevelAndAllowsForIt() {
        let sigma = 1e-6
        var x: [Float] = [0.3, -0.7, 1.1, 0.05, 0]
        x.withUnsafeMutableBufferPointer { p in
            let x = p.baseAddress!
            let f = { (0..<5).reduce(0.0) { $0 + sin(Double(x[$1])) + noise(x[$1], sigma: sigma) } }
            let differences = GradientCheck.differences(of: f, at: x, indices: Array(0..<5), step: 1e-3)
            for d in differences {
                #expect(!d.crossesKink && d.step == 1e-3)
                #expect(d.noise > sigma / 2 && d.noise < 2 * sigma, "noise level \(d.noise), made with \(sigma)")
                // The noise moves the difference by about sigma / h = 1e-3, far beyond a relative 1e-2 of cos x
                // near x = 1.1 (4.5e-3): only the allowance lets the exact derivative pass.
                let exact = cos(Double(x[d.index]))
                #expect(abs(d.value - exact) <= d.roundingAllowance, "x[\(d.index)]: \(d.value) against \(exact)")
            }
            let exact = (0..<5).map { cos(Double(x[$0])) }
            #expect(GradientCheck.compare(analytic: exact, differences, relativeTolerance: 1e-2).failures.isEmpty)
            // A derivative 20 % off fails despite the allowance.
            let wrong = exact.map { $0 * 1.2 }
            #expect(GradientCheck.compare(analytic: wrong, differences, relativeTolerance: 1e-2).failures.count == 5)
        }
    }

    /// f = sum v_i max(x_i, 0): a coordinate within h of the kink is retried at h/8, one within
    /// h/8 is dropped and counted, and without the pattern the kink makes a wrong difference.
    @Test func findsReLUKinksWithinTheStep() {
        var x: [Float] = [0.5, 2e-4, -0.3, 1e-5]
        let v: [Double] = [1, 2, 3, 4]
        x.withUnsafeMutableBufferPointer { p in
            let x = p.baseAddress!
            let f = { (0..<4).reduce(0.0) { $0 + v[$1] * Double(max(x[$1], 0)) } }
            let pattern = { (0..<4).map { x[$0] > 0 } }
            let analytic: [Double] = [1, 2, 0, 4]
            let differences = GradientCheck.differences(of: f, at: x, indices: Array(0..<4), step: 1e-3, activationPattern: pattern)
            #expect(differences.map(\.crossesKink) == [false, false, false, true])
            let steps: [Float] = [1e-3, 1e-3 / 8, 1e-3, 1e-3 / 8]
            #expect(differences.map(\.step) == steps)
            let result = GradientCheck.compare(analytic: analytic, differences, relativeTolerance: 1e-2)
            #expect(result.checked == 3 && result.kinks == 1 && result.failures.isEmpty, "\(result)")
            #expect(x[3] == 1e-5, "x restored")

            let blind = GradientCheck.differences(of: f, at: x, indices: Array(0..<4), step: 1e-3)
            #expect(GradientCheck.compare(analytic: analytic, blind, relativeTolerance: 1e-2).failures.count == 2)
        }
    }
}
