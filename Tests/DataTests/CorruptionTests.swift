import Foundation
import Tensor
import Testing
@testable import Data

/// Each corruption's defining property, and determinism per (seed, sample).
@Suite struct CorruptionTests {
    /// `count` H x W images with the given pixels.
    func images(_ count: Int, height: Int = 28, width: Int = 28, pixel: (Int, Int) -> UInt8) -> SampleRows {
        var pixels: [UInt8] = []
        for i in 0..<count { for p in 0..<(height * width) { pixels.append(pixel(i, p)) } }
        return SampleRows(held: 0..<count, totalCount: count, featureShape: [height, width], features: .uint8(pixels),
                          labels: [Int64](repeating: 0, count: count))
    }

    func corrupted(_ rows: SampleRows, _ corruption: Corruption, seed: UInt64 = 7) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count * rows.featureWidth)
        rows.writeCorruptedInputs(rows.held, corruption: corruption, seed: seed, into: &out)
        return out
    }

    func clean(_ rows: SampleRows) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count * rows.featureWidth)
        rows.writeInputs(rows.held, into: &out)
        return out
    }

    @Test(arguments: [Float(0.1), 0.2])
    func noiseHasItsStandardDeviation(sigma: Float) {
        // Mid-grey: clipping at 0 and 1 is 2.5 sigma or more away, so it barely touches the spread.
        let rows = images(50) { _, _ in 128 }
        let before = clean(rows), after = corrupted(rows, .gaussianNoise(sigma: sigma))
        let differences = zip(after, before).map { Double($0 - $1) }
        let mean = differences.reduce(0, +) / Double(differences.count)
        let std = (differences.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(differences.count)).squareRoot()
        #expect(abs(mean) < 0.003)
        #expect(abs(std / Double(sigma) - 1) < (sigma < 0.15 ? 0.02 : 0.03), "std \(std) for sigma \(sigma)")
        #expect(after.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    @Test func noiseIsDeterministicPerSeedAndSample() {
        let rows = images(4) { _, _ in 100 }
        let a = corrupted(rows, .gaussianNoise(sigma: 0.1)), b = corrupted(rows, .gaussianNoise(sigma: 0.1))
        #expect(a == b)
        #expect(a != corrupted(rows, .gaussianNoise(sigma: 0.1), seed: 8))
        #expect(Array(a[0..<784]) != Array(a[784..<1568]), "every sample has its own noise")
        // A subset, alone and in another order, gets the same noise.
        var single = [Float](repeating: 0, count: 784)
        rows.writeCorruptedInputs([2], corruption: .gaussianNoise(sigma: 0.1), seed: 7, into: &single)
        #expect(single == Array(a[1568..<2352]))
    }

    /// Feature vectors: not clipped, and the noise levels share their draws (common random numbers).
    @Test func featureVectorNoiseScalesWithSigma() {
        let values = (0..<60).map { Float($0) * 0.1 - 3 }
        let rows = SampleRows(held: 0..<3, totalCount: 3, featureShape: [20], features: .float32(values))
        #expect(!rows.isImage && Corruption.defaults(for: rows) == Corruption.featureDefaults)
        let defaults = Corruption.defaults(for: rows)
        #expect(defaults.allSatisfy { $0.appliesToFeatureVectors })
        let small = corrupted(rows, .gaussianNoise(sigma: 0.1)), large = corrupted(rows, .gaussianNoise(sigma: 0.4))
        for i in 0..<values.count { #expect(abs((large[i] - values[i]) - 4 * (small[i] - values[i])) < 1e-5) }
        #expect(small.contains { $0 < 0 } && large.contains { $0 > 3 })
    }

    @Test func occlusionZeroesOneSquareAndNothingElse() {
        // Every pixel at least 1/255, so the square's zeros are all new.
        let rows = images(20) { i, p in UInt8(1 + (i * 7 + p * 13) % 255) }
        let before = clean(rows), after = corrupted(rows, .occlusion(size: 10))
        var corners = Set<Int>()
        for i in 0..<rows.count {
            let zeros = (0..<784).filter { after[i * 784 + $0] == 0 }
            #expect(zeros.count == 100)
            let top = zeros.map { $0 / 28 }.min()!, left = zeros.map { $0 % 28 }.min()!
            var square = Set<Int>()
            for r in 0..<10 { for c in 0..<10 { square.insert((top + r) * 28 + left + c) } }
            #expect(Set(zeros) == square, "sample \(i): not a 10x10 square")
            for p in 0..<784 where !zeros.contains(p) { #expect(after[i * 784 + p] == before[i * 784 + p]) }
            corners.insert(zeros[0])
        }
        #expect(corners.count > 5, "the square's position is drawn per sample")
    }

    /// [3, H, W] images: each channel plane is corrupted as the grey image of that plane would be, with
    /// the same occlusion box in every plane (one draw per sample, not per plane).
    @Test(arguments: [Corruption.occlusion(size: 10), .blur(sigma: 1)])
    func rgbPlanesAreCorruptedLikeGreyImages(corruption: Corruption) {
        let count = 6, planes = (0..<3).map { c in images(count) { i, p in UInt8(1 + (i * 7 + p * 13 + c * 50) % 255) } }
        var pixels: [UInt8] = []
        for i in 0..<count {
            for plane in planes {
                guard case .uint8(let values) = plane.features else { preconditionFailure() }
                pixels += values[(i * 784)..<((i + 1) * 784)]
            }
        }
        let rgb = SampleRows(held: 0..<count, totalCount: count, featureShape: [3, 28, 28], features: .uint8(pixels),
                             labels: [Int64](repeating: 0, count: count))
        #expect(rgb.isImage)
        let after = corrupted(rgb, corruption), grey = planes.map { corrupted($0, corruption) }
        for i in 0..<count {
            for c in 0..<3 {
                #expect(Array(after[((i * 3 + c) * 784)..<((i * 3 + c + 1) * 784)]) == Array(grey[c][(i * 784)..<((i + 1) * 784)]))
            }
        }
    }

    @Test func blurKeepsAConstantImage() {
        let rows = images(1) { _, _ in 77 }
        let after = corrupted(rows, .blur(sigma: 1))
        #expect(after.allSatisfy { abs($0 - 77.0 / 255) < 1e-6 })
    }

    /// With the two outermost rows and columns equal (here black), edge replication adds no mass.
    @Test func blurKeepsTheMeanAndMatchesTheTwoDimensionalConvolution() {
        let rows = images(3) { i, p in
            let (r, c) = (p / 28, p % 28)
            return r < 2 || r >= 26 || c < 2 || c >= 26 ? 0 : UInt8((i * 31 + p * 17) % 256)
        }
        let before = clean(rows), after = corrupted(rows, .blur(sigma: 1))
        let w = Corruption.blurKernel(sigma: 1)
        #expect(abs(w.reduce(0, +) - 1) < 1e-6 && abs(w[1] / w[2] - Float(exp(-0.5))) < 1e-6 && abs(w[0] / w[2] - Float(exp(-2.0))) < 1e-6)
        for i in 0..<3 {
            let meanBefore = before[(i * 784)..<((i + 1) * 784)].reduce(0, +) / 784
            let meanAfter = after[(i * 784)..<((i + 1) * 784)].reduce(0, +) / 784
            #expect(abs(meanAfter - meanBefore) < 1e-5)
            // Plain 5 x 5 convolution with clamped indices: the separable passes' reference.
            for r in 0..<28 {
                for c in 0..<28 {
                    var sum = 0.0
                    for a in -2...2 {
                        for b in -2...2 {
                            sum += Double(w[a + 2] * w[b + 2]) * Double(before[i * 784 + min(max(r + a, 0), 27) * 28 + min(max(c + b, 0), 27)])
                        }
                    }
                    #expect(abs(Double(after[i * 784 + r * 28 + c]) - sum) < 1e-5)
                }
            }
        }
    }

    @Test func contrastHalvesDeviationsFromTheMean() {
        let rows = images(5) { i, p in UInt8((i * 53 + p * 29) % 256) }
        let before = clean(rows), after = corrupted(rows, .contrast(factor: 0.5))
        for i in 0..<5 {
            let mean = before[(i * 784)..<((i + 1) * 784)].reduce(0, +) / 784
            let meanAfter = after[(i * 784)..<((i + 1) * 784)].reduce(0, +) / 784
            #expect(abs(meanAfter - mean) < 1e-5)
            for p in 0..<784 { #expect(abs((after[i * 784 + p] - mean) - 0.5 * (before[i * 784 + p] - mean)) < 1e-5) }
        }
    }
}
