import Foundation
import Tensor

/// Augmentation settings for feature vectors (text or audio embeddings, tabular rows), where
/// crops and flips mean nothing. The defaults change nothing.
public struct FeatureViewSettings: Sendable, Equatable {
    /// Probability p that a feature is zeroed, each feature independently; no 1 / (1 - p) rescaling.
    public var dropout: Float
    /// Fraction of the vector zeroed as one contiguous span of round(mask F) features at a
    /// random start; 0 turns it off.
    public var mask: Float
    /// Standard deviation of the additive Gaussian noise; 0 turns it off.
    public var noise: Float
    /// One multiplicative factor per view, uniform in this range; 1...1 turns it off.
    public var scale: ClosedRange<Float>

    public init(dropout: Float = 0, mask: Float = 0, noise: Float = 0, scale: ClosedRange<Float> = 1...1) {
        self.dropout = dropout
        self.mask = mask
        self.noise = noise
        self.scale = scale
    }

    /// Settings that leave the features unchanged.
    public static let identity = FeatureViewSettings()

    /// The first out-of-range value, described in one line; nil when all are valid.
    public var problem: String? {
        if !(dropout >= 0 && dropout < 1) { return "feature dropout \(dropout) must lie in [0, 1)" }
        if !(mask >= 0 && mask < 1) { return "feature mask fraction \(mask) must lie in [0, 1)" }
        if !(noise >= 0 && noise.isFinite) { return "feature noise sigma \(noise) must be 0 or positive" }
        if !(scale.lowerBound > 0 && scale.upperBound.isFinite) {
            return "feature scale range \(scale) must satisfy 0 < lower <= upper (1...1 turns it off)"
        }
        return nil
    }
}

/// The random choices of one feature view that are not per feature.
public struct FeatureViewParameters: Sendable, Equatable {
    /// The factor every feature is multiplied by.
    public var scale: Float
    /// The features the mask zeroes (empty when the mask is off).
    public var mask: Range<Int>
}

/// Where a batch of feature views reads its samples: a rank's rows, R x F, row-major.
public enum FeatureRows {
    /// Bytes, read as byte / 255 (as images are).
    case uint8(UnsafeBufferPointer<UInt8>)
    case float32(UnsafeBufferPointer<Float>)

    /// Values in the buffer.
    var count: Int {
        switch self {
        case .uint8(let values): return values.count
        case .float32(let values): return values.count
        }
    }
}

/// Makes augmented views of feature vectors of width F.
///
/// x -> s x -> zero the mask span -> zero dropped features -> + sigma n. Noise is added to
/// every feature, the zeroed ones included.
///
/// Every random value comes from one counter-based stream per (seed, epoch, sample, view):
/// `RandomStream(seed: seed, stream: RandomStream.id(.featureView, epoch, sample, view))`, so a
/// view is a pure function of its coordinates, whichever rank or thread makes it. Draw positions:
///
/// | position          | value                                                               |
/// |-------------------|---------------------------------------------------------------------|
/// | 0                 | scale s = lerp(scale range, u)                                      |
/// | 1                 | mask start, `nextInt(below: F - L + 1)` with L = round(mask F)       |
/// | 2, 3              | reserved                                                            |
/// | 4 + k             | dropout of feature k: zeroed when u < dropout                        |
/// | 2^32 + 2k, +2k+1  | Box-Muller pair k: noise of features 2k (cos) and 2k+1 (sin)         |
///
/// u is `nextUniform` of that draw ((d >> 8) / 2^24). Positions 0 and 1 are drawn whatever the
/// settings, and each step owns its positions, so turning a step on or off never shifts
/// another's randomness. The normals are `GaussianNoise`'s (as image views'). Shapes: F width,
/// B batch, L mask span.
public struct FeatureViewMaker: Sendable {
    public let width: Int
    public let settings: FeatureViewSettings

    static let scalePosition: UInt64 = 0
    static let maskPosition: UInt64 = 1
    static let dropoutPosition: UInt64 = 4
    static let noisePosition: UInt64 = 1 << 32
    /// Features handled per pass of draws, so the draws fit in two small stack buffers.
    static let chunk = 128

    public init(width: Int, settings: FeatureViewSettings = FeatureViewSettings()) {
        precondition(width > 0 && width < 1 << 31, "FeatureViewMaker: width \(width) must lie in 1..<2^31")
        if let problem = settings.problem { preconditionFailure("FeatureViewMaker: \(problem)") }
        self.width = width
        self.settings = settings
    }

    /// The view's random stream, positioned at its first draw.
    public static func stream(seed: UInt64, epoch: Int, sample: Int, view: Int) -> RandomStream {
        RandomStream(seed: seed, stream: RandomStream.id(.featureView, UInt64(epoch), UInt64(sample), UInt64(view)))
    }

    /// L = round(mask F), halves away from zero.
    public var maskLength: Int { Int((Double(settings.mask) * Double(width)).rounded()) }

    /// Draws positions 0 and 1: the scale factor and the mask span.
    public func parameters(seed: UInt64, epoch: Int, sample: Int, view: Int) -> FeatureViewParameters {
        var random = Self.stream(seed: seed, epoch: epoch, sample: sample, view: view)
        let scale = random.nextUniform(settings.scale.lowerBound, settings.scale.upperBound)
        let length = maskLength
        let start = random.nextInt(below: width - length + 1)
        return FeatureViewParameters(scale: scale, mask: start ..< start + length)
    }

    /// Writes one view of `features` (F floats) into `out` (F floats).
    public func makeView(features: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                         seed: UInt64, epoch: Int, sample: Int, view: Int) {
        let p = parameters(seed: seed, epoch: epoch, sample: sample, view: view)
        for k in 0..<width { out[k] = p.scale * features[k] }
        perturb(out, p, seed: seed, epoch: epoch, sample: sample, view: view)
    }

