import Foundation

/// Learns a WordPiece vocabulary from text, the way `tokenizers`' WordPieceTrainer does (byte-pair
/// merges over words with "##" marking pieces inside a word; Sennrich et al. 2016):
/// 1. count the words of basic tokenisation (the same normalisation the tokenizer will apply);
/// 2. the vocabulary starts with [PAD] [UNK] [CLS] [SEP] [MASK], then the alphabet: the
///    `limitAlphabet` most frequent scalars, each as a word start "x" and as a continuation "##x"
///    (`tokenizers` adds "##x" only for scalars seen inside a word; both forms keep a held-out
///    word from becoming [UNK] for a letter seen only in one position);
/// 3. repeatedly merge the most frequent adjacent pair (a, b) into "a" + b without its "##",
///    counting each word as often as it occurs, until the vocabulary has `size` tokens or no
///    pair occurs `minFrequency` times. Ties go to the pair of smaller ids (earlier tokens), so
///    the result depends only on the texts and the options, never on hashing or threads.
public struct VocabularyTrainer {
    public var size: Int
    public var options: TokenizerOptions
    /// A pair is merged only if it occurs at least this often (`tokenizers`' min_frequency).
    public var minFrequency: Int
    /// At most this many scalars in the alphabet, the most frequent; rarer ones become [UNK].
    public var limitAlphabet: Int

    public init(size: Int, options: TokenizerOptions = TokenizerOptions(), minFrequency: Int = 2, limitAlphabet: Int = 1000) {
        self.size = size
        self.options = options
        self.minFrequency = minFrequency
        self.limitAlphabet = limitAlphabet
    }

    /// What a training run saw and made.
    public struct Summary: Equatable, Sendable {
        public var texts = 0
        public var distinctWords = 0
        public var alphabet = 0
        public var merges = 0
    }

    private var wordCounts: [String: Int] = [:]
    private var texts = 0

    /// Counts the words of one text.
    public mutating func add(_ text: String) {
        var sink = CountingSink()
        var text = text
        let basic = BasicTokenizer(lowercase: options.lowercase, stripAccents: options.stripAccents ?? options.lowercase)
        text.withUTF8 { basic.tokenize($0, specials: [], into: &sink) }
        for word in sink.words { wordCounts[word, default: 0] += 1 }
        texts += 1
    }

