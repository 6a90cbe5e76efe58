import Config
import Data
import Foundation
import NN
import RunFiles
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

    public mutating func append(_ encoding: [Int32]) {
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
/// tokenized: each sample's `text` (the anchor), its `positive` when the set has one, its hard
/// `negative` when the set has one and the run uses it (loss.hard_negatives), and its pair id
/// (loss.mask_duplicates): the `group` field when the set has one, else a hash of the positive's
/// text (of the text itself without positives), so equal positives are not each other's negatives.
/// A hard negative's id is the hash of its text: equal to a pair's id when it is that pair's
/// positive text (without a group field; with one, equal to the pair's text key), so it is not a
/// negative of that pair's anchor.
///
/// Shapes: samples `held` = first ..< first + n of N, T = model.bert.max_length tokens a row.
public final class TextSamples: Sendable {
    public let held: Range<Int>
    public let tokens: Int
    public let anchors: TokenizedTexts
    /// nil: a one-column set, trained with dropout views (SimCSE).
    public let positives: TokenizedTexts?
    /// The `negative` field, when the set has one and `negatives` was asked for.
    public let negatives: TokenizedTexts?
    public let pairIds: [Int64]
    /// The hash of each hard negative's text (with `negatives`).
    public let negativeIds: [Int64]
    /// A hash of each positive's text (of the text itself without positives): equal texts, equal keys.
    public let positiveKeys: [Int64]
    /// Whether the pair ids are the `group` field (not the positives' text hashes): the batch then
    /// carries the text hashes too, so equal texts are masked whatever their groups.
    public let idsAreGroups: Bool
    /// The `score` field, when the set has one (float32 per pair).
    public let scores: [Float]?
    public let paddingID: Int32
    /// Texts (anchors, positives and negatives) longer than T tokens, cut to T.
    public let truncated: Int
    /// The set's fields, for the run log.
    public let fields: [String]

    /// Reads and tokenizes `shards` of `dataset` up to sample `limit` (0: all); with `negatives`,
    /// the `negative` field too when the set has one.
    /// - Throws: `ConfigError` naming data.overlong when a text is longer than T tokens and
    ///   `overlong` is error: the data set, the sample, its token count and the fix; naming
    ///   loss.hard_negatives when a sample's negative is empty (a hard negative of nothing).
    public convenience init(_ dataset: ShardedDataset, shards: Range<Int>, limit: Int, tokenizer: WordPieceTokenizer, tokens t: Int,
                            overlong: OverlongTextKind, negatives readsNegatives: Bool = false) throws {
        let manifest = dataset.manifest
        let total = limit > 0 ? min(limit, manifest.sampleCount) : manifest.sampleCount
        let first = manifest.shards[shards.lowerBound].firstSample
        let last = manifest.shards[shards.upperBound - 1]
        let held = first..<min(total, last.firstSample + last.sampleCount)
        var reader = TextSampleReader(dataset, tokenizer: tokenizer, tokens: t, overlong: overlong, negatives: readsNegatives)
        var built = Builder(reader, capacity: held.count)
        var scores: [Float]? = manifest.field("score")?.dtype == .float32 ? [] : nil
        for shard in shards {
            let block = try dataset.readShard(shard)
            let firstSample = manifest.shards[shard].firstSample
            let kept = min(manifest.shards[shard].sampleCount, held.upperBound - firstSample)
            var groups: [Int64]? = nil
            if reader.hasGroup, case .int64(let values) = block.fields["group"] { groups = values }
            if scores != nil, case .float32(let values) = block.fields["score"] { scores! += values.prefix(kept) }
            for i in 0..<kept {
                built.append(try reader.sample(firstSample + i, text: block.text("text", i) ?? "",
                                                 positive: reader.hasPositive ? block.text("positive", i) ?? "" : nil,
                                                 negative: reader.hasNegative ? block.text("negative", i) ?? "" : nil, group: groups?[i]))
            }
        }
        self.init(held: held, built: built, layout: reader, scores: scores)
    }

    /// Samples `held` already tokenized (`TextSampleReader`), in sample order: a streamed batch's
    /// gathered in slot order (`held` 0 ..< B, sample i the batch's slot i), or none (the layout alone).
    convenience init(held: Range<Int>, samples: [TextSample], layout reader: TextSampleReader) {
        precondition(samples.count == held.count, "TextSamples: \(samples.count) samples for \(held)")
        var built = Builder(reader, capacity: samples.count)
        for sample in samples { built.append(sample) }
        self.init(held: held, built: built, layout: reader)
    }

    /// The samples appended to `built`, held as flat token arrays (no array a sample is kept).
    init(held: Range<Int>, built: Builder, layout reader: TextSampleReader, scores: [Float]? = nil) {
        precondition(built.pairIds.count == held.count, "TextSamples: \(built.pairIds.count) samples for \(held)")
        self.held = held
        tokens = reader.tokens
        paddingID = reader.paddingID
        fields = reader.fields
        anchors = built.anchors
        positives = built.positives
        negatives = built.negatives
        negativeIds = built.negativeIds
        pairIds = built.pairIds
        positiveKeys = built.positiveKeys
        idsAreGroups = reader.hasGroup
        self.scores = scores
        truncated = reader.truncated
    }

    /// Tokenized samples appended one at a time into the flat arrays `TextSamples` holds.
    struct Builder {
        var anchors = TokenizedTexts()
        var positives: TokenizedTexts?
        var negatives: TokenizedTexts?
        var pairIds: [Int64] = [], positiveKeys: [Int64] = [], negativeIds: [Int64] = []

        init(_ reader: TextSampleReader, capacity: Int) {
            positives = reader.hasPositive ? TokenizedTexts() : nil
            negatives = reader.hasNegative ? TokenizedTexts() : nil
            pairIds.reserveCapacity(capacity)
            positiveKeys.reserveCapacity(capacity)
        }

        mutating func append(_ sample: TextSample) {
            anchors.append(sample.anchor)
            if let positive = sample.positive { positives!.append(positive) }
            if let negative = sample.negative {
                negatives!.append(negative)
                negativeIds.append(sample.negativeId)
            }
            pairIds.append(sample.pairId)
            positiveKeys.append(sample.positiveKey)
        }
    }

    /// FNV-1a over the UTF-8 bytes: the same id for the same text on every rank.
    static func hash(_ text: String) -> Int64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Int64(bitPattern: h)
    }

    /// A label as supcon's batch carries it: a float of an integer below 2^24 (supcon reads labels
    /// as floats of small integers). Group ids below 2^24 are kept as they are; a hash is folded to
    /// 24 bits. The pairs objective carries its ids exactly instead (`CarriedId`).
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

/// One text set sample tokenized: its anchor's ids, its positive's (nil for a one-column set)
/// and hard negative's (when read), its pair id, its negative's id and its positive's text key.
public struct TextSample: Sendable {
    public var anchor: [Int32]
    public var positive: [Int32]?
    public var negative: [Int32]?
    public var pairId: Int64
    public var negativeId: Int64
    public var positiveKey: Int64
}

/// How a text set's sample becomes a `TextSample`: one path for the samples held in memory and
/// those streamed from the shards (`StreamedTextBatches`), so the two give the same rows and ids.
/// Counts the texts cut to T tokens; with data.overlong: error an overlong text stops the run.
public struct TextSampleReader: Sendable {
    public let directory: String
    public let tokenizer: WordPieceTokenizer
    public let tokens: Int
    public let overlong: OverlongTextKind
    public let paddingID: Int32
    public let fields: [String]
    public let hasPositive: Bool
    public let hasGroup: Bool
    /// The `negative` field is read (asked for, and the set has one).
    public let hasNegative: Bool
    /// Texts (anchors, positives and negatives) longer than T tokens, cut to T.
    public private(set) var truncated = 0

    public init(_ dataset: ShardedDataset, tokenizer: WordPieceTokenizer, tokens t: Int, overlong: OverlongTextKind, negatives: Bool) {
        let manifest = dataset.manifest
        directory = dataset.directory
        self.tokenizer = tokenizer
        tokens = t
        self.overlong = overlong
        paddingID = tokenizer.vocabulary.paddingID
        fields = manifest.fields?.map(\.name) ?? []
        hasPositive = manifest.field("positive") != nil
        hasGroup = manifest.field("group")?.dtype == .int64
        hasNegative = negatives && manifest.field("negative")?.dtype == .utf8
    }

    mutating func encode(_ text: String, sample: Int, field: String) throws -> [Int32] {
        let encoding = try tokenizer.encode(text, maxLength: tokens, overlong: .truncate)
        if encoding.truncated {
            if overlong == .error {
                let length = try tokenizer.encode(text).ids.count
                throw ConfigError(key: "data.overlong", problem: "sample \(sample) of the data set \(directory) has a "
                                  + "\(field) of \(length) tokens, more than model.bert.max_length \(tokens) (data.overlong: error)",
                                  hint: "raise model.bert.max_length to \(length) or more, or set data.overlong: truncate to cut such texts")
            }
            truncated += 1
        }
        return encoding.ids
    }

    /// Sample `sample` from its fields: `positive` nil without a positive field, `negative` nil
    /// unless `hasNegative`, `group` the group field's value when the set has one.
    /// - Throws: `ConfigError` naming data.overlong (above), or loss.hard_negatives for an empty negative.
    public mutating func sample(_ sample: Int, text: String, positive: String?, negative: String?, group: Int64?) throws -> TextSample {
        let anchor = try encode(text, sample: sample, field: "text")
        let positiveIds = try positive.map { try encode($0, sample: sample, field: "positive") }
        let key = TextSamples.hash(positive ?? text)
        var negativeIds: [Int32]? = nil, negativeId: Int64 = 0
        if let negative {
            guard !negative.allSatisfy(\.isWhitespace) else {
                throw ConfigError(key: "loss.hard_negatives", problem: "sample \(sample) of the data set \(directory) has an "
                                  + "empty negative, and every pair of a set with a negative field needs its hard negative",
                                  hint: "prepare the set again with contrast prepare text (it skips rows with an empty column), "
                                  + "or set loss.hard_negatives: false to train without the negatives")
            }
            negativeIds = try encode(negative, sample: sample, field: "negative")
            negativeId = TextSamples.hash(negative)
        }
        return TextSample(anchor: anchor, positive: positiveIds, negative: negativeIds, pairId: group ?? key, negativeId: negativeId,
                          positiveKey: key)
    }
}

/// A 64-bit id carried exactly in a batch of floats: its bits 0..<22, 22..<44 and 44..<64 as three
/// floats, each an integer below 2^22 (a float holds every integer below 2^24 exactly), read back
/// bit for bit. Two different ids never compare equal: a pair id that is a hash of a text (FNV-1a,
/// 64 bits) masks a wrong negative only on a 64-bit collision, about N^2 / 2^65 for N ids.
public enum CarriedId {
    /// Floats of one id.
    public static let floats = 3

    @inline(__always)
    public static func write(_ id: UInt64, into out: UnsafeMutablePointer<Float>) {
        out[0] = Float(id & 0x3F_FFFF)
        out[1] = Float((id >> 22) & 0x3F_FFFF)
        out[2] = Float(id >> 44)
    }

    @inline(__always)
    public static func read(_ floats: UnsafePointer<Float>) -> UInt64 {
        UInt64(floats[0]) | UInt64(floats[1]) << 22 | UInt64(floats[2]) << 44
    }
}

/// The batch of a text set through the one text encoder: 2B x 3T, [the B anchors' rows, the B
/// positives' rows] (without positives, the anchors again: SimCSE's two views are the same text
/// through two dropout masks, keyed by row); with hard negatives (loss.hard_negatives and a
/// `negative` field) a third B x 3T, the B negatives' rows. Then the ids: supcon's B labels
/// (`TextSamples.carried`), or the pairs objective's exact ids (`CarriedId`, 3 floats each): the B
/// pair ids, then with hard negatives the B negatives' ids, then when the pair ids are groups the
/// B positives' text hashes (a negative's id is already its text's hash). The layout of `TwoViewBatches` that the
/// views objectives (ntxent, pairs and siglip with loss.sides views) read, plus the negatives.
public struct TextBatches: BatchMaker {
    /// What follows the rows.
    public enum Ids: Sendable {
        case none
        /// One float a sample, supcon's label.
        case labels
        /// `CarriedId.floats` a text (pair ids, then the negatives'), loss.mask_duplicates.
        case exact
    }

    public let texts: TextSamples
    public let samplesPerBatch: Int
    public let ids: Ids
    /// Whether the negatives' rows follow the positives' (the set's `negative` field was read).
    public var hardNegatives: Bool { texts.negatives != nil }
    /// Whether the positives' text hashes follow the ids (exact ids that are groups).
    public var carriesKeys: Bool { ids == .exact && texts.idsAreGroups }

    public init(texts: TextSamples, samplesPerBatch: Int, ids: Ids) {
        self.texts = texts
        self.samplesPerBatch = samplesPerBatch
        self.ids = ids
    }

    /// Rows of a batch: 2B, or 3B with the negatives.
    var rows: Int { (hardNegatives ? 3 : 2) * samplesPerBatch }

    var idFloats: Int {
        switch ids {
        case .none: 0
        case .labels: samplesPerBatch
        case .exact: ((hardNegatives ? 2 : 1) + (carriesKeys ? 1 : 0)) * samplesPerBatch * CarriedId.floats
        }
    }

    public var floatsPerBatch: Int { rows * 3 * texts.tokens + idFloats }

    /// The layout this maker writes, to check against the objective's (`BatchLayout.check`).
    public var batchLayout: BatchLayout {
        let blocks = switch ids {
        case .none: 0
        case .labels: 1
        case .exact: (hardNegatives ? 2 : 1) + (carriesKeys ? 1 : 0)
        }
        return BatchLayout(samples: samplesPerBatch, rows: rows, rowWidth: 3 * texts.tokens, idBlocks: blocks,
                           idFloats: ids == .exact ? CarriedId.floats : ids == .labels ? 1 : 0)
    }

    public func reading(_ rows: SampleRows) -> BatchMaker {
        preconditionFailure("a streamed text set's batches are made by StreamedTextBatches, from its gathered samples")
    }

    public func makeBatch(samples: [Int], epoch: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(samples.count == samplesPerBatch, "a batch of \(samplesPerBatch) samples got \(samples.count)")
        write(rows: samples.map(texts.row), into: out)
    }

    /// The batch of `texts`' rows `rows` (indices into the held samples), in that order: the one
    /// writer of held and streamed batches (`StreamedTextBatches` passes its gathered 0 ..< B).
    func write(rows rowIndices: [Int], into out: UnsafeMutablePointer<Float>) {
        precondition(rowIndices.count == samplesPerBatch, "a batch of \(samplesPerBatch) samples got \(rowIndices.count)")
        let b = rowIndices.count, width = 3 * texts.tokens, t = texts.tokens, padding = texts.paddingID
        let second = texts.positives ?? texts.anchors
        let idStart = out + rows * width
        for (index, row) in rowIndices.enumerated() {
            texts.anchors.writeRow(row, tokens: t, padding: padding, into: out + index * width)
            second.writeRow(row, tokens: t, padding: padding, into: out + (b + index) * width)
            if let negatives = texts.negatives { negatives.writeRow(row, tokens: t, padding: padding, into: out + (2 * b + index) * width) }
            switch ids {
            case .none: break
            case .labels: idStart[index] = TextSamples.carried(texts.pairIds[row])
            case .exact:
                CarriedId.write(UInt64(bitPattern: texts.pairIds[row]), into: idStart + index * CarriedId.floats)
                if hardNegatives {
                    CarriedId.write(UInt64(bitPattern: texts.negativeIds[row]), into: idStart + (b + index) * CarriedId.floats)
                }
                if carriesKeys {
                    CarriedId.write(UInt64(bitPattern: texts.positiveKeys[row]),
                                    into: idStart + ((hardNegatives ? 2 : 1) * b + index) * CarriedId.floats)
                }
            }
        }
    }
}

/// A views batch's layout as one side computes it: `rows` model inputs of `rowWidth` floats (2B,
/// or 3B with hard negatives), then `idBlocks` blocks of B ids of `idFloats` floats each (pair
/// ids, the negatives' ids, the positives' text keys). The batch maker (`TextBatches`) and the
/// objective (pairs, `PairSidesBatch`) each derive it from the config; `check` compares the two
/// when the run starts, so a disagreement stops the run with one line, not a step reading ids
/// as tokens.
public struct BatchLayout: Equatable, Sendable, CustomStringConvertible {
    public var samples: Int
    public var rows: Int
    public var rowWidth: Int
    public var idBlocks: Int
    public var idFloats: Int

    public init(samples: Int, rows: Int, rowWidth: Int, idBlocks: Int, idFloats: Int) {
        (self.samples, self.rows, self.rowWidth, self.idBlocks, self.idFloats) = (samples, rows, rowWidth, idBlocks, idFloats)
    }

    public var floats: Int { rows * rowWidth + idBlocks * samples * idFloats }

    public var description: String {
        "\(rows) rows (\(rows / max(1, samples))B, B = \(samples)) of \(rowWidth) floats"
            + (idBlocks == 0 ? ", no ids" : ", then \(idBlocks) block(s) of B ids of \(idFloats) float(s)")
    }

    /// Throws when the maker's layout is not the objective's, naming both.
    public static func check(maker: BatchLayout, objective: BatchLayout) throws {
        guard maker != objective else { return }
        throw RunDirectory.Failure(description: "the batch maker writes \(maker) but the objective reads \(objective): "
                                   + "the two disagree on the batch layout (a bug; report it with the run's config.yaml)")
    }
}
