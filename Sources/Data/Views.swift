import Foundation
import Tensor

/// The order of colour jitter's four steps.
public enum JitterOrder: String, Sendable, Equatable {
    /// Brightness, contrast, saturation, hue (the grey views' order before RGB views).
    case fixed
    /// A permutation drawn per view, uniform over all 24, as torchvision's ColorJitter (`randperm(4)`).
    case random
}

/// Augmentation settings; the defaults are the benchmark's (docs: benchmarks/fmnist-simclr-mlp.md, "Views").
/// `simclr(...)` is SimCLR's ImageNet recipe.
public struct ViewSettings: Sendable, Equatable {
    /// Area fraction s of the random resized crop, uniform in this range.
    public var cropArea: ClosedRange<Float>
    /// Aspect ratio a (width / height) of the crop, log-uniform in this range.
    public var aspectRatio: ClosedRange<Float>
    /// Probability of a horizontal flip.
    public var flipProbability: Float
    /// j: brightness b and contrast c are uniform in [1 - j, 1 + j].
    public var jitterStrength: Float
    /// Saturation factor uniform in [1 - saturation, 1 + saturation] (RGB only; 0 = off).
    public var saturation: Float
    /// Hue shift uniform in [-hue, hue] turns, hue <= 0.5 (RGB only; 0 = off).
    public var hue: Float
    /// Probability of applying colour jitter (all four steps, or none).
    public var jitterProbability: Float
    /// The order of jitter's steps.
    public var jitterOrder: JitterOrder
    /// Probability of turning an RGB view grey (its three channels the luma).
    public var grayscaleProbability: Float
    /// Probability of a Gaussian blur.
    public var blurProbability: Float
    /// Odd side of the blur's kernel; 0 = 10 % of the image's shorter side rounded to an odd number, at least 3.
    public var blurKernel: Int
    /// The blur's sigma in pixels, uniform in this range.
    public var blurSigma: ClosedRange<Float>
    /// Probability of solarizing (x <- 1 - x where x >= solarizeThreshold).
    public var solarizeProbability: Float
    public var solarizeThreshold: Float
    /// Standard deviation of the additive Gaussian noise (0 turns it off).
    public var noiseSigma: Float

    public init(cropArea: ClosedRange<Float> = 0.6...1.0,
                aspectRatio: ClosedRange<Float> = (3.0 / 4.0)...(4.0 / 3.0),
                flipProbability: Float = 0.5,
                jitterStrength: Float = 0.4,
                saturation: Float = 0,
                hue: Float = 0,
                jitterProbability: Float = 0.8,
                jitterOrder: JitterOrder = .fixed,
                grayscaleProbability: Float = 0,
                blurProbability: Float = 0,
                blurKernel: Int = 0,
                blurSigma: ClosedRange<Float> = 0.1...2.0,
                solarizeProbability: Float = 0,
                solarizeThreshold: Float = 0.5,
                noiseSigma: Float = 0.05) {
        self.cropArea = cropArea
        self.aspectRatio = aspectRatio
        self.flipProbability = flipProbability
        self.jitterStrength = jitterStrength
        self.saturation = saturation
        self.hue = hue
        self.jitterProbability = jitterProbability
        self.jitterOrder = jitterOrder
        self.grayscaleProbability = grayscaleProbability
        self.blurProbability = blurProbability
        self.blurKernel = blurKernel
        self.blurSigma = blurSigma
        self.solarizeProbability = solarizeProbability
        self.solarizeThreshold = solarizeThreshold
        self.noiseSigma = noiseSigma
        if let problem { preconditionFailure("ViewSettings: \(problem)") }
    }

    /// What is wrong with these settings, or nil (Config validates the same ranges with key names).
    public var problem: String? {
        if !(cropArea.lowerBound > 0 && cropArea.upperBound <= 1) { return "crop area \(cropArea) must lie in (0, 1]" }
        if !(aspectRatio.lowerBound > 0) { return "aspect ratio \(aspectRatio) must be positive" }
        if !(jitterStrength >= 0 && jitterStrength <= 1) { return "jitter strength \(jitterStrength) must lie in [0, 1]" }
        if !(saturation >= 0 && saturation <= 1) { return "saturation \(saturation) must lie in [0, 1]" }
        if !(hue >= 0 && hue <= 0.5) { return "hue \(hue) must lie in [0, 0.5]" }
        if !(blurKernel >= 0 && (blurKernel == 0 || blurKernel % 2 == 1)) { return "blur kernel \(blurKernel) must be 0 or odd" }
        if !(blurSigma.lowerBound > 0 && blurSigma.upperBound.isFinite) { return "blur sigma \(blurSigma) must be positive" }
        if !(solarizeThreshold.isFinite) { return "solarize threshold \(solarizeThreshold) must be a number" }
        if !(noiseSigma >= 0 && noiseSigma.isFinite) { return "noise sigma \(noiseSigma) must be >= 0" }
        return nil
    }

