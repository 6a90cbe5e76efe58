import Foundation
import Tensor

extension ViewMaker {
    /// Plain reference for `makeView`: each step of the spec as its own pass over a whole
    /// image, the colour steps and Box-Muller in Double, no shared tables. Slow; the tests' oracle.
    func makeViewReference(image: UnsafePointer<UInt8>, seed: UInt64, epoch: Int, sample: Int, view: Int) -> [Float] {
        let p = parameters(seed: seed, epoch: epoch, sample: sample, view: view)
        let C = channels, H = height, W = width, n = H * W
        func pixel(_ c: Int, _ row: Int, _ column: Int) -> Float {
            Float(image[c * n + min(max(row, 0), H - 1) * W + min(max(column, 0), W - 1)]) / 255
        }

        // 1. Random resized crop, bilinear at pixel centres.
        var crop = [Float](repeating: 0, count: C * n)
        for c in 0..<C {
            for i in 0..<H {
                for j in 0..<W {
                    let x = p.left + (Float(j) + 0.5) * p.boxWidth / Float(W) - 0.5
                    let y = p.top + (Float(i) + 0.5) * p.boxHeight / Float(H) - 0.5
                    let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down))
                    let fx = x - Float(x0), fy = y - Float(y0)
                    crop[c * n + i * W + j] = (1 - fy) * ((1 - fx) * pixel(c, y0, x0) + fx * pixel(c, y0, x0 + 1))
                        + fy * ((1 - fx) * pixel(c, y0 + 1, x0) + fx * pixel(c, y0 + 1, x0 + 1))
                }
            }
        }
        // 2. Flip.
        var result = crop
        if p.flip {
            for c in 0..<C { for i in 0..<H { for j in 0..<W { result[c * n + i * W + j] = crop[c * n + i * W + (W - 1 - j)] } } }
        }
        // 3. Jitter in its order; 4-6 grayscale, blur, solarize (ReferenceOps, from the definitions).
        if p.jitter {
            for k in 0..<4 {
                switch ViewParameters.jitterStep(order: p.jitterOrder, k) {
                case 0: result = result.map { min(max($0 * p.brightness, 0), 1) }
                case 1:
                    if C == 1 {
                        let mean = result.reduce(0, +) / Float(n)
                        result = result.map { min(max(($0 - mean) * p.contrast + mean, 0), 1) }
                    } else {
                        result = ReferenceOps.contrast(result, channels: C, factor: Double(p.contrast))
                    }
                case 2: if settings.saturation > 0 { result = ReferenceOps.saturation(result, channels: C, factor: Double(p.saturation)) }
                default: if settings.hue > 0 { result = ReferenceOps.hue(result, channels: C, shift: Double(p.hue)) }
                }
            }
        }
        if p.grayscale { result = ReferenceOps.grayscale(result, channels: C) }
        if p.blur { result = ReferenceOps.gaussianBlur(result, channels: C, height: H, width: W, size: blurKernel, sigma: Double(p.blurSigma)) }
        if p.solarize { result = result.map { $0 >= settings.solarizeThreshold ? 1 - $0 : $0 } }
        // 7. Gaussian noise.
        if settings.noiseSigma > 0 {
            var random = RandomStream(seed: seed, stream: RandomStream.id(.view, UInt64(epoch), UInt64(sample), UInt64(view)),
                                      position: Self.noisePosition)
            for k in stride(from: 0, to: C * n, by: 2) {
                let u1 = (Double(random.nextUInt32() >> 8) + 1) / 16_777_216
                let u2 = Double(random.nextUInt32() >> 8) / 16_777_216
                let r = (-2 * Foundation.log(u1)).squareRoot()
                let normals = [r * Foundation.cos(2 * Double.pi * u2), r * Foundation.sin(2 * Double.pi * u2)]
                for lane in 0..<min(2, C * n - k) {
                    result[k + lane] = min(max(result[k + lane] + settings.noiseSigma * Float(normals[lane]), 0), 1)
                }
            }
        }
        return result.map { min(max($0, 0), 1) }
    }
}

