import Foundation
import Testing
@testable import Text

/// Hand-worked cases of basic tokenisation, WordPiece, encoding and truncation (the corpus
/// comparison with transformers is in TokenizerParityTests).
@Suite struct WordPieceTests {
    static let vocabulary = try! Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "want",
                                                     "##want", "##ed", "runn", "##ing", ",", "cafe", "中", "!", "a", "##a", "x"])
    static func id(_ token: String) -> Int32 { vocabulary.id(of: token)! }
    let tokenizer = WordPieceTokenizer(vocabulary: WordPieceTests.vocabulary)

    @Test func splitsWordsLongestPieceFirst() {
        #expect(tokenizer.tokenize("unwanted running") == [5, 9, 10, 11, 12])
        #expect(tokenizer.tokenize("UNAFFABLE") == [5, 6, 7])
        // "unwantedx": no piece "##x", so the whole word is [UNK], not "un ##want ##ed [UNK]".
        #expect(tokenizer.tokenize("unwantedx, want") == [1, 13, 8])
    }

    @Test func basicTokenisationCleansSplitsAndNormalises() {
        #expect(tokenizer.words("Héllo,wörld!  ÇA\tva") == ["hello", ",", "world", "!", "ca", "va"])
        #expect(tokenizer.words("a\u{0}b\u{7}c\u{FFFD}d\u{200B}e\u{AD}f") == ["abcdef"])
        #expect(tokenizer.words("x\u{A0}y\u{3000}z\u{2028}w\u{85}v") == ["x", "y", "z", "wv"])
        #expect(tokenizer.words("ab中文cd") == ["ab", "中", "文", "cd"])
        #expect(tokenizer.words("İ") == ["i"])   // NFD: I + U+0307, the mark dropped, then lower-cased
        #expect(tokenizer.words("e\u{301}$5") == ["e", "$", "5"])
        let cased = WordPieceTokenizer(vocabulary: Self.vocabulary, options: TokenizerOptions(lowercase: false))
        #expect(cased.words("Héllo ÇA") == ["Héllo", "ÇA"])
        let lowerKeepingAccents = WordPieceTokenizer(vocabulary: Self.vocabulary, options: TokenizerOptions(lowercase: true, stripAccents: false))
        #expect(lowerKeepingAccents.words("Héllo ÇA") == ["héllo", "ça"])
        #expect(lowerKeepingAccents.words("İ") == ["i\u{307}"])   // Unicode's full lower-case mapping
        #expect(cased.words("Caf\u{E9}") == ["Caf\u{E9}"])
        #expect(tokenizer.tokenize("CAFÉ") == [Self.id("cafe")])
    }

    @Test func specialTokensInTheTextAreTokensAsWritten() {
        #expect(tokenizer.words("a[MASK]b [mask] [SEP") == ["a", "[MASK]", "b", "[", "mask", "]", "[", "sep"])
        #expect(tokenizer.tokenize("a[MASK]") == [17, 4])
    }

    @Test func aWordOfMoreThan100ScalarsIsUnknown() {
        #expect(tokenizer.tokenize(String(repeating: "a", count: 100)) == [17] + Array(repeating: 18, count: 99))
        #expect(tokenizer.tokenize(String(repeating: "a", count: 101)) == [1])
        // Scalars count, not bytes: 100 CJK-free two-byte letters still fit.
        let narrow = WordPieceTokenizer(vocabulary: Self.vocabulary, options: TokenizerOptions(maxCharactersPerWord: 3))
        #expect(narrow.tokenize("aaa aaaa") == [17, 18, 18, 1])
    }

    @Test func encodesSinglesAndPairsWithTypesAndMasks() throws {
        let single = try tokenizer.encode("want x", maxLength: 6, padded: true)
        #expect(single == Encoding(ids: [2, 8, 19, 3, 0, 0], typeIDs: [0, 0, 0, 0, 0, 0], attentionMask: [1, 1, 1, 1, 0, 0], truncated: false))
        let pair = try tokenizer.encode("want", pair: "x a")
        #expect(pair == Encoding(ids: [2, 8, 3, 19, 17, 3], typeIDs: [0, 0, 0, 1, 1, 1], attentionMask: [1, 1, 1, 1, 1, 1], truncated: false))
    }

    /// transformers' longest_first: with a budget of max_length - 3, the shorter keeps its length
    /// when the longer can have the rest and stays no shorter; otherwise they share it.
    @Test func truncatesTheLongerOfAPairFirst() throws {
        #expect(WordPieceTokenizer.longestFirst(2, 9, budget: 6) == (2, 4))
        #expect(WordPieceTokenizer.longestFirst(9, 2, budget: 6) == (4, 2))
        #expect(WordPieceTokenizer.longestFirst(5, 6, budget: 6) == (3, 3))
        #expect(WordPieceTokenizer.longestFirst(5, 6, budget: 7) == (3, 4))
        #expect(WordPieceTokenizer.longestFirst(6, 5, budget: 7) == (4, 3))
        #expect(WordPieceTokenizer.longestFirst(5, 5, budget: 7) == (3, 4))
        #expect(WordPieceTokenizer.longestFirst(20, 30, budget: 7) == (3, 4))
        let encoded = try tokenizer.encode("x x x x x", pair: "a", maxLength: 6)
        #expect(encoded.ids == [2, 19, 19, 3, 17, 3] && encoded.truncated)
        let single = try tokenizer.encode("x x x x x", maxLength: 4)
        #expect(single.ids == [2, 19, 19, 3] && single.truncated)
    }

    @Test func anOverlongTextIsAnErrorWhenAsked() throws {
        #expect(throws: TextError.textTooLong(index: 0, tokens: 7, maxLength: 6)) {
            try tokenizer.encode("x x x x x", maxLength: 6, overlong: .fail)
        }
        #expect(throws: TextError.textTooLong(index: 1, tokens: 4, maxLength: 3)) {
            try tokenizer.encode(texts: ["x", "x x"], maxLength: 3, overlong: .fail)
        }
        #expect("\(TextError.textTooLong(index: 1, tokens: 4, maxLength: 3))"
                == "text 2 has 4 tokens with [CLS] and [SEP], more than max_length 3; shorten it, raise max_length, or let long texts be truncated")
        #expect(throws: TextError.maxLengthTooSmall(maxLength: 3, minimum: 4)) { try tokenizer.encode("x", pair: "x", maxLength: 3) }
    }

    @Test func batchesPadAndCountTruncatedTexts() throws {
        let batch = try tokenizer.encode(texts: ["x", "x x x x", "a a"], maxLength: 5)
        #expect(batch.count == 3 && batch.length == 5 && batch.truncatedTexts == 1)
        #expect(batch.ids == [2, 19, 3, 0, 0, 2, 19, 19, 19, 3, 2, 17, 17, 3, 0])
        #expect(batch.attentionMask == [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0])
        let longest = try tokenizer.encode(texts: ["x", "a a"], pairs: ["a", "x"], maxLength: 16, padding: .longest)
        #expect(longest.length == 6 && longest.truncatedTexts == 0)
        #expect(longest.ids == [2, 19, 3, 17, 3, 0, 2, 17, 17, 3, 19, 3])
        #expect(longest.typeIDs == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    }

    @Test func emptyTextsEncodeAsClsSep() throws {
        #expect(tokenizer.tokenize("") == [])
        #expect(try tokenizer.encode("", pair: "").ids == [2, 3, 3])
    }
}
