import Testing
@testable import Tensor

@Suite struct PhiloxTests {
    /// Known-answer vectors of Philox-4x32-10 from Random123's kat_vectors.
    @Test func knownAnswers() {
        func check(_ counter: Philox.Counter, _ key: Philox.Key, _ expected: Philox.Counter) {
            let out = Philox.block(counter: counter, key: key)
            #expect([out.0, out.1, out.2, out.3] == [expected.0, expected.1, expected.2, expected.3])
        }
        check((0, 0, 0, 0), (0, 0), (0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8))
        check((0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), (0xffff_ffff, 0xffff_ffff),
              (0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd))
        check((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0),
              (0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1))
    }

    @Test func batchedDrawsEqualTheRandomStream() {
        for (seed, stream) in [(UInt64(0), UInt64(0)), (7, RandomStream.id(.view, 3, 17, 1)), (.max, .max)] {
            var draws = [UInt32](repeating: 0, count: 13 * 4 + 32)
            Philox.fillDraws(seed: seed, stream: stream, position: 32, blocks: 13, into: &draws)
            var random = RandomStream(seed: seed, stream: stream, position: 32)
            #expect(Array(draws[0..<52]) == (0..<52).map { _ in random.nextUInt32() })
        }
    }

    @Test func drawsArePureFunctionsOfCoordinates() {
        var a = RandomStream(seed: 5, stream: RandomStream.id(.view, 3, 17, 1))
        let first = (0..<10).map { _ in a.nextUInt32() }
        // Starting at position 6 reproduces draws 6..<10 without replaying the rest.
        var b = RandomStream(seed: 5, stream: RandomStream.id(.view, 3, 17, 1), position: 6)
        #expect((0..<4).map { _ in b.nextUInt32() } == Array(first[6...]))
        var c = RandomStream(seed: 5, stream: RandomStream.id(.view, 3, 17, 1))
        #expect((0..<10).map { _ in c.nextUInt32() } == first)
    }

    @Test func streamsAreIndependent() {
        // Neighbouring streams (adjacent samples / views) must look unrelated: their uniform
        // draws are uncorrelated and each is uniform.
        let n = 20_000
        var x = RandomStream(seed: 1, stream: RandomStream.id(.view, 0, 10, 0))
        var y = RandomStream(seed: 1, stream: RandomStream.id(.view, 0, 10, 1))
        var z = RandomStream(seed: 2, stream: RandomStream.id(.view, 0, 10, 0))
        var sxy = 0.0, sxz = 0.0, sx = 0.0, sy = 0.0, sz = 0.0, sxx = 0.0
        var buckets = [Int](repeating: 0, count: 10)
        for _ in 0..<n {
            let u = Double(x.nextUniform()), v = Double(y.nextUniform()), w = Double(z.nextUniform())
            sxy += u * v; sxz += u * w; sx += u; sy += v; sz += w; sxx += u * u
            buckets[Int(u * 10)] += 1
        }
        let mean = sx / Double(n), variance = sxx / Double(n) - mean * mean
        let correlationXY = (sxy / Double(n) - mean * sy / Double(n)) / variance
        let correlationXZ = (sxz / Double(n) - mean * sz / Double(n)) / variance
        #expect(abs(mean - 0.5) < 0.01)
        #expect(abs(correlationXY) < 0.03)
        #expect(abs(correlationXZ) < 0.03)
        // Chi-square with 9 degrees of freedom; 27.9 is the 0.999 quantile.
        let expected = Double(n) / 10
        let chi = buckets.reduce(0.0) { $0 + (Double($1) - expected) * (Double($1) - expected) / expected }
        #expect(chi < 27.9)
    }

    @Test func normalHasUnitVariance() {
        var rng = RandomStream(seed: 9, stream: 1)
        let n = 50_000
        var sum = 0.0, squares = 0.0
        for _ in 0..<n { let v = Double(rng.nextNormal()); sum += v; squares += v * v }
        #expect(abs(sum / Double(n)) < 0.02)
        #expect(abs(squares / Double(n) - 1) < 0.03)
    }
}

/// The C dropout-mask kernel against RandomStream's draws one at a time, bit for bit, under every
/// instruction set: positions inside a block, counts that end inside one, more than one 16-block group.
@Suite struct DropoutMaskKernelTests {
    @Test(arguments: Kernels.availableInstructionSets)
    func masksAndProductsEqualTheRandomStream(instructionSet: Kernels.InstructionSet) {
        Kernels.withInstructionSet(instructionSet) {
            let cases: [(seed: UInt64, stream: UInt64, position: UInt64, count: Int, rate: Double)] = [
                (0, 0, 0, 1, 0.5), (7, RandomStream.id(.dropout, 3, 17, 1), 1, 63, 0.1), (9, 5, 3 << 32 | 2, 200, 0.3),
                (.max, .max, (1 << 40) - 3, 301, 0.9), (11, RandomStream.id(.dropout, 1, 2, 0), 6 << 32, 128 * 128, 0.1),
                (12, 4, (1 << 34) - 64 * 4 + 1, 1000, 0.5),   // the block counter carries into its upper word
            ]
            for c in cases {
                let threshold = UInt32(min(c.rate * 4_294_967_296, 4_294_967_295)), kept = Float(1 / (1 - c.rate))
                let x = Tensor(zeros: [c.count])
                var random = RandomStream(seed: 3, stream: 1)
                for i in 0..<c.count { x[i] = random.nextUniform(-2, 2) }
                let m = Tensor(zeros: [c.count]), y = Tensor(zeros: [c.count])
                let expectedM = Tensor(zeros: [c.count]), expectedY = Tensor(zeros: [c.count])
                Kernels.dropoutMask(m.data, seed: c.seed, stream: c.stream, position: c.position, count: c.count, threshold: threshold,
                                    kept: kept, input: x.data, output: y.data)
                Kernels.dropoutMaskReference(expectedM.data, seed: c.seed, stream: c.stream, position: c.position, count: c.count,
                                             threshold: threshold, kept: kept, input: x.data, output: expectedY.data)
                #expect(m.array == expectedM.array, "\(c)")
                #expect(y.array == expectedY.array, "\(c)")
                let maskOnly = Tensor(zeros: [c.count])
                Kernels.dropoutMask(maskOnly.data, seed: c.seed, stream: c.stream, position: c.position, count: c.count,
                                    threshold: threshold, kept: kept)
                #expect(maskOnly.array == expectedM.array, "\(c)")
                // Not all kept, not all dropped (the counts are large enough at these rates).
                if c.count >= 63 { #expect(Set(m.array).count == 2, "\(c)") }
            }
        }
    }
}
