import Foundation

/// The per-image steps of an RGB or grey view, each one pass over a C x H x W float image in [0, 1]
/// (C = 1 or 3, planes R, G, B), in place, without allocating. Each follows the definition of
/// torchvision's functional op of the same name on float tensors (torchvision 0.15,
/// `transforms/functional_tensor.py`); `ViewMaker` chains them and `ViewsReference.swift` restates
/// them in Double as the tests' oracle. Shapes: C channels, H x W pixels, n = H W.
public enum ImageOps {
    /// ITU-R 601-2 luma weights, as torchvision's `rgb_to_grayscale` (0.2989, not 0.299).
    public static let luma: (red: Float, green: Float, blue: Float) = (0.2989, 0.587, 0.114)

    /// Random resized crop and flip of `source` (C x H x W) into `out` (C x H x W): output pixel (i, j)
    /// samples the source bilinearly at x = left + (j' + 1/2) boxWidth / W - 1/2 (j' = W - 1 - j when
    /// flipped), y likewise, indices clamped to the image. A box of integers is torchvision's
    /// `resized_crop(img, top, left, height, width, [H, W], bilinear)` except near the box's edges: torchvision
    /// interpolates within the cropped box (its edge pixel replicated), this reads the image's pixels just
    /// outside the box. `columnTaps` and `columnWeights` are W each of scratch.
    public static func resizedCrop(_ source: UnsafePointer<Float>, channels: Int, height H: Int, width W: Int,
                                   left: Float, top: Float, boxWidth: Float, boxHeight: Float, flip: Bool,
                                   into out: UnsafeMutablePointer<Float>,
                                   columnTaps columnIndex: UnsafeMutablePointer<Int32>, columnWeights columnWeight: UnsafeMutablePointer<Float>) {
        let n = H * W
        // Column taps, shared by every row and channel: left index and weight of the right one.
        let stepX = boxWidth / Float(W)
        for j in 0..<W {
            let cropColumn = flip ? W - 1 - j : j
            let x = left + (Float(cropColumn) + 0.5) * stepX - 0.5
            let x0 = x.rounded(.down)
            columnIndex[j] = Int32(x0)
            columnWeight[j] = x - x0
        }
        let stepY = boxHeight / Float(H)
        for c in 0..<channels {
            let plane = source + c * n
            for i in 0..<H {
                let y = top + (Float(i) + 0.5) * stepY - 0.5
                let y0 = y.rounded(.down)
                let fy = y - y0
                let row0 = plane + min(max(Int(y0), 0), H - 1) * W
                let row1 = plane + min(max(Int(y0) + 1, 0), H - 1) * W
                let target = out + c * n + i * W
                for j in 0..<W {
                    let c0 = Int(columnIndex[j])
                    let a = min(max(c0, 0), W - 1), b = min(max(c0 + 1, 0), W - 1)
                    let fx = columnWeight[j]
                    let upper = row0[a] + (row0[b] - row0[a]) * fx
                    let lower = row1[a] + (row1[b] - row1[a]) * fx
                    target[j] = upper + (lower - upper) * fy
                }
            }
        }
    }

    /// x <- clamp(b x) (`adjust_brightness`: a blend with black).
    public static func brightness(_ image: UnsafeMutablePointer<Float>, count: Int, factor: Float) {
        for k in 0..<count { image[k] = min(max(image[k] * factor, 0), 1) }
    }

    /// x <- clamp((x - m) c + m), m the mean of the grey image over all pixels (`adjust_contrast`).
    ///
    /// One channel sums in Float, pixel by pixel (the grey views made before RGB depend on its
    /// rounding); three channels sum the luma in Double.
    public static func contrast(_ image: UnsafeMutablePointer<Float>, channels: Int, pixels n: Int, factor: Float) {
        let mean: Float
        if channels == 1 {
            var sum: Float = 0
            for k in 0..<n { sum += image[k] }
            mean = sum / Float(n)
        } else {
            let red = image, green = image + n, blue = image + 2 * n
            var sum: Double = 0
            for k in 0..<n { sum += Double(luma.red * red[k] + luma.green * green[k] + luma.blue * blue[k]) }
            mean = Float(sum / Double(n))
        }
        for k in 0..<(channels * n) { image[k] = min(max((image[k] - mean) * factor + mean, 0), 1) }
    }

