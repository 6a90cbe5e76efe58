import CKernels

// Dropout masks drawn from Philox in one C call (CKernels/dropout.c), vectorised over 16 blocks;
// `dropoutMaskReference` draws the same numbers one at a time through RandomStream.

extension Kernels {
    /// factors[i] = kept where draw `position` + i of `RandomStream(seed, stream)` is >= threshold, else 0,
    /// for i < count; with `input`, also output[i] = input[i] * factors[i]. Any position (not only block starts).
    @inline(__always)
    public static func dropoutMask(_ factors: UnsafeMutablePointer<Float>, seed: UInt64, stream: UInt64, position: UInt64,
                                   count: Int, threshold: UInt32, kept: Float,
                                   input: UnsafePointer<Float>? = nil, output: UnsafeMutablePointer<Float>? = nil) {
        precondition((input == nil) == (output == nil), "dropoutMask: input and output come together")
        ck_dropout_mask(factors, output, input, seed, stream, position, count, threshold, kept)
    }

    public static func dropoutMaskReference(_ factors: UnsafeMutablePointer<Float>, seed: UInt64, stream: UInt64, position: UInt64,
                                            count: Int, threshold: UInt32, kept: Float,
                                            input: UnsafePointer<Float>? = nil, output: UnsafeMutablePointer<Float>? = nil) {
        var random = RandomStream(seed: seed, stream: stream, position: position)
        for i in 0..<count {
            factors[i] = random.nextUInt32() >= threshold ? kept : 0
            if let input, let output { output[i] = input[i] * factors[i] }
        }
    }
}
