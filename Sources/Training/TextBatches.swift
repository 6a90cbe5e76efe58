import Config
import Data
import Foundation
import NN
import Text

/// Texts tokenized once, kept as their WordPiece ids ([CLS] ... [SEP], at most T each): a few
/// bytes a token, so a batch is a copy into BERT's rows, not a tokenization, in whichever thread
/// makes it. Tokenizing when the rows are read also lets an overlong text stop the run before
/// its directory exists (data.overlong: error) rather than at the step that meets it.
public struct TokenizedTexts: Sendable {
    /// count + 1 offsets into `ids`.
    public private(set) var offsets: [Int] = [0]
    public private(set) var ids: [Int32] = []
    public var count: Int { offsets.count - 1 }

    public init() {}

    mutating func append(_ encoding: [Int32]) {
        ids += encoding
        offsets.append(ids.count)
    }

    /// Text `index`'s BERT row of 3T floats [ids | attention mask | token types] (`BERT.row`'s
    /// layout): its ids then [PAD] (id `padding`) to T, mask 1 on its tokens, types all 0.
    @inline(__always)
    public func writeRow(_ index: Int, tokens t: Int, padding: Int32, into out: UnsafeMutablePointer<Float>) {
        let start = offsets[index], length = offsets[index + 1] - start
        for k in 0..<length { out[k] = Float(ids[start + k]) }
        for k in length..<t { out[k] = Float(padding) }
        (out + t).update(repeating: 1, count: length)
        (out + t + length).update(repeating: 0, count: t - length)
        (out + 2 * t).update(repeating: 0, count: t)
    }
}

/// The text of a rank's shards of a text set (`contrast prepare text|wordnet|freedict`),
/// tokenized: each sample's `text` (the anchor), its `positive` when the set has one, and its pair
/// id (loss.mask_duplicates): the `group` field when the set has one, else a hash of the positive's
/// text (of the text itself without positives), so equal positives are not each other's negatives.
///
/// Shapes: samples `held` = first ..< first + n of N, T = model.bert.max_length tokens a row.
public final class TextSamples: Sendable {
    public let held: Range<Int>
    public let tokens: Int
    public let anchors: TokenizedTexts
    /// nil: a one-column set, trained with dropout views (SimCSE).
    public let positives: TokenizedTexts?
    public let pairIds: [Int64]
    /// A hash of each positive's text (of the text itself without positives): equal texts, equal keys.
    public let positiveKeys: [Int64]
    /// The `score` field, when the set has one (float32 per pair).
    public let scores: [Float]?
    public let paddingID: Int32
    /// Texts (anchors and positives) longer than T tokens, cut to T.
    public let truncated: Int
    /// The set's fields, for the run log.
    public let fields: [String]

