import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// Dropout and drop-path (issue 20 item 4): the masks are a function of (seed, step, layer, sample,
/// view) and nothing else, inference and rate 0 are the identity bit for bit, and every backward
/// through them matches finite differences under a fixed key (the masks do not change between the
/// difference's forwards, so the loss is a smooth function of the parameters).
@Suite struct DropoutTests {
    let gradients = LayerGradientTests()
    let convolutions = ConvLayerTests()

    /// The factors (0 or 1 / (1 - p)) `layer` applied to `batch` rows of ones.
    func factors(_ layer: Layer, batch: Int) -> [Float] {
        let ones = [Float](repeating: 1, count: batch * layer.inputWidth)
        return ones.withUnsafeBufferPointer { x in
            let y = layer.forward(x.baseAddress!, batch: batch)
            return (0..<(batch * layer.outputWidth)).map { y[$0] }
        }
    }

    @Test func masksRepeatForTheSameKeyAndDifferAcrossStepsRowsAndLayers() {
        let key = DropoutKey()
        let first = Dropout(width: 512, probability: 0.25, key: key), second = Dropout(width: 512, probability: 0.25, key: key)
        key.train(seed: 5, step: 3)
        let m = factors(first, batch: 4)
        #expect(Set(m) == [0, 1 / 0.75])
        let dropped = Double(m.filter { $0 == 0 }.count) / Double(m.count)
        #expect(abs(dropped - 0.25) < 0.05, "dropped \(dropped) of the elements at p = 0.25")
        #expect(factors(first, batch: 4) == m, "the same key drew another mask")
        let rows = (0..<4).map { Array(m[($0 * 512)..<(($0 + 1) * 512)]) }
        #expect(Set(rows.map { $0.map(\.bitPattern) }).count == 4, "two samples share a mask")
        #expect(factors(second, batch: 4) != m, "two layers share a mask")
        key.train(seed: 5, step: 4)
        #expect(factors(first, batch: 4) != m, "two steps share a mask")
        key.train(seed: 6, step: 3)
        #expect(factors(first, batch: 4) != m, "two seeds share a mask")
        key.train(seed: 5, step: 3)
        #expect(factors(first, batch: 4) == m, "a mask is not a function of its key alone")
    }

    /// Rank 1 of 2 (samples 2, 3 of a global batch of 4, two views each) draws the one process's masks
    /// of the same views; a chunk starting at row 4 (gradient caching) draws rows 4 ... of the whole forward.
    @Test func masksFollowTheGlobalSampleNotTheRankOrTheChunk() {
        func layer(_ rows: (Int, Int)) -> (Dropout, DropoutKey) {
            let key = DropoutKey()
            key.rows = rows
            key.train(seed: 1, step: 7)
            return (Dropout(width: 40, probability: 0.5, key: key), key)
        }
        let (whole, wholeKey) = layer((0, 4)), (rank1, _) = layer((2, 2))
        let all = factors(whole, batch: 8), local = factors(rank1, batch: 4)
        // Local rows [view 0 of samples 2, 3; view 1 of them] are global rows 2, 3, 6, 7.
        for (localRow, globalRow) in [(0, 2), (1, 3), (2, 6), (3, 7)] {
            #expect(Array(local[(localRow * 40)..<((localRow + 1) * 40)]) == Array(all[(globalRow * 40)..<((globalRow + 1) * 40)]))
        }
        wholeKey.rowOffset = 4
        #expect(factors(whole, batch: 4) == Array(all[(4 * 40)...]))
    }

