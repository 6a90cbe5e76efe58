import Foundation
import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// The BERT encoder (issue 22 item 2): finite differences of the embeddings' three tables, the masked
/// pooling and the whole encoder; padding invisible to the real tokens; dropout masks replayed from
/// their key. transformers' BertModel checks the forward (EvaluationTests/BertHuggingFaceTests).
@Suite struct BertTests {
    static let tolerance = 1e-2

    /// Rows of `batch` samples of `tokens` tokens: sample b has its last b tokens padded (id 0, mask 0),
    /// the others random ids in 1 ..< vocabulary (so the padding id 0 appears only as padding) and types 0 or 1.
    static func rows(batch: Int, tokens: Int, vocabulary: Int, seed: UInt64 = 1) -> [Float] {
        var random = RandomStream(seed: seed, stream: 7)
        return (0..<batch).flatMap { b -> [Float] in
            let real = (0..<tokens).map { $0 < tokens - b ? 1 : 0 }
            let ids = real.map { $0 == 1 ? 1 + random.nextInt(below: vocabulary - 1) : 0 }
            let types = real.map { $0 == 1 ? random.nextInt(below: 2) : 0 }
            return BERT.row(ids: ids, mask: real, types: types)
        }
    }

    /// dL/dparameters of `layer` at `indices` of the arena against central differences, L = sum(y w)
    /// over a fixed input (ids have no gradient); returns dL/d(input) when the layer gives one.
    @discardableResult
    func checkParameters(_ layer: Layer, arena: ParameterArena, input: [Float], batch: Int, indices: [Int],
                         step: Float = 1e-2) -> UnsafeMutablePointer<Float>? {
        let x = Tensor(zeros: [batch, layer.inputWidth])
        for i in 0..<input.count { x[i] = input[i] }
        var random = RandomStream(seed: 2, stream: 3)
        let weights = (0..<(batch * layer.outputWidth)).map { _ in random.nextUniform(-1, 1) }
        func loss() -> Double {
            let y = layer.forward(x.data, batch: batch)
            return weights.indices.reduce(0.0) { $0 + Double(y[$1]) * Double(weights[$1]) }
        }
        _ = loss()
        arena.zeroGradients()
        let dy = Tensor(zeros: [batch, layer.outputWidth])
        for i in 0..<weights.count { dy[i] = weights[i] }
        let dx = layer.backward(dy.data, batch: batch)
        let analytic = indices.map { Double(arena.gradients[$0]) }
        let differences = GradientCheck.differences(of: loss, at: arena.parameters.data, indices: indices, step: step)
        let result = GradientCheck.compare(analytic: analytic, differences, relativeTolerance: Self.tolerance)
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "; "))")
        #expect(result.checked == indices.count)
        return dx
    }

    /// Arena indices of element `column` of `rows` of a table.
    func indices(_ slice: ParameterSlice, rows: [Int], columns: [Int]) -> [Int] {
        let width = slice.shape[1]
        return rows.flatMap { r in columns.map { slice.offset + r * width + $0 } }
    }

    /// Word, position and token-type rows each get the sum of their tokens' gradients; the padding id
    /// gets none (nn.Embedding's padding_idx), and a table row no token read gets exactly 0.
    @Test func embeddingGradients() {
        let arena = ParameterArena()
        let (t, d, v) = (5, 4, 7)
        let embeddings = BertEmbeddings(tokens: t, width: d, vocabularySize: v, maximumPositions: 8, mask: TokenMask(),
                                        name: "embeddings", arena: arena)
        // Through the LayerNorm, so every table's gradient is not just the output weight.
        let layer = Sequential([embeddings, PerToken(LayerNorm(width: d, epsilon: 1e-12, name: "ln", arena: arena), tokens: t)])
        arena.seal()
        layer.initialise(seed: 1, firstStream: 0)
        var random = RandomStream(seed: 9, stream: 0)
        for i in 0..<arena.count { arena.parameters[i] += 0.3 * random.nextNormal() }
        let input = Self.rows(batch: 3, tokens: t, vocabulary: v)
        let used = Set((0..<3).flatMap { b in (0..<t).map { Int(input[b * 3 * t + $0]) } }).filter { $0 != 0 }.sorted()
        checkParameters(layer, arena: arena, input: input, batch: 3,
                        indices: indices(embeddings.words, rows: used, columns: [0, 3])
                            + indices(embeddings.positions, rows: Array(0..<t), columns: [1, 2])
                            + indices(embeddings.types, rows: [0, 1], columns: [0, 3]))
        let dWord = arena.gradients(embeddings.words), dPosition = arena.gradients(embeddings.positions)
        #expect((0..<d).allSatisfy { dWord[$0] == 0 }, "the padding id's row got a gradient")
        let unused = (1..<v).filter { !used.contains($0) }
        #expect(unused.allSatisfy { r in (0..<d).allSatisfy { dWord[r * d + $0] == 0 } })
        #expect((t..<8).allSatisfy { r in (0..<d).allSatisfy { dPosition[r * d + $0] == 0 } }, "a position past T got a gradient")
        #expect((0..<d).contains { arena.gradients(embeddings.words)[used[0] * d + $0] != 0 })
    }

    /// The masked mean is over the real tokens only (padded tokens get dL/dx = 0); [CLS] reads token 0.
    @Test(arguments: [TokenPool.Mode.mean, .classToken])
    func maskedPoolGradients(mode: TokenPool.Mode) {
        let (t, d, batch) = (4, 3, 3)
        let mask = TokenMask()
        mask.reserve(batch * t)
        let bytes = TransformerTests.mask(batch: batch, tokens: t)
        for i in bytes.indices { mask.pointer[i] = bytes[i] }
        let pool = MaskedTokenPool(tokens: t, width: d, mode: mode, mask: mask)
        var random = RandomStream(seed: 4, stream: 0)
        let x = (0..<(batch * t * d)).map { _ in random.nextUniform(-1, 1) }
        let dy = (0..<(batch * d)).map { _ in random.nextUniform(-1, 1) }
        x.withUnsafeBufferPointer { x in
            let y = pool.forward(x.baseAddress!, batch: batch)
            for b in 0..<batch {
                let real = t - b
                for c in 0..<d {
                    let expected = mode == .mean ? (0..<real).map { x[(b * t + $0) * d + c] }.reduce(0, +) / Float(real) : x[b * t * d + c]
                    #expect(abs(y[b * d + c] - expected) <= 1e-6 * max(1, abs(expected)), "sample \(b), column \(c)")
                }
            }
            var gradient = dy
            let dx = gradient.withUnsafeMutableBufferPointer { pool.backward($0.baseAddress!, batch: batch)! }
            for b in 0..<batch {
                for i in 0..<t {
                    for c in 0..<d {
                        let expected: Float = switch mode {
                        case .mean: i < t - b ? dy[b * d + c] * (1 / Float(t - b)) : 0
                        case .classToken: i == 0 ? dy[b * d + c] : 0
                        }
                        #expect(dx[(b * t + i) * d + c] == expected, "sample \(b), token \(i), column \(c)")
                    }
                }
            }
        }
    }

    func encoder(pool: TokenPool.Mode, attention: SelfAttention.Mode = .plain, dropout: Float = 0, representation: Int = 0,
                 key: DropoutKey = DropoutKey()) -> (Sequential, ParameterArena) {
        let arena = ParameterArena()
        let shape = BERT.Shape(layers: 2, width: 6, heads: 2, feedForward: 10, tokens: 4, vocabularySize: 9, maximumPositions: 6,
                               pool: pool, attention: attention, dropout: dropout, attentionDropout: dropout)
        let encoder = BERT.make(shape, representation: representation, key: key, name: "encoder", arena: arena)
        arena.seal()
        encoder.initialise(seed: 4, firstStream: 0)
        return (encoder, arena)
    }

    /// The whole encoder, every parameter moved off its initialisation: samples of 4, 3 and 2 real tokens.
    @Test(arguments: [TokenPool.Mode.mean, .classToken], [SelfAttention.Mode.plain, .tiled(3)])
    func encoderGradients(pool: TokenPool.Mode, attention: SelfAttention.Mode) {
        let (encoder, arena) = self.encoder(pool: pool, attention: attention, representation: 3)
        var random = RandomStream(seed: 5, stream: 0)
        for i in 0..<arena.count { arena.parameters[i] += 0.1 * random.nextNormal() }
        #expect(arena.slices.map(\.name).prefix(5) == ["encoder.embeddings.word_embeddings.weight", "encoder.embeddings.position_embeddings.weight",
                                                          "encoder.embeddings.token_type_embeddings.weight", "encoder.embeddings.LayerNorm.weight",
                                                          "encoder.embeddings.LayerNorm.bias"])
        let input = Self.rows(batch: 3, tokens: 4, vocabulary: 9)
        // Every slice but the word table (only the rows tokens read matter: a few of them) at a few places.
        var indices: [Int] = []
        for slice in arena.slices where slice.name != "encoder.embeddings.word_embeddings.weight" {
            indices += [slice.offset, slice.offset + slice.count / 2, slice.offset + slice.count - 1]
        }
        let words = arena.slice(named: "encoder.embeddings.word_embeddings.weight")!
        indices += [Int(input[0]), Int(input[1]), Int(input[12])].flatMap { [words.offset + $0 * 6, words.offset + $0 * 6 + 5] }
        // Positions past T are never read; a difference there is 0 and so must the gradient be.
        checkParameters(encoder, arena: arena, input: input, batch: 3, indices: indices)
    }

    /// Padding is invisible: the real tokens' states and the pooled h do not change when the padded
    /// tokens' ids, types or count change.
    @Test(arguments: [TokenPool.Mode.mean, .classToken])
    func paddingDoesNotReachRealTokens(pool: TokenPool.Mode) {
        let (encoder, _) = self.encoder(pool: pool)
        let short = BERT.row(ids: [2, 5, 0, 0], mask: [1, 1, 0, 0], types: [0, 1, 0, 0])
        let otherPadding = BERT.row(ids: [2, 5, 7, 3], mask: [1, 1, 0, 0], types: [0, 1, 1, 0])
        func h(_ row: [Float]) -> [Float] {
            row.withUnsafeBufferPointer { x in Array(UnsafeBufferPointer(start: encoder.forward(x.baseAddress!, batch: 1), count: 6)) }
        }
        let a = h(short), b = h(otherPadding), c = h(BERT.row(ids: [2, 5, 4, 0], mask: [1, 1, 1, 0], types: [0, 1, 0, 0]))
        #expect(a == b, "padded tokens changed h: \(a) vs \(b)")
        #expect(a != c, "a third real token did not change h")
    }

    /// Dropout masks are keyed by (seed, step, layer, sample): a sample's h in training is the same
    /// bit for bit whether it is row 2 of a batch of 3 or a batch of its own at row offset 2 (masks drawn
    /// from the key, not from a stream that the rows before it advanced), differs at another step,
    /// and equals the mask-free h in inference.
    @Test func dropoutMasksReplayFromTheKey() {
        let key = DropoutKey()
        let (encoder, _) = self.encoder(pool: .mean, dropout: 0.3, key: key)
        let input = Self.rows(batch: 3, tokens: 4, vocabulary: 9)
        func h(rows: Range<Int>) -> [Float] {
            Array(input[(rows.lowerBound * 12)..<(rows.upperBound * 12)]).withUnsafeBufferPointer { x in
                Array(UnsafeBufferPointer(start: encoder.forward(x.baseAddress!, batch: rows.count), count: rows.count * 6))
            }
        }
        key.train(seed: 11, step: 7)
        let whole = h(rows: 0..<3)
        key.rowOffset = 2
        let alone = h(rows: 2..<3)
        key.rowOffset = 0
        let differentSample = h(rows: 2..<3)
        key.train(seed: 11, step: 8)
        key.rowOffset = 2
        let otherStep = h(rows: 2..<3)
        key.infer()
        let inference = h(rows: 2..<3)
        key.rowOffset = 0
        #expect(Array(whole[12..<18]).map(\.bitPattern) == alone.map(\.bitPattern), "sample 2's masks depend on its batch")
        #expect(alone != differentSample, "two samples share a mask")
        #expect(alone != otherStep, "two steps share a mask")
        #expect(alone != inference, "dropout 0.3 dropped nothing")
    }

    @Test func huggingFaceNames() {
        #expect(BERT.huggingFaceNames("embeddings.LayerNorm.weight") == ["embeddings.LayerNorm.weight"])
        #expect(BERT.huggingFaceNames("layer.3.attn.qkv.bias") == ["encoder.layer.3.attention.self.query.bias",
                                                                  "encoder.layer.3.attention.self.key.bias",
                                                                  "encoder.layer.3.attention.self.value.bias"])
        #expect(BERT.huggingFaceNames("layer.0.norm2.weight") == ["encoder.layer.0.output.LayerNorm.weight"])
        #expect(BERT.huggingFaceNames("layer.1.mlp.fc1.weight") == ["encoder.layer.1.intermediate.dense.weight"])
        #expect(BERT.huggingFaceNames("fc.weight") == nil)
    }
}

