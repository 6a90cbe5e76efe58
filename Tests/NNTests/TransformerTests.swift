import Foundation
import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// The Transformer's layers: finite differences of every backward (through `LayerGradientTests.check`),
/// the attention's forward against a plain Double reference, and the tiled attention against the plain one.
@Suite struct TransformerTests {
    let gradients = LayerGradientTests()

    func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int, seed: UInt64, scale: Float = 1) {
        var random = RandomStream(seed: seed, stream: 0)
        for i in 0..<n { p[i] = random.nextUniform(-scale, scale) }
    }

    /// Key masks of `batch` samples of `tokens` tokens: sample b has its last b tokens padded.
    static func mask(batch: Int, tokens: Int) -> [UInt8] {
        (0..<batch).flatMap { b in (0..<tokens).map { $0 < tokens - b ? 1 : 0 } }
    }

    /// softmax(q k^T / sqrt(E), masked keys excluded) v per sample and head, in Double.
    static func referenceAttention(_ qkv: UnsafePointer<Float>, batch: Int, tokens t: Int, width d: Int, heads: Int,
                                   mask: [UInt8]?) -> [Double] {
        let e = d / heads
        var o = [Double](repeating: 0, count: batch * t * d)
        for b in 0..<batch {
            for h in 0..<heads {
                for i in 0..<t {
                    var logits = [Double](repeating: -.infinity, count: t)
                    for j in 0..<t where mask?[b * t + j] ?? 1 != 0 {
                        var dot = 0.0
                        for c in 0..<e { dot += Double(qkv[(b * t + i) * 3 * d + h * e + c]) * Double(qkv[(b * t + j) * 3 * d + d + h * e + c]) }
                        logits[j] = dot / Double(e).squareRoot()
                    }
                    let maximum = logits.max()!
                    guard maximum > -.infinity else { continue }
                    let weights = logits.map { exp($0 - maximum) }, total = weights.reduce(0, +)
                    for j in 0..<t {
                        for c in 0..<e { o[(b * t + i) * d + h * e + c] += weights[j] / total * Double(qkv[(b * t + j) * 3 * d + 2 * d + h * e + c]) }
                    }
                }
            }
        }
        return o
    }

    @Test(arguments: [SelfAttention.Mode.plain, .tiled(3)], [false, true])
    func attentionForwardMatchesTheReference(mode: SelfAttention.Mode, masked: Bool) {
        let batch = 3, t = 7, d = 8, heads = 2
        let attention = SelfAttention(tokens: t, width: d, heads: heads, mode: mode)
        let qkv = Tensor(zeros: [batch, attention.inputWidth])
        fill(qkv.data, qkv.count, seed: 1, scale: 2)
        let mask = Self.mask(batch: batch, tokens: t)
        mask.withUnsafeBufferPointer { mask in
            attention.keyMask = masked ? mask.baseAddress : nil
            let o = attention.forward(qkv.data, batch: batch)
            let expected = Self.referenceAttention(qkv.data, batch: batch, tokens: t, width: d, heads: heads, mask: masked ? Array(mask) : nil)
            let worst = (0..<expected.count).map { abs(Double(o[$0]) - expected[$0]) }.max()!
            #expect(worst < 1e-5, "\(mode) masked \(masked): largest difference \(worst)")
        }
    }

    @Test(arguments: [SelfAttention.Mode.plain, .tiled(1), .tiled(3), .tiled(64)], [false, true])
    func attentionGradients(mode: SelfAttention.Mode, masked: Bool) {
        let arena = ParameterArena()
        arena.seal()
        let attention = SelfAttention(tokens: 5, width: 6, heads: 2, mode: mode)
        let mask = Self.mask(batch: 3, tokens: 5)
        mask.withUnsafeBufferPointer { mask in
            attention.keyMask = masked ? mask.baseAddress : nil
            gradients.check(attention, arena: arena, batch: 3)
        }
    }

    /// Padded keys take no part: their k and v get no gradient, and changing them changes nothing.
    @Test func maskedKeysAreIgnored() {
        let batch = 2, t = 5, d = 4
        let attention = SelfAttention(tokens: t, width: d, heads: 2)
        let qkv = Tensor(zeros: [batch, attention.inputWidth])
        fill(qkv.data, qkv.count, seed: 4)
        let mask = Self.mask(batch: batch, tokens: t)   // sample 1's token 4 is padded
        mask.withUnsafeBufferPointer { mask in
            attention.keyMask = mask.baseAddress
            let before = Array(UnsafeBufferPointer(start: attention.forward(qkv.data, batch: batch), count: batch * t * d))
            let padded = (1 * t + 4) * 3 * d
            for c in d..<(3 * d) { qkv.data[padded + c] += 10 }
            let after = Array(UnsafeBufferPointer(start: attention.forward(qkv.data, batch: batch), count: batch * t * d))
            // The padded token's own query row still attends (to the real keys) and may change; no other row may.
            let rows = (0..<(batch * t)).filter { $0 != t + 4 }
            #expect(rows.allSatisfy { r in (0..<d).allSatisfy { before[r * d + $0] == after[r * d + $0] } })
            let dy = Tensor(zeros: [batch, t * d])
            fill(dy.data, dy.count, seed: 5)
            let dqkv = attention.backward(dy.data, batch: batch)!
            #expect((d..<(3 * d)).allSatisfy { dqkv[padded + $0] == 0 })
        }
    }

    /// A sample whose every key is padded gets o = 0 and no gradient, in both modes (no NaN from exp(-inf + inf)).
    @Test(arguments: [SelfAttention.Mode.plain, .tiled(2)])
    func aSampleWithNoRealTokenGivesZero(mode: SelfAttention.Mode) {
        let batch = 2, t = 3, d = 4
        let attention = SelfAttention(tokens: t, width: d, heads: 1, mode: mode)
        let qkv = Tensor(zeros: [batch, attention.inputWidth])
        fill(qkv.data, qkv.count, seed: 6)
        let mask: [UInt8] = [1, 1, 0, 0, 0, 0]
        mask.withUnsafeBufferPointer { mask in
            attention.keyMask = mask.baseAddress
            let o = attention.forward(qkv.data, batch: batch)
            #expect((0..<(t * d)).allSatisfy { o[t * d + $0] == 0 })
            #expect((0..<(t * d)).allSatisfy { o[$0].isFinite && o[$0] != 0 })
            let dy = Tensor(shape: [batch, t * d], repeating: 1)
            let dqkv = attention.backward(dy.data, batch: batch)!
            #expect((0..<(t * 3 * d)).allSatisfy { dqkv[t * 3 * d + $0] == 0 })
        }
    }

    /// The streaming softmax computes the plain path's function: outputs and input gradients agree to
    /// rounding for tiles that divide T, that do not, of one token, and larger than T.
    @Test(arguments: [1, 2, 3, 4, 9, 40], [false, true])
    func tiledAttentionEqualsPlain(tile: Int, masked: Bool) {
        let batch = 3, t = 9, d = 12, heads = 3
        let plain = SelfAttention(tokens: t, width: d, heads: heads, mode: .plain)
        let tiled = SelfAttention(tokens: t, width: d, heads: heads, mode: .tiled(tile))
        let qkv = Tensor(zeros: [batch, plain.inputWidth])
        fill(qkv.data, qkv.count, seed: 7, scale: 3)
        let dy = Tensor(zeros: [batch, t * d])
        fill(dy.data, dy.count, seed: 8)
        let mask = Self.mask(batch: batch, tokens: t)
        mask.withUnsafeBufferPointer { mask in
            plain.keyMask = masked ? mask.baseAddress : nil
            tiled.keyMask = plain.keyMask
            let a = Array(UnsafeBufferPointer(start: plain.forward(qkv.data, batch: batch), count: dy.count))
            let b = Array(UnsafeBufferPointer(start: tiled.forward(qkv.data, batch: batch), count: dy.count))
            let dyCopy = Tensor(zeros: dy.shape)
            dyCopy.copy(from: dy)
            let da = Array(UnsafeBufferPointer(start: plain.backward(dy.data, batch: batch)!, count: qkv.count))
            let db = Array(UnsafeBufferPointer(start: tiled.backward(dyCopy.data, batch: batch)!, count: qkv.count))
            func worst(_ x: [Float], _ y: [Float]) -> Float {
                let scale = x.map(abs).max()!
                return zip(x, y).map { abs($0 - $1) }.max()! / scale
            }
            #expect(worst(a, b) < 1e-5, "output, tile \(tile): \(worst(a, b))")
            #expect(worst(da, db) < 1e-5, "input gradient, tile \(tile): \(worst(da, db))")
        }
    }

    @Test(arguments: [TransformerBlock.NormPlacement.pre, .post], [false, true])
    func blockGradients(placement: TransformerBlock.NormPlacement, masked: Bool) {
        let arena = ParameterArena()
        let block = TransformerBlock(tokens: 4, width: 6, heads: 2, mlpWidth: 10, placement: placement,
                                     attention: masked ? .tiled(3) : .plain, name: "block", arena: arena)
        arena.seal()
        _ = block.initialise(seed: 3, firstStream: 0)
        // Norm parameters off 1 and 0, so a gamma or beta gradient that ignores them shows.
        for norm in [block.norm1, block.norm2] {
            fill(arena.parameters(norm.scale), norm.inputWidth, seed: 9, scale: 0.5)
            for i in 0..<norm.inputWidth { arena.parameters(norm.scale)[i] += 1 }
            fill(arena.parameters(norm.shift), norm.inputWidth, seed: 10, scale: 0.5)
        }
        let mask = Self.mask(batch: 3, tokens: 4)
        mask.withUnsafeBufferPointer { mask in
            block.keyMask = masked ? mask.baseAddress : nil
            gradients.check(block, arena: arena, batch: 3)
        }
    }

    @Test func patchEmbeddingGradients() {
        let arena = ParameterArena()
        let layer = PatchEmbedding(channels: 2, height: 6, width: 4, patch: 2, width: 5, name: "patch_embed", arena: arena)
        arena.seal()
        layer.initialise(seed: 1, stream: 0)
        gradients.check(layer, arena: arena, batch: 2)
    }

    /// Stride = kernel makes the patch embedding a convolution: Conv2d's plain reference, its output
    /// [B, D, P, Q] transposed to [B, P Q, D], is the same function.
    @Test func patchEmbeddingIsAStridedConvolution() {
        let arena = ParameterArena()
        let (c, h, w, p, d, batch) = (3, 8, 12, 4, 5, 2)
        let layer = PatchEmbedding(channels: c, height: h, width: w, patch: p, width: d, name: "patch_embed", arena: arena)
        arena.seal()
        layer.initialise(seed: 2, stream: 0)
        let x = Tensor(zeros: [batch, layer.inputWidth])
        fill(x.data, x.count, seed: 3)
        let y = layer.forward(x.data, batch: batch)
        let n = layer.patchCount
        let expected = Tensor(zeros: [batch, d * n])
        Conv2d.forwardReference(output: expected.data, input: x.data, weight: arena.parameters(layer.weight), bias: arena.parameters(layer.bias),
                                batch: batch, inChannels: c, outChannels: d, height: h, width: w, kernel: p, stride: p, padding: 0)
        var worst: Float = 0
        for b in 0..<batch { for t in 0..<n { for o in 0..<d { worst = max(worst, abs(y[(b * n + t) * d + o] - expected[(b * d + o) * n + t])) } } }
        #expect(worst < 1e-5, "\(worst)")
    }

    @Test(arguments: [true, false])
    func positionEmbeddingGradients(classToken: Bool) {
        let arena = ParameterArena()
        let layer = PositionEmbedding(inputTokens: 3, width: 4, classToken: classToken, name: "encoder", arena: arena)
        arena.seal()
        layer.initialise(seed: 1, stream: 0)
        gradients.check(layer, arena: arena, batch: 2)
    }

    @Test(arguments: [TokenPool.Mode.classToken, .mean])
    func tokenPoolGradients(mode: TokenPool.Mode) {
        let arena = ParameterArena()
        arena.seal()
        gradients.check(TokenPool(tokens: 3, width: 4, mode: mode), arena: arena, batch: 2)
    }

    /// The whole encoder, every parameter moved off its initialisation, input gradient included.
    @Test(arguments: [TokenPool.Mode.classToken, .mean], [SelfAttention.Mode.plain, .tiled(2)])
    func visionTransformerGradients(pool: TokenPool.Mode, attention: SelfAttention.Mode) {
        let arena = ParameterArena()
        let shape = VisionTransformer.Shape(channels: 1, height: 8, width: 4, patch: 2, dim: 6, depth: 2, heads: 2, mlpRatio: 2,
                                            pool: pool, attention: attention)
        let encoder = VisionTransformer.make(shape, representation: 3, name: "encoder", arena: arena)
        arena.seal()
        encoder.initialise(seed: 4, firstStream: 0)
        var random = RandomStream(seed: 5, stream: 0)
        for i in 0..<arena.count { arena.parameters[i] += 0.1 * random.nextNormal() }
        #expect(arena.slices.map(\.name).prefix(4) == ["encoder.patch_embed.proj.weight", "encoder.patch_embed.proj.bias",
                                                          pool == .classToken ? "encoder.cls_token" : "encoder.pos_embed",
                                                          pool == .classToken ? "encoder.pos_embed" : "encoder.blocks.0.norm1.weight"])
        gradients.check(encoder, arena: arena, batch: 2)
    }
}
