import Config
import Data
import NN
import Text

/// Image <-> text (model.pair_encoder bert): each sample's `caption` becomes its pair, a BERT input
/// row of 3T floats [ids | attention mask | token types] (`BERT.row`), tokenized with data.vocab to
/// model.bert.max_length (longer captions are cut, [SEP] kept). Tokenized once when the rows are read:
/// a caption row is 3T floats, and the batches then carry them as any pair vectors, so CLIP, SigLIP,
/// retrieval, sampling and resume need nothing of their own.
public struct CaptionTokens {
    public let tokenizer: WordPieceTokenizer
    /// T, [CLS] and [SEP] included.
    public let maxLength: Int

    public init(tokenizer: WordPieceTokenizer, maxLength: Int) {
        self.tokenizer = tokenizer
        self.maxLength = maxLength
    }

    /// The tokenizer of data.vocab (lower-casing as data.lowercase says) at model.bert.max_length.
    public init(config: TrainingConfig) throws {
        guard !config.data.vocab.isEmpty else {
            throw ConfigError(key: "data.vocab", problem: "config key 'data.vocab' is not set, and model.pair_encoder bert tokenizes "
                              + "the captions with it", hint: "learn one with contrast vocab --size 1000 --out vocab.txt DATA/train and set data.vocab")
        }
        self.init(tokenizer: try WordPieceTokenizer(vocabularyFile: config.data.vocab, options: TokenizerOptions(lowercase: config.data.lowercase)),
                  maxLength: config.model.bert.maxLength)
    }

    /// The name of the utf8 field a sample's text pair is read from.
    public static let field = "caption"

    /// BERT rows of `texts` (count x 3T).
    public func rows(_ texts: [String]) throws -> [Float] {
        try Embedding.bertRows(texts, tokenizer: tokenizer, maxLength: maxLength).rows
    }

    /// `rows` (read from `shards` of `dataset`, in memory) with every held sample's caption as its pair.
    /// - Throws: when the data set has no caption field, or rows are held on disk.
    public func attach(to rows: SampleRows, dataset: ShardedDataset, shards: Range<Int>) throws -> SampleRows {
        guard rows.disk == nil, rows.gathered == nil else {
            throw ConfigError(key: "data.hold", problem: "config key 'data.hold' is disk, but model.pair_encoder bert keeps the caption "
                              + "token rows in memory", hint: "use data.hold: memory")
        }
        var texts: [String] = []
        texts.reserveCapacity(rows.count)
        for shard in shards {
            let block = try dataset.readShard(shard), entry = dataset.manifest.shards[shard]
            for index in 0..<entry.sampleCount where rows.held.contains(entry.firstSample + index) {
                guard let text = block.text(Self.field, index) else {
                    throw ConfigError(key: "model.pair_encoder", problem: "config key 'model.pair_encoder' is bert, but the data set "
                                      + "\(dataset.directory) has no '\(Self.field)' field to embed",
                                      hint: "prepare it with captions (contrast prepare fashion-mnist --captions, or webdataset with .txt members)")
                }
                texts.append(text)
            }
        }
        precondition(texts.count == rows.count, "CaptionTokens.attach: \(texts.count) captions for \(rows.count) samples")
        return SampleRows(held: rows.held, totalCount: rows.totalCount, featureShape: rows.featureShape, features: rows.features,
                          labels: rows.labels, pairShape: [3 * maxLength], pairs: try self.rows(texts), encoded: rows.encoded)
    }
}
