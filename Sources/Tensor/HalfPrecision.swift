import CKernels

/// Float32 <-> binary16 / bfloat16 conversion (round to nearest even), vectorised in C with
/// F16C at the avx2 and avx512 levels (`Kernels.instructionSet`) and a portable bit-exact
/// fallback below.
public enum HalfPrecision {
    public enum Format: String, Sendable, Codable, CaseIterable {
        case fp32, fp16, bf16
    }

    public static func floatToHalf(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f32_to_f16(source, destination, count)
    }

    public static func halfToFloat(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        ck_f16_to_f32(source, destination, count)
    }

    public static func floatToBFloat(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f32_to_bf16(source, destination, count)
    }

    public static func bfloatToFloat(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        ck_bf16_to_f32(source, destination, count)
    }

    /// `bfloatToFloat` that also tells, in the same pass, whether every value is finite.
    public static func bfloatToFloatCheckingFinite(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>,
                                                   count: Int) -> Bool {
        ck_bf16_to_f32_finite(source, destination, count) != 0
    }

    /// Reference conversion through Swift's `Float16` (IEEE round to nearest even).
    public static func floatToHalfReference(_ x: Float) -> UInt16 { Float16(x).bitPattern }
    public static func halfToFloatReference(_ h: UInt16) -> Float { Float(Float16(bitPattern: h)) }

    /// Reference bfloat16 rounding, written from the definition: keep the top 16 bits, round
    /// to nearest with ties to the even 16-bit result; NaN stays NaN.
    public static func floatToBFloatReference(_ x: Float) -> UInt16 {
        if x.isNaN { return UInt16(truncatingIfNeeded: x.bitPattern >> 16) | 0x40 }
        let bits = x.bitPattern
        let upper = bits >> 16, lower = bits & 0xffff
        var result = upper
        if lower > 0x8000 || (lower == 0x8000 && upper & 1 == 1) { result += 1 }
        return UInt16(truncatingIfNeeded: result)
    }
    public static func bfloatToFloatReference(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
}
