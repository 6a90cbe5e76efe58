import Foundation
import Tensor

/// Corruptions of test samples for robustness evaluation, one severity each (after Hendrycks &
/// Dietterich 2019, ImageNet-C): a representation whose probe and kNN accuracy drop little under
/// a corruption is robust to that shift.
///
/// They act on the un-augmented inputs `SampleRows.writeInputs` gives (pixels in [0, 1]).
/// Deterministic per (seed, sample): a sample's draws come from its own stream,
/// `RandomStream(seed, id(.corruption, kind, sample))`, so any subset in any order is corrupted
/// the same way. The noise levels share one stream per sample (common random numbers: sigma 0.4
/// is sigma 0.1's noise times four, before clipping), so their columns differ by severity alone.
/// Shapes: an image is H x W, row-major; a feature vector F elements.
public enum Corruption: Sendable, Hashable, CustomStringConvertible {
    /// x + sigma n, n ~ N(0, 1) per element; clipped to [0, 1] for images, not for feature vectors.
    case gaussianNoise(sigma: Float)
    /// A size x size square (clipped to the image) at a uniformly drawn position wholly inside
    /// the image, set to 0.
    case occlusion(size: Int)
    /// Separable Gaussian blur, rows then columns: 5 taps w_k = exp(-k^2 / (2 sigma^2)) / sum,
    /// k = -2...2, edges replicated. Keeps a constant image, and the mean of an image whose two
    /// outermost rows and columns are equal on each side (a black border, as most Fashion-MNIST items).
    case blur(sigma: Float)
    /// x -> m + factor (x - m), m the image's mean: deviations from the mean scale by `factor`.
    case contrast(factor: Float)

    /// The evaluation suite's corruptions for images.
    public static let imageDefaults: [Corruption] = [.gaussianNoise(sigma: 0.1), .gaussianNoise(sigma: 0.2), .gaussianNoise(sigma: 0.4),
                                                    .occlusion(size: 10), .blur(sigma: 1), .contrast(factor: 0.5)]
    /// The evaluation suite's corruptions for feature vectors: noise only (the others need an image).
    public static let featureDefaults: [Corruption] = [.gaussianNoise(sigma: 0.1), .gaussianNoise(sigma: 0.2), .gaussianNoise(sigma: 0.4)]

    /// The suite's corruptions for `rows`: all for uint8 [H, W] images, noise for other features.
    public static func defaults(for rows: SampleRows) -> [Corruption] { rows.isImage ? imageDefaults : featureDefaults }

    /// Short name for tables and JSON: "noise 0.1", "occlusion 10", "blur 1", "contrast 0.5".
    public var description: String {
        switch self {
        case .gaussianNoise(let sigma): return "noise \(sigma)"
        case .occlusion(let size): return "occlusion \(size)"
        case .blur(let sigma): return "blur \(sigma)"
        case .contrast(let factor): return "contrast \(factor)"
        }
    }

    /// Whether it applies to feature vectors (only noise does).
    public var appliesToFeatureVectors: Bool {
        if case .gaussianNoise = self { return true } else { return false }
    }

    /// Stream coordinate of the kind (noise levels share one: common random numbers).
    var streamKind: UInt64 {
        switch self {
        case .gaussianNoise: return 1
        case .occlusion: return 2
        case .blur: return 3
        case .contrast: return 4
        }
    }

