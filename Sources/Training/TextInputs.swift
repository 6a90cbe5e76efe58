import Config
import Data
import Foundation
import Text

/// The BERT rows of texts to embed with a trained text model (`contrast embed`): a text set's
/// field (`text` or `positive`) of one split, or a plain text file (one text a line), tokenized
/// as training tokenized them: the run's data.vocab and data.lowercase, cut to model.bert.max_length.
public enum TextInputs {
    /// Whether `path` is a plain file (one text a line) or a text set (its `split`'s folder).
    public static func isText(path: String, split: FashionMNIST.Split) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return false }
        guard isDirectory.boolValue else { return true }
        let (train, test) = ShardedDataset.splits(of: path)
        return (try? ShardedDataset.readManifest(directory: split == .test ? test ?? train : train))?.isTextSet == true
    }

    /// The texts of `path` (a text set's `field` of one split, or a plain file's lines), at most `limit`
    /// (0: all), and where they came from; nil when `path` is neither a plain file nor a text set (another
    /// data set: the caller reads it as features).
    /// - Throws: `DataError` for a set without the field or an unreadable file.
    public static func texts(path: String, split: FashionMNIST.Split, field: String, limit: Int) throws
        -> (texts: [String], source: String)? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        var texts: [String] = []
        if isDirectory.boolValue {
            let (train, test) = ShardedDataset.splits(of: path)
            let directory = split == .test ? test ?? train : train
            guard FileManager.default.fileExists(atPath: directory + "/" + ShardManifest.fileName),
                  try ShardedDataset.readManifest(directory: directory).isTextSet else { return nil }
            let dataset = try ShardedDataset(directory: directory)
            guard dataset.manifest.field(field)?.dtype == .utf8 else {
                throw DataError.textInvalid(path: directory, problem: "the text set has no utf8 field \(field) (its fields: "
                                            + (dataset.manifest.fields ?? []).map(\.name).joined(separator: ", ") + "); choose --field text")
            }
            for shard in 0..<dataset.shardCount where limit == 0 || texts.count < limit {
                let block = try dataset.readShard(shard)
                for i in 0..<block.count where limit == 0 || texts.count < limit { texts.append(block.text(field, i) ?? "") }
            }
            return (texts, "the \(field) field of \(directory)")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError.fileNotFound(path: path) }
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return (limit > 0 ? Array(lines.prefix(limit)) : lines, "the lines of \(path)")
    }

    /// The tokenizer a trained model's texts were tokenized with: the run's data.vocab and data.lowercase (a text
    /// set's texts and an image-text model's captions alike), or `vocabulary` and `lowercase` where given.
    /// - Throws: `ConfigError` naming data.vocab when the run's vocabulary is not set or cannot be read.
    public static func tokenizer(config: TrainingConfig, vocabulary: String? = nil, lowercase: Bool? = nil) throws -> WordPieceTokenizer {
        let options = TokenizerOptions(lowercase: lowercase ?? config.data.lowercase)
        if let vocabulary { return try WordPieceTokenizer(vocabularyFile: vocabulary, options: options) }
        guard !config.data.vocab.isEmpty else {
            throw ConfigError(key: "data.vocab", problem: "the trained model's config names no vocabulary (config key 'data.vocab')",
                              hint: "pass --vocab FILE, the vocab.txt it was trained with")
        }
        do {
            return try WordPieceTokenizer(vocabularyFile: config.data.vocab, options: options)
        } catch let error as TextError {
            throw ConfigError(key: "data.vocab", problem: "the trained model's vocabulary (config key 'data.vocab'): \(error)",
                              hint: "restore the file, pass --vocab FILE, or give the run's config data.vocab pointing at it")
        }
    }
}
