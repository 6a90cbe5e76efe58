import Testing
@testable import Tensor

/// fp16 / bf16 conversion: the vectorised C kernels against Swift's Float16 and a bfloat16
/// reference written from the definition, under every instruction set the kernels can run at
/// here (F16C at avx2 and avx512, the portable path at sse2).
@Suite struct HalfPrecisionTests {
    /// Random floats across the whole exponent range, plus the edge cases.
    func samples() -> [Float] {
        var rng = RandomStream(seed: 3, stream: 99)
        var values: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 6.1035156e-05, 5.9604645e-08,
                               2.9802322e-08, 2.9802326e-08, 1e-10, .infinity, -.infinity, .nan,
                               .greatestFiniteMagnitude, .leastNonzeroMagnitude, 3.3895314e38]
        for _ in 0..<100_000 {
            values.append(Float(bitPattern: rng.nextUInt32()))
        }
        // Exact ties of both formats: halfway between representable neighbours.
        for i: UInt32 in 0..<2000 {
            values.append(Float(bitPattern: 0x3f80_0000 | (i << 13) | 0x1000))
            values.append(Float(bitPattern: 0x3f80_0000 | (i << 16) | 0x8000))
        }
        return values
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func floatToHalfMatchesSwiftFloat16(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let values = samples()
            var out = [UInt16](repeating: 0, count: values.count)
            HalfPrecision.floatToHalf(values, &out, count: values.count)
            for (x, h) in zip(values, out) {
                let expected = HalfPrecision.floatToHalfReference(x)
                if x.isNaN { #expect(Float16(bitPattern: h).isNaN) } else { #expect(h == expected, "\(x)") }
            }
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func everyHalfConvertsToFloatExactly(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let all = (0...UInt16.max).map { $0 }
            var out = [Float](repeating: 0, count: all.count)
            HalfPrecision.halfToFloat(all, &out, count: all.count)
            for (h, f) in zip(all, out) {
                let expected = HalfPrecision.halfToFloatReference(h)
                if expected.isNaN { #expect(f.isNaN) } else { #expect(f.bitPattern == expected.bitPattern, "half \(h)") }
            }
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func bfloatToFloatReportsNonFiniteValues(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            var bits: [UInt16] = (0..<1001).map { UInt16($0 * 37 % 0x7f00) }
            var out = [Float](repeating: 0, count: bits.count), plain = out
            #expect(HalfPrecision.bfloatToFloatCheckingFinite(bits, &out, count: bits.count))
            HalfPrecision.bfloatToFloat(bits, &plain, count: bits.count)
            #expect(out.map(\.bitPattern) == plain.map(\.bitPattern))
            for bad: UInt16 in [0x7f80, 0xff80, 0x7fc0] {
                bits[500] = bad
                #expect(!HalfPrecision.bfloatToFloatCheckingFinite(bits, &out, count: bits.count))
            }
        }
    }

    @Test(arguments: Kernels.availableInstructionSets)
    func bfloatMatchesReference(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let values = samples()
            var out = [UInt16](repeating: 0, count: values.count)
            HalfPrecision.floatToBFloat(values, &out, count: values.count)
            for (x, b) in zip(values, out) {
                if x.isNaN { #expect(HalfPrecision.bfloatToFloatReference(b).isNaN) }
                else { #expect(b == HalfPrecision.floatToBFloatReference(x), "\(x)") }
            }
            var back = [Float](repeating: 0, count: values.count)
            HalfPrecision.bfloatToFloat(out, &back, count: values.count)
            for (b, f) in zip(out, back) where !f.isNaN {
                #expect(f.bitPattern == HalfPrecision.bfloatToFloatReference(b).bitPattern)
            }
        }
    }
}
