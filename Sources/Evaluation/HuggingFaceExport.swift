import Config
import Data
import Foundation
import NN
import RunFiles
import Storage

/// The BERT encoder as a Hugging Face model directory (docs/text.md), and back.
///
/// Written: config.json (a `BertModel`), model.safetensors under BertModel's tensor names
/// (`embeddings.word_embeddings.weight`, `encoder.layer.N.attention.self.query.weight`, ...; the block's stacked
/// q, k, v rows split into query, key and value), vocab.txt, tokenizer_config.json and special_tokens_map.json
/// (BertTokenizer's), and sentence-transformers' modules.json, sentence_bert_config.json and 1_Pooling/config.json,
/// so `BertModel.from_pretrained(dir)` gives the last hidden states and `SentenceTransformer(dir)` the
/// representation h: the pooled state, and with `model.representation` > 0 the Linear after it as the module
/// 2_Dense. With the head (`head`: `--what model`) the projection MLP follows as one sentence-transformers
/// Dense module per Linear (its activation, ReLU or GELU, in the module) and a Normalize module, so
/// SentenceTransformer gives the L2-normalised embedding z. The tower is the model's encoder when it is BERT,
/// or the text tower of an image <-> text model (`model.pair_encoder: bert`, `text: true`, `--tower text`),
/// whose z lies in the space the image tower's embeddings do. BertModel's pooler (a tanh Linear on [CLS] that
/// contrast does not train) is not written: transformers initialises it and says so; sentence-transformers
/// never reads it.
public enum HuggingFaceBert {
    /// The tokens vocab.txt must hold (BertTokenizer's special tokens).
    public static let specialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    /// The BERT encoder's parts inside a model built by `BERT.make` (nil: the encoder is another kind).
    struct Parts {
        var embeddings: BertEmbeddings
        var blocks: [TransformerBlock]
        var pool: MaskedTokenPool
        var fc: Linear?

        init?(_ model: ContrastiveModel) { self.init(encoder: model.encoder) }

        /// The parts of a tower's encoder (`model.encoder`, or `model.pairEncoder` of a text tower).
        init?(encoder: Sequential) {
            let layers = encoder.flattened
            guard let embeddings = layers.first as? BertEmbeddings,
                  let pool = layers.compactMap({ $0 as? MaskedTokenPool }).first else { return nil }
            self.embeddings = embeddings
            self.blocks = layers.compactMap { $0 as? TransformerBlock }
            self.pool = pool
            self.fc = layers.last as? Linear
        }
    }

    /// Which tower of a model holds BERT: the encoder (a text model), the pair tower (an image <-> text model), or none.
    public enum TextTower: Sendable {
        case encoder, pair

        public init?(_ model: ContrastiveModel) {
            if Parts(encoder: model.encoder) != nil { self = .encoder }
            else if let pair = model.pairEncoder, Parts(encoder: pair) != nil { self = .pair }
            else { return nil }
        }

        /// The arena prefix of the tower's encoder parameters.
        var prefix: String { self == .encoder ? "encoder." : "pair_encoder." }
    }

    /// A Linear of the projection head as a sentence-transformers Dense module: the torch activation class after it.
    struct DenseLayer {
        var linear: Linear
        var activation: String

        static let identity = "torch.nn.modules.linear.Identity"

        /// The Linears of `head` (a projection MLP then L2Normalize), each with the activation that follows it.
        static func of(_ head: Sequential) -> [DenseLayer] {
            let layers = head.flattened
            var dense: [DenseLayer] = []
            for (index, layer) in layers.enumerated() {
                guard let linear = layer as? Linear else { continue }
                let next = index + 1 < layers.count ? layers[index + 1] : nil
                let activation = linear.activation == .relu ? "torch.nn.modules.activation.ReLU"
                    : next is GELU ? "torch.nn.modules.activation.GELU" : identity
                dense.append(DenseLayer(linear: linear, activation: activation))
            }
            return dense
        }
    }

    static func values(_ arena: ParameterArena, _ slice: ParameterSlice) -> [Float] {
        Array(UnsafeBufferPointer(start: arena.parameters(slice), count: slice.count))
    }

