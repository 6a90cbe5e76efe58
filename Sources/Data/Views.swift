import Foundation
import Tensor

/// Augmentation settings; the defaults are the benchmark's (docs: benchmarks/fmnist-simclr-mlp.md, "Views").
public struct ViewSettings: Sendable, Equatable {
    /// Area fraction s of the random resized crop, uniform in this range.
    public var cropArea: ClosedRange<Float>
    /// Aspect ratio a (width / height) of the crop, log-uniform in this range.
    public var aspectRatio: ClosedRange<Float>
    /// Probability of a horizontal flip.
    public var flipProbability: Float
    /// j: brightness b and contrast c are uniform in [1 - j, 1 + j].
    public var jitterStrength: Float
    /// Probability of applying brightness and contrast.
    public var jitterProbability: Float
    /// Standard deviation of the additive Gaussian noise (0 turns it off).
    public var noiseSigma: Float

    public init(cropArea: ClosedRange<Float> = 0.6...1.0,
                aspectRatio: ClosedRange<Float> = (3.0 / 4.0)...(4.0 / 3.0),
                flipProbability: Float = 0.5,
                jitterStrength: Float = 0.4,
                jitterProbability: Float = 0.8,
                noiseSigma: Float = 0.05) {
        precondition(cropArea.lowerBound > 0 && cropArea.upperBound <= 1, "ViewSettings: crop area \(cropArea) must lie in (0, 1]")
        precondition(aspectRatio.lowerBound > 0, "ViewSettings: aspect ratio \(aspectRatio) must be positive")
        precondition(jitterStrength >= 0 && jitterStrength <= 1, "ViewSettings: jitter strength \(jitterStrength) must lie in [0, 1]")
        precondition(noiseSigma >= 0, "ViewSettings: noise sigma \(noiseSigma) must be >= 0")
        self.cropArea = cropArea
        self.aspectRatio = aspectRatio
        self.flipProbability = flipProbability
        self.jitterStrength = jitterStrength
        self.jitterProbability = jitterProbability
        self.noiseSigma = noiseSigma
    }

    /// Settings that leave the image unchanged (full crop, no flip, no jitter, no noise).
    public static let identity = ViewSettings(cropArea: 1...1, aspectRatio: 1...1, flipProbability: 0,
                                              jitterProbability: 0, noiseSigma: 0)
}

/// The random choices of one view, drawn from its stream before any pixel is touched.
public struct ViewParameters: Sendable, Equatable {
    /// Crop box in pixels: left and top edges and size, continuous (pixel i spans [i, i+1)).
    public var left: Float, top: Float, boxWidth: Float, boxHeight: Float
    public var flip: Bool
    public var jitter: Bool
    /// Brightness and contrast factors (drawn always, used only when `jitter`).
    public var brightness: Float, contrast: Float
}

/// Makes augmented views of H x W grey-scale images (the benchmark's "Views" section).
///
/// Every random value comes from one counter-based stream per (seed, epoch, sample, view):
/// `RandomStream(seed: seed, stream: RandomStream.id(.view, epoch, sample, view))`, so a view is
/// a pure function of its coordinates, whichever rank or thread makes it. Draw positions:
///
/// | position        | value                                                                 |
/// |-----------------|-----------------------------------------------------------------------|
/// | 2t, 2t+1        | crop attempt t = 0..<10: area s = lerp(area range, u), log aspect      |
/// |                 | = lerp(log range, u); only attempts up to the first that fits are drawn |
/// | 20, 21          | crop centre x, y (uniform over centres that keep the box inside)      |
/// | 22              | flip coin (flip when u < flipProbability)                            |
/// | 23              | jitter coin (jitter when u < jitterProbability)                      |
/// | 24, 25          | brightness b, contrast c, uniform in [1 - j, 1 + j]                   |
/// | 26..<32         | reserved                                                              |
/// | 32+2k, 33+2k    | Box-Muller pair k: noise of output pixels 2k (cos) and 2k+1 (sin)     |
///
/// Positions 20... are fixed whatever the crop needed, and coins, b and c are always drawn,
/// so adding or removing a step never shifts another step's randomness.
public struct ViewMaker: Sendable {
    public let height: Int
    public let width: Int
    public let settings: ViewSettings

    /// Crop attempts before clamping (torchvision's RandomResizedCrop also tries 10 times).
    static let cropAttempts = 10
    static let centrePosition: UInt64 = 20
    static let noisePosition: UInt64 = 32

    public init(height: Int, width: Int, settings: ViewSettings = ViewSettings()) {
        precondition(height > 0 && width > 0, "ViewMaker: image size \(height)x\(width) must be positive")
        self.height = height
        self.width = width
        self.settings = settings
    }

    public init(dataset: ImageDataset, settings: ViewSettings = ViewSettings()) {
        self.init(height: dataset.height, width: dataset.width, settings: settings)
    }

    /// The view's random stream, positioned at its first draw.
    public static func stream(seed: UInt64, epoch: Int, sample: Int, view: Int) -> RandomStream {
        RandomStream(seed: seed, stream: RandomStream.id(.view, UInt64(epoch), UInt64(sample), UInt64(view)))
    }

