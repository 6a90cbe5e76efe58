import CKernels

/// Element-wise sums of fp16 / bf16 bit patterns: the bodies of the user-defined MPI
/// reductions of the gradient all-reduce. Each pairwise sum is done in Float32 and rounded
/// once to the wire format:  accumulator[i] = round(float(input[i]) + float(accumulator[i])).
extension HalfPrecision {
    /// accumulator[i] = fp16(Float(input[i]) + Float(accumulator[i])), round to nearest even; overflow
    /// gives inf, NaN stays NaN. F16C at the avx2 and avx512 levels (`Kernels.instructionSet`).
    public static func halfSum(_ input: UnsafePointer<UInt16>, into accumulator: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_f16_sum_into(input, accumulator, count)
    }

    /// accumulator[i] = bf16(Float(input[i]) + Float(accumulator[i])), round to nearest even; NaN stays NaN.
    public static func bfloatSum(_ input: UnsafePointer<UInt16>, into accumulator: UnsafeMutablePointer<UInt16>, count: Int) {
        ck_bf16_sum_into(input, accumulator, count)
    }

    /// Reference for `halfSum`, one element, through Swift's Float16.
    public static func halfSumReference(_ a: UInt16, _ b: UInt16) -> UInt16 {
        floatToHalfReference(halfToFloatReference(a) + halfToFloatReference(b))
    }

    /// Reference for `bfloatSum`, one element, from the bfloat16 definition.
    public static func bfloatSumReference(_ a: UInt16, _ b: UInt16) -> UInt16 {
        floatToBFloatReference(bfloatToFloatReference(a) + bfloatToFloatReference(b))
    }
}