    /// BertModel's tensors of the model's BERT encoder (or of its text tower, `tower`), in arena order (the fc
    /// after pooling is not BertModel's).
    public static func tensors(_ model: ContrastiveModel, tower: TextTower = .encoder) -> [Safetensors.NamedTensor] {
        var tensors: [Safetensors.NamedTensor] = []
        for slice in model.arena.slices where slice.name.hasPrefix(tower.prefix) {
            guard let names = BERT.huggingFaceNames(String(slice.name.dropFirst(tower.prefix.count))) else { continue }
            let values = values(model.arena, slice), part = slice.count / names.count
            // q, k, v: consecutive thirds of the rows (and of the bias).
            let shape = [slice.shape[0] / names.count] + slice.shape.dropFirst()
            for (i, name) in names.enumerated() {
                tensors.append(Safetensors.NamedTensor(name: name, shape: shape, values: Array(values[(i * part)..<((i + 1) * part)])))
            }
        }
        return tensors
    }

    /// config.json of a BertModel of `model`'s encoder.
    static func configuration(_ parts: Parts, section: BertSection) -> [String: Any] {
        let e = parts.embeddings, first = parts.blocks.first
        return [
            "architectures": ["BertModel"], "model_type": "bert",
            "vocab_size": e.vocabularySize, "hidden_size": e.width, "num_hidden_layers": parts.blocks.count,
            "num_attention_heads": first?.attention.heads ?? 1, "intermediate_size": first?.expand.outputWidth ?? 4 * e.width,
            "hidden_act": "gelu", "hidden_dropout_prob": Double(section.dropout), "attention_probs_dropout_prob": Double(section.attentionDropout),
            "max_position_embeddings": e.maximumPositions, "type_vocab_size": e.tokenTypes, "initializer_range": 0.02,
            "layer_norm_eps": Double(first?.norm1.epsilon ?? 1e-12), "pad_token_id": e.paddingID, "position_embedding_type": "absolute",
            "use_cache": true, "classifier_dropout": NSNull(), "torch_dtype": "float32", "transformers_version": "4.44.2",
        ]
    }