    /// x <- clamp(s x + (1 - s) g), g the pixel's luma (`adjust_saturation`); grey images are left as they are.
    public static func saturation(_ image: UnsafeMutablePointer<Float>, channels: Int, pixels n: Int, factor: Float) {
        guard channels == 3 else { return }
        let red = image, green = image + n, blue = image + 2 * n, rest = 1 - factor
        for k in 0..<n {
            let grey = rest * (luma.red * red[k] + luma.green * green[k] + luma.blue * blue[k])
            red[k] = min(max(factor * red[k] + grey, 0), 1)
            green[k] = min(max(factor * green[k] + grey, 0), 1)
            blue[k] = min(max(factor * blue[k] + grey, 0), 1)
        }
    }

    /// Rotates the hue by `shift` turns (`adjust_hue`, shift in [-0.5, 0.5]): RGB -> HSV as
    /// torchvision's `_rgb2hsv`, h <- (h + shift) mod 1, back by `_hsv2rgb`; grey images are left as they are.
    /// Eight pixels at a time, branch-free (the last few padded with black, which has no hue).
    public static func hue(_ image: UnsafeMutablePointer<Float>, channels: Int, pixels n: Int, shift: Float) {
        guard channels == 3 else { return }
        let red = image, green = image + n, blue = image + 2 * n
        var start = 0
        while start < n {
            let lanes = min(8, n - start)
            var r = SIMD8<Float>(), g = SIMD8<Float>(), b = SIMD8<Float>()
            for lane in 0..<lanes { r[lane] = red[start + lane]; g[lane] = green[start + lane]; b[lane] = blue[start + lane] }
            let (newRed, newGreen, newBlue) = rotateHue(r, g, b, shift: shift)
            for lane in 0..<lanes { red[start + lane] = newRed[lane]; green[start + lane] = newGreen[lane]; blue[start + lane] = newBlue[lane] }
            start += 8
        }
    }