/// The colour steps written from their definitions, in Double, on whole C x H x W arrays (planes R, G, B):
/// the oracle of `ImageOps` where torchvision cannot be imported, and the documentation of what each step means.
enum ReferenceOps {
    /// Luma Y = 0.2989 R + 0.587 G + 0.114 B (torchvision's rounding of ITU-R 601-2's 0.299).
    static func luma(_ image: [Float], _ k: Int, _ n: Int) -> Double {
        0.2989 * Double(image[k]) + 0.587 * Double(image[n + k]) + 0.114 * Double(image[2 * n + k])
    }

    static func clamp(_ x: Double) -> Float { Float(min(max(x, 0), 1)) }

    /// Blend with the mean luma: c x + (1 - c) mean(Y).
    static func contrast(_ image: [Float], channels: Int, factor: Double) -> [Float] {
        let n = image.count / channels
        let mean = channels == 1 ? image.reduce(0.0) { $0 + Double($1) } / Double(n) : (0..<n).reduce(0.0) { $0 + luma(image, $1, n) } / Double(n)
        return image.map { clamp(factor * Double($0) + (1 - factor) * mean) }
    }

    /// Blend with each pixel's luma: s x + (1 - s) Y.
    static func saturation(_ image: [Float], channels: Int, factor: Double) -> [Float] {
        guard channels == 3 else { return image }
        let n = image.count / 3
        return image.indices.map { index in clamp(factor * Double(image[index]) + (1 - factor) * luma(image, index % n, n)) }
    }

    /// Hue rotation through HSV (Smith 1978's hexcone): H = 60 deg x (sector + offset), rotated by `shift` turns.
    static func hue(_ image: [Float], channels: Int, shift: Double) -> [Float] {
        guard channels == 3 else { return image }
        let n = image.count / 3
        var out = image
        for k in 0..<n {
            let r = Double(image[k]), g = Double(image[n + k]), b = Double(image[2 * n + k])
            let v = max(r, g, b), chroma = v - min(r, g, b)
            guard chroma > 0 else { continue }
            let s = chroma / v
            var h: Double
            if v == r { h = (g - b) / chroma } else if v == g { h = 2 + (b - r) / chroma } else { h = 4 + (r - g) / chroma }
            h = (h / 6 + shift).truncatingRemainder(dividingBy: 1)
            if h < 0 { h += 1 }
            let sector = (h * 6).rounded(.down), f = h * 6 - sector
            let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
            let rgb: (Double, Double, Double)
            switch Int(sector) % 6 {
            case 0: rgb = (v, t, p)
            case 1: rgb = (q, v, p)
            case 2: rgb = (p, v, t)
            case 3: rgb = (p, q, v)
            case 4: rgb = (t, p, v)
            default: rgb = (v, p, q)
            }
            out[k] = clamp(rgb.0); out[n + k] = clamp(rgb.1); out[2 * n + k] = clamp(rgb.2)
        }
        return out
    }

    static func grayscale(_ image: [Float], channels: Int) -> [Float] {
        guard channels == 3 else { return image }
        let n = image.count / 3
        return image.indices.map { Float(luma(image, $0 % n, n)) }
    }

    /// 2-D convolution with the outer product of the normalised Gaussian exp(-x^2 / 2 sigma^2),
    /// x = -(k-1)/2 ... (k-1)/2, borders reflected (without repeating the edge pixel).
    static func gaussianBlur(_ image: [Float], channels: Int, height H: Int, width W: Int, size: Int, sigma: Double) -> [Float] {
        let r = size / 2
        var weights = (0..<size).map { t -> Double in let x = Double(t - r) / sigma; return Foundation.exp(-0.5 * x * x) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        func reflect(_ i: Int, _ count: Int) -> Int { i < 0 ? -i : i >= count ? 2 * (count - 1) - i : i }
        var out = image
        for c in 0..<channels {
            for i in 0..<H {
                for j in 0..<W {
                    var sum = 0.0
                    for u in 0..<size {
                        for v in 0..<size {
                            sum += weights[u] * weights[v] * Double(image[c * H * W + reflect(i + u - r, H) * W + reflect(j + v - r, W)])
                        }
                    }
                    out[c * H * W + i * W + j] = Float(sum)
                }
            }
        }
        return out
    }
}
