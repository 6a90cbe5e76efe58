import Testing
@testable import Data

/// A 28x28 image with structure (a gradient) and texture (pseudo-random bytes).
private let testImage: [UInt8] = (0..<784).map { i in
    let noise = (UInt32(i) &* 2_654_435_761) >> 27           // 0..<32
    return UInt8(min(255, (i % 28) * 7 + (i / 28) * 2 + Int(noise)))
}

private func view(_ maker: ViewMaker, _ image: [UInt8] = testImage, seed: UInt64 = 7, epoch: Int = 0, sample: Int = 0, view: Int = 0) -> [Float] {
    var out = [Float](repeating: .nan, count: maker.height * maker.width)
    image.withUnsafeBufferPointer { maker.makeView(image: $0.baseAddress!, into: &out, seed: seed, epoch: epoch, sample: sample, view: view) }
    return out
}

@Suite struct ViewTests {
    let maker = ViewMaker(height: 28, width: 28)

    @Test func identicalCoordinatesGiveIdenticalViews() {
        let a = view(maker, epoch: 3, sample: 17, view: 1), b = view(maker, epoch: 3, sample: 17, view: 1)
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
    }

    @Test func otherCoordinatesGiveOtherViews() {
        let base = view(maker, epoch: 3, sample: 17, view: 0)
        #expect(view(maker, epoch: 3, sample: 17, view: 1) != base)
        #expect(view(maker, epoch: 4, sample: 17, view: 0) != base)
        #expect(view(maker, epoch: 3, sample: 18, view: 0) != base)
        #expect(view(maker, seed: 8, epoch: 3, sample: 17, view: 0) != base)
    }

    @Test func valuesLieInUnitInterval() {
        let strong = ViewMaker(height: 28, width: 28, settings: ViewSettings(jitterStrength: 1, jitterProbability: 1, noiseSigma: 0.3))
        for sample in 0..<200 {
            for v in view(strong, sample: sample) + view(maker, sample: sample) { #expect(v >= 0 && v <= 1) }
        }
    }

    @Test func identitySettingsReproduceThePixels() {
        let identity = ViewMaker(height: 28, width: 28, settings: .identity)
        for sample in 0..<5 {
            #expect(view(identity, sample: sample) == testImage.map { Float($0) / 255 })
        }
    }

    @Test func flipAloneMirrors() {
        var settings = ViewSettings.identity
        settings.flipProbability = 1
        let flipped = view(ViewMaker(height: 28, width: 28, settings: settings))
        let mirrored = (0..<784).map { Float(testImage[($0 / 28) * 28 + 27 - $0 % 28]) / 255 }
        #expect(flipped == mirrored)
    }

    @Test func brightnessThenContrastAroundTheMean() {
        var settings = ViewSettings.identity
        settings.jitterProbability = 1
        let jitter = ViewMaker(height: 28, width: 28, settings: settings)
        let p = jitter.parameters(seed: 7, epoch: 0, sample: 0, view: 0)
        let bright = testImage.map { min(max(Float($0) / 255 * p.brightness, 0), 1) }
        let mean = bright.reduce(0, +) / 784
        let expected = bright.map { min(max(($0 - mean) * p.contrast + mean, 0), 1) }
        let got = view(jitter)
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-6 })
    }

    @Test func cropBoxStaysInsideWithAreaInRange() {
        let narrow = ViewMaker(height: 28, width: 28, settings: ViewSettings(cropArea: 0.3...0.9, aspectRatio: 0.5...2))
        for sample in 0..<2000 {
            for m in [maker, narrow] {
                let p = m.parameters(seed: 1, epoch: 2, sample: sample, view: 0)
                #expect(p.left >= 0 && p.top >= 0 && p.left + p.boxWidth <= 28.0001 && p.top + p.boxHeight <= 28.0001)
                let area = p.boxWidth * p.boxHeight / 784
                #expect(area <= m.settings.cropArea.upperBound + 1e-5)
                #expect(p.brightness >= 0.6 && p.brightness <= 1.4 && p.contrast >= 0.6 && p.contrast <= 1.4)
            }
        }
    }

    @Test func coinsFollowTheirProbabilities() {
        let draws = (0..<4000).map { maker.parameters(seed: 3, epoch: 1, sample: $0, view: $0 % 2) }
        let flips = Double(draws.filter(\.flip).count) / 4000, jitters = Double(draws.filter(\.jitter).count) / 4000
        #expect(abs(flips - 0.5) < 0.03 && abs(jitters - 0.8) < 0.03)
    }

    @Test func fastKernelMatchesReference() {
        let makers = [maker, ViewMaker(height: 28, width: 28, settings: ViewSettings(jitterStrength: 1, jitterProbability: 1, noiseSigma: 0.2)),
                      ViewMaker(height: 5, width: 7, settings: ViewSettings(cropArea: 0.2...1))]
        for m in makers {
            let image = Array(testImage[0..<(m.height * m.width)])
            for sample in 0..<300 {
                let fast = view(m, image, epoch: 5, sample: sample, view: sample % 2)
                let reference = image.withUnsafeBufferPointer {
                    m.makeViewReference(image: $0.baseAddress!, seed: 7, epoch: 5, sample: sample, view: sample % 2)
                }
                let worst = zip(fast, reference).map { abs($0 - $1) }.max()!
                #expect(worst <= 2e-5, "sample \(sample) of \(m.height)x\(m.width): max difference \(worst)")
            }
        }
    }

    @Test func noiseHasMeanZeroAndSigma() {
        var settings = ViewSettings.identity
        settings.noiseSigma = 0.05
        let noisy = ViewMaker(height: 28, width: 28, settings: settings)
        let gray = [UInt8](repeating: 128, count: 784), clean = Float(128) / 255
        var sum = 0.0, sumSquares = 0.0, count = 0.0
        for sample in 0..<64 {
            for v in view(noisy, gray, sample: sample) {
                let d = Double(v - clean)
                sum += d; sumSquares += d * d; count += 1
            }
        }
        let mean = sum / count, std = (sumSquares / count - mean * mean).squareRoot()
        // 50,176 draws: the mean's standard error is 0.05 / 224 = 2.2e-4, the std's 1.6e-4.
        #expect(abs(mean) < 1e-3)
        #expect(abs(std - 0.05) < 1e-3)
    }

    @Test func makeViewsLaysOutBothViews() {
        let dataset = ImageDataset(height: 28, width: 28, images: testImage + testImage.reversed() + testImage.map { 255 - $0 }, labels: [1, 2, 3])
        let samples = [2, 0]
        var batch = [Float](repeating: .nan, count: 4 * 784)
        maker.makeViews(dataset: dataset, samples: samples, epoch: 9, seed: 11, into: &batch)
        for (row, (sample, v)) in [(2, 0), (0, 0), (2, 1), (0, 1)].enumerated() {
            let image = Array(dataset.images[(sample * 784)..<((sample + 1) * 784)])
            #expect(Array(batch[(row * 784)..<((row + 1) * 784)]) == view(maker, image, seed: 11, epoch: 9, sample: sample, view: v))
        }
    }
}