    /// The hue rotation of eight pixels. x mod 1 is x - floor(x), exactly torch's fmod of a positive
    /// number and its remainder (Python's %) of any.
    @inline(__always)
    static func rotateHue(_ r: SIMD8<Float>, _ g: SIMD8<Float>, _ b: SIMD8<Float>, shift: Float)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let maxc = pointwiseMax(pointwiseMax(r, g), b), minc = pointwiseMin(pointwiseMin(r, g), b)
        let chroma = maxc - minc
        // A grey pixel (chroma 0) has no hue: h = 0, s = 0, and it comes back as it was (v, v, v).
        let grey = chroma .== 0
        let divisor = chroma.replacing(with: 1, where: grey)
        let s = chroma / maxc.replacing(with: 1, where: grey)
        let rc = (maxc - r) / divisor, gc = (maxc - g) / divisor, bc = (maxc - b) / divisor
        let isRed = maxc .== r, isGreen = (maxc .== g) .& .!isRed
        var h6 = 4 + gc - rc
        h6.replace(with: 2 + rc - bc, where: isGreen)
        h6.replace(with: bc - gc, where: isRed)
        var h = h6 / 6 + 1
        h -= h.rounded(.down)
        h += shift
        h -= h.rounded(.down)
        let v = maxc, scaled = h * 6
        var sector = scaled.rounded(.down)
        let f = scaled - sector
        sector.replace(with: 0, where: sector .== 6)   // h * 6 rounded up to 6: torch's i % 6
        let zero = SIMD8<Float>(repeating: 0), one = SIMD8<Float>(repeating: 1)
        let p = (v * (1 - s)).clamped(lowerBound: zero, upperBound: one)
        let q = (v * (1 - s * f)).clamped(lowerBound: zero, upperBound: one)
        let t = (v * (1 - s * (1 - f))).clamped(lowerBound: zero, upperBound: one)
        // Sector k: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q).
        let s1 = sector .== 1, s2 = sector .== 2, s3 = sector .== 3, s4 = sector .== 4, s5 = sector .== 5
        var outRed = v, outGreen = t, outBlue = p
        outRed.replace(with: q, where: s1); outGreen.replace(with: v, where: s1)
        outRed.replace(with: p, where: s2); outGreen.replace(with: v, where: s2); outBlue.replace(with: t, where: s2)
        outRed.replace(with: p, where: s3); outGreen.replace(with: q, where: s3); outBlue.replace(with: v, where: s3)
        outRed.replace(with: t, where: s4); outGreen.replace(with: p, where: s4); outBlue.replace(with: v, where: s4)
        outGreen.replace(with: p, where: s5); outBlue.replace(with: q, where: s5)
        outRed.replace(with: r, where: grey); outGreen.replace(with: g, where: grey); outBlue.replace(with: b, where: grey)
        return (outRed, outGreen, outBlue)
    }

    /// Every channel <- the pixel's luma (`rgb_to_grayscale` with 3 output channels); grey images are left as they are.
    public static func grayscale(_ image: UnsafeMutablePointer<Float>, channels: Int, pixels n: Int) {
        guard channels == 3 else { return }
        let red = image, green = image + n, blue = image + 2 * n
        for k in 0..<n {
            let grey = luma.red * red[k] + luma.green * green[k] + luma.blue * blue[k]
            red[k] = grey; green[k] = grey; blue[k] = grey
        }
    }

    /// x <- 1 - x where x >= threshold (`solarize` of a float image).
    public static func solarize(_ image: UnsafeMutablePointer<Float>, count: Int, threshold: Float) {
        for k in 0..<count { image[k] = image[k] >= threshold ? 1 - image[k] : image[k] }
    }

    /// The normalised 1-D Gaussian of `gaussian_blur`: w_t = exp(-(t - r)^2 / (2 sigma^2)) / sum,
    /// t = 0..<size, r = (size - 1) / 2.
    public static func gaussianKernel(size: Int, sigma: Float, into weights: UnsafeMutablePointer<Float>) {
        let half = Float(size - 1) * 0.5
        var sum: Float = 0
        for t in 0..<size {
            let x = (Float(t) - half) / sigma
            weights[t] = Foundation.exp(-0.5 * x * x)
            sum += weights[t]
        }
        for t in 0..<size { weights[t] /= sum }
    }

    /// Separable Gaussian blur with reflected borders (`gaussian_blur`, padding mode reflect:
    /// index -1 reads 1, index W reads W - 2): rows into `scratch` (C n floats), then columns back.
    /// `weights` holds `size` taps (odd size, size / 2 < H and W).
    public static func gaussianBlur(_ image: UnsafeMutablePointer<Float>, channels: Int, height H: Int, width W: Int,
                                    weights: UnsafePointer<Float>, size: Int, scratch: UnsafeMutablePointer<Float>) {
        let r = size / 2
        @inline(__always) func reflect(_ i: Int, _ count: Int) -> Int { i < 0 ? -i : i >= count ? 2 * (count - 1) - i : i }
        for c in 0..<channels {
            let plane = image + c * H * W, temporary = scratch + c * H * W
            // Rows: the interior without index arithmetic (vectorises over j), the r columns at each edge reflected.
            for i in 0..<H {
                let source = plane + i * W, target = temporary + i * W
                for j in 0..<W { target[j] = 0 }
                for t in 0..<size {
                    let w = weights[t], offset = t - r
                    let low = max(0, -offset), high = min(W, W - offset)
                    if low < high { for j in low..<high { target[j] += w * source[j + offset] } }
                    for j in 0..<low { target[j] += w * source[reflect(j + offset, W)] }
                    for j in max(high, low)..<W { target[j] += w * source[reflect(j + offset, W)] }
                }
            }
            // Columns: whole rows at a time, so the inner loop runs along contiguous memory.
            for i in 0..<H {
                let target = plane + i * W
                for j in 0..<W { target[j] = 0 }
                for t in 0..<size {
                    let w = weights[t], source = temporary + reflect(i + t - r, H) * W
                    for j in 0..<W { target[j] += w * source[j] }
                }
            }
        }
    }
}
