import Data
import Foundation
import Testing
import TestSupport
@testable import Config
@testable import Evaluation
@testable import NN
@testable import Tensor

/// The BERT encoder against transformers: BertModel with our weights computes our hidden states; the
/// exported directory loads in BertModel, BertTokenizerFast and SentenceTransformer and gives our h.
@Suite(.serialized) struct BertHuggingFaceTests {
    /// A WordPiece vocabulary: the special tokens, words and continuation pieces.
    static let vocabulary = HuggingFaceBert.specialTokens + ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "big",
        "small", "red", "blue", "house", "tree", "and", "of", "to", "in", "is", "was", ".", ",", "!", "?", "##s", "##ed", "##ing",
        "play", "jump", "walk", "bird", "fish", "sun", "moon", "green", "over", "under", "river"]

    /// A trained-looking BERT: every parameter moved off its initialisation (norms off 1 and 0).
    static func model(pool: TokenPoolKind, representation: Int, folder: URL) throws -> TrainedModel {
        let vocab = folder.appendingPathComponent("vocab.txt")
        try (vocabulary.joined(separator: "\n") + "\n").write(to: vocab, atomically: true, encoding: .utf8)
        var config = TrainingConfig()
        config.model.encoder = .bert
        config.model.representation = representation
        config.model.projection = [6, 4]
        config.model.bert.preset = .none
        (config.model.bert.layers, config.model.bert.width, config.model.bert.heads, config.model.bert.ffn) = (2, 32, 4, 48)
        (config.model.bert.maxLength, config.model.bert.maxPosition, config.model.bert.vocabSize) = (12, 20, vocabulary.count)
        config.model.bert.pooling = pool
        config.data.vocab = vocab.path
        try config.validate()
        let model = ContrastiveModel(config.model, inputWidth: 36)
        model.initialise(seed: 3)
        var random = RandomStream(seed: 4, stream: 0)
        for i in 0..<model.arena.count { model.arena.parameters[i] += 0.05 * random.nextNormal() }
        return TrainedModel(config: config, model: model, inputs: ModelInputs(features: [3, 12], image: false), source: "a test BERT")
    }

    func npy(_ url: URL) throws -> NPYArray { try NPYArray(path: url.path) }

    /// Export, then import: the directory's tensors are the encoder's parameters under BertModel's names
    /// (q, k and v split and stacked again), whatever Python says.
    @Test func exportAndInitFromRoundTrip() throws {
        let folder = temporaryDirectory("bert-roundtrip")
        defer { try? FileManager.default.removeItem(at: folder) }
        let trained = try Self.model(pool: .mean, representation: 0, folder: folder)
        let directory = folder.appendingPathComponent("hf")
        try HuggingFaceBert.write(trained, to: directory)
        let names = Set(try Safetensors.readHeader(Data(contentsOf: directory.appendingPathComponent("model.safetensors")), path: "x")
            .entries.map(\.name))
        #expect(names.contains("embeddings.word_embeddings.weight"))
        #expect(names.contains("encoder.layer.1.attention.self.value.bias"))
        #expect(names.contains("encoder.layer.0.output.LayerNorm.weight"))
        #expect(names.count == 5 + 16 * 2, "\(names.sorted())")
        let parameters = try HuggingFaceBert.encoderParameters(from: directory.path, for: trained.model)
        let arena = trained.model.arena
        for slice in arena.slices where slice.name.hasPrefix("encoder.") {
            let values = try #require(parameters[slice.name], "\(slice.name) not read back")
            #expect(values == Array(UnsafeBufferPointer(start: arena.parameters(slice), count: slice.count)), "\(slice.name)")
        }
        for file in ["config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
                     "sentence_bert_config.json", "1_Pooling/config.json"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(file).path), "\(file) missing")
        }
    }

    /// A vocabulary that does not fit the model, or lacks a special token: one line naming the file and the fix.
    @Test func exportRefusesAVocabularyThatDoesNotFit() throws {
        let folder = temporaryDirectory("bert-vocab")
        defer { try? FileManager.default.removeItem(at: folder) }
        let trained = try Self.model(pool: .mean, representation: 0, folder: folder)
        let short = folder.appendingPathComponent("short.txt")
        try Self.vocabulary.dropLast().joined(separator: "\n").write(to: short, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try HuggingFaceBert.write(trained, to: folder.appendingPathComponent("a"), vocabulary: short.path) }
        do { try HuggingFaceBert.write(trained, to: folder.appendingPathComponent("a"), vocabulary: short.path) } catch {
            #expect("\(error)".contains("\(short.path) has \(Self.vocabulary.count - 1) tokens but the model's word table \(Self.vocabulary.count) rows"))
        }
        let noMask = folder.appendingPathComponent("nomask.txt")
        try Self.vocabulary.map { $0 == "[MASK]" ? "[MASQUE]" : $0 }.joined(separator: "\n").write(to: noMask, atomically: true, encoding: .utf8)
        do {
            try HuggingFaceBert.write(trained, to: folder.appendingPathComponent("b"), vocabulary: noMask.path)
            Issue.record("a vocabulary without [MASK] was exported")
        } catch {
            #expect("\(error)".contains("has no [MASK] token"), "\(error)")
        }
    }

    /// Item 2: BertModel holding our weights (eval mode) computes our last hidden states on random ids with
    /// padding and token types, and their masked mean (or [CLS] state) is our h.
    @Test(.enabled(if: transformersUnavailable == nil, "\(transformersUnavailable ?? "")"), arguments: [TokenPoolKind.mean, .cls])
    func bertModelComputesOurHiddenStates(pool: TokenPoolKind) throws {
        print("python-verify: ran BertModel hidden states \(pool)")
        let folder = temporaryDirectory("bert-hidden")
        defer { try? FileManager.default.removeItem(at: folder) }
        let trained = try Self.model(pool: pool, representation: 0, folder: folder)
        let directory = folder.appendingPathComponent("hf")
        try HuggingFaceBert.write(trained, to: directory)
        let (n, t, v) = (6, 12, Self.vocabulary.count)
        var random = RandomStream(seed: 8, stream: 0)
        var ids: [Int64] = [], mask: [Int64] = [], types: [Int64] = []
        for sample in 0..<n {
            let real = t - 2 * sample   // 12, 10, ..., 2 real tokens
            for i in 0..<t {
                mask.append(i < real ? 1 : 0)
                ids.append(i < real ? Int64(1 + random.nextInt(below: v - 1)) : 0)
                types.append(i < real && i >= real / 2 ? 1 : 0)
            }
        }
        for (name, values) in [("ids", ids), ("mask", mask), ("types", types)] {
            try NPYArray.encode(int64: values, shape: [n, t]).write(to: folder.appendingPathComponent("\(name).npy"))
        }
        _ = try checkBert(["run", directory.path] + ["ids", "mask", "types"].map { folder.appendingPathComponent("\($0).npy").path } + [folder.path])
        let theirs = try npy(folder.appendingPathComponent("hidden.npy")).float32Values()
        let (hidden, h) = bertOutputs(trained.model, rows: bertRows(ids, mask, types, tokens: t), count: n)
        let d = 32
        #expect(relativeDifference(hidden, theirs) <= 1e-5, "last_hidden_state differs by \(relativeDifference(hidden, theirs)) relative")
        var pooled = [Float](repeating: 0, count: n * d)
        for s in 0..<n {
            let real = (0..<t).filter { mask[s * t + $0] != 0 }
            for c in 0..<d {
                pooled[s * d + c] = pool == .cls ? theirs[s * t * d + c] : real.map { theirs[(s * t + $0) * d + c] }.reduce(0, +) / Float(real.count)
            }
        }
        #expect(relativeDifference(h, pooled) <= 1e-5, "pooled h differs by \(relativeDifference(h, pooled)) relative")
        print("python-verify: BertModel \(pool): hidden \(relativeDifference(hidden, theirs)), pooled \(relativeDifference(h, pooled)) relative")
    }

    /// Item 3: the exported directory loads in BertTokenizerFast, BertModel and SentenceTransformer; on the
    /// tokenizer's ids our encoder gives BertModel's hidden states and SentenceTransformer's embeddings
    /// (with a Dense module for the Linear after pooling).
    @Test(.enabled(if: transformersUnavailable == nil, "\(transformersUnavailable ?? "")"),
          arguments: [(TokenPoolKind.mean, 0), (.cls, 5)])
    func sentenceTransformersLoadsTheExport(pool: TokenPoolKind, representation: Int) throws {
        print("python-verify: ran SentenceTransformer export \(pool) \(representation)")
        let folder = temporaryDirectory("bert-export")
        defer { try? FileManager.default.removeItem(at: folder) }
        let trained = try Self.model(pool: pool, representation: representation, folder: folder)
        let directory = folder.appendingPathComponent("hf")
        try HuggingFaceBert.write(trained, to: directory)
        let texts = folder.appendingPathComponent("texts.txt")
        try ["The cat sat on the mat.", "a dog ran fast", "Big red house under the tree and the moon and the sun over the river !",
             "zebra jumped", "the birds played"].joined(separator: "\n").write(to: texts, atomically: true, encoding: .utf8)
        let report = try checkBert(["texts", directory.path, texts.path, folder.path])
        print("python-verify: \(report)")
        let ids = try #require(try npy(folder.appendingPathComponent("ids.npy")).int64Values())
        let mask = try #require(try npy(folder.appendingPathComponent("mask.npy")).int64Values())
        let types = try #require(try npy(folder.appendingPathComponent("types.npy")).int64Values())
        #expect(ids.count == 5 * 12, "BertTokenizerFast did not pad to max_length 12: \(ids.count) ids")
        #expect(ids[0] == 2 && ids.contains(1), "ids start with [CLS] (2) and the unknown 'zebra' is [UNK] (1): \(ids)")
        #expect(mask[24..<36].allSatisfy { $0 == 1 }, "the long third line is truncated to 12 real tokens: \(mask)")
        let (hidden, h) = bertOutputs(trained.model, rows: bertRows(ids, mask, types, tokens: 12), count: 5)
        let theirHidden = try npy(folder.appendingPathComponent("hidden.npy")).float32Values()
        let sentence = try npy(folder.appendingPathComponent("sentence.npy")).float32Values()
        #expect(relativeDifference(hidden, theirHidden) <= 1e-5, "BertModel: \(relativeDifference(hidden, theirHidden)) relative")
        #expect(relativeDifference(h, sentence) <= 1e-5, "SentenceTransformer: \(relativeDifference(h, sentence)) relative")
        print("python-verify: SentenceTransformer \(pool) \(representation): \(relativeDifference(h, sentence)) relative")
    }
}
