import Foundation
import Tensor

extension ViewMaker {
    /// Plain reference for `makeView`: each step of the spec as its own pass over a whole
    /// image, Double-precision Box-Muller, no shared tables. Slow; the tests' oracle.
    func makeViewReference(image: UnsafePointer<UInt8>, seed: UInt64, epoch: Int, sample: Int, view: Int) -> [Float] {
        let p = parameters(seed: seed, epoch: epoch, sample: sample, view: view)
        let H = height, W = width, n = H * W
        func pixel(_ row: Int, _ column: Int) -> Float {
            Float(image[min(max(row, 0), H - 1) * W + min(max(column, 0), W - 1)]) / 255
        }

        // 1. Random resized crop, bilinear at pixel centres.
        var crop = [Float](repeating: 0, count: n)
        for i in 0..<H {
            for j in 0..<W {
                let x = p.left + (Float(j) + 0.5) * p.boxWidth / Float(W) - 0.5
                let y = p.top + (Float(i) + 0.5) * p.boxHeight / Float(H) - 0.5
                let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down))
                let fx = x - Float(x0), fy = y - Float(y0)
                crop[i * W + j] = (1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1))
                    + fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1))
            }
        }
        // 2. Flip.
        var result = crop
        if p.flip {
            for i in 0..<H { for j in 0..<W { result[i * W + j] = crop[i * W + (W - 1 - j)] } }
        }
        // 3. Brightness, then contrast around the brightened image's mean.
        if p.jitter {
            result = result.map { min(max($0 * p.brightness, 0), 1) }
            let mean = result.reduce(0, +) / Float(n)
            result = result.map { min(max(($0 - mean) * p.contrast + mean, 0), 1) }
        }
        // 4. Gaussian noise.
        if settings.noiseSigma > 0 {
            var random = RandomStream(seed: seed, stream: RandomStream.id(.view, UInt64(epoch), UInt64(sample), UInt64(view)),
                                      position: Self.noisePosition)
            for k in stride(from: 0, to: n, by: 2) {
                let u1 = (Double(random.nextUInt32() >> 8) + 1) / 16_777_216
                let u2 = Double(random.nextUInt32() >> 8) / 16_777_216
                let r = (-2 * Foundation.log(u1)).squareRoot()
                let normals = [r * Foundation.cos(2 * Double.pi * u2), r * Foundation.sin(2 * Double.pi * u2)]
                for lane in 0..<min(2, n - k) {
                    result[k + lane] = min(max(result[k + lane] + settings.noiseSigma * Float(normals[lane]), 0), 1)
                }
            }
        }
        return result.map { min(max($0, 0), 1) }
    }
}
