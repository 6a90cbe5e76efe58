/// How the tokenizer normalises text, as BertTokenizerFast's options.
public struct TokenizerOptions: Sendable, Equatable {
    /// Lower-case every scalar (Unicode's full mapping); BertTokenizerFast's do_lower_case.
    public var lowercase = true
    /// NFD, then drop nonspacing marks; nil follows `lowercase`, as BertTokenizerFast's strip_accents=None.
    public var stripAccents: Bool?
    /// A word of more scalars than this is one [UNK] (BERT's max_input_chars_per_word).
    public var maxCharactersPerWord = 100

    public init(lowercase: Bool = true, stripAccents: Bool? = nil, maxCharactersPerWord: Int = 100) {
        self.lowercase = lowercase
        self.stripAccents = stripAccents
        self.maxCharactersPerWord = maxCharactersPerWord
    }
}

/// What happens to a text whose tokens do not fit in `maxLength`.
public enum OverlongText: String, Sendable, CaseIterable {
    /// Cut to fit (the longer of a pair first, as transformers' truncation="longest_first") and count it.
    case truncate
    /// Throw `TextError.textTooLong`.
    case fail
}

/// How a batch's rows are padded with [PAD] (attention mask 0).
public enum Padding: String, Sendable, CaseIterable {
    /// Every row `maxLength` tokens long (padding="max_length").
    case maxLength
    /// Every row as long as the batch's longest (padding="longest").
    case longest
}

/// One encoded text or pair: [CLS] A [SEP] (B [SEP]), token type 0 for A, 1 for B.
public struct Encoding: Equatable, Sendable {
    public var ids: [Int32]
    public var typeIDs: [Int32]
    /// 1 for tokens, 0 for padding.
    public var attentionMask: [Int32]
    /// Whether tokens were cut to fit `maxLength`.
    public var truncated: Bool
}

/// A batch of B encodings of T tokens each, row-major [B, T].
public struct TokenBatch: Equatable, Sendable {
    public var count: Int
    public var length: Int
    public var ids: [Int32]
    public var typeIDs: [Int32]
    public var attentionMask: [Int32]
    /// How many rows were truncated to fit.
    public var truncatedTexts: Int
}

/// BERT's WordPiece tokenizer: basic tokenisation (BasicTokenizer.swift), then each word greedily
/// split longest piece first, pieces after the first prefixed "##"; a word with no split, or of
/// more than `maxCharactersPerWord` scalars, is one [UNK]. Ids equal transformers'
/// BertTokenizerFast's with the same vocab.txt and options (TextTests check whole corpora).
///
/// A value shares its vocabulary and may be used from any number of threads at once.
public struct WordPieceTokenizer: Sendable {
    public let vocabulary: Vocabulary
    public let options: TokenizerOptions
    let basic: BasicTokenizer

    public init(vocabulary: Vocabulary, options: TokenizerOptions = TokenizerOptions()) {
        self.vocabulary = vocabulary
        self.options = options
        basic = BasicTokenizer(lowercase: options.lowercase, stripAccents: options.stripAccents ?? options.lowercase)
    }

    /// Loads and validates `vocab.txt` at `path` (`Vocabulary.load`).
    public init(vocabularyFile path: String, options: TokenizerOptions = TokenizerOptions()) throws {
        self.init(vocabulary: try Vocabulary.load(path: path), options: options)
    }

    /// The ids of `text`'s word pieces, without [CLS] and [SEP].
    public func tokenize(_ text: String) -> [Int32] {
        var sink = PieceSink(vocabulary, maxCharactersPerWord: options.maxCharactersPerWord)
        run(text, into: &sink)
        return sink.ids
    }

    /// The words of basic tokenisation (normalised, split; special tokens as written), before
    /// WordPiece: what `contrast vocab` counts, and what the tests compare with `tokenizers`'.
    public func words(_ text: String) -> [String] {
        var sink = WordsSink(vocabulary: vocabulary)
        run(text, into: &sink)
        return sink.words
    }

