import Foundation
import Testing
import Tensor
@testable import Data

/// Five 28x28 images with structure (gradients) and texture (pseudo-random bytes).
private let images = ImageDataset(height: 28, width: 28, images: (0..<(5 * 784)).map { i in
    let pixel = i % 784, image = i / 784
    let noise = (UInt32(i) &* 2_654_435_761) >> 27
    return UInt8(min(255, (pixel % 28) * (3 + image) + (pixel / 28) * 2 + Int(noise)))
}, labels: [0, 1, 2, 3, 4])

@Suite struct PairSpecTests {
    @Test func projectionEntriesAreNormalWithVarianceOneOverD() {
        let spec = PairSpec(width: 64, seed: 3)
        let matrix = spec.projection(inputs: 784)
        #expect(matrix.count == 64 * 784)
        let mean = matrix.reduce(0.0) { $0 + Double($1) } / Double(matrix.count)
        let variance = matrix.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(matrix.count - 1)
        // Standard errors: (1/28) / sqrt(50,176) ~ 1.6e-4 for the mean, sqrt(2 / 50,176) ~ 0.63% of the variance.
        #expect(abs(mean) < 6 * 1.6e-4 && abs(variance * 784 - 1) < 6 * 0.0063, "mean \(mean), variance \(variance)")
        // Entry k is normal k of the pairProjection stream (Box-Muller pair k / 2), over 28.
        var random = RandomStream(seed: 3, stream: RandomStream.id(.pairProjection))
        for k in stride(from: 0, to: 20, by: 2) {
            let u1 = (Double(random.nextUInt32() >> 8) + 1) / 16_777_216, u2 = Double(random.nextUInt32() >> 8) / 16_777_216
            let r = (-2 * Foundation.log(u1)).squareRoot()
            #expect(abs(Double(matrix[k]) - r * Foundation.cos(2 * Double.pi * u2) / 28) < 1e-6)
            #expect(abs(Double(matrix[k + 1]) - r * Foundation.sin(2 * Double.pi * u2) / 28) < 1e-6)
        }
        #expect(PairSpec(width: 64, seed: 4).projection(inputs: 784) != matrix)
    }

    @Test func pairsAreTheProjectionOfAnAugmentedView() {
        let spec = PairSpec(width: 16, seed: 11)
        let pairs = spec.pairs(for: images)
        #expect(pairs.count == 5 * 16)
        #expect(pairs.map(\.bitPattern) == spec.pairs(for: images).map(\.bitPattern))
        let matrix = spec.projection(inputs: 784)
        let maker = ViewMaker(height: 28, width: 28)
        for sample in 0..<5 {
            var view = [Float](repeating: 0, count: 784)
            images.images.withUnsafeBufferPointer {
                maker.makeView(image: $0.baseAddress! + sample * 784, into: &view, seed: 11, epoch: PairSpec.viewEpoch, sample: sample, view: 0)
            }
            var expected = [Float](repeating: 0, count: 16)
            gemmReference(transposeA: false, transposeB: false, m: 16, n: 1, k: 784, a: matrix, lda: 784, b: view, ldb: 1, c: &expected, ldc: 1)
            let got = Array(pairs[sample * 16 ..< (sample + 1) * 16])
            for w in 0..<16 { #expect(abs(got[w] - expected[w]) < 1e-4, "sample \(sample) entry \(w): \(got[w]) vs \(expected[w])") }
            // The view is augmented: the pair is not the projection of the plain image.
            var plain = [Float](repeating: 0, count: 784), projected = [Float](repeating: 0, count: 16)
            images.writePixels(samples: [sample], into: &plain)
            gemmReference(transposeA: false, transposeB: false, m: 16, n: 1, k: 784, a: matrix, lda: 784, b: plain, ldb: 1, c: &projected, ldc: 1)
            #expect(zip(got, projected).contains { abs($0 - $1) > 1e-3 })
        }
        let rows: [[UInt32]] = (0..<5).map { (sample: Int) -> [UInt32] in pairs[(sample * 16)..<(sample * 16 + 16)].map(\.bitPattern) }
        #expect(Set(rows).count == 5, "two samples share a pair")
        #expect(PairSpec(width: 16, seed: 12).pairs(for: images) != pairs)
    }
}