    /// Draws positions 0..<26 (see the table above) and turns them into a crop box and factors.
    ///
    /// Crop: s ~ U(area), log a ~ U(log aspect); width fraction sqrt(s a), height fraction
    /// sqrt(s / a); redrawn while either exceeds 1, the 10th attempt clamped to 1. The centre
    /// (cx, cy) is uniform in [w/2, 1 - w/2] x [h/2, 1 - h/2], so left = u (1 - w) W.
    public func parameters(seed: UInt64, epoch: Int, sample: Int, view: Int) -> ViewParameters {
        var random = Self.stream(seed: seed, epoch: epoch, sample: sample, view: view)
        let logAspectLow = Foundation.log(settings.aspectRatio.lowerBound)
        let logAspectHigh = Foundation.log(settings.aspectRatio.upperBound)
        var widthFraction: Float = 1, heightFraction: Float = 1
        for _ in 0..<Self.cropAttempts {
            let area = random.nextUniform(settings.cropArea.lowerBound, settings.cropArea.upperBound)
            let aspect = Foundation.exp(random.nextUniform(logAspectLow, logAspectHigh))
            widthFraction = (area * aspect).squareRoot()
            heightFraction = (area / aspect).squareRoot()
            if widthFraction <= 1 && heightFraction <= 1 { break }
        }
        widthFraction = min(widthFraction, 1)
        heightFraction = min(heightFraction, 1)

        random = RandomStream(seed: random.seed, stream: random.stream, position: Self.centrePosition)
        let centreX = random.nextUniform(), centreY = random.nextUniform()
        let flipCoin = random.nextUniform(), jitterCoin = random.nextUniform()
        let j = settings.jitterStrength
        let brightness = random.nextUniform(1 - j, 1 + j), contrast = random.nextUniform(1 - j, 1 + j)

        let W = Float(width), H = Float(height)
        return ViewParameters(
            left: centreX * (1 - widthFraction) * W, top: centreY * (1 - heightFraction) * H,
            boxWidth: widthFraction * W, boxHeight: heightFraction * H,
            flip: flipCoin < settings.flipProbability, jitter: jitterCoin < settings.jitterProbability,
            brightness: brightness, contrast: contrast)
    }