    /// Corrupts one sample's inputs in place: `values` holds `shape.reduce(1, *)` elements, an
    /// H x W image when `isImage`. `sample` is its global index (for its random stream).
    public func apply(to values: UnsafeMutablePointer<Float>, shape: [Int], isImage: Bool, seed: UInt64, sample: Int) {
        let n = shape.reduce(1, *)
        precondition(isImage || appliesToFeatureVectors, "\(self) needs images; feature vectors take noise only")
        precondition(!isImage || shape.count == 2 || shape.count == 3, "Corruption: an image has shape [H, W] or [C, H, W], got \(shape)")
        // [C, H, W] images: every channel plane takes the same occlusion box and the same blur.
        let planes = isImage && shape.count == 3 ? shape[0] : 1, sides = Array(shape.suffix(2))
        let stream = RandomStream.id(.corruption, streamKind, UInt64(sample))
        switch self {
        case .gaussianNoise(let sigma):
            // Whole Philox blocks, eight at a time (fillDraws), then Box-Muller in pairs.
            let blocks = (n + 3) / 4, roundedBlocks = (blocks + Philox.lanes - 1) / Philox.lanes * Philox.lanes
            let draws = UnsafeMutablePointer<UInt32>.allocate(capacity: roundedBlocks * 4)
            let normals = UnsafeMutablePointer<Float>.allocate(capacity: blocks * 4)
            defer { draws.deallocate(); normals.deallocate() }
            Philox.fillDraws(seed: seed, stream: stream, position: 0, blocks: blocks, into: draws)
            GaussianNoise.normals(fromDraws: draws, pairs: blocks * 2, into: normals)
            if isImage {
                for i in 0..<n { values[i] = min(max(values[i] + sigma * normals[i], 0), 1) }
            } else {
                for i in 0..<n { values[i] += sigma * normals[i] }
            }
        case .occlusion(let size):
            let (height, width) = (sides[0], sides[1])
            let rows = min(size, height), columns = min(size, width)
            var random = RandomStream(seed: seed, stream: stream)
            let top = random.nextInt(below: height - rows + 1), left = random.nextInt(below: width - columns + 1)
            for plane in 0..<planes {
                for r in top..<(top + rows) { (values + plane * height * width + r * width + left).update(repeating: 0, count: columns) }
            }
        case .blur(let sigma):
            for plane in 0..<planes { Self.blur(values + plane * sides[0] * sides[1], height: sides[0], width: sides[1], sigma: sigma) }
        case .contrast(let factor):
            var sum = 0.0
            for i in 0..<n { sum += Double(values[i]) }
            let mean = Float(sum / Double(max(1, n)))
            for i in 0..<n { values[i] = mean + factor * (values[i] - mean) }
        }
    }

    /// The 5-tap kernel w_k, k = -2...2, normalised to sum 1.
    public static func blurKernel(sigma: Float) -> [Float] {
        let raw = (-2...2).map { k in exp(-Double(k * k) / (2 * Double(sigma) * Double(sigma))) }
        let total = raw.reduce(0, +)
        return raw.map { Float($0 / total) }
    }

    /// Blur along rows, then along columns, reading clamped (edge-replicated) indices.
    static func blur(_ image: UnsafeMutablePointer<Float>, height: Int, width: Int, sigma: Float) {
        let w = blurKernel(sigma: sigma)
        let rowPass = [Float](unsafeUninitializedCapacity: height * width) { buffer, count in
            for r in 0..<height {
                let row = image + r * width
                for c in 0..<width {
                    var sum: Float = 0
                    for k in -2...2 { sum += w[k + 2] * row[min(max(c + k, 0), width - 1)] }
                    buffer[r * width + c] = sum
                }
            }
            count = height * width
        }
        for r in 0..<height {
            for c in 0..<width {
                var sum: Float = 0
                for k in -2...2 { sum += w[k + 2] * rowPass[min(max(r + k, 0), height - 1) * width + c] }
                image[r * width + c] = sum
            }
        }
    }
}

extension SampleRows {
    /// The un-augmented inputs of `samples` (as `writeInputs`), corrupted, in the rows of `out`
    /// (samples.count x F).
    public func writeCorruptedInputs<Samples: Sequence<Int>>(_ samples: Samples, corruption: Corruption, seed: UInt64,
                                                              into out: UnsafeMutablePointer<Float>) {
        writeInputs(samples, into: out)
        let width = featureWidth
        for (index, sample) in samples.enumerated() {
            corruption.apply(to: out + index * width, shape: featureShape, isImage: isImage, seed: seed, sample: sample)
        }
    }
}
