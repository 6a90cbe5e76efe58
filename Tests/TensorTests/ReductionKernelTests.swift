import Testing
@testable import Tensor

/// The fp16 / bf16 sum kernels of the MPI reductions against their Swift references, on
/// random bit patterns (every class: zero, subnormal, normal, inf, NaN), on sums that
/// overflow or cancel, and on odd lengths that exercise the vector tails; under every
/// instruction set the kernels can run at here.
@Suite struct ReductionKernelTests {
    /// Pairs of bit patterns: random, plus chosen edge cases.
    func operands(count: Int) -> (a: [UInt16], b: [UInt16]) {
        var rng = RandomStream(seed: 11, stream: 5)
        var a: [UInt16] = [0x7bff, 0x7bff, 0x7c00, 0x7c00, 0x7e00, 0x0001, 0x8000, 0x3c00, 0x7f80, 0x7fc0, 0x0400]
        var b: [UInt16] = [0x7bff, 0xfbff, 0xfc00, 0x3c00, 0x3c00, 0x0001, 0x0000, 0xbc00, 0xff80, 0x3f80, 0x8400]
        while a.count < count {
            let bits = rng.nextUInt32()
            a.append(UInt16(truncatingIfNeeded: bits))
            // Half of the pairs close in magnitude, so that sums round and cancel.
            b.append(bits & 0x1_0000 == 0 ? UInt16(truncatingIfNeeded: bits >> 16) : UInt16(truncatingIfNeeded: bits) ^ 0x80ff)
        }
        return (a, b)
    }

    func expectSame(_ got: UInt16, _ expected: UInt16, isNaN: (UInt16) -> Bool, _ note: String) {
        if isNaN(expected) { #expect(isNaN(got), "\(note): expected NaN, got \(got)") }
        else { #expect(got == expected, "\(note): expected \(expected), got \(got)") }
    }

    @Test(arguments: Kernels.availableInstructionSets, [0, 1, 7, 8, 9, 255, 256, 257, 100_003])
    func halfSumMatchesReference(instructionSet: Kernels.InstructionSet, count: Int) {
        Kernels.withInstructionSet(instructionSet) {
            let (a, b) = operands(count: max(count, 11))
            var sums = Array(b.prefix(count))
            HalfPrecision.halfSum(a, into: &sums, count: count)
            for i in 0..<count {
                expectSame(sums[i], HalfPrecision.halfSumReference(a[i], b[i]),
                           isNaN: { Float16(bitPattern: $0).isNaN }, "fp16 \(a[i]) + \(b[i])")
            }
        }
    }

    @Test(arguments: Kernels.availableInstructionSets, [0, 1, 7, 8, 9, 255, 256, 257, 100_003])
    func bfloatSumMatchesReference(instructionSet: Kernels.InstructionSet, count: Int) {
        Kernels.withInstructionSet(instructionSet) {
            let (a, b) = operands(count: max(count, 11))
            var sums = Array(b.prefix(count))
            HalfPrecision.bfloatSum(a, into: &sums, count: count)
            for i in 0..<count {
                expectSame(sums[i], HalfPrecision.bfloatSumReference(a[i], b[i]),
                           isNaN: { HalfPrecision.bfloatToFloatReference($0).isNaN }, "bf16 \(a[i]) + \(b[i])")
            }
        }
    }

    @Test func sumsRoundOnceAndOverflowToInfinity() {
        // 65504 + 65504 overflows fp16; 1 + 2^-11 is a tie that rounds to even (1).
        var half: [UInt16] = [0x7bff, 0x3c00]
        HalfPrecision.halfSum([0x7bff, 0x1000], into: &half, count: 2)
        #expect(half == [0x7c00, 0x3c00])
        // bf16: 1 + 2^-8 ties to even (1); 1 + 3 * 2^-8 ties up to 1 + 2^-6.
        var bfloat: [UInt16] = [0x3f80, 0x3f80]
        HalfPrecision.bfloatSum([0x3b80, 0x3c40], into: &bfloat, count: 2)
        #expect(bfloat == [0x3f80, 0x3f82])
    }
}
