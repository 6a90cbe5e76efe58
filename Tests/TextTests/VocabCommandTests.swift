import Foundation
import Testing
import TestSupport
@testable import Text

/// `contrast vocab` end to end through the binary.
@Suite(.serialized) struct VocabCommandTests {
    @Test func learnsAVocabularyFileThatTheTokenizerAndTransformersRead() throws {
        let directory = temporaryDirectory("vocab-command")
        let corpus = directory.appendingPathComponent("corpus.txt"), out = directory.appendingPathComponent("vocab.txt")
        let texts = Corpus.licenceLines(["Apache-2.0"]) + Corpus.sentences(400, seed: 11).map { $0.replacingOccurrences(of: "\n", with: " ") }
            .map { $0.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\u{85}", with: " ").replacingOccurrences(of: "\u{2028}", with: " ") }
        try Data(texts.joined(separator: "\n").utf8).write(to: corpus)
        let outcome = try runProcess(contrastExecutable, ["vocab", "--size", "600", "--out", out.path, corpus.path])
        #expect(outcome.status == 0, "\(outcome.error)")
        let vocabulary = try Vocabulary.load(path: out.path)
        #expect(vocabulary.count == 600)
        #expect(outcome.output.hasPrefix("\(out.path): 600 tokens (5 special, "))
        #expect(Array(vocabulary.tokens.prefix(5)) == Vocabulary.specialTokens)
        // Its training texts tokenize with no [UNK] but for the words of over 100 scalars (and
        // "[UNK]" written in the text).
        let tokenizer = WordPieceTokenizer(vocabulary: vocabulary)
        let expectedUnknown = texts.reduce(0) { $0 + tokenizer.words($1).count { $0.unicodeScalars.count > 100 || $0 == "[UNK]" } }
        let unknown = texts.reduce(0) { $0 + tokenizer.tokenize($1).count { $0 == vocabulary.unknownID } }
        #expect(unknown == expectedUnknown && unknown > 0)

        guard tokenizersUnavailable == nil else { print("python-verify: skipped: \(tokenizersUnavailable!)"); return }
        let input = directory.appendingPathComponent("in.jsonl"), output = directory.appendingPathComponent("ids.txt")
        let heldOut = Corpus.sentences(300, seed: 12)
        try writeRows(heldOut, to: input)
        try huggingFace(["encode", out.path, input.path, output.path, "--lowercase", "1"])
        let expected = try referenceLines(output)
        #expect(expected.count == heldOut.count)
        for (text, line) in zip(heldOut, expected) {
            #expect(try tokenizer.encode(text).ids == numbers(line.split(separator: "|")[0]), "\(text.debugDescription)")
        }
    }

    @Test func readsTheTextFieldsOfAPreparedDataSet() throws {
        let directory = temporaryDirectory("vocab-prepared")
        let table = directory.appendingPathComponent("pairs.tsv"), prepared = directory.appendingPathComponent("prepared")
        try Data("alpha beta\tgamma delta\nbeta alpha\tdelta gamma\n".utf8).write(to: table)
        let prepare = try runProcess(contrastExecutable, ["prepare", "text", table.path, "--out", prepared.path, "--shards", "1"])
        try #require(prepare.status == 0, "\(prepare.error)")
        let out = directory.appendingPathComponent("vocab.txt")
        let outcome = try runProcess(contrastExecutable, ["vocab", "--size", "100", "--min-frequency", "1", "--out", out.path, prepared.path])
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.contains("from 4 texts, 4 distinct words"))
        let vocabulary = try Vocabulary.load(path: out.path)
        for word in ["alpha", "beta", "gamma", "delta"] { #expect(vocabulary.id(of: word) != nil) }
    }

    @Test func badInputIsOneLineNamingTheFix() throws {
        let directory = temporaryDirectory("vocab-bad")
        let corpus = directory.appendingPathComponent("corpus.txt")
        try Data("hello world\n".utf8).write(to: corpus)
        let out = directory.appendingPathComponent("vocab.txt").path
        let missing = try runProcess(contrastExecutable, ["vocab", "--size", "100", "--out", out, "/nonexistent/corpus.txt"])
        #expect(missing.status == 1)
        #expect(missing.error == "contrast: error: /nonexistent/corpus.txt: cannot read it: no such file; check the path\n")
        let small = try runProcess(contrastExecutable, ["vocab", "--size", "10", "--out", out, corpus.path])
        #expect(small.status == 1)
        #expect(small.error.hasPrefix("contrast: error: --size 10 is smaller than the special tokens and the alphabet (19 tokens"))
        #expect(small.error.hasSuffix("raise --size or lower --limit-alphabet\n"))
        #expect(!FileManager.default.fileExists(atPath: out))
        try Data([0x61, 0xFF, 0x0A]).write(to: corpus)
        let latin1 = try runProcess(contrastExecutable, ["vocab", "--size", "100", "--out", out, corpus.path])
        #expect(latin1.error == "contrast: error: \(corpus.path) line 1: not UTF-8; give contrast vocab UTF-8 text files, one text a line\n")
    }

    /// `contrast bench tokenizer` encodes every line: its token count is the tokenizer's.
    @Test func benchTokenizerCountsWhatItEncodes() throws {
        let directory = temporaryDirectory("bench-tokenizer")
        let corpus = directory.appendingPathComponent("corpus.txt"), vocab = directory.appendingPathComponent("vocab.txt")
        let texts = ["Hello world, hello tokenizer!", "Café 中文 😀", "unaffable running"]
        try Data(texts.joined(separator: "\n").utf8).write(to: corpus)
        let learned = try runProcess(contrastExecutable, ["vocab", "--size", "80", "--min-frequency", "1", "--out", vocab.path, corpus.path])
        try #require(learned.status == 0, "\(learned.error)")
        let outcome = try runProcess(contrastExecutable, ["bench", "tokenizer", "--vocab", vocab.path, "--json", "--repeats", "2", corpus.path])
        try #require(outcome.status == 0, "\(outcome.error)")
        let result = try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as! [String: Any]
        let tokenizer = try WordPieceTokenizer(vocabularyFile: vocab.path)
        #expect(result["tokens"] as? Int == texts.reduce(0) { $0 + (try! tokenizer.encode($1)).ids.count })
        #expect(result["bytes"] as? Int == texts.reduce(0) { $0 + $1.utf8.count } && result["texts"] as? Int == 3)
        #expect((result["megabytes_per_second"] as? Double ?? 0) > 0 && result["bench"] as? String == "tokenizer")
    }
}
