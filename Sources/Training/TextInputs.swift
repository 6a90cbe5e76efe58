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

    /// The rows (N x 3T, in memory) and how many texts were cut; nil when `path` is neither a
    /// plain file nor a text set (another data set: the caller reads it as features).
    /// - Throws: `ConfigError` naming data.vocab when the run's vocabulary cannot be read;
    ///   `DataError` for a set without the field.
    public static func rows(config: TrainingConfig, path: String, split: FashionMNIST.Split, field: String, limit: Int) throws
        -> (rows: SampleRows, truncated: Int, source: String)? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        var texts: [String] = []
        let source: String
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
            source = "the \(field) field of \(directory)"
        } else {
            guard let data = FileManager.default.contents(atPath: path) else { throw DataError.fileNotFound(path: path) }
            var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            texts = limit > 0 ? Array(lines.prefix(limit)) : lines
            source = "the lines of \(path)"
        }
        let tokenizer: WordPieceTokenizer
        do {
            tokenizer = try WordPieceTokenizer(vocabularyFile: config.data.vocab, options: TokenizerOptions(lowercase: config.data.lowercase))
        } catch let error as TextError {
            throw ConfigError(key: "data.vocab", problem: "the trained model's vocabulary (config key 'data.vocab'): \(error)",
                              hint: "restore the file, or give the run's config data.vocab pointing at it")
        }
        let t = config.model.bert.maxLength, width = 3 * t
        var values = [Float](repeating: 0, count: texts.count * width)
        var tokenized = TokenizedTexts(), truncated = 0
        for text in texts {
            let encoding = try tokenizer.encode(text, maxLength: t, overlong: .truncate)
            if encoding.truncated { truncated += 1 }
            tokenized.append(encoding.ids)
        }
        values.withUnsafeMutableBufferPointer { out in
            for i in 0..<texts.count {
                tokenized.writeRow(i, tokens: t, padding: tokenizer.vocabulary.paddingID, into: out.baseAddress! + i * width)
            }
        }
        return (SampleRows(held: 0..<texts.count, totalCount: texts.count, featureShape: [width], features: .float32(values)), truncated, source)
    }
}
