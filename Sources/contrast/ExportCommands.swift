import Bench
import Evaluation
import Config
import ArgumentParser
import Checkpoint
import Data
import Foundation
import Storage
import Tensor
import Text
import Training

extension ModelExport.Part: ExpressibleByArgument {}
extension Embedding.Output: ExpressibleByArgument {}

/// `contrast export --tower`: which tower to write (only the text tower is chosen by name: the first is the default).
enum ExportTower: String, ExpressibleByArgument {
    case text
}

/// A data set split on the command line (its own type, so no other file's conformance of
/// `FashionMNIST.Split` can clash with it).
enum SplitArgument: String, ExpressibleByArgument {
    case train, test
    var split: FashionMNIST.Split { self == .train ? .train : .test }
}

/// `contrast export`: a trained model as a file other frameworks load (docs/export.md).
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trained model as safetensors (parameters named for torch.nn modules), ONNX (the graph with its parameters; docs/export.md) or a Hugging Face BERT directory (docs/text.md).",
        discussion: """
            hf (model.encoder bert): --out is a directory that transformers.BertModel and sentence_transformers.SentenceTransformer load: \
            config.json, model.safetensors, vocab.txt, tokenizer and sentence-transformers files; SentenceTransformer gives the representation h \
            (with --what model: the projection head as Dense modules and Normalize, to the embedding z). \
            hf --tower text (model.pair_encoder bert): the text tower of an image-text model, with its projection head by default, \
            so SentenceTransformer gives the text embeddings z that compare with the image tower's (contrast embed --what embedding).
            ONNX: opset \(ONNXExport.opset), input 'input' float32 [N, I] (MLP) or [N, C, H, W] (CNN, ResNet, ViT; pixels as byte / 255), \
            outputs 'representation' [N, R] and, with --what model, 'embedding' [N, E] (L2-normalised), N dynamic. \
            The pair tower of a two-tower model is in the safetensors file, and a BERT text tower in --format hf --tower text.
            """)

    @Option(help: ArgumentHelp(trainedModelHelp))
    var checkpoint: String
    @Option(help: "File format: 'safetensors' (parameters), 'onnx' (graph and parameters, for onnxruntime) or 'hf' (a Hugging Face BERT directory).")
    var format = "safetensors"
    @Option(help: "Output file (--format hf: a directory).") var out: String
    @Option(help: ArgumentHelp("'encoder' (x to the representation h) or 'model' (also the projection head, to the embedding z; the default). "
            + "--format hf: the encoder by default, the projection head too with --tower text."))
    var what: ModelExport.Part?
    @Option(help: ArgumentHelp("--format hf: 'text' writes the text tower of an image-text model (model.pair_encoder bert) "
            + "instead of its image encoder.", valueName: "text"))
    var tower: ExportTower?
    @Option(help: "--format hf: the vocab.txt to copy (default: the config's data.vocab).") var vocab: String?
    @Option(help: "--format hf: the tokenizer's do_lower_case (true for an uncased vocabulary; default: the config's data.lowercase).")
    var lowercase: Bool?
    @Option(help: ArgumentHelp("Only for a model saved without its input shape (by an older contrast) whose data set has moved: "
            + "the data set it was trained on (a folder `contrast prepare` wrote, or Fashion-MNIST's IDX folder)."))
    var data: String?

    func validate() throws {
        guard format == "safetensors" || format == "onnx" || format == "hf" else {
            throw ValidationError("--format \(format) is not supported; use 'safetensors' (parameters, for PyTorch: "
                                  + "tools/load_safetensors.py), 'onnx' (graph and parameters, for onnxruntime) or 'hf' (a Hugging Face "
                                  + "BERT directory); see docs/export.md")
        }
        if format != "hf" && tower != nil {
            throw ValidationError("--tower text applies to --format hf (the safetensors file holds both towers, ONNX the first); leave out --tower")
        }
        if format != "hf" && (vocab != nil) {
            throw ValidationError("--vocab applies to --format hf only; leave it out")
        }
    }

    func run() throws {
        try reportingErrors {
            try requireFolder(of: out, option: "--out")
            let trained = try TrainedModel.load(checkpoint, data: data)
            let what = self.what ?? .model
            if format == "hf" {
                say(try HuggingFaceBert.write(trained, to: URL(fileURLWithPath: out), vocabulary: vocab,
                                              lowercase: lowercase ?? trained.config.data.lowercase,
                                              text: tower == .text, head: self.what.map { $0 == .model }))
                return
            }
            if format == "onnx" {
                let file = try ONNXExport.file(trained, part: what)
                try AtomicFile.write(file, to: URL(fileURLWithPath: out))
                let shape = (["N"] + ONNXExport.inputShape(trained.model).map(String.init)).joined(separator: ", ")
                let outputs = "representation [N, \(trained.model.representationWidth)]"
                    + (what == .model ? ", embedding [N, \(trained.model.embeddingWidth)]" : "")
                let pairs = trained.model.pairEncoder == nil ? "" : "; the pair tower is not in it (export safetensors for it)"
                say("\(out): ONNX opset \(ONNXExport.opset), input [\(shape)] -> \(outputs), of \(trained.source), \(file.count) bytes\(pairs)")
                return
            }
            let file = try ModelExport.safetensors(trained, part: what)
            try AtomicFile.write(file, to: URL(fileURLWithPath: out))
            let tensors = try ModelExport.tensors(trained.model, part: what)
            let adapter = trained.model.adapter == nil ? "" : ", adapter"
            say("\(out): \(tensors.count) tensors, \(tensors.reduce(0) { $0 + $1.values.count }) parameters "
                + "(\(what == .model ? "encoder" + adapter + " and projection head" : "encoder" + adapter)) of \(trained.source), \(file.count) bytes")
        }
    }
}

