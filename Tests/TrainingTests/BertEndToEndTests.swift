import Data
import Foundation
import Testing
import TestSupport
@testable import Config
@testable import Evaluation
@testable import NN
@testable import Tensor

/// Through the binary: a BERT trained two steps by `contrast train` on token rows (ids, mask, types) prepared
/// as feature vectors with identity views (two dropout views of each text: SimCSE), exported by
/// `contrast export --format hf`; SentenceTransformer on that directory gives what `contrast embed` writes.
@Suite(.serialized) struct BertEndToEndTests {
    static let tokens = 8

    /// A prepared set of 96 token rows (texts of 3 to 8 tokens: [CLS] words [SEP], padded with [PAD] (0) to 8)
    /// under `folder`/set, its vocab.txt, and the settings that train a small BERT on it with identity views.
    /// Labels are the samples' indices, so the labels `contrast embed` writes give the order of its rows.
    static func tokenRows(_ folder: URL) throws -> (settings: [String], rows: [Float], tokens: Int, vocabulary: Int) {
        let path = { folder.appendingPathComponent($0).path }
        let vocabulary = HuggingFaceBert.specialTokens + (0..<35).map { "w\($0)" }
        try (vocabulary.joined(separator: "\n") + "\n").write(toFile: path("vocab.txt"), atomically: true, encoding: .utf8)
        let (n, t) = (96, tokens)
        var random = RandomStream(seed: 3, stream: 0)
        var rows: [Float] = []
        for _ in 0..<n {
            let real = 3 + random.nextInt(below: t - 2)
            let ids = (0..<t).map { i in i == 0 ? 2 : i == real - 1 ? 3 : i < real ? 5 + random.nextInt(below: vocabulary.count - 5) : 0 }
            rows += BERT.row(ids: ids, mask: (0..<t).map { $0 < real ? 1 : 0 })
        }
        try NPYArray.encode(float32: rows, shape: [n, 3 * t]).write(to: URL(fileURLWithPath: path("x.npy")))
        try NPYArray.encode(int64: (0..<n).map(Int64.init), shape: [n]).write(to: URL(fileURLWithPath: path("y.npy")))
        for split in ["train", "test"] {
            let outcome = try runContrast(ranks: 1, ["prepare", "npy", "--features", path("x.npy"), "--labels", path("y.npy"),
                                                     "--out", path("set/\(split)"), "--shards", "2"])
            #expect(outcome.status == 0, "\(outcome.error)")
        }
        let settings = ["data.dataset=prepared", "data.path=\(path("set"))", "data.vocab=\(path("vocab.txt"))",
            "data.batch_per_rank=32", "data.train_limit=0", "data.test_limit=0", "train.max_steps=2", "eval.knn_every_epochs=0",
            "data.augment=features", "feature_views.scale=[1,1]", "feature_views.dropout=0", "feature_views.noise=0",
            "model.encoder=bert", "model.bert.preset=none", "model.bert.layers=2", "model.bert.width=32", "model.bert.heads=4",
            "model.bert.ffn=64", "model.bert.max_length=\(t)", "model.bert.max_position=16", "model.representation=0",
        ]
        return (settings, rows, t, vocabulary.count)
    }

