import Foundation
import NN
import RunFiles
import Tensor
import Text

/// Representations or embeddings of texts through a BERT encoder (`contrast embed --texts`): each text
/// tokenized as BertTokenizerFast does ([CLS] text [SEP], truncated and padded to model.bert.max_length),
/// the rows BertModel's three inputs (`BERT.row`). The BERT is the model's encoder (a text model) or its
/// text tower (an image <-> text model, model.pair_encoder bert), whose embeddings z share the space of
/// the image tower's.
extension Embedding {
    /// The tower `compute(_:texts:...)` embeds through: `.pair` for the text tower of an image <-> text model,
    /// nil when the model has no BERT.
    public static func textTower(_ model: ContrastiveModel) -> HuggingFaceBert.TextTower? { HuggingFaceBert.TextTower(model) }

    /// `textTower`, or an error saying the model embeds no text.
    public static func requireTextTower(_ model: ContrastiveModel) throws -> HuggingFaceBert.TextTower {
        guard let tower = textTower(model) else {
            throw RunDirectory.Failure(description: "--texts embeds text through a BERT encoder (model.encoder bert) or text tower "
                                       + "(model.pair_encoder bert); this model has neither, its towers take feature vectors or images: leave out --texts")
        }
        return tower
    }

    /// `output` of every text (N x R or N x E) with `tokenizer`, in chunks of `chunk` texts; also how many
    /// texts were longer than max_length and cut. Through the text tower (`textTower`): a representation is
    /// its h (the pooled BERT state), an embedding its z.
    /// - Throws: when the model has no BERT, or its word table is not the tokenizer's vocabulary.
    public static func compute(_ model: ContrastiveModel, texts: [String], tokenizer: WordPieceTokenizer, output: Output,
                               chunk: Int = 256) throws -> (values: Tensor, truncated: Int) {
        let tower = try requireTextTower(model)
        let embeddings = (tower == .encoder ? model.encoder : model.pairEncoder!).layers.first as! BertEmbeddings
        guard tokenizer.vocabulary.count == embeddings.vocabularySize else {
            throw RunDirectory.Failure(description: "vocabulary \(tokenizer.vocabulary.source) has \(tokenizer.vocabulary.count) tokens but "
                                       + "the model's word table \(embeddings.vocabularySize) rows; pass --vocab with the vocab.txt it was trained with")
        }
        let pair = tower == .pair, t = embeddings.tokens
        let width = output == .embedding ? model.embeddingWidth : pair ? model.pairRepresentationWidth : model.representationWidth
        let out = Tensor(zeros: [max(1, texts.count), width])
        var truncated = 0, start = 0
        while start < texts.count {
            let count = min(chunk, texts.count - start)
            let (rows, cut) = try bertRows(Array(texts[start ..< start + count]), tokenizer: tokenizer, maxLength: t)
            truncated += cut
            let target = out.data + start * width
            switch output {
            case .representation: model.representations(of: rows, count: count, pair: pair, into: target, batch: count)
            case .embedding: model.embeddings(of: rows, count: count, pair: pair, into: target, batch: count)
            }
            start += count
        }
        return (out, truncated)
    }

    /// BERT's input rows of `texts` (count x 3T floats: `BERT.row` of each text's ids, attention mask
    /// and token types, padded or cut to `maxLength`), and how many texts were cut.
    public static func bertRows(_ texts: [String], tokenizer: WordPieceTokenizer, maxLength t: Int) throws -> (rows: [Float], truncated: Int) {
        let batch = try tokenizer.encode(texts: texts, maxLength: t, padding: .maxLength)
        var rows: [Float] = []
        rows.reserveCapacity(texts.count * 3 * t)
        for i in 0..<texts.count {
            let range = (i * t)..<((i + 1) * t)
            rows += BERT.row(ids: batch.ids[range].map(Int.init), mask: batch.attentionMask[range].map(Int.init),
                             types: batch.typeIDs[range].map(Int.init))
        }
        return (rows, batch.truncatedTexts)
    }
}