    func run<Sink: WordSink>(_ text: String, into sink: inout Sink) {
        var text = text
        text.withUTF8 { basic.tokenize($0, specials: vocabulary.specials, into: &sink) }
    }

    /// [CLS] `text` [SEP] (`pair` [SEP]), cut to `maxLength` tokens by `overlong` (nil: no limit),
    /// padded to `maxLength` with [PAD] when `padded`.
    public func encode(_ text: String, pair: String? = nil, maxLength: Int? = nil, padded: Bool = false,
                       overlong: OverlongText = .truncate) throws -> Encoding {
        var sink = PieceSink(vocabulary, maxCharactersPerWord: options.maxCharactersPerWord)
        var encoding = try encode(text, pair: pair, index: 0, maxLength: maxLength, overlong: overlong, sink: &sink)
        if padded, let maxLength { pad(&encoding, to: maxLength) }
        return encoding
    }

    /// Encodes `texts` (with `pairs`, one each, when given) into a [B, T] batch.
    public func encode(texts: [String], pairs: [String]? = nil, maxLength: Int, padding: Padding = .maxLength,
                       overlong: OverlongText = .truncate) throws -> TokenBatch {
        precondition(pairs == nil || pairs!.count == texts.count, "one pair per text")
        var sink = PieceSink(vocabulary, maxCharactersPerWord: options.maxCharactersPerWord)
        var encodings: [Encoding] = []
        encodings.reserveCapacity(texts.count)
        for (index, text) in texts.enumerated() {
            encodings.append(try encode(text, pair: pairs?[index], index: index, maxLength: maxLength, overlong: overlong, sink: &sink))
        }
        let length = padding == .maxLength ? maxLength : encodings.map(\.ids.count).max() ?? 0
        var batch = TokenBatch(count: texts.count, length: length, ids: [], typeIDs: [], attentionMask: [],
                               truncatedTexts: encodings.count { $0.truncated })
        batch.ids.reserveCapacity(texts.count * length)
        batch.typeIDs.reserveCapacity(texts.count * length)
        batch.attentionMask.reserveCapacity(texts.count * length)
        for var encoding in encodings {
            pad(&encoding, to: length)
            batch.ids += encoding.ids
            batch.typeIDs += encoding.typeIDs
            batch.attentionMask += encoding.attentionMask
        }
        return batch
    }

    private func pad(_ encoding: inout Encoding, to length: Int) {
        let missing = length - encoding.ids.count
        guard missing > 0 else { return }
        encoding.ids += repeatElement(vocabulary.paddingID, count: missing)
        encoding.typeIDs += repeatElement(0, count: missing)
        encoding.attentionMask += repeatElement(0, count: missing)
    }

    private func encode(_ text: String, pair: String?, index: Int, maxLength: Int?, overlong: OverlongText,
                        sink: inout PieceSink) throws -> Encoding {
        let added = pair == nil ? 2 : 3
        if let maxLength, maxLength <= added { throw TextError.maxLengthTooSmall(maxLength: maxLength, minimum: added + 1) }
        // Both texts' pieces one after the other in the sink, then copied once into the output.
        sink.ids.removeAll(keepingCapacity: true)
        run(text, into: &sink)
        let firstCount = sink.ids.count
        if let pair { run(pair, into: &sink) }
        let secondCount = sink.ids.count - firstCount
        var (keepFirst, keepSecond) = (firstCount, secondCount)
        let total = firstCount + secondCount + added
        var truncated = false
        if let maxLength, total > maxLength {
            if overlong == .fail { throw TextError.textTooLong(index: index, tokens: total, maxLength: maxLength) }
            (keepFirst, keepSecond) = pair == nil ? (maxLength - added, 0)
                : Self.longestFirst(firstCount, secondCount, budget: maxLength - added)
            keepFirst = min(keepFirst, firstCount)
            keepSecond = min(keepSecond, secondCount)
            truncated = true
        }
        let length = keepFirst + keepSecond + added
        var ids = [Int32]()
        ids.reserveCapacity(length)
        ids.append(vocabulary.classifierID)
        ids += sink.ids[0..<keepFirst]
        ids.append(vocabulary.separatorID)
        var typeIDs = [Int32](repeating: 0, count: length)
        if pair != nil {
            ids += sink.ids[firstCount..<(firstCount + keepSecond)]
            ids.append(vocabulary.separatorID)
            for position in (keepFirst + 2)..<length { typeIDs[position] = 1 }
        }
        return Encoding(ids: ids, typeIDs: typeIDs, attentionMask: [Int32](repeating: 1, count: ids.count), truncated: truncated)
    }

