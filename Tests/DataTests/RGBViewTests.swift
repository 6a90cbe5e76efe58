import Dispatch
import Testing
@testable import Data

/// A 3 x 20 x 24 RGB image: each plane its own gradient and texture, so channels differ in hue and saturation.
let rgbTestImage: [UInt8] = (0..<(3 * 480)).map { (index: Int) -> UInt8 in
    let plane = index / 480, i = index % 480
    let texture = Int((UInt32(index) &* 2_654_435_761) >> 26)
    let gradient: Int = plane == 0 ? (i % 24) * 10 : plane == 1 ? (i / 24) * 12 : 255 - (i % 24) * 6 - (i / 24) * 4
    return UInt8(min(255, max(0, gradient + texture - 32)))
}

func rgbView(_ maker: ViewMaker, _ image: [UInt8] = rgbTestImage, seed: UInt64 = 7, epoch: Int = 0, sample: Int = 0, view: Int = 0) -> [Float] {
    var out = [Float](repeating: .nan, count: maker.valuesPerView)
    image.withUnsafeBufferPointer { maker.makeView(image: $0.baseAddress!, into: &out, seed: seed, epoch: epoch, sample: sample, view: view) }
    return out
}

private func maxDifference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }

@Suite struct RGBViewTests {
    static let simclr = ViewMaker(channels: 3, height: 20, width: 24, settings: .simclr)
    /// Every step on (probability 1), jitter in random order, noise too.
    static let everything = ViewMaker(channels: 3, height: 20, width: 24, settings: ViewSettings(
        cropArea: 0.08...1, jitterStrength: 0.8, saturation: 0.8, hue: 0.5, jitterProbability: 1, jitterOrder: .random,
        grayscaleProbability: 0, blurProbability: 1, blurKernel: 5, blurSigma: 0.5...2, solarizeProbability: 1,
        solarizeThreshold: 0.6, noiseSigma: 0.05))

    @Test func fastKernelMatchesReference() {
        var greyAndBlur = ViewSettings.simclr
        greyAndBlur.grayscaleProbability = 1
        greyAndBlur.blurProbability = 1
        let makers = [Self.simclr, Self.everything, ViewMaker(channels: 3, height: 20, width: 24, settings: greyAndBlur),
                      ViewMaker(channels: 1, height: 20, width: 24, settings: Self.everything.settings)]
        for maker in makers {
            let image = Array(rgbTestImage[0..<maker.valuesPerView])
            var worst: Float = 0
            for sample in 0..<200 {
                let fast = rgbView(maker, image, epoch: 2, sample: sample, view: sample % 2)
                let reference = image.withUnsafeBufferPointer {
                    maker.makeViewReference(image: $0.baseAddress!, seed: 7, epoch: 2, sample: sample, view: sample % 2)
                }
                worst = max(worst, maxDifference(fast, reference))
            }
            // Float against Double; the hue's divisions and the blur's two passes round differently.
            #expect(worst <= 1e-5, "\(maker.channels) channels: max difference \(worst)")
        }
    }