    /// Writes the directory of `trained`'s BERT encoder into `directory` (created if missing); `vocabulary`
    /// is the vocab.txt to copy (default: the config's data.vocab), `lowercase` the tokenizer's do_lower_case.
    /// `text`: the text tower was asked for (`--tower text`): the encoder when it is BERT, else the pair tower
    /// of `model.pair_encoder: bert`. `head`: also the projection head and the normalisation, to z (default:
    /// for the pair tower, whose h is in no space the image tower's is, but not for a text model's encoder,
    /// whose h is the sentence embedding; what `contrast embed --texts` writes by default either way).
    /// Returns a one-line summary.
    @discardableResult
    public static func write(_ trained: TrainedModel, to directory: URL, vocabulary: String? = nil, lowercase: Bool = true,
                             text: Bool = false, head: Bool? = nil) throws -> String {
        let model = trained.model
        let encoderKind = trained.config.model.encoder.rawValue
        guard let tower = TextTower(model) else {
            throw RunDirectory.Failure(description: text
                ? "--tower text: \(trained.source) has no text tower (a \(encoderKind) encoder and no model.pair_encoder bert); "
                  + "leave out --tower text and export it with --format safetensors or onnx, or train a text tower (model.pair_encoder: bert, docs/text.md)"
                : "--format hf writes BERT text encoders; \(trained.source) has a \(encoderKind) encoder (use --format safetensors or onnx)")
        }
        if tower == .pair && !text {
            throw RunDirectory.Failure(description: "--format hf writes BERT text encoders; \(trained.source) has a \(encoderKind) encoder "
                                       + "and a BERT text tower (model.pair_encoder bert): pass --tower text to export the text tower")
        }
        let encoder = tower == .encoder ? model.encoder : model.pairEncoder!
        let parts = Parts(encoder: encoder)!
        let withHead = head ?? (tower == .pair)
        if tower == .encoder && model.adapter != nil {
            throw RunDirectory.Failure(description: "--format hf cannot hold the residual adapter after \(trained.source)'s encoder "
                                       + "(model.adapter); use --format onnx or safetensors")
        }
        let dense = (parts.fc.map { [DenseLayer(linear: $0, activation: DenseLayer.identity)] } ?? [])
            + (withHead ? DenseLayer.of(tower == .encoder ? model.head : model.pairHead!) : [])
        let vocabularyPath = vocabulary ?? trained.config.data.vocab
        guard !vocabularyPath.isEmpty else {
            throw RunDirectory.Failure(description: "--format hf needs the model's vocab.txt, and the config of \(trained.source) names no "
                                       + "data.vocab; pass --vocab FILE")
        }
        guard let vocabularyText = try? String(contentsOfFile: vocabularyPath, encoding: .utf8) else {
            throw RunDirectory.Failure(description: "vocabulary \(vocabularyPath) cannot be read; pass --vocab FILE (the vocab.txt the model was trained with)")
        }
        let tokens = vocabularyText.split(separator: "\n", omittingEmptySubsequences: false).dropLast(vocabularyText.hasSuffix("\n") ? 1 : 0)
        guard tokens.count == parts.embeddings.vocabularySize else {
            throw RunDirectory.Failure(description: "vocabulary \(vocabularyPath) has \(tokens.count) tokens but the model's word table "
                                       + "\(parts.embeddings.vocabularySize) rows; pass --vocab with the vocab.txt the model was trained with")
        }
        for special in specialTokens where !tokens.contains(Substring(special)) {
            throw RunDirectory.Failure(description: "vocabulary \(vocabularyPath) has no \(special) token, which BertTokenizer needs; "
                                       + "use a vocab.txt with [PAD], [UNK], [CLS], [SEP] and [MASK] (contrast vocab writes them)")
        }
        let section = trained.config.model.bert
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
        func json(_ object: Any, _ name: String) throws {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(data + Data("\n".utf8), to: directory.appendingPathComponent(name))
        }
        try json(configuration(parts, section: section), "config.json")
        let tensors = tensors(model, tower: tower)
        try AtomicFile.write(Safetensors.encode(tensors, metadata: [("format", "pt"), ("contrast_version", contrastVersion),
                                                                    ("source", trained.source)]),
                             to: directory.appendingPathComponent("model.safetensors"))
        try AtomicFile.write(Data(vocabularyText.utf8), to: directory.appendingPathComponent("vocab.txt"))
        let maxLength = parts.embeddings.tokens
        try json(["do_lower_case": lowercase, "model_max_length": maxLength, "tokenizer_class": "BertTokenizer",
                  "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]",
                  "tokenize_chinese_chars": true, "strip_accents": NSNull(), "clean_up_tokenization_spaces": true], "tokenizer_config.json")
        try json(["cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"],
                 "special_tokens_map.json")
        var modules: [[String: Any]] = [
            ["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
            ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"],
        ]
        try json(["max_seq_length": maxLength, "do_lower_case": false], "sentence_bert_config.json")
        let mean = parts.pool.mode == .mean
        try json(["word_embedding_dimension": parts.embeddings.width, "pooling_mode_cls_token": !mean, "pooling_mode_mean_tokens": mean,
                  "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false, "pooling_mode_weightedmean_tokens": false,
                  "pooling_mode_lasttoken": false, "include_prompt": true], "1_Pooling/config.json")
        // sentence_transformers.models.Dense: config.json (its constructor's arguments) and model.safetensors
        // (linear.weight out x in, linear.bias), the activation applied after the Linear.
        for layer in dense {
            let index = modules.count, folder = "\(index)_Dense", fc = layer.linear
            try FileManager.default.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true)
            try json(["in_features": fc.inputWidth, "out_features": fc.outputWidth, "bias": fc.bias != nil,
                      "activation_function": layer.activation], folder + "/config.json")
            var tensors = [Safetensors.NamedTensor(name: "linear.weight", shape: fc.weight.shape, values: values(model.arena, fc.weight))]
            if let bias = fc.bias { tensors.append(Safetensors.NamedTensor(name: "linear.bias", shape: bias.shape, values: values(model.arena, bias))) }
            try AtomicFile.write(Safetensors.encode(tensors, metadata: [("format", "pt")]),
                                 to: directory.appendingPathComponent(folder + "/model.safetensors"))
            modules.append(["idx": index, "name": "\(index)", "path": folder, "type": "sentence_transformers.models.Dense"])
        }
        if withHead {
            // z is L2-normalised; Normalize has no parameters and no files.
            let index = modules.count
            modules.append(["idx": index, "name": "\(index)", "path": "\(index)_Normalize", "type": "sentence_transformers.models.Normalize"])
        }
        try json(modules, "modules.json")
        let count = tensors.reduce(0) { $0 + $1.values.count }
        let denseCount = dense.reduce(0) { $0 + $1.linear.inputWidth * $1.linear.outputWidth + ($1.linear.bias == nil ? 0 : $1.linear.outputWidth) }
        let after = withHead ? ", the projection head (\(dense.count) Dense, \(denseCount) parameters, to the \(model.embeddingWidth)-wide "
            + "normalised embedding z)" : parts.fc == nil ? "" : " and a \(parts.fc!.outputWidth)-wide Dense"
        return "\(directory.path): \(tower == .pair ? "the text tower as " : "")BertModel (\(parts.blocks.count) layers, width "
            + "\(parts.embeddings.width), vocabulary \(parts.embeddings.vocabularySize), max_length \(maxLength)), \(tensors.count) tensors, "
            + "\(count) parameters, \(mean ? "mean" : "cls") pooling\(after) of \(trained.source)"
    }
}