    /// Settings that leave the image unchanged (full crop, no flip, no jitter, no noise).
    public static let identity = ViewSettings(cropArea: 1...1, aspectRatio: 1...1, flipProbability: 0,
                                              jitterProbability: 0, noiseSigma: 0)

    /// SimCLR's ImageNet augmentation (Chen et al. 2020, appendix A; colour strength s = 1):
    /// crop area 0.08-1 with aspect 3/4-4/3, flip 0.5, jitter 0.8 with brightness, contrast and
    /// saturation 0.8 and hue 0.2 in random order, grayscale 0.2, blur 0.5 with a kernel 10 % of
    /// the image's side and sigma 0.1-2, no solarize (BYOL's second view solarizes with p 0.2; both of
    /// contrast's views take the same settings), no noise.
    public static let simclr = ViewSettings(cropArea: 0.08...1, aspectRatio: (3.0 / 4.0)...(4.0 / 3.0), flipProbability: 0.5,
                                            jitterStrength: 0.8, saturation: 0.8, hue: 0.2, jitterProbability: 0.8,
                                            jitterOrder: .random, grayscaleProbability: 0.2, blurProbability: 0.5,
                                            blurKernel: 0, blurSigma: 0.1...2.0, solarizeProbability: 0, noiseSigma: 0)
}

/// The random choices of one view, drawn from its stream before any pixel is touched.
public struct ViewParameters: Sendable, Equatable {
    /// Crop box in pixels: left and top edges and size, continuous (pixel i spans [i, i+1)).
    public var left: Float, top: Float, boxWidth: Float, boxHeight: Float
    public var flip: Bool
    public var jitter: Bool
    /// Brightness and contrast factors (drawn always, used only when `jitter`).
    public var brightness: Float, contrast: Float
    /// Saturation factor and hue shift (drawn always, used only when `jitter` on RGB images).
    public var saturation: Float = 1, hue: Float = 0
    /// Which of the 24 orders of (brightness 0, contrast 1, saturation 2, hue 3) jitter applies:
    /// 0 is the fixed order, see `ViewParameters.jitterStep`.
    public var jitterOrder: Int = 0
    public var grayscale: Bool = false
    public var blur: Bool = false
    public var blurSigma: Float = 1
    public var solarize: Bool = false

    /// The k-th step (0 brightness, 1 contrast, 2 saturation, 3 hue) of order `order` (0..<24): the
    /// permutations of (0, 1, 2, 3) in lexicographic order, decoded from the factorial number system.
    public static func jitterStep(order: Int, _ k: Int) -> Int {
        var remaining: SIMD4<Int32> = [0, 1, 2, 3], left = 4, code = order, step: Int32 = 0
        let factorials: SIMD4<Int> = [6, 2, 1, 1]
        for position in 0...k {
            let index = code / factorials[position]
            code %= factorials[position]
            step = remaining[index]
            for m in index..<(left - 1) { remaining[m] = remaining[m + 1] }
            left -= 1
        }
        return Int(step)
    }
}

/// Makes augmented views of C x H x W images, C = 1 (grey, the benchmark's "Views" section) or 3 (RGB planes).
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
/// | 32+2k, 33+2k    | Box-Muller pair k: noise of output values 2k (cos) and 2k+1 (sin)     |
/// | 2^48            | saturation factor, uniform in [1 - saturation, 1 + saturation]        |
/// | 2^48+1          | hue shift, uniform in [-hue, hue]                                     |
/// | 2^48+2          | jitter order, `nextInt(below: 24)` (used when jitterOrder is random)   |
/// | 2^48+3          | grayscale coin                                                        |
/// | 2^48+4, +5      | blur coin, blur sigma uniform in the sigma range                      |
/// | 2^48+6          | solarize coin                                                         |
/// | 2^48+7          | reserved                                                              |
///
/// Positions 20... are fixed whatever the crop needed, and coins and factors are always drawn,
/// so adding or removing a step never shifts another step's randomness. The colour steps sit at
/// 2^48, past any image's noise, so the grey views made before them kept every bit.
public struct ViewMaker: Sendable {
    public let channels: Int
    public let height: Int
    public let width: Int
    public let settings: ViewSettings
    /// The blur's kernel side: `settings.blurKernel`, or 10 % of the shorter side (odd, at least 3).
    public let blurKernel: Int