    @Test func floorOfSmallIsFloor() {
        var values: [Float] = [0, -0, 0.5, -0.5, 1, -1, 1.5, -1.5, 2.5, 5.999999, 6, 0.99999994, -0.99999994, 1e-30, -1e-30, 4_194_303.5, -4_194_303.5]
        var state: UInt32 = 1
        for _ in 0..<10_000 { state = state &* 1_664_525 &+ 1_013_904_223; values.append((Float(state) / 4_294_967_296 - 0.5) * 20) }
        for x in values { #expect(ImageOps.floorOfSmall(x) == x.rounded(.down), "floor of \(x)") }
    }

    @Test func identityReproducesEveryChannel() {
        let identity = ViewMaker(channels: 3, height: 20, width: 24, settings: .identity)
        #expect(rgbView(identity, sample: 3) == rgbTestImage.map { Float($0) / 255 })
    }

    @Test func everyChannelTakesTheSameCropAndFlip() {
        // Three equal planes stay equal through crop, flip, brightness, contrast and blur (saturation and hue
        // leave a grey pixel alone); and each equals the one-channel view of that plane.
        let plane = Array(rgbTestImage[0..<480])
        var settings = ViewSettings(cropArea: 0.1...1, jitterStrength: 0.8, saturation: 0.8, hue: 0.3, jitterProbability: 1,
                                    blurProbability: 1, noiseSigma: 0)
        let rgb = ViewMaker(channels: 3, height: 20, width: 24, settings: settings)
        settings.saturation = 0; settings.hue = 0
        let grey = ViewMaker(channels: 1, height: 20, width: 24, settings: settings)
        for sample in 0..<50 {
            let view = rgbView(rgb, plane + plane + plane, sample: sample)
            let greyView = rgbView(grey, plane, sample: sample)
            // Not bit for bit: contrast's mean is the luma's, and torchvision's weights sum to 0.9999, not 1
            // (a mean 1e-4 lower, moved by up to 1 - c = 0.8 and blurred: about 1e-4).
            for c in 0..<3 { #expect(maxDifference(Array(view[(c * 480)..<((c + 1) * 480)]), greyView) <= 3e-4) }
        }
    }

    @Test func grayscaleGivesThreeEqualLumaPlanes() {
        var settings = ViewSettings.identity
        settings.grayscaleProbability = 1
        let view = rgbView(ViewMaker(channels: 3, height: 20, width: 24, settings: settings))
        for k in 0..<480 {
            let luma = 0.2989 * Float(rgbTestImage[k]) / 255 + 0.587 * Float(rgbTestImage[480 + k]) / 255 + 0.114 * Float(rgbTestImage[960 + k]) / 255
            #expect(abs(view[k] - luma) <= 1e-6 && view[480 + k] == view[k] && view[960 + k] == view[k])
        }
    }

    @Test func jitterOrdersAreTheTwentyFourPermutations() {
        let orders = (0..<24).map { order in (0..<4).map { ViewParameters.jitterStep(order: order, $0) } }
        #expect(Set(orders.map { $0.map(String.init).joined() }).count == 24)
        #expect(orders.allSatisfy { Set($0) == [0, 1, 2, 3] })
        #expect(orders[0] == [0, 1, 2, 3] && orders[23] == [3, 2, 1, 0])
        // Random order: each of the 24 about equally often; fixed: always order 0.
        var counts = [Int](repeating: 0, count: 24)
        for sample in 0..<4800 { counts[Self.simclr.parameters(seed: 5, epoch: 0, sample: sample, view: 0).jitterOrder] += 1 }
        #expect(counts.allSatisfy { abs($0 - 200) < 60 }, "\(counts)")
        let fixed = ViewMaker(channels: 3, height: 20, width: 24, settings: ViewSettings(jitterOrder: .fixed))
        #expect((0..<100).allSatisfy { fixed.parameters(seed: 5, epoch: 0, sample: $0, view: 0).jitterOrder == 0 })
    }

    @Test func coinsAndFactorsFollowTheirSettings() {
        let draws = (0..<6000).map { Self.simclr.parameters(seed: 3, epoch: 1, sample: $0, view: $0 % 2) }
        func rate(_ flag: (ViewParameters) -> Bool) -> Double { Double(draws.filter(flag).count) / Double(draws.count) }
        #expect(abs(rate(\.grayscale) - 0.2) < 0.02 && abs(rate(\.blur) - 0.5) < 0.02 && rate(\.solarize) == 0)
        #expect(abs(rate(\.jitter) - 0.8) < 0.02 && abs(rate(\.flip) - 0.5) < 0.02)
        #expect(draws.allSatisfy { $0.saturation >= 0.2 && $0.saturation <= 1.8 && abs($0.hue) <= 0.2 })
        #expect(draws.allSatisfy { $0.blurSigma >= 0.1 && $0.blurSigma <= 2 })
        let byol = ViewMaker(channels: 3, height: 20, width: 24, settings: ViewSettings(solarizeProbability: 0.2))
        let solarized = (0..<6000).filter { byol.parameters(seed: 3, epoch: 1, sample: $0, view: 1).solarize }.count
        #expect(abs(Double(solarized) / 6000 - 0.2) < 0.02)
    }

    @Test func simclrBlurKernelIsTenPercentOfTheSideAndOdd() {
        #expect(ViewMaker.blurKernel(side: 32) == 3 && ViewMaker.blurKernel(side: 64) == 7)
        #expect(ViewMaker.blurKernel(side: 224) == 23 && ViewMaker.blurKernel(side: 96) == 11 && ViewMaker.blurKernel(side: 8) == 3)
        #expect(ViewMaker(channels: 3, height: 32, width: 48, settings: .simclr).blurKernel == 3)
        #expect(ViewMaker(channels: 3, height: 64, width: 64, settings: ViewSettings(blurKernel: 9)).blurKernel == 9)
    }

    @Test func colourDrawsDoNotMoveTheGreyPositions() {
        // The colour settings change only draws at 2^48...: the crop, coins, b and c of a view stay put.
        let plain = ViewMaker(channels: 3, height: 20, width: 24, settings: ViewSettings(jitterStrength: 0.8))
        for sample in 0..<100 {
            let a = plain.parameters(seed: 9, epoch: 0, sample: sample, view: 1)
            let b = Self.everything.parameters(seed: 9, epoch: 0, sample: sample, view: 1)
            #expect(a.flip == b.flip && a.jitter == b.jitter || Self.everything.settings.jitterProbability == 1)
            #expect(a.brightness == b.brightness && a.contrast == b.contrast && a.flip == b.flip)
        }
    }

    @Test func viewsAreTheSameOnAnyThreadCount() {
        // A batch made on 1, 2 and 4 threads, each view against the reference computed alone.
        let maker = Self.everything, samples = Array(0..<24), values = maker.valuesPerView
        let images = (0..<24).flatMap { s in rgbTestImage.map { $0 &+ UInt8(s) } }
        let reference: [[Float]] = (0..<2).flatMap { view in samples.map { sample in
            images.withUnsafeBufferPointer {
                maker.makeViewReference(image: $0.baseAddress! + sample * values, seed: 4, epoch: 1, sample: sample, view: view)
            }
        } }
        for threads in [1, 2, 4] {
            let batch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * samples.count * values)
            defer { batch.deallocate() }
            nonisolated(unsafe) let out = batch
            let chunk = samples.count / threads
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                let part = Array(samples[(thread * chunk)..<((thread + 1) * chunk)])
                var local = [Float](repeating: 0, count: 2 * part.count * values)
                images.withUnsafeBufferPointer { maker.makeViews(images: $0, firstSample: 0, samples: part, epoch: 1, seed: 4, into: &local) }
                for view in 0..<2 {
                    for (index, sample) in part.enumerated() {
                        for k in 0..<values { out[(view * samples.count + sample) * values + k] = local[(view * part.count + index) * values + k] }
                    }
                }
            }
            let made = Array(UnsafeBufferPointer(start: batch, count: 2 * samples.count * values))
            for row in 0..<(2 * samples.count) {
                #expect(maxDifference(Array(made[(row * values)..<((row + 1) * values)]), reference[row]) <= 1e-5, "row \(row) on \(threads) threads")
            }
        }
    }
}
