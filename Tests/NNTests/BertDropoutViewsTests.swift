import Testing
@testable import NN
@testable import Tensor

/// SimCSE on a one-column text set puts the same text in view 0 and view 1 of a sample: the two
/// rows must get different dropout masks (the key's view coordinate), so their h differ in
/// training, and agree in inference (no dropout).
struct BertDropoutViewsTests {
    @Test func twoViewsOfOneTextDifferByDropoutAlone() {
        let arena = ParameterArena(), key = DropoutKey()
        let shape = BERT.Shape(layers: 2, width: 8, heads: 2, feedForward: 16, tokens: 5, vocabularySize: 12, maximumPositions: 8,
                               pool: .mean, attention: .plain, dropout: 0.1, attentionDropout: 0.1)
        let encoder = BERT.make(shape, representation: 0, key: key, name: "encoder", arena: arena)
        arena.seal()
        _ = encoder.initialise(seed: 1, firstStream: 0)
        let b = 3, d = 8
        var input: [Float] = []
        for _ in 0..<2 {
            for s in 0..<b { input += BERT.row(ids: [2, 5 + s, 6, 3, 0], mask: [1, 1, 1, 1, 0]) }
        }
        func h() -> [Float] {
            input.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: encoder.forward($0.baseAddress!, batch: 2 * b), count: 2 * b * d)) }
        }
        key.rows = (firstSample: 4, samplesPerView: b)
        key.train(seed: 7, step: 3)
        let trained = h()
        key.infer()
        let inferred = h()
        for s in 0..<b {
            #expect(trained[(s * d)..<((s + 1) * d)] != trained[((b + s) * d)..<((b + s + 1) * d)], "sample \(s): both views drew one mask")
            #expect(inferred[(s * d)..<((s + 1) * d)] == inferred[((b + s) * d)..<((b + s + 1) * d)], "sample \(s)")
        }
    }
}