    @Test func dropPathDropsWholeSamplesAtItsRate() {
        let key = DropoutKey()
        let layer = DropPath(width: 6, probability: 0.4, key: key)
        key.train(seed: 2, step: 0)
        let m = factors(layer, batch: 400)
        let perSample = (0..<400).map { m[$0 * 6] }
        for b in 0..<400 { #expect(m[(b * 6)..<((b + 1) * 6)].allSatisfy { $0 == perSample[b] }) }
        let dropped = Double(perSample.filter { $0 == 0 }.count) / 400
        #expect(abs(dropped - 0.4) < 0.08, "dropped \(dropped) of the samples at p = 0.4")
        #expect(Set(perSample) == [0, 1 / 0.6])
        let rates = DropPath.rates(0.3, count: 4)
        #expect(rates.count == 4 && zip(rates, [0, 0.1, 0.2, 0.3]).allSatisfy { abs($0 - Float($1)) < 1e-7 }, "\(rates)")
        #expect(DropPath.rates(0.3, count: 1) == [0])
    }

    /// In inference (no step) a dropout of any rate returns its input; at rate 0 in training too.
    /// A ViT built with rate 0 in training mode, one with rates 0.3 / 0.2 in inference, and one
    /// built without any: the same bits.
    @Test func inferenceAndRateZeroAreTheIdentity() {
        let key = DropoutKey()
        let layer = Dropout(width: 3, probability: 0.5, key: key)
        let x: [Float] = [1, 2, 3]
        x.withUnsafeBufferPointer { x in #expect(UnsafePointer(layer.forward(x.baseAddress!, batch: 1)) == x.baseAddress!) }

        func vit(dropout: Float, dropPath: Float, training: Bool) -> [UInt32] {
            let arena = ParameterArena(), key = DropoutKey()
            let shape = VisionTransformer.Shape(channels: 1, height: 8, width: 8, patch: 4, dim: 8, depth: 3, heads: 2, mlpRatio: 2,
                                                dropout: dropout, attentionDropout: dropout, dropPath: dropPath)
            let encoder = VisionTransformer.make(shape, representation: 4, key: key, name: "encoder", arena: arena)
            arena.seal()
            encoder.initialise(seed: 3, firstStream: 0)
            if training { key.train(seed: 1, step: 2) }
            var random = RandomStream(seed: 8, stream: 0)
            let input = (0..<(5 * 64)).map { _ in random.nextUniform() }
            return input.withUnsafeBufferPointer { x in
                let y = encoder.forward(x.baseAddress!, batch: 5)
                return (0..<20).map { y[$0].bitPattern }
            }
        }
        let plain = vit(dropout: 0, dropPath: 0, training: false)
        #expect(vit(dropout: 0, dropPath: 0, training: true) == plain)
        #expect(vit(dropout: 0.3, dropPath: 0.2, training: false) == plain)
        #expect(vit(dropout: 0.3, dropPath: 0.2, training: true) != plain, "training with dropout changed nothing")
        // The MLP encoder gets no layer at rate 0: its layer list is the one it had before dropout existed.
        let arena = ParameterArena()
        #expect(MLP.make(widths: [4, 6, 6, 2], activation: .relu, dropout: 0, name: "e", arena: arena).layers.count == 3)
        #expect(MLP.make(widths: [4, 6, 6, 2], activation: .relu, dropout: 0.1, name: "f", arena: arena).layers.count == 5)
    }

    // MARK: Finite differences under a fixed key

    @Test func dropoutAndDropPathGradients() {
        let key = DropoutKey()
        key.train(seed: 4, step: 1)
        gradients.check(Dropout(width: 30, probability: 0.3, key: key), arena: ParameterArena(), batch: 3)
        let path = DropPath(width: 7, probability: 0.5, key: key)
        gradients.check(path, arena: ParameterArena(), batch: 8)
        #expect(Set(path.factors) == [0, 2], "the check should see dropped and kept samples: \(path.factors)")
    }

    @Test(arguments: [SelfAttention.Mode.plain, .tiled(2), .tiled(64)], [false, true])
    func attentionGradientsWithDropout(mode: SelfAttention.Mode, masked: Bool) {
        let key = DropoutKey()
        let attention = SelfAttention(tokens: 5, width: 6, heads: 2, mode: mode, dropout: 0.3, key: key)
        key.train(seed: 3, step: 2)
        let mask = TransformerTests.mask(batch: 3, tokens: 5)
        mask.withUnsafeBufferPointer { mask in
            attention.keyMask = masked ? mask.baseAddress : nil
            gradients.check(attention, arena: ParameterArena(), batch: 3)
        }
    }

    /// The tiled path draws M per tile from the same coordinates as the plain path's whole matrix, so
    /// with dropout on the two still compute one function; backward draws M from the key its forward
    /// used, even after gradient caching moved the row offset; and the masks drop something.
    @Test(arguments: [1, 3, 4, 40], [false, true])
    func tiledAttentionEqualsPlainWithDropout(tile: Int, masked: Bool) {
        let batch = 3, t = 9, d = 12
        func run(_ mode: SelfAttention.Mode, dropout: Float = 0.25, moveOffset: Bool = false) -> (y: [Float], dx: [Float]) {
            let key = DropoutKey()
            let attention = SelfAttention(tokens: t, width: d, heads: 3, mode: mode, dropout: dropout, key: key)
            key.train(seed: 6, step: 4)
            var random = RandomStream(seed: 7, stream: 0)
            let qkv = (0..<(batch * attention.inputWidth)).map { _ in random.nextUniform(-3, 3) }
            var dy = (0..<(batch * t * d)).map { _ in random.nextUniform(-1, 1) }
            let mask = TransformerTests.mask(batch: batch, tokens: t)
            return mask.withUnsafeBufferPointer { mask in
                attention.keyMask = masked ? mask.baseAddress : nil
                return qkv.withUnsafeBufferPointer { qkv in
                    let y = Array(UnsafeBufferPointer(start: attention.forward(qkv.baseAddress!, batch: batch), count: dy.count))
                    if moveOffset { key.rowOffset = 5 }
                    let dx = dy.withUnsafeMutableBufferPointer { dy in
                        Array(UnsafeBufferPointer(start: attention.backward(dy.baseAddress!, batch: batch)!, count: qkv.count))
                    }
                    return (y, dx)
                }
            }
        }
        func worst(_ x: [Float], _ y: [Float]) -> Float { zip(x, y).map { abs($0 - $1) }.max()! / x.map(abs).max()! }
        let plain = run(.plain), tiled = run(.tiled(tile))
        #expect(worst(plain.y, tiled.y) < 1e-5, "output, tile \(tile): \(worst(plain.y, tiled.y))")
        #expect(worst(plain.dx, tiled.dx) < 1e-5, "input gradient, tile \(tile): \(worst(plain.dx, tiled.dx))")
        let moved = run(.tiled(tile), moveOffset: true)
        #expect(moved.dx == tiled.dx, "backward drew other masks after the row offset moved")
        #expect(worst(run(.plain, dropout: 0).y, plain.y) > 1e-2, "attention dropout changed nothing")
    }

    @Test(arguments: [TransformerBlock.NormPlacement.pre, .post])
    func transformerBlockGradientsWithDropoutAndDropPath(placement: TransformerBlock.NormPlacement) {
        let arena = ParameterArena(), key = DropoutKey()
        let block = TransformerBlock(tokens: 4, width: 6, heads: 2, mlpWidth: 10, placement: placement, dropout: 0.3,
                                     attentionDropout: 0.2, dropPath: 0.4,
                                     key: key, name: "block", arena: arena)
        arena.seal()
        _ = block.initialise(seed: 3, firstStream: 0)
        key.train(seed: 9, step: 5)
        gradients.check(block, arena: arena, batch: 4)
        // Both kinds of drop happened in the checked forward.
        #expect(block.attentionDropPath.factors.contains(0) || block.feedForwardDropPath.factors.contains(0))
        #expect(block.attentionDropPath.factors.contains { $0 > 1 } && block.feedForwardDropPath.factors.contains { $0 > 1 })
    }

    @Test func residualBlockGradientsWithDropPath() {
        let arena = ParameterArena(), key = DropoutKey()
        let block = ResidualBlock(inChannels: 2, outChannels: 4, stride: 2, height: 7, width: 5, groups: 2, dropPath: 0.5, key: key,
                                  name: "block", arena: arena)
        arena.seal()
        _ = block.initialise(seed: 3, firstStream: 0)
        key.train(seed: 2, step: 11)
        convolutions.check(block, arena: arena, batch: 4, step: 1e-3)
        #expect(Set(block.dropPath.factors) == [0, 2], "the check should see dropped and kept samples: \(block.dropPath.factors)")
    }

    @Test func mlpGradientsWithDropout() {
        let arena = ParameterArena(), key = DropoutKey()
        let mlp = MLP.make(widths: [5, 8, 8, 3], activation: .gelu, dropout: 0.3, key: key, name: "encoder", arena: arena)
        arena.seal()
        mlp.initialise(seed: 6, firstStream: 0)
        key.train(seed: 3, step: 0)
        gradients.check(mlp, arena: arena, batch: 3)
    }
}