    /// Writes one view of `image` (H*W bytes) into `out` (H*W floats in [0, 1]).
    ///
    /// 1. Crop: output pixel (i, j) samples the source at its centre mapped into the box,
    ///    x = left + (j + 1/2) boxWidth / W - 1/2 in pixel-index units, bilinearly, with
    ///    indices clamped to the image (border replicated). A full box gives x = j exactly,
    ///    so the identity crop reproduces pixel / 255 bit for bit.
    /// 2. Flip: output column j takes crop column W - 1 - j.
    /// 3. Jitter: x <- clamp(x b), m = mean(x), x <- clamp((x - m) c + m).
    /// 4. Noise: x <- clamp(x + sigma n), n standard normal by Box-Muller in Float:
    ///    u1 = (d0 >> 8 + 1) / 2^24, u2 = (d1 >> 8) / 2^24, r = sqrt(-2 ln u1),
    ///    n = r cos(2 pi u2), r sin(2 pi u2); computed by `GaussianNoise` (vectorised
    ///    polynomials, ~1e-7 relative to libm; `makeViewReference` uses libm in Double).
    public func makeView(image: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>,
                         seed: UInt64, epoch: Int, sample: Int, view: Int) {
        // On the stack when the thread has room (the runtime decides); makeViews reuses one buffer.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: scratchCount) { scratch in
            makeView(image: image, into: out, seed: seed, epoch: epoch, sample: sample, view: view, scratch: scratch.baseAddress!)
        }
    }

    /// Draws for whole groups of 8 Philox blocks (32 draws), see Philox.fillDraws.
    private var drawCapacity: Int { (height * width + 31) / 32 * 32 }

    /// Floats of scratch one view needs: source image (H*W), column taps (2W), draws and normals.
    var scratchCount: Int { height * width + 2 * width + 2 * drawCapacity }

    /// `makeView` with caller-provided scratch of `scratchCount` floats: no allocation at all.
    func makeView(image: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>,
                  seed: UInt64, epoch: Int, sample: Int, view: Int, scratch source: UnsafeMutablePointer<Float>) {
        let p = parameters(seed: seed, epoch: epoch, sample: sample, view: view)
        let H = height, W = width, n = H * W
        let drawCapacity = drawCapacity
        // Scratch: source floats (n), column taps (2W), noise draws and normals (drawCapacity each).
        // Convert once (vectorised) so the gather below reads floats and the identity is exact.
        for i in 0..<n { source[i] = Float(image[i]) / 255 }

        // Column taps, shared by every row: left index as offset and weight of the right one.
        let columnIndex = UnsafeMutableRawPointer(source + n).bindMemory(to: Int32.self, capacity: W)
        let columnWeight = source + n + W
        let stepX = p.boxWidth / Float(W)
        for j in 0..<W {
            let cropColumn = p.flip ? W - 1 - j : j
            let x = p.left + (Float(cropColumn) + 0.5) * stepX - 0.5
            let x0 = x.rounded(.down)
            columnIndex[j] = Int32(x0)
            columnWeight[j] = x - x0
        }

        let stepY = p.boxHeight / Float(H)
        var sum: Float = 0
        for i in 0..<H {
            let y = p.top + (Float(i) + 0.5) * stepY - 0.5
            let y0 = y.rounded(.down)
            let fy = y - y0
            let row0 = source + min(max(Int(y0), 0), H - 1) * W
            let row1 = source + min(max(Int(y0) + 1, 0), H - 1) * W
            let target = out + i * W
            for j in 0..<W {
                let c0 = Int(columnIndex[j])
                let a = min(max(c0, 0), W - 1), b = min(max(c0 + 1, 0), W - 1)
                let fx = columnWeight[j]
                let upper = row0[a] + (row0[b] - row0[a]) * fx
                let lower = row1[a] + (row1[b] - row1[a]) * fx
                var value = upper + (lower - upper) * fy
                if p.jitter {
                    value = min(max(value * p.brightness, 0), 1)
                    sum += value
                }
                target[j] = value
            }
        }

        let mean = sum / Float(n)
        let sigma = settings.noiseSigma
        if sigma > 0 {
            // Draws 32 ..< 32 + n (whole blocks of 8 x 4), then n normals.
            let blocks = (n + 3) / 4
            let draws = UnsafeMutableRawPointer(source + n + 2 * W).bindMemory(to: UInt32.self, capacity: drawCapacity)
            let normals = source + n + 2 * W + drawCapacity
            Philox.fillDraws(seed: seed, stream: RandomStream.id(.view, UInt64(epoch), UInt64(sample), UInt64(view)),
                                    position: Self.noisePosition, blocks: blocks, into: draws)
            GaussianNoise.normals(fromDraws: draws, pairs: 2 * blocks, into: normals)
            if p.jitter {
                for k in 0..<n { out[k] = min(max(contrasted(out[k], mean: mean, p) + sigma * normals[k], 0), 1) }
            } else {
                for k in 0..<n { out[k] = min(max(out[k] + sigma * normals[k], 0), 1) }
            }
        } else {
            // Still clamp: rounding in the interpolation may overshoot 1 by an ulp.
            for k in 0..<n { out[k] = min(max(p.jitter ? contrasted(out[k], mean: mean, p) : out[k], 0), 1) }
        }
    }

    /// Contrast around the mean, clamped to [0, 1].
    @inline(__always)
    private func contrasted(_ value: Float, mean: Float, _ p: ViewParameters) -> Float {
        min(max((value - mean) * p.contrast + mean, 0), 1)
    }

    /// Makes both views of each sample: a 2B x (H*W) batch in `out`, rows 0..<B view 0 of
    /// samples[0..<B], rows B..<2B view 1 of the same samples, so row i's positive is row (i + B) mod 2B.
    public func makeViews(dataset: ImageDataset, samples: [Int], epoch: Int, seed: UInt64,
                          into out: UnsafeMutablePointer<Float>) {
        precondition(dataset.height == height && dataset.width == width,
                     "makeViews: data set images are \(dataset.height)x\(dataset.width), the view maker's \(height)x\(width)")
        dataset.images.withUnsafeBufferPointer { images in
            makeViews(images: images, firstSample: 0, samples: samples, epoch: epoch, seed: seed, into: out)
        }
    }

    /// `makeViews` from the images of samples firstSample ..< firstSample + images.count / (H*W)
    /// (a rank's part of a data set): sample i is row i - firstSample of `images`; its views
    /// depend on the global index i, not on the row.
    public func makeViews(images: UnsafeBufferPointer<UInt8>, firstSample: Int, samples: [Int], epoch: Int, seed: UInt64,
                          into out: UnsafeMutablePointer<Float>) {
        makeViews(images: images, rows: { _, sample in sample - firstSample }, samples: samples, epoch: epoch, seed: seed, into: out)
    }

    /// `makeViews` from the rows of `images`: the i-th of `samples` is row `rows(i, sample)`
    /// (`SampleRows.withFeatureRows`); its views depend on the global index, not on the row.
    public func makeViews(images: UnsafeBufferPointer<UInt8>, rows: (_ index: Int, _ sample: Int) -> Int, samples: [Int],
                          epoch: Int, seed: UInt64, into out: UnsafeMutablePointer<Float>) {
        let pixels = height * width, batch = samples.count, held = images.count / pixels
        // One scratch buffer for the whole batch, so no view allocates.
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: scratchCount)
        defer { scratch.deallocate() }
        for view in 0..<2 {
            for (index, sample) in samples.enumerated() {
                let row = rows(index, sample)
                precondition(row >= 0 && row < held, "makeViews: sample \(sample) maps to row \(row), outside the \(held) rows given")
                makeView(image: images.baseAddress! + row * pixels, into: out + (view * batch + index) * pixels,
                         seed: seed, epoch: epoch, sample: sample, view: view, scratch: scratch)
            }
        }
    }
}