    /// Crop attempts before clamping (torchvision's RandomResizedCrop also tries 10 times).
    static let cropAttempts = 10
    static let centrePosition: UInt64 = 20
    static let noisePosition: UInt64 = 32
    static let colourPosition: UInt64 = 1 << 48

    /// The blur kernel SimCLR uses on an image of this side: 10 % of it, rounded, made odd, at least 3.
    public static func blurKernel(side: Int) -> Int {
        let tenth = Int((Float(side) * 0.1).rounded())
        return max(3, tenth | 1)
    }

    public init(channels: Int = 1, height: Int, width: Int, settings: ViewSettings = ViewSettings()) {
        precondition(channels == 1 || channels == 3, "ViewMaker: images must have 1 or 3 channels, not \(channels)")
        precondition(height > 0 && width > 0, "ViewMaker: image size \(height)x\(width) must be positive")
        self.channels = channels
        self.height = height
        self.width = width
        self.settings = settings
        blurKernel = settings.blurKernel > 0 ? settings.blurKernel : Self.blurKernel(side: min(height, width))
        precondition(blurKernel / 2 < min(height, width),
                     "ViewMaker: blur kernel \(blurKernel) is too large for \(height)x\(width) images (half of it must be below the side)")
    }

    public init(dataset: ImageDataset, settings: ViewSettings = ViewSettings()) {
        self.init(height: dataset.height, width: dataset.width, settings: settings)
    }

    /// Values of one view: C H W.
    public var valuesPerView: Int { channels * height * width }

    /// The view's random stream, positioned at its first draw.
    public static func stream(seed: UInt64, epoch: Int, sample: Int, view: Int) -> RandomStream {
        RandomStream(seed: seed, stream: RandomStream.id(.view, UInt64(epoch), UInt64(sample), UInt64(view)))
    }

    /// Draws positions 0..<26 and 2^48..<2^48+7 (see the table above) and turns them into a crop box,
    /// coins and factors.
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

        random = RandomStream(seed: random.seed, stream: random.stream, position: Self.colourPosition)
        let saturation = random.nextUniform(1 - settings.saturation, 1 + settings.saturation)
        let hue = random.nextUniform(-settings.hue, settings.hue)
        let order = random.nextInt(below: 24)
        let grayscaleCoin = random.nextUniform(), blurCoin = random.nextUniform()
        let blurSigma = random.nextUniform(settings.blurSigma.lowerBound, settings.blurSigma.upperBound)
        let solarizeCoin = random.nextUniform()