/// `contrast embed`: a trained model's representations (or embeddings) of a data set split, as .npy.
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the representations (or embeddings) of a data set split, or of texts (--texts), as a float32 .npy (N x R).",
        discussion: "Inputs are un-augmented: uint8 pixels as byte / 255, float features as they are. With --texts (a BERT model, or the "
            + "text tower of an image-text model): one text a line, tokenized with the model's vocab.txt as BertTokenizerFast does, truncated "
            + "and padded to model.bert.max_length. Through an image-text model's text tower the default is the embedding z, in the space "
            + "of the images' (embed them with --what embedding).")

    @Option(help: ArgumentHelp(trainedModelHelp))
    var checkpoint: String
    @Option(help: ArgumentHelp(dataHelp)) var data: String?
    @Option(help: "Output .npy file.") var out: String
    @Option(help: "Which split: train or test.") var split: SplitArgument = .test
    @Option(help: ArgumentHelp("'representation' (h, N x R) or 'embedding' (L2-normalised z, N x E). Default: representation; embedding for --texts "
            + "through the text tower of an image-text model (model.pair_encoder bert)."))
    var what: Embedding.Output?
    @Flag(help: "Embed the data set's pair vectors through the pair tower (two-tower CLIP models).") var pairs = false
    @Option(help: "Also write the labels as an int64 .npy (N).") var labelsOut: String?
    @Option(help: "Only the first N samples (0: all).") var limit = 0
    @Option(help: "A text file, one text a line: embed these through the model's BERT encoder (or text tower) instead of a data set split.")
    var texts: String?
    @Option(help: "--texts: the vocab.txt to tokenize with (default: the config's data.vocab).") var vocab: String?
    @Option(help: "--texts: lower-case and strip accents before WordPiece (BertTokenizerFast's do_lower_case; default: the config's data.lowercase).")
    var lowercase: Bool?
    @Option(help: "A text model (model.encoder bert): the text set's field to embed, text or positive; --data may also be a plain text file, one text a line.")
    var field = "text"

    func validate() throws {
        if texts != nil && (pairs || labelsOut != nil || data != nil) {
            throw ValidationError("--texts embeds the lines of a file; leave out --pairs, --labels-out and --data")
        }
        if texts == nil && vocab != nil { throw ValidationError("--vocab applies to --texts only; leave it out") }
        if texts == nil && lowercase != nil { throw ValidationError("--lowercase applies to --texts only (a text set is tokenized as the run's data.lowercase says); leave it out") }
        if texts != nil && field != "text" { throw ValidationError("--field picks a text set's field; --texts embeds every line of its file, so leave out --field") }
    }

    func run() throws {
        try reportingErrors {
            try requireFolder(of: out, option: "--out")
            if let labelsOut { try requireFolder(of: labelsOut, option: "--labels-out") }
            if try embedText() { return }
            let trained = try TrainedModel.load(checkpoint, data: data)
            let config = try data.map { try Evaluation.config(trained.config, data: $0) } ?? trained.config
            try useComputeSettings(of: config)
            let path = data ?? config.data.path
            let rows = try Evaluation.evaluationSplit(config, split.split, limit: limit)
            try trained.check(fits: rows, data: path, pairs: pairs)
            if labelsOut != nil && rows.labels == nil {
                throw ValidationError("--labels-out: \(path) has no labels; leave out --labels-out")
            }
            let what = self.what ?? .representation
            let values = try Embedding.compute(trained.model, rows: rows, output: what, pairs: pairs)
            let width = values.shape[1]
            try AtomicFile.write(NPYArray.encode(float32: UnsafeBufferPointer(start: values.data, count: rows.count * width),
                                                 shape: [rows.count, width]), to: URL(fileURLWithPath: out))
            if let labelsOut, let labels = rows.labels {
                try AtomicFile.write(NPYArray.encode(int64: labels, shape: [labels.count]), to: URL(fileURLWithPath: labelsOut))
            }
            say("\(out): \(what.rawValue)s of \(rows.count) \(split.rawValue) samples of \(path)\(pairs ? " (pairs)" : ""), "
                + "\(rows.count) x \(width) float32, by \(trained.source)")
        }
    }
}

