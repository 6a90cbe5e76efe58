import Config
import Data
import Foundation
import Tensor
import Training

extension Bench {
    /// Views per second on one thread (what each `data.prefetch` thread makes) for random images of each
    /// [C, H, W] in `shapes`: the config's `views` section, then the crop and flip alone and each other
    /// step alone on top of them (probability 1), so the table shows what each step costs.
    /// `makeViews` of 64 samples (128 views) per timed repeat; the median is reported.
    public static func views(config: TrainingConfig, shapes: [[Int]], repeats: Int, warmup: Int = 3) throws -> BenchOutput {
        let out = BenchOutput(bench: "views")
        let samples = 64
        var cropOnly = ViewsSection()
        cropOnly.cropArea = config.views.cropArea; cropOnly.aspectRatio = config.views.aspectRatio; cropOnly.flip = 1
        cropOnly.jitterProbability = 0; cropOnly.noise = 0
        var variants: [(String, ViewsSection)] = [("config views", config.views), ("crop + flip", cropOnly)]
        var jitter = cropOnly
        jitter.jitterProbability = 1; jitter.jitter = 0.8; jitter.saturation = 0.8; jitter.hue = 0.2; jitter.jitterOrder = .random
        variants.append(("+ jitter (b, c, s, h)", jitter))
        var hue = cropOnly
        hue.jitterProbability = 1; hue.jitter = 0; hue.hue = 0.2
        variants.append(("+ jitter (hue only)", hue))
        var grayscale = cropOnly
        grayscale.grayscaleProbability = 1
        variants.append(("+ grayscale", grayscale))
        var blur = cropOnly
        blur.blurProbability = 1
        variants.append(("+ blur", blur))
        var solarize = cropOnly
        solarize.solarizeProbability = 1
        variants.append(("+ solarize", solarize))
        var noise = cropOnly
        noise.noise = 0.05
        variants.append(("+ noise", noise))

        out.line("views made on one thread, \(samples) random images (\(2 * samples) views) per batch, median of \(repeats):")
        for shape in shapes {
            let values = shape.reduce(1, *)
            var state: UInt32 = 7
            let images = (0..<(samples * values)).map { _ -> UInt8 in state = state &* 1_664_525 &+ 1_013_904_223; return UInt8(state >> 24) }
            let output = UnsafeMutablePointer<Float>.allocate(capacity: 2 * samples * values)
            defer { output.deallocate() }
            for (name, section) in variants {
                let maker = try TrainingData.viewMaker(section, imageShape: shape)
                let timed = images.withUnsafeBufferPointer { source in
                    afterWarmup(repeats: repeats, warmup: warmup) { index -> Double in
                        let start = monotonicSeconds()
                        maker.makeViews(images: source, firstSample: 0, samples: Array(0..<samples), epoch: index, seed: 1, into: output)
                        return monotonicSeconds() - start
                    }
                }
                let time = Measurement(seconds: timed, warmup: warmup)
                let perSecond = Double(2 * samples) / time.median
                let shapeText = shape.map(String.init).joined(separator: "x")
                let label = (shapeText + " " + name).padding(toLength: 32, withPad: " ", startingAt: 0)
                out.line("  " + label + String(format: "%9.0f views/s  %8.2f us/view", perSecond, 1e6 / perSecond))
                out.record(["shape": shape, "views": name, "views_per_second": perSecond], time)
            }
        }
        return out
    }
}
