import Foundation
import Testing
@testable import Tensor

/// The plain-attention kernels (CKernels/attention.c) against their Double references, under every
/// instruction set here: sizes that leave tails of the 4-row and 16- or 32-column register blocks, slices of
/// token-major [q | k | v] rows, a key mask with a fully masked sample's case, and dropout factors.
@Suite struct AttentionKernelTests {
    func random(_ count: Int, stream: UInt64) -> Tensor {
        var rng = RandomStream(seed: 11, stream: stream)
        let t = Tensor(zeros: [count])
        for i in 0..<count { t[i] = rng.nextUniform(-1.5, 1.5) }
        return t
    }

    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(b.map(abs).max() ?? 0, 1e-30)
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    enum Case: CaseIterable { case plain, masked, allMasked, dropped }

    @Test(arguments: Kernels.availableInstructionSets, [(50, 32), (65, 64), (7, 5), (17, 20)])
    func forwardAndBackwardMatchReference(instructionSet: Kernels.InstructionSet, shape: (Int, Int)) {
        let (t, e) = shape, heads = 2, d = heads * e, ld = 3 * d, h = 1
        let qkv = random(t * ld, stream: 1), dO = random(t * d, stream: 2)
        var rng = RandomStream(seed: 3, stream: 4)
        let factors = Tensor(zeros: [t * t])
        for i in 0..<(t * t) { factors[i] = rng.nextUniform(0, 1) < 0.2 ? 0 : 1 / 0.8 }
        for kind in Case.allCases {
            var mask = [UInt8](repeating: 1, count: t)
            if kind == .masked { for j in stride(from: 1, to: t, by: 3) { mask[j] = 0 } }
            if kind == .allMasked { mask = [UInt8](repeating: 0, count: t) }
            let drop: UnsafePointer<Float>? = kind == .dropped ? UnsafePointer(factors.data) : nil
            let p = Tensor(zeros: [t * t]), pReference = Tensor(zeros: [t * t])
            let o = Tensor(zeros: [t * d]), oReference = Tensor(zeros: [t * d])
            let dqkv = Tensor(zeros: [t * ld]), dqkvReference = Tensor(zeros: [t * ld])
            let scratch = Tensor(zeros: [Kernels.attentionScratch(tokens: t, headWidth: e)])
            let q = qkv.data + h * e, scale = 1 / Float(e).squareRoot()
            mask.withUnsafeBufferPointer { maskBuffer in
                let keyMask = kind == .plain || kind == .dropped ? nil : maskBuffer.baseAddress
                Kernels.withInstructionSet(instructionSet) {
                    Kernels.attentionForward(q: q, k: q + d, v: q + 2 * d, ld: ld, keyMask: keyMask, drop: drop, scale: scale,
                                             probabilities: p.data, output: o.data + h * e, ldo: d, tokens: t, headWidth: e,
                                             scratch: scratch.data)
                    Kernels.attentionBackward(q: q, k: q + d, v: q + 2 * d, ld: ld, probabilities: p.data, drop: drop,
                                              outputGradient: dO.data + h * e, ldo: d, scale: scale,
                                              dq: dqkv.data + h * e, dk: dqkv.data + d + h * e, dv: dqkv.data + 2 * d + h * e,
                                              tokens: t, headWidth: e, scratch: scratch.data)
                }
                Kernels.attentionForwardReference(q: q, k: q + d, v: q + 2 * d, ld: ld, keyMask: keyMask, drop: drop, scale: scale,
                                                  probabilities: pReference.data, output: oReference.data + h * e, ldo: d,
                                                  tokens: t, headWidth: e)
                Kernels.attentionBackwardReference(q: q, k: q + d, v: q + 2 * d, ld: ld, probabilities: pReference.data, drop: drop,
                                                   outputGradient: dO.data + h * e, ldo: d, scale: scale,
                                                   dq: dqkvReference.data + h * e, dk: dqkvReference.data + d + h * e,
                                                   dv: dqkvReference.data + 2 * d + h * e, tokens: t, headWidth: e)
            }
            if kind == .allMasked {
                // No real key: P and o are exactly 0, and so is every gradient.
                #expect(p.array.allSatisfy { $0 == 0 } && o.array.allSatisfy { $0 == 0 } && dqkv.array.allSatisfy { $0 == 0 })
            }
            #expect(relativeError(p.array, pReference.array) < 2e-6, "P \(kind) \(instructionSet) \(shape)")
            #expect(relativeError(o.array, oReference.array) < 2e-6, "o \(kind) \(instructionSet) \(shape)")
            #expect(relativeError(dqkv.array, dqkvReference.array) < 1e-5, "dqkv \(kind) \(instructionSet) \(shape)")
            // Columns of other heads are never written.
            for i in 0..<t { #expect((0..<e).allSatisfy { o[i * d + $0] == 0 && dqkv[i * ld + $0] == 0 }) }
        }
    }
}

/// The LayerNorm kernels against the plain loops they replaced, under every instruction set: a
/// width with a tail past the 16 lanes, rows of large offset (the two-pass variance), with and
/// without dL/dx.
@Suite struct LayerNormKernelTests {
    @Test(arguments: Kernels.availableInstructionSets, [128, 37])
    func forwardAndBackwardMatchReference(instructionSet: Kernels.InstructionSet, width: Int) {
        let rows = 9, n = rows * width
        var rng = RandomStream(seed: 5, stream: UInt64(width))
        func random(_ count: Int, _ low: Float, _ high: Float) -> Tensor {
            let t = Tensor(zeros: [count])
            for i in 0..<count { t[i] = rng.nextUniform(low, high) }
            return t
        }
        let x = random(n, -2, 2), gamma = random(width, 0.5, 1.5), beta = random(width, -0.5, 0.5), dy = random(n, -1, 1)
        for r in 0..<rows where r % 3 == 0 { for c in 0..<width { x[r * width + c] += 50 } }
        func run(_ reference: Bool, withInputGradient: Bool) -> [[Float]] {
            let y = Tensor(zeros: [n]), xhat = Tensor(zeros: [n]), inv = Tensor(zeros: [rows]), dx = Tensor(zeros: [n])
            let dgamma = Tensor(zeros: [width]), dbeta = Tensor(zeros: [width])
            for i in 0..<width { dgamma[i] = 0.25; dbeta[i] = -0.25 }   // accumulated into
            let dxPointer = withInputGradient ? dx.data : nil
            if reference {
                Kernels.layerNormReference(y.data, normalised: xhat.data, inverseStd: inv.data, input: x.data, gamma: gamma.data,
                                           beta: beta.data, rows: rows, width: width, epsilon: 1e-6)
                Kernels.layerNormBackwardReference(inputGradient: dxPointer, scaleGradient: dgamma.data, shiftGradient: dbeta.data,
                                                   outputGradient: dy.data, normalised: xhat.data, inverseStd: inv.data,
                                                   gamma: gamma.data, rows: rows, width: width)
            } else {
                Kernels.withInstructionSet(instructionSet) {
                    Kernels.layerNorm(y.data, normalised: xhat.data, inverseStd: inv.data, input: x.data, gamma: gamma.data,
                                      beta: beta.data, rows: rows, width: width, epsilon: 1e-6)
                    Kernels.layerNormBackward(inputGradient: dxPointer, scaleGradient: dgamma.data, shiftGradient: dbeta.data,
                                              outputGradient: dy.data, normalised: xhat.data, inverseStd: inv.data,
                                              gamma: gamma.data, rows: rows, width: width)
                }
            }
            return [y.array, xhat.array, inv.array, dx.array, dgamma.array, dbeta.array]
        }
        for withInputGradient in [true, false] {
            let fast = run(false, withInputGradient: withInputGradient), reference = run(true, withInputGradient: withInputGradient)
            for (name, (a, b)) in zip(["y", "xhat", "inverse std", "dx", "dgamma", "dbeta"], zip(fast, reference)) {
                let scale = max(b.map(abs).max()!, 1e-30)
                let error = zip(a, b).map { abs($0 - $1) }.max()! / scale
                #expect(error < 1e-5, "\(name) \(instructionSet) width \(width): relative error \(error)")
            }
            if !withInputGradient { #expect(fast[3].allSatisfy { $0 == 0 }) }
        }
    }
}