    /// One SGD step with BERT's dropout on: two ranks, each masking its rows by their global sample, equal one
    /// process on the global batch of 24; without dropout the step is another (the masks do something).
    @Test func stepAtTwoRanksEqualsOneProcessWithDropoutOn() throws {
        let folder = temporaryDirectory("bert-ranks")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (settings, _, _, _) = try Self.tokenRows(folder)
        func train(_ label: String, ranks: Int, _ more: [String]) throws -> [Float] {
            let run = folder.appendingPathComponent(label).path
            let outcome = try runContrast(ranks: ranks, ["train", "--config", "configs/smoke.yaml"]
                + (["run_dir=\(run)"] + settings + ["train.max_steps=1", "data.batch_per_rank=\(24 / ranks)", "communication.precision=fp32",
                                                     "optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0",
                                                     "optimizer.lr=0.1"] + more).flatMap { ["--set", $0] })
            #expect(outcome.status == 0, "P=\(ranks): \(outcome.error.suffix(1500))")
            return try TrainedModel.load(run).model.arena.parameters.array
        }
        func difference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0 }
        let rates = ["model.bert.dropout=0.2", "model.bert.attention_dropout=0.2"]
        let one = try train("p1", ranks: 1, rates), two = try train("p2", ranks: 2, rates)
        #expect(difference(one, two) <= 5e-5, "P = 2 differs from one process by \(difference(one, two)) relative")
        let plain = try train("off", ranks: 1, ["model.bert.dropout=0", "model.bert.attention_dropout=0"])
        #expect(difference(one, plain) > 1e-2, "dropout changed little")
        print("BERT P = 2 vs 1 with dropout: \(difference(one, two)) relative; against no dropout: \(difference(one, plain))")
    }

    @Test(.enabled(if: transformersUnavailable == nil, "\(transformersUnavailable ?? "")"))
    func sentenceTransformersEqualsContrastEmbed() throws {
        print("python-verify: ran BERT end to end")
        let folder = temporaryDirectory("bert-e2e")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = { folder.appendingPathComponent($0).path }
        func contrast(_ arguments: [String]) throws -> ProcessOutcome {
            let outcome = try runContrast(ranks: 1, arguments)
            #expect(outcome.status == 0, "contrast \(arguments.prefix(2).joined(separator: " ")): \(outcome.error.suffix(1500))")
            return outcome
        }
        let (settings, rows, t, vocabulary) = try Self.tokenRows(folder)
        let run = path("run")
        func train(_ directory: String, _ more: [String] = []) throws -> ProcessOutcome {
            try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml"] + (["run_dir=\(directory)"] + settings + more).flatMap { ["--set", $0] })
        }
        let trained = try train(run)
        #expect(trained.status == 0, "\(trained.error.suffix(1500))")
        let embedded = try contrast(["embed", "--checkpoint", run, "--out", path("h.npy"), "--labels-out", path("order.npy")])
        let exported = try contrast(["export", "--checkpoint", run, "--format", "hf", "--out", path("hf")])
        #expect(exported.output.contains("BertModel (2 layers, width 32, vocabulary \(vocabulary), max_length \(t))"), "\(exported.output)")
        // --what model: the projection head too, as Dense modules (ReLU, then none) and Normalize, to z.
        let withHead = try contrast(["export", "--checkpoint", run, "--format", "hf", "--what", "model", "--out", path("hf-z")])
        #expect(withHead.output.contains("the projection head (2 Dense"), "\(withHead.output)")

        // init_from the exported directory continues from its weights; a directory of another architecture is refused.
        let continued = try train(path("run2"), ["init_from=\(path("hf"))", "train.max_steps=1"])
        #expect(continued.status == 0 && (continued.output + continued.error).contains("from the Hugging Face directory \(path("hf"))"),
                "\(continued.output.suffix(1500)) \(continued.error.suffix(1500))")
        try FileManager.default.createDirectory(atPath: path("gpt2"), withIntermediateDirectories: true)
        try #"{"model_type": "gpt2"}"#.write(toFile: path("gpt2/config.json"), atomically: true, encoding: .utf8)
        let other = try train(path("run3"), ["init_from=\(path("gpt2"))"])
        #expect(other.status != 0 && other.error.contains("\(path("gpt2"))/config.json has model_type 'gpt2', not 'bert'"), "\(other.error)")
        #expect(!FileManager.default.fileExists(atPath: path("run3")), "the refused run made its directory")

        // The other formats: safetensors under contrast's names with the shape in the metadata; ONNX refused, naming hf.
        let file = try contrast(["export", "--checkpoint", run, "--out", path("bert.safetensors")])
        let header = try Safetensors.readHeader(try Data(contentsOf: URL(fileURLWithPath: path("bert.safetensors"))), path: "bert.safetensors")
        #expect(header.entry("encoder.layer.1.attn.qkv.weight")?.shape == [96, 32] && header.metadata["encoder_kind"] == "bert"
                && header.metadata["max_length"] == "\(t)", "\(file.output) \(header.metadata)")
        let onnx = try runContrast(ranks: 1, ["export", "--checkpoint", run, "--format", "onnx", "--out", path("bert.onnx")])
        #expect(onnx.status != 0 && onnx.error.contains("use --format hf"), "\(onnx.error)")

        // Texts: `contrast embed --texts` (contrast's WordPiece tokenizer) against SentenceTransformer(dir).encode
        // (BertTokenizerFast from the exported vocab.txt and tokenizer_config.json): the same h.
        let lines = ["w1 w2 w3", "W5 w7, w9!", "zebra w4", "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12", "w30 w31 w32 w33 w34"]
        try (lines.joined(separator: "\n") + "\n").write(toFile: path("texts.txt"), atomically: true, encoding: .utf8)
        let textEmbed = try contrast(["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--out", path("texts-h.npy")])
        #expect(textEmbed.output.contains("representations of 5 texts") && textEmbed.output.contains("1 longer than \(t) tokens, truncated"),
                "\(textEmbed.output)")
        try FileManager.default.createDirectory(atPath: path("py-texts"), withIntermediateDirectories: true)
        _ = try checkBert(["texts", path("hf"), path("texts.txt"), path("py-texts")])
        let ours = try NPYArray(path: path("texts-h.npy")).float32Values()
        let theirs = try NPYArray(path: path("py-texts/sentence.npy")).float32Values()
        #expect(relativeDifference(ours, theirs) <= 1e-5, "contrast embed --texts differs from SentenceTransformer by \(relativeDifference(ours, theirs))")
        print("python-verify: contrast embed --texts vs SentenceTransformer.encode: \(relativeDifference(ours, theirs)) relative")
        // With the head: SentenceTransformer gives `contrast embed --texts --what embedding`'s z.
        _ = try contrast(["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--what", "embedding", "--out", path("texts-z.npy")])
        try FileManager.default.createDirectory(atPath: path("py-texts-z"), withIntermediateDirectories: true)
        _ = try checkBert(["texts", path("hf-z"), path("texts.txt"), path("py-texts-z")])
        let ourZ = try NPYArray(path: path("texts-z.npy")).float32Values()
        let theirZ = try NPYArray(path: path("py-texts-z/sentence.npy")).float32Values()
        #expect(relativeDifference(ourZ, theirZ) <= 1e-5, "with the head: SentenceTransformer differs by \(relativeDifference(ourZ, theirZ))")
        print("python-verify: contrast embed --texts --what embedding vs SentenceTransformer with Dense and Normalize: \(relativeDifference(ourZ, theirZ)) relative")
        let notBert = try runContrast(ranks: 1, ["embed", "--checkpoint", run, "--texts", path("texts.txt"), "--pairs", "--out", path("x.npy")])
        #expect(notBert.status != 0 && notBert.error.contains("leave out --pairs"), "\(notBert.error)")

        let order = try #require(try NPYArray(path: path("order.npy")).int64Values())
        var ids: [Int64] = [], mask: [Int64] = [], types: [Int64] = []
        for sample in order.map(Int.init) {
            let row = rows[(sample * 3 * t)..<((sample + 1) * 3 * t)].map { Int64($0) }
            ids += row[0..<t]
            mask += row[t..<(2 * t)]
            types += row[(2 * t)..<(3 * t)]
        }
        for (name, values) in [("ids", ids), ("mask", mask), ("types", types)] {
            try NPYArray.encode(int64: values, shape: [order.count, t]).write(to: URL(fileURLWithPath: path("\(name).npy")))
        }
        _ = try checkBert(["sentence", path("hf")] + ["ids", "mask", "types"].map { path("\($0).npy") } + [folder.path])
        let h = try NPYArray(path: path("h.npy")).float32Values()
        let sentence = try NPYArray(path: path("sentence.npy")).float32Values()
        let error = relativeDifference(h, sentence)
        #expect(error <= 1e-5, "SentenceTransformer differs from contrast embed by \(error) relative (\(embedded.output))")
        print("python-verify: SentenceTransformer vs contrast embed: \(error) relative over \(order.count) test texts")
    }
}