    /// Writes one view of `features` (F bytes, read as byte / 255) into `out` (F floats).
    public func makeView(features: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>,
                         seed: UInt64, epoch: Int, sample: Int, view: Int) {
        let p = parameters(seed: seed, epoch: epoch, sample: sample, view: view)
        // Division, not multiplication by 1/255: the values `ImageDataset.writePixels` gives.
        for k in 0..<width { out[k] = p.scale * (Float(features[k]) / 255) }
        perturb(out, p, seed: seed, epoch: epoch, sample: sample, view: view)
    }

    /// Mask, dropout and noise in place, `chunk` features at a time from stack buffers: no allocation.
    private func perturb(_ out: UnsafeMutablePointer<Float>, _ p: FeatureViewParameters,
                         seed: UInt64, epoch: Int, sample: Int, view: Int) {
        for k in p.mask { out[k] = 0 }
        let dropout = settings.dropout, sigma = settings.noise
        guard dropout > 0 || sigma > 0 else { return }
        let stream = RandomStream.id(.featureView, UInt64(epoch), UInt64(sample), UInt64(view))
        // chunk = 128 draws is 32 Philox blocks, a whole number of fillDraws' 8-block steps.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: Self.chunk) { drawBuffer in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.chunk) { normalBuffer in
                let draws = drawBuffer.baseAddress!, normals = normalBuffer.baseAddress!
                var start = 0
                while start < width {
                    let count = min(Self.chunk, width - start)
                    let blocks = (count + 3) / 4
                    let target = out + start
                    if dropout > 0 {
                        Philox.fillDraws(seed: seed, stream: stream, position: Self.dropoutPosition + UInt64(start),
                                         blocks: blocks, into: draws)
                        for k in 0..<count where Float(draws[k] >> 8) * (1.0 / 16_777_216.0) < dropout { target[k] = 0 }
                    }
                    if sigma > 0 {
                        // start is even, so pair k of the chunk is pair start / 2 + k of the view.
                        Philox.fillDraws(seed: seed, stream: stream, position: Self.noisePosition + UInt64(start),
                                         blocks: blocks, into: draws)
                        GaussianNoise.normals(fromDraws: draws, pairs: (count + 1) / 2, into: normals)
                        for k in 0..<count { target[k] += sigma * normals[k] }
                    }
                    start += count
                }
            }
        }
    }

    /// Makes both views of each sample: a 2B x F batch in `out`, rows 0..<B view 0 of
    /// samples[0..<B], rows B..<2B view 1 of the same samples (as `ViewMaker.makeViews`).
    /// - Parameters:
    ///   - samples: global sample indices; they name the random streams.
    ///   - rows: the row of `source` holding the i-th of `samples` (`SampleRows.withFeatureRows`).
    ///   - source: R x F features.
    public func makeViews(samples: [Int], rows: (_ index: Int, _ sample: Int) -> Int, source: FeatureRows, epoch: Int, seed: UInt64,
                          into out: UnsafeMutablePointer<Float>) {
        let batch = samples.count
        let rowCount = source.count / width
        for view in 0..<2 {
            for (index, sample) in samples.enumerated() {
                let row = rows(index, sample)
                precondition(row >= 0 && row < rowCount, "makeViews: sample \(sample) maps to row \(row), outside the source's 0..<\(rowCount)")
                makeView(source: source, row: row, into: out + (view * batch + index) * width,
                         seed: seed, epoch: epoch, sample: sample, view: view)
            }
        }
    }

    /// `makeView` of row `row` of `source`, whichever element type it holds.
    public func makeView(source: FeatureRows, row: Int, into out: UnsafeMutablePointer<Float>,
                         seed: UInt64, epoch: Int, sample: Int, view: Int) {
        switch source {
        case .uint8(let values):
            makeView(features: values.baseAddress! + row * width, into: out, seed: seed, epoch: epoch, sample: sample, view: view)
        case .float32(let values):
            makeView(features: values.baseAddress! + row * width, into: out, seed: seed, epoch: epoch, sample: sample, view: view)
        }
    }

    /// Plain reference for `makeView`: each step its own pass, draws one at a time from
    /// `RandomStream`, Box-Muller in Double with libm. Slow; the tests' oracle.
    func makeViewReference(features: [Float], seed: UInt64, epoch: Int, sample: Int, view: Int) -> [Float] {
        var random = Self.stream(seed: seed, epoch: epoch, sample: sample, view: view)
        let scale = random.nextUniform(settings.scale.lowerBound, settings.scale.upperBound)
        let start = random.nextInt(below: width - maskLength + 1)
        var result = features.map { scale * $0 }
        for k in start ..< start + maskLength { result[k] = 0 }
        if settings.dropout > 0 {
            random = RandomStream(seed: seed, stream: random.stream, position: Self.dropoutPosition)
            for k in 0..<width where random.nextUniform() < settings.dropout { result[k] = 0 }
        }
        if settings.noise > 0 {
            random = RandomStream(seed: seed, stream: random.stream, position: Self.noisePosition)
            for k in stride(from: 0, to: width, by: 2) {
                let u1 = (Double(random.nextUInt32() >> 8) + 1) / 16_777_216
                let u2 = Double(random.nextUInt32() >> 8) / 16_777_216
                let r = (-2 * Foundation.log(u1)).squareRoot()
                let normals = [r * Foundation.cos(2 * Double.pi * u2), r * Foundation.sin(2 * Double.pi * u2)]
                for lane in 0..<min(2, width - k) { result[k + lane] += settings.noise * Float(normals[lane]) }
            }
        }
        return result
    }
}