extension Embed {
    /// Texts through a model's BERT (its encoder, or the text tower of an image-text model), tokenized as training
    /// tokenized them (the run's data.vocab and data.lowercase, model.bert.max_length; --vocab and --lowercase for
    /// --texts): the lines of --texts, or a text set or plain text file as --data (or the run's data). False when
    /// the input is not text, or (without --texts) the model has no BERT: the caller embeds a data set split.
    func embedText() throws -> Bool {
        let trained: TrainedModel
        if texts != nil {
            trained = try TrainedModel.load(checkpoint)
            _ = try Embedding.requireTextTower(trained.model)
        } else {
            // --data that is not text goes the usual way without loading the model here; without --data the run's
            // config names the data, and a model that does not load is left to the usual path's error.
            if let data, !TextInputs.isText(path: data, split: split.split) { return false }
            guard let loaded = try? TrainedModel.load(checkpoint), Embedding.textTower(loaded.model) != nil else { return false }
            trained = loaded
        }
        let config = trained.config
        let found: (texts: [String], source: String)?
        if let texts {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: texts, isDirectory: &isDirectory), !isDirectory.boolValue,
                  (try? String(contentsOfFile: texts, encoding: .utf8)) != nil else {
                throw ValidationError("--texts \(texts) cannot be read as UTF-8 text; give a file of one text a line")
            }
            found = try TextInputs.texts(path: texts, split: split.split, field: field, limit: limit)
        } else {
            found = try TextInputs.texts(path: data ?? config.data.path, split: split.split, field: field, limit: limit)
        }
        guard let (lines, source) = found else { return false }
        if labelsOut != nil { throw ValidationError("--labels-out: texts have no labels; leave out --labels-out") }
        let tokenizer = try TextInputs.tokenizer(config: config, vocabulary: vocab, lowercase: lowercase)
        let pairTower = Embedding.textTower(trained.model) == .pair
        let what = self.what ?? (pairTower ? .embedding : .representation)
        let (values, truncated) = try Embedding.compute(trained.model, texts: lines, tokenizer: tokenizer, output: what)
        let width = values.shape[1]
        try AtomicFile.write(NPYArray.encode(float32: UnsafeBufferPointer(start: values.data, count: lines.count * width),
                                             shape: [lines.count, width]), to: URL(fileURLWithPath: out))
        say("\(out): \(what.rawValue)s of \(lines.count) texts (\(source)\(pairTower ? ", through the text tower" : ""); \(truncated) longer than "
            + "\(config.model.bert.maxLength) tokens, truncated), \(lines.count) x \(width) float32, by \(trained.source)")
        return true
    }
}

/// `contrast eval drift`: how far two checkpoints' representations are apart (linear CKA).
struct EvalDrift: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Linear CKA between the representations of two checkpoints on the same test samples (1: same up to rotation and scale).")

    @Option(name: .customLong("a"), help: ArgumentHelp("First model: " + trainedModelHelp)) var first: String
    @Option(name: .customLong("b"), help: "Second model, as --a.") var second: String
    @Option(help: ArgumentHelp(dataHelp + " (Default: the first model's data set.)")) var data: String?
    @Option(name: .customLong("set"), help: ArgumentHelp("Override a key of the first model's config for choosing the data, "
                                                         + "e.g. --set data.test_limit=1000.", valueName: "key=value"))
    var overrides: [String] = []

    func run() throws {
        try reportingErrors {
            let a = try TrainedModel.load(first, data: data), b = try TrainedModel.load(second, data: data)
            var config = try ConfigLoader.load(yaml: a.config.yaml(), source: "the config of \(first)", overrides: overrides)
            if let data { config = try Evaluation.config(config, data: data) }
            try useComputeSettings(of: config)
            let path = data ?? config.data.path
            let rows = try Evaluation.evaluationSplit(config, .test)
            try a.check(fits: rows, data: path)
            try b.check(fits: rows, data: path)
            let x = try Embedding.compute(a.model, rows: rows, output: .representation)
            let y = try Embedding.compute(b.model, rows: rows, output: .representation)
            let similarity = CKA.linear(x.data, columns: x.shape[1], y.data, columns: y.shape[1], rows: rows.count)
            say(String(format: "linear CKA %.4f between the representations of A (%@, R=%d) and B (%@, R=%d) on %d test samples of %@",
                       similarity, a.source, x.shape[1], b.source, y.shape[1], rows.count, path))
        }
    }
}

/// Help of every option that takes a trained model (`TrainedModel.load`).
let trainedModelHelp = "A run directory (its weights.bin, else its newest complete checkpoint), "
    + "a checkpoint directory (RUN/checkpoints/step-NNNNNNNNN) or RUN/checkpoints/latest."

/// An output file's folder must exist before the model is loaded, so the error names the
/// folder (not a temporary file) and comes before minutes of work.
func requireFolder(of file: String, option: String) throws {
    let folder = URL(fileURLWithPath: file).deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw ValidationError("\(option) \(file): the folder \(folder) does not exist; create it (mkdir -p \(folder)) or write elsewhere")
    }
}
