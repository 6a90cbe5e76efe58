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
    ///
    /// Branch-free selects in a plain loop, which the compiler vectorises (SIMD8 values with
    /// `replacing(with:where:)` and `rounded` ran 2-4x slower, through per-lane calls); x mod 1 is
    /// x - floor(x), exactly torch's fmod of a positive number and its remainder (Python's %) of any.
    public static func hue(_ image: UnsafeMutablePointer<Float>, channels: Int, pixels n: Int, shift: Float) {
        guard channels == 3 else { return }
        let red = image, green = image + n, blue = image + 2 * n
        for k in 0..<n {
            let r = red[k], g = green[k], b = blue[k]
            let maxc = max(max(r, g), b), minc = min(min(r, g), b)
            let chroma = maxc - minc
            // A grey pixel (chroma 0) has no hue: h = 0, s = 0, and it comes back as it was (v, v, v).
            let grey = chroma == 0
            let divisor = grey ? 1 : chroma
            let s = chroma / (grey ? 1 : maxc)
            let rc = (maxc - r) / divisor, gc = (maxc - g) / divisor, bc = (maxc - b) / divisor
            let isRed = maxc == r, isGreen = maxc == g && !isRed
            let h6 = isRed ? bc - gc : isGreen ? 2 + rc - bc : 4 + gc - rc
            var h = h6 / 6 + 1
            h -= floorOfSmall(h)
            h += shift
            h -= floorOfSmall(h)
            let v = maxc, scaled = h * 6
            var sector = floorOfSmall(scaled)
            let f = scaled - sector
            sector = sector == 6 ? 0 : sector   // h * 6 rounded up to 6: torch's i % 6
            let p = min(max(v * (1 - s), 0), 1)
            let q = min(max(v * (1 - s * f), 0), 1)
            let t = min(max(v * (1 - s * (1 - f)), 0), 1)
            // Sector k: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q).
            var outRed = v, outGreen = t, outBlue = p
            outRed = sector == 1 ? q : outRed; outGreen = sector == 1 ? v : outGreen
            outRed = sector == 2 ? p : outRed; outGreen = sector == 2 ? v : outGreen; outBlue = sector == 2 ? t : outBlue
            outRed = sector == 3 ? p : outRed; outGreen = sector == 3 ? q : outGreen; outBlue = sector == 3 ? v : outBlue
            outRed = sector == 4 ? t : outRed; outGreen = sector == 4 ? p : outGreen; outBlue = sector == 4 ? v : outBlue
            outGreen = sector == 5 ? p : outGreen; outBlue = sector == 5 ? q : outBlue
            red[k] = grey ? r : outRed; green[k] = grey ? g : outGreen; blue[k] = grey ? b : outBlue
        }
    }

    /// floor(x) for |x| < 2^22 without libm (the baseline x86-64 target has no vector floor, and a
    /// floorf call per lane stops the loop vectorising): adding 1.5 x 2^23 rounds to an integer, exactly.
    @inline(__always)
    static func floorOfSmall(_ x: Float) -> Float {
        let nearest = (x + 12_582_912) - 12_582_912
        return nearest > x ? nearest - 1 : nearest
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
