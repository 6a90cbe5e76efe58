import Testing
@testable import Data

/// Features with varied signs, magnitudes and special values (no zeros, so any zero was made).
private func testFeatures(_ count: Int) -> [Float] {
    (0..<count).map { k in
        let value = Float((UInt32(k) &* 2_654_435_761) >> 8) / 16_777_216 - 0.5   // [-0.5, 0.5)
        return value == 0 ? 0.25 : value * Float(1 + k % 7)
    }
}

private func view(_ maker: FeatureViewMaker, _ features: [Float], seed: UInt64 = 7, epoch: Int = 0, sample: Int = 0, view: Int = 0) -> [Float] {
    var out = [Float](repeating: .nan, count: maker.width)
    features.withUnsafeBufferPointer { maker.makeView(features: $0.baseAddress!, into: &out, seed: seed, epoch: epoch, sample: sample, view: view) }
    return out
}

private func view(_ maker: FeatureViewMaker, bytes: [UInt8], seed: UInt64 = 7, epoch: Int = 0, sample: Int = 0, view: Int = 0) -> [Float] {
    var out = [Float](repeating: .nan, count: maker.width)
    bytes.withUnsafeBufferPointer { maker.makeView(features: $0.baseAddress!, into: &out, seed: seed, epoch: epoch, sample: sample, view: view) }
    return out
}

private func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

@Suite struct FeatureViewTests {
    /// Every step on, with a width that is neither a multiple of the 128-feature chunk nor even.
    let strong = FeatureViewMaker(width: 301, settings: FeatureViewSettings(dropout: 0.2, mask: 0.1, noise: 0.3, scale: 0.5...2))

    @Test func identityCopiesExactly() {
        var features = testFeatures(300)
        features[0] = -0; features[1] = .leastNonzeroMagnitude; features[2] = .greatestFiniteMagnitude; features[3] = -.infinity
        let identity = FeatureViewMaker(width: 300)
        #expect(identity.settings == .identity)
        for sample in 0..<5 { #expect(bits(view(identity, features, sample: sample)) == bits(features)) }

        let bytes = (0..<256).map { UInt8($0) }
        let byteIdentity = FeatureViewMaker(width: 256)
        let image = ImageDataset(height: 16, width: 16, images: bytes, labels: [0])
        var pixels = [Float](repeating: .nan, count: 256)
        image.writePixels(samples: [0], into: &pixels)
        #expect(bits(view(byteIdentity, bytes: bytes, sample: 3)) == bits(pixels))
    }

    @Test func identicalCoordinatesGiveIdenticalViews() {
        let features = testFeatures(301)
        #expect(bits(view(strong, features, epoch: 3, sample: 17, view: 1)) == bits(view(strong, features, epoch: 3, sample: 17, view: 1)))
    }

    @Test func otherCoordinatesGiveOtherViews() {
        let features = testFeatures(301)
        let base = bits(view(strong, features, epoch: 3, sample: 17, view: 0))
        #expect(bits(view(strong, features, epoch: 3, sample: 17, view: 1)) != base)
        #expect(bits(view(strong, features, epoch: 4, sample: 17, view: 0)) != base)
        #expect(bits(view(strong, features, epoch: 3, sample: 18, view: 0)) != base)
        #expect(bits(view(strong, features, seed: 8, epoch: 3, sample: 17, view: 0)) != base)
    }

    @Test func matchesThePlainReference() {
        let features = testFeatures(301)
        let withoutNoise = FeatureViewMaker(width: 301, settings: FeatureViewSettings(dropout: 0.2, mask: 0.1, scale: 0.5...2))
        for sample in 0..<20 {
            // Without noise every step is exact; the noise's polynomials are within ~1e-7 of libm.
            #expect(bits(view(withoutNoise, features, sample: sample))
                    == bits(withoutNoise.makeViewReference(features: features, seed: 7, epoch: 0, sample: sample, view: 0)))
            let fast = view(strong, features, sample: sample)
            let reference = strong.makeViewReference(features: features, seed: 7, epoch: 0, sample: sample, view: 0)
            for k in 0..<301 { #expect(abs(fast[k] - reference[k]) <= 1e-5, "sample \(sample) feature \(k)") }
        }
    }

    @Test func dropoutZeroesAFractionPWithoutRescaling() {
        let width = 200_000, p: Float = 0.3
        let maker = FeatureViewMaker(width: width, settings: FeatureViewSettings(dropout: p))
        let out = view(maker, [Float](repeating: 1, count: width), sample: 5)
        let zeros = out.filter { $0 == 0 }.count
        #expect(out.allSatisfy { $0 == 0 || $0 == 1 })
        // Binomial(F, p): standard deviation sqrt(F p (1 - p)) ~ 205; allow 6 of them.
        let sigma = (Double(width) * Double(p) * Double(1 - p)).squareRoot()
        #expect(abs(Double(zeros) - Double(width) * Double(p)) < 6 * sigma, "\(zeros) zeros")
    }

    @Test func maskZeroesOneContiguousSpan() {
        let features = testFeatures(1000)
        let maker = FeatureViewMaker(width: 1000, settings: FeatureViewSettings(mask: 0.25))
        #expect(maker.maskLength == 250)
        var starts = Set<Int>()
        for sample in 0..<20 {
            let out = view(maker, features, sample: sample)
            let zeroed = (0..<1000).filter { out[$0] == 0 }
            #expect(zeroed.count == 250 && zeroed.last! - zeroed.first! == 249)
            #expect((0..<1000).allSatisfy { zeroed.contains($0) || out[$0] == features[$0] })
            #expect(maker.parameters(seed: 7, epoch: 0, sample: sample, view: 0).mask == zeroed.first! ..< zeroed.last! + 1)
            starts.insert(zeroed.first!)
        }
        #expect(starts.count > 10)
        #expect(FeatureViewMaker(width: 7, settings: FeatureViewSettings(mask: 0.3)).maskLength == 2)     // 2.1
        #expect(FeatureViewMaker(width: 10, settings: FeatureViewSettings(mask: 0.25)).maskLength == 3)   // 2.5, away from zero
        #expect(FeatureViewMaker(width: 10, settings: FeatureViewSettings(mask: 0.01)).maskLength == 0)
    }

    @Test func noiseHasStandardDeviationSigma() {
        let width = 200_000, sigma: Float = 0.1
        let maker = FeatureViewMaker(width: width, settings: FeatureViewSettings(noise: sigma))
        let out = view(maker, [Float](repeating: 0.5, count: width), sample: 2)
        let deltas = out.map { Double($0) - 0.5 }
        let mean = deltas.reduce(0, +) / Double(width)
        let std = (deltas.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width - 1)).squareRoot()
        // Standard errors: sigma / sqrt(F) ~ 2.2e-4 for the mean, sigma / sqrt(2F) ~ 1.6e-4 for the std.
        #expect(abs(mean) < 6 * 2.3e-4, "mean \(mean)")
        #expect(abs(std - Double(sigma)) < 6 * 1.6e-4, "std \(std)")
    }

