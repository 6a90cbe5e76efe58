import Data
import Foundation
import Testing
import TestSupport
@testable import Config
@testable import Distributed
@testable import Evaluation
@testable import NN
@testable import Tensor
@testable import Training

/// `init_from` with a Hugging Face BERT directory (issue 22 item 2): weights by name into the encoder,
/// checked against transformers' BertModel; another architecture or another shape is one line naming
/// the file and the fix.
@Suite(.serialized) struct BertInitFromTests {
    static let vocabularySize = 30

    /// A run config of a BERT (2 layers, width `width`, 4 heads, MLP 48, 10 tokens, 20 positions) starting from `directory`.
    static func config(_ directory: String, width: Int = 32, initHead: Bool = false) throws -> TrainingConfig {
        try ConfigLoader.load(file: nil, overrides: [
            "model.encoder=bert", "model.bert.preset=none", "model.bert.layers=2", "model.bert.width=\(width)", "model.bert.heads=4",
            "model.bert.ffn=48", "model.bert.max_length=10", "model.bert.max_position=20", "model.bert.vocab_size=\(vocabularySize)",
            "model.representation=0", "init_from=\(directory)", "init_head=\(initHead)",
        ])
    }

    static func target(_ config: TrainingConfig) -> ContrastiveModel {
        let model = ContrastiveModel(config.model, inputWidth: 3 * config.model.bert.maxLength)
        model.initialise(seed: 1)
        return model
    }

    func failure(_ config: TrainingConfig) -> String {
        do {
            _ = try PretrainedEncoder.load(config, target: Self.target(config))
            Issue.record("init_from \(config.initFrom) was accepted")
            return ""
        } catch {
            #expect(!"\(error)".contains("\n"), "\(error)")
            return "\(error)"
        }
    }

    /// A directory of another architecture (model_type gpt2): its config.json named, and what init_from takes.
    @Test func anotherArchitectureIsRefused() throws {
        let folder = temporaryDirectory("hf-gpt2")
        defer { try? FileManager.default.removeItem(at: folder) }
        try #"{"model_type": "gpt2", "n_embd": 32}"#.write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let message = failure(try Self.config(folder.path))
        #expect(message.contains("\(folder.path)/config.json has model_type 'gpt2', not 'bert'") && message.contains("BertModel.save_pretrained"),
                "\(message)")
    }

    /// A BERT of another width: the tensor and the file named, and the shape keys to set from its config.json.
    @Test func aBertOfAnotherShapeIsRefused() throws {
        let folder = temporaryDirectory("hf-shape")
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = try Self.config(folder.path, width: 64)
        let model = Self.target(source)
        let trained = TrainedModel(config: source, model: model, inputs: ModelInputs(features: [30], image: false), source: "a test")
        let vocab = folder.appendingPathComponent("vocab.txt")
        try (HuggingFaceBert.specialTokens + (5..<Self.vocabularySize).map { "w\($0)" }).joined(separator: "\n")
            .write(to: vocab, atomically: true, encoding: .utf8)
        let directory = folder.appendingPathComponent("hf")
        try HuggingFaceBert.write(trained, to: directory, vocabulary: vocab.path)
        let message = failure(try Self.config(directory.path, width: 32))
        #expect(message.contains("\(directory.path)/model.safetensors: embeddings.word_embeddings.weight is [30, 64] but this run's model.bert makes [30, 32]"),
                "\(message)")
        #expect(message.contains("set model.bert to \(directory.path)/config.json (hidden_size 64"), "\(message)")
        let head = failure(try Self.config(directory.path, width: 64, initHead: true))
        #expect(head.contains("no projection head; set init_head=false"), "\(head)")
        let noWeights = folder.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: noWeights, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: directory.appendingPathComponent("config.json"), to: noWeights.appendingPathComponent("config.json"))
        #expect(failure(try Self.config(noWeights.path, width: 64)).contains("has no model.safetensors; save the model with save_pretrained"))
    }

    /// transformers' own BertModel (random weights, norms off 1 and 0, save_pretrained) loads by name: our
    /// encoder then computes its last hidden states on padded random ids.
    @Test(.enabled(if: transformersUnavailable == nil, "\(transformersUnavailable ?? "")"))
    func aSavedBertModelLoadsByName() throws {
        print("python-verify: ran init_from a saved BertModel")
        let folder = temporaryDirectory("hf-bert")
        defer { try? FileManager.default.removeItem(at: folder) }
        let directory = folder.appendingPathComponent("bert").path
        _ = try checkBert(["save-random", directory, "\(Self.vocabularySize)", "32", "2", "4", "48", "20"])
        let config = try Self.config(directory)
        let (pretrained, names, summary) = try PretrainedEncoder.load(config, target: Self.target(config))
        #expect(summary.contains("from the Hugging Face directory \(directory)"), "\(summary)")
        let model = Self.target(config)
        try PretrainedEncoder(parameters: pretrained, names: names, summary: summary).apply(to: model, communicator: SingleProcessCommunicator())
        #expect(Set(names) == Set(model.arena.slices.map(\.name).filter { $0.hasPrefix("encoder.") }), "every encoder tensor is loaded")

        let (n, t) = (4, 10)
        var random = RandomStream(seed: 2, stream: 0)
        var ids: [Int64] = [], mask: [Int64] = [], types: [Int64] = []
        for sample in 0..<n {
            for i in 0..<t {
                let real = i < t - 2 * sample
                ids.append(real ? Int64(1 + random.nextInt(below: Self.vocabularySize - 1)) : 0)
                mask.append(real ? 1 : 0)
                types.append(real && i % 3 == 0 ? 1 : 0)
            }
        }
        for (name, values) in [("ids", ids), ("mask", mask), ("types", types)] {
            try NPYArray.encode(int64: values, shape: [n, t]).write(to: folder.appendingPathComponent("\(name).npy"))
        }
        _ = try checkBert(["run", directory] + ["ids", "mask", "types"].map { folder.appendingPathComponent("\($0).npy").path } + [folder.path])
        let theirs = try NPYArray(path: folder.appendingPathComponent("hidden.npy").path).float32Values()
        let (hidden, _) = bertOutputs(model, rows: bertRows(ids, mask, types, tokens: t), count: n)
        let error = relativeDifference(hidden, theirs)
        #expect(error <= 1e-5, "last_hidden_state differs by \(error) relative")
        print("python-verify: init_from BertModel: \(error) relative")
    }
}