    /// Reads and tokenizes `shards` of `dataset` up to sample `limit` (0: all).
    /// - Throws: `ConfigError` naming data.overlong when a text is longer than T tokens and
    ///   `overlong` is error: the data set, the sample, its token count and the fix.
    public init(_ dataset: ShardedDataset, shards: Range<Int>, limit: Int, tokenizer: WordPieceTokenizer, tokens t: Int,
                overlong: OverlongTextKind) throws {
        let manifest = dataset.manifest
        let total = limit > 0 ? min(limit, manifest.sampleCount) : manifest.sampleCount
        let first = manifest.shards[shards.lowerBound].firstSample
        let last = manifest.shards[shards.upperBound - 1]
        held = first..<min(total, last.firstSample + last.sampleCount)
        tokens = t
        paddingID = tokenizer.vocabulary.paddingID
        fields = manifest.fields?.map(\.name) ?? []
        let hasPositive = manifest.field("positive") != nil, hasGroup = manifest.field("group")?.dtype == .int64
        var anchors = TokenizedTexts(), positives: TokenizedTexts? = hasPositive ? TokenizedTexts() : nil
        var pairIds: [Int64] = [], positiveKeys: [Int64] = []
        var scores: [Float]? = manifest.field("score")?.dtype == .float32 ? [] : nil
        pairIds.reserveCapacity(held.count)
        var truncated = 0
        func encode(_ text: String, sample: Int, field: String) throws -> [Int32] {
            let encoding = try tokenizer.encode(text, maxLength: t, overlong: .truncate)
            if encoding.truncated {
                if overlong == .error {
                    let length = try tokenizer.encode(text).ids.count
                    throw ConfigError(key: "data.overlong", problem: "sample \(sample) of the data set \(dataset.directory) has a "
                                      + "\(field) of \(length) tokens, more than model.bert.max_length \(t) (data.overlong: error)",
                                      hint: "raise model.bert.max_length to \(length) or more, or set data.overlong: truncate to cut such texts")
                }
                truncated += 1
            }
            return encoding.ids
        }
        for shard in shards {
            let block = try dataset.readShard(shard)
            let firstSample = manifest.shards[shard].firstSample
            let kept = min(manifest.shards[shard].sampleCount, held.upperBound - firstSample)
            var groups: [Int64]? = nil
            if hasGroup, case .int64(let values) = block.fields["group"] { groups = values }
            if scores != nil, case .float32(let values) = block.fields["score"] { scores! += values.prefix(kept) }
            for i in 0..<kept {
                let sample = firstSample + i
                let text = block.text("text", i) ?? ""
                anchors.append(try encode(text, sample: sample, field: "text"))
                let positive = hasPositive ? block.text("positive", i) ?? "" : text
                if hasPositive { positives!.append(try encode(positive, sample: sample, field: "positive")) }
                let key = Self.hash(positive)
                positiveKeys.append(key)
                pairIds.append(groups?[i] ?? key)
            }
        }
        self.anchors = anchors
        self.positives = positives
        self.pairIds = pairIds
        self.positiveKeys = positiveKeys
        self.scores = scores
        self.truncated = truncated
    }

    /// FNV-1a over the UTF-8 bytes: the same id for the same text on every rank.
    static func hash(_ text: String) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Int64(bitPattern: h)
    }

    /// The pair id as the batch carries it: a float of an integer below 2^24 (the objectives read
    /// labels as floats of small integers). Group ids below 2^24 are kept as they are; a hash is
    /// folded to 24 bits, so two different positives in one global batch of N share an id with
    /// probability about N^2 / 2^25 (one masked negative, not a wrong positive).
    @inline(__always)
    static func carried(_ id: Int64) -> Float {
        if id >= 0 && id < 1 << 24 { return Float(id) }
        let h = UInt64(bitPattern: id)
        return Float((h ^ (h >> 24) ^ (h >> 48)) & 0xFF_FFFF)
    }

    @inline(__always)
    func row(_ sample: Int) -> Int {
        precondition(held.contains(sample), "sample \(sample) is not held (\(held))")
        return sample - held.lowerBound
    }
}

/// The batch of a text set through the one text encoder: 2B x 3T, [the B anchors' rows, the B
/// positives' rows] (without positives, the anchors again: SimCSE's two views are the same text
/// through two dropout masks, keyed by row), then with `carriesIds` the B pair ids: the layout of
/// `TwoViewBatches` that the views objectives (ntxent, pairs and siglip with loss.sides views) read.
public struct TextBatches: BatchMaker {
    public let texts: TextSamples
    public let samplesPerBatch: Int
    public let carriesIds: Bool

    public init(texts: TextSamples, samplesPerBatch: Int, carriesIds: Bool) {
        self.texts = texts
        self.samplesPerBatch = samplesPerBatch
        self.carriesIds = carriesIds
    }

    public var floatsPerBatch: Int { 2 * samplesPerBatch * 3 * texts.tokens + (carriesIds ? samplesPerBatch : 0) }

    public func reading(_ rows: SampleRows) -> BatchMaker {
        preconditionFailure("text sets are not streamed (data.hold: stream is refused for them)")
    }

    public func makeBatch(samples: [Int], epoch: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(samples.count == samplesPerBatch, "a batch of \(samplesPerBatch) samples got \(samples.count)")
        let b = samples.count, width = 3 * texts.tokens
        let second = texts.positives ?? texts.anchors
        for (index, sample) in samples.enumerated() {
            let row = texts.row(sample)
            texts.anchors.writeRow(row, tokens: texts.tokens, padding: texts.paddingID, into: out + index * width)
            second.writeRow(row, tokens: texts.tokens, padding: texts.paddingID, into: out + (b + index) * width)
            if carriesIds { out[2 * b * width + index] = TextSamples.carried(texts.pairIds[row]) }
        }
    }
}