    @Test func scaleMultipliesEveryFeatureByOneFactorInRange() {
        let features = testFeatures(300)
        let maker = FeatureViewMaker(width: 300, settings: FeatureViewSettings(scale: 0.5...2))
        var factors = Set<Float>()
        for sample in 0..<50 {
            let factor = maker.parameters(seed: 7, epoch: 0, sample: sample, view: 1).scale
            #expect(factor >= 0.5 && factor <= 2)
            #expect(bits(view(maker, features, sample: sample, view: 1)) == bits(features.map { factor * $0 }))
            factors.insert(factor)
        }
        #expect(factors.count == 50)
    }

    @Test func batchEqualsPerViewAndFollowsTheRowMapping() {
        // A rank holding global samples 100..<110 as rows 0..<10.
        let width = 37, rowCount = 10, firstSample = 100
        let floats = testFeatures(rowCount * width)
        let bytes = (0..<(rowCount * width)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let maker = FeatureViewMaker(width: width, settings: FeatureViewSettings(dropout: 0.1, mask: 0.2, noise: 0.05, scale: 0.8...1.2))
        let samples = [107, 100, 109, 103]
        var fromFloats = [Float](repeating: .nan, count: 2 * samples.count * width)
        var fromBytes = fromFloats
        floats.withUnsafeBufferPointer { source in
            maker.makeViews(samples: samples, rows: { _, sample in sample - firstSample }, source: .float32(source), epoch: 2, seed: 9, into: &fromFloats)
        }
        bytes.withUnsafeBufferPointer { source in
            maker.makeViews(samples: samples, rows: { _, sample in sample - firstSample }, source: .uint8(source), epoch: 2, seed: 9, into: &fromBytes)
        }
        for v in 0..<2 {
            for (index, sample) in samples.enumerated() {
                let row = sample - firstSample, batchRow = (v * samples.count + index) * width
                let expectedFloats = view(maker, Array(floats[row * width ..< (row + 1) * width]), seed: 9, epoch: 2, sample: sample, view: v)
                let expectedBytes = view(maker, bytes: Array(bytes[row * width ..< (row + 1) * width]), seed: 9, epoch: 2, sample: sample, view: v)
                #expect(bits(Array(fromFloats[batchRow ..< batchRow + width])) == bits(expectedFloats))
                #expect(bits(Array(fromBytes[batchRow ..< batchRow + width])) == bits(expectedBytes))
            }
        }
    }

    @Test func validationNamesTheBadValue() {
        #expect(FeatureViewSettings().problem == nil)
        #expect(FeatureViewSettings(dropout: 0.5, mask: 0.5, noise: 1, scale: 0.1...10).problem == nil)
        #expect(FeatureViewSettings(dropout: 1).problem?.contains("dropout 1.0") == true)
        #expect(FeatureViewSettings(dropout: -0.1).problem?.contains("dropout") == true)
        #expect(FeatureViewSettings(mask: 1).problem?.contains("mask") == true)
        #expect(FeatureViewSettings(noise: -1).problem?.contains("noise") == true)
        #expect(FeatureViewSettings(noise: .nan).problem?.contains("noise") == true)
        #expect(FeatureViewSettings(scale: 0...1).problem?.contains("scale") == true)
    }
}