extension HuggingFaceBert {
    /// Whether `path` is a Hugging Face model directory (a config.json, and no contrast run's config.yaml).
    public static func isModelDirectory(_ path: String) -> Bool {
        let url = URL(fileURLWithPath: path), files = FileManager.default
        return files.fileExists(atPath: url.appendingPathComponent("config.json").path)
            && !files.fileExists(atPath: url.appendingPathComponent("config.yaml").path)
    }

    /// The values of `target`'s BERT encoder parameters (contrast's names) from the BertModel directory
    /// `directory` (transformers' `save_pretrained`, or `contrast export --format hf`): each by its BertModel
    /// name (a `bert.` prefix, as BertFor... models save it, is accepted), q, k and v stacked again. The fc after
    /// pooling, which BertModel has not, is left out. Every mismatch is one line naming the file and the fix.
    public static func encoderParameters(from directory: String, for target: ContrastiveModel) throws -> [String: [Float]] {
        func fail(_ text: String) -> RunDirectory.Failure { RunDirectory.Failure(description: "init_from: " + text) }
        let url = URL(fileURLWithPath: directory), configPath = url.appendingPathComponent("config.json").path
        guard let data = FileManager.default.contents(atPath: configPath),
              let configuration = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("\(configPath) is not a JSON object; give a model directory that transformers' save_pretrained wrote")
        }
        let modelType = configuration["model_type"] as? String ?? "(none)"
        guard modelType == "bert" else {
            throw fail("\(configPath) has model_type '\(modelType)', not 'bert'; init_from takes a BERT directory "
                       + "(BertModel.save_pretrained or contrast export --format hf) or a contrast run directory")
        }
        guard let parts = Parts(target) else {
            throw fail("\(directory) is a BERT directory but this run's model.encoder is not bert; set model.encoder: bert "
                       + "and model.bert to its \(configPath)")
        }
        let fix = "set model.bert to \(configPath) (" + ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                                       "vocab_size", "max_position_embeddings"].map { "\($0) \(configuration[$0] ?? "?")" }
            .joined(separator: ", ") + ")"
        let heads = parts.blocks.first?.attention.heads
        if let theirs = configuration["num_attention_heads"] as? Int, let heads, theirs != heads {
            throw fail("\(configPath) has num_attention_heads \(theirs) but this run's model.bert has \(heads); \(fix)")
        }
        let weightsPath = url.appendingPathComponent("model.safetensors").path
        guard let file = FileManager.default.contents(atPath: weightsPath) else {
            throw fail("\(directory) has no model.safetensors; save the model with save_pretrained(\"\(directory)\", safe_serialization=True)")
        }
        let header = try Safetensors.readHeader(file, path: weightsPath)
        var found: [String: Safetensors.Entry] = [:]
        for entry in header.entries { found[entry.name.hasPrefix("bert.") ? String(entry.name.dropFirst(5)) : entry.name] = entry }
        var parameters: [String: [Float]] = [:]
        for slice in target.arena.slices where slice.name.hasPrefix("encoder.") {
            guard let names = BERT.huggingFaceNames(String(slice.name.dropFirst("encoder.".count))) else { continue }
            let shape = [slice.shape[0] / names.count] + slice.shape.dropFirst()
            var values: [Float] = []
            for name in names {
                guard let entry = found[name] else {
                    throw fail("\(weightsPath) has no tensor \(name), which this run's encoder needs; \(fix)")
                }
                guard entry.shape == shape else {
                    throw fail("\(weightsPath): \(name) is \(entry.shape) but this run's model.bert makes \(shape); \(fix)")
                }
                guard entry.dtype == "F32" else {
                    throw fail("\(weightsPath): \(name) is \(entry.dtype), not F32; save the model in float32 "
                               + "(model.float().save_pretrained(\"\(directory)\"))")
                }
                values += Safetensors.float32Values(entry, of: file, header: header)
            }
            parameters[slice.name] = values
        }
        return parameters
    }
}