/// The BERT pair tower of image <-> text CLIP (`ContrastiveModel(pairText:)`): BERT, its own projection
/// head to the first tower's embedding width, L2 normalisation; every pair-tower slice's gradient
/// through `pairForward` / `pairBackward` against central differences.
@Suite struct BertPairTowerTests {
    @Test func pairTowerGradients() {
        let shape = BERT.Shape(layers: 1, width: 6, heads: 2, feedForward: 10, tokens: 4, vocabularySize: 9, maximumPositions: 6,
                               pool: .mean, attention: .plain, dropout: 0, attentionDropout: 0)
        let model = ContrastiveModel(inputWidth: 5, hidden: [4], representation: 3, projection: [7, 4], activation: .relu,
                                     pairInputWidth: shape.inputWidth, pairText: shape)
        model.initialise(seed: 3)
        let arena = model.arena
        var random = RandomStream(seed: 5, stream: 0)
        for i in 0..<arena.count { arena.parameters[i] += 0.1 * random.nextNormal() }
        #expect(model.pairEncoder?.layers.first is BertEmbeddings && model.pairRepresentationWidth == 6 && model.embeddingWidth == 4)
        let batch = 3, e = model.embeddingWidth
        let x = Tensor(shape: [batch, shape.inputWidth], values: BertTests.rows(batch: batch, tokens: 4, vocabulary: 9))
        let weights = (0..<(batch * e)).map { _ in random.nextUniform(-1, 1) }
        func loss() -> Double {
            let z = model.pairForward(x.data, batch: batch)
            return weights.indices.reduce(0.0) { $0 + Double(z[$1]) * Double(weights[$1]) }
        }
        _ = loss()
        arena.zeroGradients()
        let dz = Tensor(shape: [batch, e], values: weights)
        model.pairBackward(dz.data, batch: batch)
        let words = arena.slice(named: "pair_encoder.embeddings.word_embeddings.weight")!
        var indices: [Int] = []
        for slice in arena.slices where slice.name.hasPrefix("pair_") && slice.name != words.name {
            indices += [slice.offset, slice.offset + slice.count / 2, slice.offset + slice.count - 1]
        }
        indices += [Int(x[0]), Int(x[1])].flatMap { [words.offset + $0 * 6, words.offset + $0 * 6 + 5] }
        let analytic = indices.map { Double(arena.gradients[$0]) }
        let differences = GradientCheck.differences(of: loss, at: arena.parameters.data, indices: indices, step: 1e-2)
        let result = GradientCheck.compare(analytic: analytic, differences, relativeTolerance: BertTests.tolerance)
        #expect(result.failures.isEmpty, "\(result.failures.joined(separator: "; "))")
        #expect(result.checked == indices.count && analytic.contains { $0 != 0 })
        // The first tower's parameters get nothing from the pair tower's backward.
        let first = arena.slices.filter { !$0.name.hasPrefix("pair_") }.flatMap { $0.offset ..< $0.offset + $0.count }
        #expect(first.allSatisfy { arena.gradients[$0] == 0 })
    }
}
