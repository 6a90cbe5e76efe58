import Foundation
import Testing
@testable import Text

@Suite struct VocabularyTrainerTests {
    /// Worked by hand: counts (a ##b) 4, (##b ##c) 3, (a ##c) 1. The first merge makes "ab"; then
    /// (ab ##c) 3 makes "abc"; (a ##c) occurs once, under min_frequency 2, so training stops.
    @Test func mergesTheMostFrequentPairUntilNoneIsFrequentEnough() throws {
        var trainer = VocabularyTrainer(size: 100)
        for text in ["ab abc", "ABC abc", "ac"] { trainer.add(text) }
        let (vocabulary, summary) = try trainer.train()
        #expect(vocabulary.tokens == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "##a", "##b", "##c", "ab", "abc"])
        #expect(summary == VocabularyTrainer.Summary(texts: 3, distinctWords: 3, alphabet: 3, merges: 2))
        let tokenizer = WordPieceTokenizer(vocabulary: vocabulary)
        #expect(tokenizer.tokenize("abc ac ba") == [12, 5, 10, 6, 8])
    }

    /// Equal counts go to the pair of smaller ids: (a ##b) and (c ##d) both occur twice; "ab" first.
    @Test func tiesGoToThePairOfEarlierTokens() throws {
        var trainer = VocabularyTrainer(size: 14)
        for text in ["cd ab", "ab cd"] { trainer.add(text) }
        let (vocabulary, _) = try trainer.train()
        #expect(vocabulary.tokens[13] == "ab" && vocabulary.count == 14)
    }

    /// The size is reached when the corpus allows it, the vocabulary is valid, the same texts in
    /// another order give the same vocabulary, and the training texts tokenize without [UNK]
    /// (except words over 100 scalars).
    @Test func reachesTheSizeDeterministicallyWithFewUnknowns() throws {
        let texts = Corpus.licenceLines(["GPL-3"]) + Corpus.sentences(2000, seed: 7)
        var forward = VocabularyTrainer(size: 3000)
        for text in texts { forward.add(text) }
        var backward = VocabularyTrainer(size: 3000)
        for text in texts.reversed() { backward.add(text) }
        let (vocabulary, summary) = try forward.train()
        #expect(vocabulary.count == 3000 && summary.merges > 1000)
        #expect(try backward.train().0.tokens == vocabulary.tokens)
        let tokenizer = WordPieceTokenizer(vocabulary: vocabulary)
        let words = texts.flatMap { tokenizer.words($0) }.filter { $0.unicodeScalars.count <= 100 && !$0.hasPrefix("[") }
        let unknown = words.count { tokenizer.tokenize($0) == [vocabulary.unknownID] }
        #expect(unknown == 0, "\(unknown) of \(words.count) words are [UNK]")
    }

    @Test func aSizeBelowTheAlphabetIsAnError() throws {
        var trainer = VocabularyTrainer(size: 8)
        trainer.add("abc")
        #expect(throws: TextError.badVocabularyRequest("--size 8 is smaller than the special tokens and the alphabet (11 tokens: 5 special, 3 scalars as word starts and as ## continuations); raise --size or lower --limit-alphabet")) {
            try trainer.train()
        }
    }

    @Test func theAlphabetKeepsTheMostFrequentScalars() throws {
        var trainer = VocabularyTrainer(size: 100, limitAlphabet: 2)
        for text in ["aaa bbb c", "ab"] { trainer.add(text) }
        let (vocabulary, summary) = try trainer.train()
        #expect(summary.alphabet == 2 && vocabulary.id(of: "c") == nil)
        #expect(WordPieceTokenizer(vocabulary: vocabulary).tokenize("c") == [vocabulary.unknownID])
    }
}
