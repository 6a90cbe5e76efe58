import Foundation
import TestSupport
@testable import Config
@testable import Evaluation
@testable import NN
import Testing

/// `model.encoder: bert` and the `model.bert` keys: presets, overrides, the vocabulary size from data.vocab,
/// and the settings refused with one line naming the key and the fix.
@Suite struct BertConfigTests: ConfigErrorChecks {
    func load(_ overrides: [String]) throws -> TrainingConfig {
        try ConfigLoader.load(file: nil, overrides: ["model.encoder=bert"] + overrides)
    }

    @Test func presetsGiveTheirShapesAndKeysOverrideThem() throws {
        let tiny = try load(["model.bert.vocab_size=100"]).model.bert
        #expect(tiny.preset == .tiny && tiny.resolved == (layers: 2, width: 128, heads: 2, ffn: 512))
        #expect(try load(["model.bert.preset=mini", "model.bert.vocab_size=9"]).model.bert.resolved == (layers: 4, width: 256, heads: 4, ffn: 1024))
        #expect(try load(["model.bert.preset=small", "model.bert.vocab_size=9"]).model.bert.resolved == (layers: 4, width: 512, heads: 8, ffn: 2048))
        let overridden = try load(["model.bert.preset=mini", "model.bert.layers=1", "model.bert.vocab_size=9"]).model.bert
        #expect(overridden.resolved == (layers: 1, width: 256, heads: 4, ffn: 1024))
        let shape = ContrastiveModel.bert(overridden)
        #expect(shape.layers == 1 && shape.width == 256 && shape.tokens == 128 && shape.maximumPositions == 512 && shape.vocabularySize == 9)
        #expect(shape.pool == .mean && shape.dropout == Float(0.1) && shape.inputWidth == 3 * 128)
    }

    /// model.bert.vocab_size 0 counts data.vocab's lines, and config.yaml keeps the count (the model rebuilds without the file).
    @Test func theVocabularySizeIsTheLinesOfDataVocab() throws {
        let folder = temporaryDirectory("bert-config")
        defer { try? FileManager.default.removeItem(at: folder) }
        let vocab = folder.appendingPathComponent("vocab.txt")
        try "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\n".write(to: vocab, atomically: true, encoding: .utf8)
        let config = try load(["data.vocab=\(vocab.path)"])
        #expect(config.model.bert.vocabSize == 7)
        #expect(try ConfigLoader.load(yaml: config.yaml(), source: "x").model.bert.vocabSize == 7)
        #expect(try load(["data.vocab=\(vocab.path)", "model.bert.vocab_size=30"]).model.bert.vocabSize == 30, "a given size is kept")
        let missing = try #require(error { _ = try load(["data.vocab=\(folder.path)/none.txt"]) })
        #expect(missing.key == "data.vocab" && missing.description.contains("none.txt") && missing.description.contains("cannot be read"), "\(missing)")
        let none = try #require(error { _ = try load([]) })
        #expect(none.key == "model.bert.vocab_size" && none.description.contains("set data.vocab"), "\(none)")
    }

    @Test func badShapesAndRatesNameTheirKeys() throws {
        let v = "model.bert.vocab_size=50"
        let heads = try #require(error { _ = try load([v, "model.bert.heads=3"]) })
        #expect(heads.key == "model.bert.heads" && heads.description.contains("divisor of 128"), "\(heads)")
        let unset = try #require(error { _ = try load([v, "model.bert.preset=none", "model.bert.layers=2"]) })
        #expect(unset.key == "model.bert.width" && unset.description.contains("set model.bert.width"), "\(unset)")
        #expect(error { _ = try load([v, "model.bert.max_length=513"]) }?.key == "model.bert.max_length")
        #expect(error { _ = try load([v, "model.bert.max_length=1"]) }?.key == "model.bert.max_length")
        #expect(error { _ = try load([v, "model.bert.dropout=1"]) }?.key == "model.bert.dropout")
        #expect(error { _ = try load([v, "model.bert.attention_dropout=-0.1"]) }?.key == "model.bert.attention_dropout")
        #expect(error { _ = try load([v, "model.bert.pooling=max"]) }?.key == "model.bert.pooling")
        let vitDropout = try #require(error { _ = try load([v, "model.dropout=0.1"]) })
        #expect(vitDropout.key == "model.dropout" && vitDropout.description.contains("model.bert.dropout"), "\(vitDropout)")
        #expect(!vitDropout.description.contains("\n"))
    }

    /// Samples that are not 3 x max_length values (ids, mask, types) are refused before the run starts.
    @Test func samplesMustBeTokenizedRows() throws {
        let config = try load(["model.bert.vocab_size=50", "model.bert.max_length=16"])
        try config.validateModel(imageShape: nil, features: "float32 [48]", featureWidth: 48)
        let images = try #require(error { try config.validateModel(imageShape: [28, 28], features: "uint8 [28, 28]") })
        #expect(images.key == "model.encoder" && images.description.contains("48 values"), "\(images)")
        let wrong = try #require(error { try config.validateModel(imageShape: nil, features: "float32 [40]", featureWidth: 40) })
        #expect(wrong.description.contains("float32 [40]") && wrong.description.contains("max_length 16"), "\(wrong)")
    }
}
