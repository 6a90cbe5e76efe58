import Foundation
import Tensor
import Testing
@testable import Data

@Suite struct GaussianNoiseTests {
    @Test func normalsMatchDoublePrecisionBoxMuller() {
        var random = RandomStream(seed: 5, stream: 9)
        // Include the extremes: d0 = 0 (u1 = 2^-24, the largest radius) and d0 = max (u1 = 1, radius 0).
        var draws = [UInt32.min, 0x1234_5678, UInt32.max, 0xFFFF_FFFF] + (0..<4092).map { _ in random.nextUInt32() }
        var values = [Float](repeating: 0, count: draws.count)
        GaussianNoise.normals(fromDraws: &draws, pairs: draws.count / 2, into: &values)
        for k in 0..<(draws.count / 2) {
            let u1 = (Double(draws[2 * k] >> 8) + 1) / 16_777_216, u2 = Double(draws[2 * k + 1] >> 8) / 16_777_216
            let r = (-2 * log(u1)).squareRoot()
            #expect(abs(Double(values[2 * k]) - r * cos(2 * .pi * u2)) < 2e-6 * max(1, r))
            #expect(abs(Double(values[2 * k + 1]) - r * sin(2 * .pi * u2)) < 2e-6 * max(1, r))
        }
    }
}