        let W = Float(width), H = Float(height)
        return ViewParameters(
            left: centreX * (1 - widthFraction) * W, top: centreY * (1 - heightFraction) * H,
            boxWidth: widthFraction * W, boxHeight: heightFraction * H,
            flip: flipCoin < settings.flipProbability, jitter: jitterCoin < settings.jitterProbability,
            brightness: brightness, contrast: contrast, saturation: saturation, hue: hue,
            jitterOrder: settings.jitterOrder == .random ? order : 0,
            grayscale: grayscaleCoin < settings.grayscaleProbability,
            blur: blurCoin < settings.blurProbability, blurSigma: blurSigma,
            solarize: solarizeCoin < settings.solarizeProbability)
    }

    /// Writes one view of `image` (C*H*W bytes, channel planes) into `out` (C*H*W floats in [0, 1]).
    ///
    /// 1. Crop: output pixel (i, j) samples the source at its centre mapped into the box,
    ///    x = left + (j + 1/2) boxWidth / W - 1/2 in pixel-index units, bilinearly, with
    ///    indices clamped to the image (border replicated). A full box gives x = j exactly,
    ///    so the identity crop reproduces pixel / 255 bit for bit. Every channel uses the same box.
    /// 2. Flip: output column j takes crop column W - 1 - j.
    /// 3. Jitter, its steps in `jitterOrder`: brightness x <- clamp(x b); contrast
    ///    x <- clamp((x - m) c + m), m the mean luma; saturation and hue (RGB only), as `ImageOps`.
    /// 4. Grayscale (RGB only), 5. Gaussian blur, 6. solarize, each when its coin says so.
    /// 7. Noise: x <- clamp(x + sigma n), n standard normal by Box-Muller in Float:
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
    private var drawCapacity: Int { (valuesPerView + 31) / 32 * 32 }

    /// Floats of scratch one view needs: source image (C*H*W), column taps (2W), blur rows (C*H*W)
    /// and taps, draws and normals.
    var scratchCount: Int { 2 * valuesPerView + 2 * width + blurKernel + 2 * drawCapacity }

    /// `makeView` with caller-provided scratch of `scratchCount` floats: no allocation at all.
    func makeView(image: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>,
                  seed: UInt64, epoch: Int, sample: Int, view: Int, scratch source: UnsafeMutablePointer<Float>) {
        let p = parameters(seed: seed, epoch: epoch, sample: sample, view: view)
        let C = channels, H = height, W = width, n = H * W, count = C * n
        let drawCapacity = drawCapacity
        // Scratch: source floats (count), column taps (2W), blur rows (count), blur taps, noise draws and normals.
        // Convert once (vectorised) so the gather below reads floats and the identity is exact.
        for i in 0..<count { source[i] = Float(image[i]) / 255 }
        let columnIndex = UnsafeMutableRawPointer(source + count).bindMemory(to: Int32.self, capacity: W)
        let columnWeight = source + count + W
        let blurRows = source + count + 2 * W, blurWeights = blurRows + count
        let draws = UnsafeMutableRawPointer(blurWeights + blurKernel).bindMemory(to: UInt32.self, capacity: drawCapacity)
        let normals = blurWeights + blurKernel + drawCapacity

        // 1-2. Crop and flip.
        ImageOps.resizedCrop(source, channels: C, height: H, width: W, left: p.left, top: p.top, boxWidth: p.boxWidth,
                             boxHeight: p.boxHeight, flip: p.flip, into: out, columnTaps: columnIndex, columnWeights: columnWeight)

        // 3. Colour jitter. Saturation and hue leave grey images alone; strength 0 skips them (factor 1, shift 0).
        if p.jitter {
            for k in 0..<4 {
                switch ViewParameters.jitterStep(order: p.jitterOrder, k) {
                case 0: ImageOps.brightness(out, count: count, factor: p.brightness)
                case 1: ImageOps.contrast(out, channels: C, pixels: n, factor: p.contrast)
                case 2: if settings.saturation > 0 { ImageOps.saturation(out, channels: C, pixels: n, factor: p.saturation) }
                default: if settings.hue > 0 { ImageOps.hue(out, channels: C, pixels: n, shift: p.hue) }
                }
            }
        }
        // 4-6. Grayscale, blur, solarize.
        if p.grayscale { ImageOps.grayscale(out, channels: C, pixels: n) }
        if p.blur {
            ImageOps.gaussianKernel(size: blurKernel, sigma: p.blurSigma, into: blurWeights)
            ImageOps.gaussianBlur(out, channels: C, height: H, width: W, weights: blurWeights, size: blurKernel, scratch: blurRows)
        }
        if p.solarize { ImageOps.solarize(out, count: count, threshold: settings.solarizeThreshold) }

        // 7. Noise, and a clamp in any case: rounding in the interpolation may overshoot 1 by an ulp.
        let sigma = settings.noiseSigma
        if sigma > 0 {
            // Draws 32 ..< 32 + count (whole blocks of 8 x 4), then count normals.
            let blocks = (count + 3) / 4
            Philox.fillDraws(seed: seed, stream: RandomStream.id(.view, UInt64(epoch), UInt64(sample), UInt64(view)),
                             position: Self.noisePosition, blocks: blocks, into: draws)
            GaussianNoise.normals(fromDraws: draws, pairs: 2 * blocks, into: normals)
            for k in 0..<count { out[k] = min(max(out[k] + sigma * normals[k], 0), 1) }
        } else {
            for k in 0..<count { out[k] = min(max(out[k], 0), 1) }
        }
    }

    /// Makes both views of each sample: a 2B x (C*H*W) batch in `out`, rows 0..<B view 0 of
    /// samples[0..<B], rows B..<2B view 1 of the same samples, so row i's positive is row (i + B) mod 2B.
    public func makeViews(dataset: ImageDataset, samples: [Int], epoch: Int, seed: UInt64,
                          into out: UnsafeMutablePointer<Float>) {
        precondition(channels == 1 && dataset.height == height && dataset.width == width,
                     "makeViews: data set images are \(dataset.height)x\(dataset.width), the view maker's \(height)x\(width)")
        dataset.images.withUnsafeBufferPointer { images in
            makeViews(images: images, firstSample: 0, samples: samples, epoch: epoch, seed: seed, into: out)
        }
    }

    /// `makeViews` from the images of samples firstSample ..< firstSample + images.count / (C*H*W)
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
        let pixels = valuesPerView, batch = samples.count, held = images.count / pixels
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