    /// How many tokens of each text of a pair to keep within `budget`, as `tokenizers`'
    /// truncate_encodings with LongestFirst: the shorter text keeps its length if the longer can
    /// take the rest and still be no shorter; otherwise both get half (the longer the odd one).
    static func longestFirst(_ first: Int, _ second: Int, budget: Int) -> (Int, Int) {
        var short = min(first, second)
        var long = max(first, second)
        long = short > budget ? short : max(short, budget - short)
        if short + long > budget {
            short = budget / 2
            long = short + budget % 2
        }
        return first > second ? (long, short) : (short, long)
    }
}

/// WordPiece over the basic tokenizer's words, into `ids`.
struct PieceSink: WordSink {
    var scratch = TokenizerScratch()
    let table: PieceTable
    let unknownID: Int32
    let maxCharactersPerWord: Int
    var ids: [Int32] = []
    /// hashes[k]: FNV-1a of the k + 1 bytes from the current start.
    var hashes: [UInt64]

    init(_ vocabulary: Vocabulary, maxCharactersPerWord: Int) {
        table = vocabulary.table
        unknownID = vocabulary.unknownID
        self.maxCharactersPerWord = maxCharactersPerWord
        hashes = [UInt64](repeating: 0, count: max(table.longestPiece, 1))
        ids.reserveCapacity(256)
    }

    mutating func special(_ id: Int32) { ids.append(id) }

    mutating func word(_ bytes: UnsafeBufferPointer<UInt8>, scalars: Int) {
        if scalars > maxCharactersPerWord { ids.append(unknownID); return }
        let base = bytes.baseAddress!
        let count = bytes.count
        let longest = table.longestPiece
        let first = ids.count
        var start = 0
        hashes.withUnsafeMutableBufferPointer { hashes in
            while start < count {
                let limit = min(count, start + longest)
                var hash = PieceTable.hashSeed
                for offset in 0..<(limit - start) {
                    hash = PieceTable.extend(hash, base[start + offset])
                    hashes[offset] = hash
                }
                var end = limit
                while end > start && end < count && base[end] & 0xC0 == 0x80 { end -= 1 }
                var found: Int32 = -1
                while end > start {
                    if let id = table.find(base + start, end - start, hash: hashes[end - start - 1], continuation: start > 0) {
                        found = id
                        break
                    }
                    end -= 1
                    while end > start && base[end] & 0xC0 == 0x80 { end -= 1 }
                }
                if found < 0 {
                    ids.removeSubrange(first...)
                    ids.append(unknownID)
                    return
                }
                ids.append(found)
                start = end
            }
        }
    }
}

/// The basic tokenizer's words as Strings.
struct WordsSink: WordSink {
    var scratch = TokenizerScratch()
    let vocabulary: Vocabulary
    var words: [String] = []

    mutating func word(_ bytes: UnsafeBufferPointer<UInt8>, scalars: Int) { words.append(String(decoding: bytes, as: UTF8.self)) }
    mutating func special(_ id: Int32) { words.append(vocabulary.tokens[Int(id)]) }
}
