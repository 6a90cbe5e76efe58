import Tensor

/// Batched draws and standard normals for the noise step of views: the hot part of making a
/// view (two 32-bit draws and a log, sqrt, sin and cos per pixel pair), written as loops
/// without calls so the compiler vectorises them.
enum GaussianNoise {
    /// Turns draw pairs (d0, d1) into standard-normal pairs (Box-Muller, both branches):
    /// u1 = (d0 >> 8 + 1) / 2^24 in (0, 1], u2 = (d1 >> 8) / 2^24 in [0, 1),
    /// r = sqrt(-2 ln u1), (n0, n1) = (r cos 2 pi u2, r sin 2 pi u2).
    /// ln, sqrt, sin and cos are written out as polynomials and Newton steps (relative error
    /// about 1e-7), with wrapping integer arithmetic and selects, so the loop auto-vectorises:
    /// libm calls, `squareRoot()` (a libm fallback for errno) and Swift's SIMD types (lane by
    /// lane on Linux) all kept it scalar and 4x slower. `draws` and `values` must not overlap,
    /// or the compiler's overlap check sends the loop down its scalar path.
    static func normals(fromDraws draws: UnsafePointer<UInt32>, pairs: Int, into values: UnsafeMutablePointer<Float>) {
        for k in 0..<pairs {
            let d0 = draws[k &* 2], d1 = draws[k &* 2 &+ 1]
            // Through Int32: the values fit in 24 bits, and signed conversion vectorises.
            let u1 = (Float(Int32(bitPattern: d0 >> 8)) + 1) * (1.0 / 16_777_216.0)
            let u2 = Float(Int32(bitPattern: d1 >> 8)) * (1.0 / 16_777_216.0)
            let r = squareRoot(-2 * logarithm(u1))
            let (cosine, sine) = cosineAndSine(turns: u2)
            values[k &* 2] = r * cosine
            values[k &* 2 &+ 1] = r * sine
        }
    }

    /// sqrt x for x in [0, 40]: x * rsqrt x, rsqrt from the bit-shift estimate (error < 3.5%)
    /// and three Newton steps y <- y (3/2 - x y^2 / 2), each squaring the error (2e-3, 5e-6,
    /// then float rounding). x = 0 gives 0.
    @inline(__always)
    static func squareRoot(_ x: Float) -> Float {
        var y = Float(bitPattern: 0x5F37_59DF &- (x.bitPattern >> 1))
        y = y * (1.5 - 0.5 * x * y * y)
        y = y * (1.5 - 0.5 * x * y * y)
        y = y * (1.5 - 0.5 * x * y * y)
        return x * y
    }

    /// ln x for x in (0, 1] (Cephes logf): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
    /// ln x = e ln 2 + f - f^2/2 + f^3 P(f), f = m - 1.
    @inline(__always)
    static func logarithm(_ x: Float) -> Float {
        let bits = x.bitPattern
        var exponent = Float(Int32(bitPattern: bits >> 23) &- 127)
        var m = Float(bitPattern: (bits & 0x007F_FFFF) | 0x3F80_0000)   // [1, 2)
        let large = m > 1.414_213_56
        m = large ? m * 0.5 : m
        exponent = large ? exponent + 1 : exponent
        let f = m - 1, f2 = f * f
        var p: Float = 7.037_683_6e-2
        p = p * f - 1.151_461_0e-1
        p = p * f + 1.167_699_9e-1
        p = p * f - 1.242_014_1e-1
        p = p * f + 1.424_932_3e-1
        p = p * f - 1.666_805_8e-1
        p = p * f + 2.000_071_5e-1
        p = p * f - 2.499_999_4e-1
        p = p * f + 3.333_333_1e-1
        return f + (f * f2 * p - 0.5 * f2) + exponent * 0.693_147_18
    }

    /// (cos 2 pi t, sin 2 pi t) for t in [0, 1): quadrant q = 4t rounded to nearest (even),
    /// x = (4t - q) pi/2 in [-pi/4, pi/4] (exact: t is a multiple of 2^-24), Cephes sinf/cosf
    /// polynomials on x, then rotate by q quarter turns.
    @inline(__always)
    static func cosineAndSine(turns t: Float) -> (Float, Float) {
        let scaled = 4 * t
        // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits: no float-to-int
        // conversion (which traps out of range) and no libm floor (SSE2 has no roundps).
        let shifted = scaled + 12_582_912
        let quadrant = shifted.bitPattern
        let x = (scaled - (shifted - 12_582_912)) * (Float.pi / 2)
        let x2 = x * x
        let sine = x + x * x2 * (-1.666_665_5e-1 + x2 * (8.332_161e-3 + x2 * -1.951_529_6e-4))
        let cosine = 1 - 0.5 * x2 + x2 * x2 * (4.166_664_6e-2 + x2 * (-1.388_731_6e-3 + x2 * 2.443_315_7e-5))
        // Quarter turns q = 0, 1, 2, 3 give (c, s), (-s, c), (-c, -s), (s, -c); selects, not a
        // switch, keep the loop vectorisable.
        let swap = quadrant & 1 != 0
        let c = swap ? sine : cosine, s = swap ? cosine : sine
        return ((quadrant &+ 1) & 2 != 0 ? -c : c, quadrant & 2 != 0 ? -s : s)
    }
}