    /// Counts the words of every line of the UTF-8 text file at `path`.
    public mutating func add(file path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file"
            throw TextError.unreadable(path: path, reason: reason)
        }
        for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            guard let text = String(validating: line, as: UTF8.self) else {
                throw TextError.badVocabularyRequest("\(path) line \(index + 1): not UTF-8; give contrast vocab UTF-8 text files, one text a line")
            }
            add(text)
        }
    }

    /// The learned vocabulary, and what went into it.
    public func train(source: String = "vocabulary") throws -> (Vocabulary, Summary) {
        var tokens = Vocabulary.specialTokens
        // The alphabet: scalar frequencies over all words, the most frequent kept, in scalar order.
        let words = wordCounts.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let counts = words.map { wordCounts[$0]! }
        var frequency: [UInt32: Int] = [:]
        for (word, count) in zip(words, counts) { for scalar in word.unicodeScalars { frequency[scalar.value, default: 0] += count } }
        let alphabet = frequency.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(limitAlphabet).map(\.key).sorted()
        let needed = tokens.count + 2 * alphabet.count
        if size < needed {
            throw TextError.badVocabularyRequest("--size \(size) is smaller than the special tokens and the alphabet (\(needed) tokens: 5 special, \(alphabet.count) scalars as word starts and as ## continuations); raise --size or lower --limit-alphabet")
        }
        var ids: [String: Int32] = [:]
        for (index, token) in tokens.enumerated() { ids[token] = Int32(index) }
        func intern(_ token: String) -> Int32 {
            if let id = ids[token] { return id }
            let id = Int32(tokens.count)
            tokens.append(token)
            ids[token] = id
            return id
        }
        for scalar in alphabet { _ = intern(String(Unicode.Scalar(scalar)!)) }
        for scalar in alphabet { _ = intern("##" + String(Unicode.Scalar(scalar)!)) }

        // Each word as symbol ids; -1 for a scalar outside the alphabet (no pair crosses it).
        var symbols: [[Int32]] = words.map { word in
            word.unicodeScalars.enumerated().map { position, scalar in
                ids[(position == 0 ? "" : "##") + String(scalar)] ?? -1
            }
        }
        var pairCounts: [Pair: Int] = [:]
        var wordsWith: [Pair: Set<Int>] = [:]
        for (index, word) in symbols.enumerated() {
            for (a, b) in zip(word, word.dropFirst()) where a >= 0 && b >= 0 {
                pairCounts[Pair(a, b), default: 0] += counts[index]
                wordsWith[Pair(a, b), default: []].insert(index)
            }
        }
        var heap = PairHeap()
        for (pair, count) in pairCounts { heap.push(PairCount(count: count, pair: pair)) }

        var merges = 0
        while tokens.count < size, let top = heap.pop() {
            guard pairCounts[top.pair] == top.count else { continue }   // stale: its new count was pushed
            if top.count < max(minFrequency, 1) { break }
            let left = tokens[Int(top.pair.a)], right = tokens[Int(top.pair.b)]
            let merged = intern(left + right.dropFirst(2))
            merges += 1
            // Net change of each pair's count over the words the merge touches; only pairs
            // whose count moved go back on the heap.
            var delta: [Pair: Int] = [:]
            for index in (wordsWith[top.pair] ?? []).sorted() {
                let count = counts[index]
                let before = symbols[index]
                for (a, b) in zip(before, before.dropFirst()) where a >= 0 && b >= 0 { delta[Pair(a, b), default: 0] -= count }
                var after: [Int32] = []
                after.reserveCapacity(before.count)
                var position = 0
                while position < before.count {
                    if position + 1 < before.count && before[position] == top.pair.a && before[position + 1] == top.pair.b {
                        after.append(merged)
                        position += 2
                    } else {
                        after.append(before[position])
                        position += 1
                    }
                }
                symbols[index] = after
                for (a, b) in zip(after, after.dropFirst()) where a >= 0 && b >= 0 {
                    delta[Pair(a, b), default: 0] += count
                    if a == merged || b == merged { wordsWith[Pair(a, b), default: []].insert(index) }
                }
            }
            wordsWith[top.pair] = nil
            // (The heap orders by count, then ids: the push order does not matter.)
            for (pair, change) in delta where change != 0 {
                let count = pairCounts[pair, default: 0] + change
                if count > 0 {
                    pairCounts[pair] = count
                    heap.push(PairCount(count: count, pair: pair))
                } else {
                    pairCounts[pair] = nil
                }
            }
        }
        let vocabulary = try Vocabulary(tokens: tokens, source: source)
        return (vocabulary, Summary(texts: texts, distinctWords: words.count, alphabet: alphabet.count, merges: merges))
    }
}

struct Pair: Hashable {
    var a: Int32
    var b: Int32
    init(_ a: Int32, _ b: Int32) { self.a = a; self.b = b }
}

struct PairCount {
    var count: Int
    var pair: Pair
    /// Merged first: the larger count, then the smaller ids.
    func before(_ other: PairCount) -> Bool {
        count != other.count ? count > other.count : (pair.a, pair.b) < (other.pair.a, other.pair.b)
    }
}

/// A binary max-heap of pair counts (stale entries are skipped by the caller).
struct PairHeap {
    private var items: [PairCount] = []

    mutating func push(_ item: PairCount) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].before(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> PairCount? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var best = parent
            if left < items.count && items[left].before(items[best]) { best = left }
            if right < items.count && items[right].before(items[best]) { best = right }
            if best == parent { break }
            items.swapAt(parent, best)
            parent = best
        }
        return top
    }
}

/// The words of basic tokenisation as Strings (no special tokens: they are not matched).
private struct CountingSink: WordSink {
    var scratch = TokenizerScratch()
    var words: [String] = []
    mutating func word(_ bytes: UnsafeBufferPointer<UInt8>, scalars: Int) { words.append(String(decoding: bytes, as: UTF8.self)) }
    mutating func special(_ id: Int32) {}
}
