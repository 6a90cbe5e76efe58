import Foundation
import Testing
import TestSupport
@testable import Text

/// Why the `tokenizers` comparisons cannot run here, or nil. The skip reason carries the marker
/// launch/test.sh counts.
let tokenizersUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "\(verifyPython.path) does not exist (launch/verify-python.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    guard let outcome = try? runProcess(verifyPython, ["-c", "import transformers, tokenizers"], timeout: 300), outcome.status == 0 else {
        return "\(verifyPython.path) cannot import transformers and tokenizers (pip install -r tools/verify-requirements.txt)"
    }
    return nil
}()

private let marker = "python-verify"

/// Runs tools/hf_tokenizer.py; stops the test on failure (a broken reference is not a skip).
func huggingFace(_ arguments: [String]) throws {
    let outcome = try runProcess(verifyPython, ["tools/hf_tokenizer.py"] + arguments, timeout: 900)
    try #require(outcome.status == 0, "tools/hf_tokenizer.py failed: \(outcome.error)")
    print("\(marker): ran tools/hf_tokenizer.py \(arguments[0])")
}

/// Writes rows as JSON lines ({"text": ..., "pair": ...}).
func writeRows(_ texts: [String], pairs: [String]? = nil, to url: URL) throws {
    var out = Data()
    for (index, text) in texts.enumerated() {
        var row = ["text": text]
        if let pairs { row["pair"] = pairs[index] }
        out += try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys])
        out += Data("\n".utf8)
    }
    try out.write(to: url)
}

/// The lines of a file written by the reference (split on \n only).
func referenceLines(_ url: URL) throws -> [String] {
    let data = try Data(contentsOf: url)
    return data.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
}

func numbers(_ text: Substring) -> [Int32] { text.split(separator: " ").map { Int32($0)! } }

@Suite struct TokenizerParityTests {
    /// Texts "x" + scalar + "z" for every scalar except most of the private-use planes and the
    /// unassigned planes 4-13 (a sample of each is kept).
    static func everyScalar() -> [String] {
        var texts: [String] = []
        for value in UInt32(0)...0x10FFFF {
            if (0xD800..<0xE000).contains(value) { continue }
            if (0xE010...0xF8FF).contains(value) || (0x40000...0xDFFFF).contains(value) && value % 4099 != 0
                || (0xF0010...0x10FFFF).contains(value) && value % 997 != 0 { continue }
            texts.append("x" + String(Unicode.Scalar(value)!) + "z")
        }
        return texts
    }

    static let minimal = try! Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], source: "minimal")

    /// Clean-up, CJK, accents, lower-casing and punctuation decided for every scalar as
    /// `tokenizers` decides them (its tables are older than Swift's: UnicodeClasses.swift).
    @Test(.enabled(if: tokenizersUnavailable == nil, "\(marker): skipped: \(tokenizersUnavailable ?? "")"), arguments: [true, false])
    func everyScalarSplitsAsTokenizers(lowercase: Bool) throws {
        let directory = temporaryDirectory("scalars")
        let texts = Self.everyScalar()
        try writeRows(texts, to: directory.appendingPathComponent("in.jsonl"))
        try huggingFace(["words", directory.appendingPathComponent("in.jsonl").path, directory.appendingPathComponent("out.jsonl").path,
                         "--lowercase", lowercase ? "1" : "0"])
        let expected = try referenceLines(directory.appendingPathComponent("out.jsonl"))
        try #require(expected.count == texts.count)
        let tokenizer = WordPieceTokenizer(vocabulary: Self.minimal, options: TokenizerOptions(lowercase: lowercase))
        var mismatches: [String] = []
        for (text, line) in zip(texts, expected) {
            let theirs = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String]
            let ours = tokenizer.words(text)
            if ours != theirs {
                let scalar = text.unicodeScalars.dropFirst().first!
                mismatches.append(String(format: "U+%04X", scalar.value) + " (\(scalar.properties.generalCategory)): ours \(ours.map { $0.unicodeScalars.map { String(format: "%04X", $0.value) } }) theirs \(theirs.map { $0.unicodeScalars.map { String(format: "%04X", $0.value) } })")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) scalars differ, the first: \(mismatches.prefix(100).joined(separator: "\n"))")
    }

    /// The vocabulary the corpus tests use, learned by our trainer from other texts than the
    /// held-out ones (with a small alphabet, so some held-out words are [UNK]).
    static let learnedVocabularies = (try! learnedVocabulary(lowercase: false), try! learnedVocabulary(lowercase: true))

    static func learnedVocabulary(lowercase: Bool) throws -> Vocabulary {
        var trainer = VocabularyTrainer(size: 4000, options: TokenizerOptions(lowercase: lowercase), limitAlphabet: 400)
        for text in Corpus.licenceLines(["GPL-3", "Apache-2.0"]) + Corpus.sentences(3000, seed: 1) { trainer.add(text) }
        return try trainer.train(source: "learned").0
    }

    static let heldOut = Corpus.licenceLines(["LGPL-2.1", "MPL-2.0", "GFDL-1.3"]) + Corpus.sentences(4000, seed: 2)

    enum Case: String, CaseIterable { case single, singleTruncated, pairsTruncated, pairsPadded }

    /// Ids, token types and attention masks equal BertTokenizerFast's on the same vocab.txt for
    /// every text of a held-out corpus: single texts and pairs, with and without truncation.
    @Test(.enabled(if: tokenizersUnavailable == nil, "\(marker): skipped: \(tokenizersUnavailable ?? "")"),
          arguments: [true, false], Case.allCases)
    func heldOutCorpusEncodesAsBertTokenizerFast(lowercase: Bool, mode: Case) throws {
        let directory = temporaryDirectory("parity")
        let vocabulary = lowercase ? Self.learnedVocabularies.1 : Self.learnedVocabularies.0
        let vocabPath = directory.appendingPathComponent("vocab.txt").path
        try vocabulary.write(to: vocabPath)
        let texts = Self.heldOut
        let pairs: [String]? = mode == .pairsTruncated || mode == .pairsPadded ? texts.indices.map { texts[(($0 * 7) + 3) % texts.count] } : nil
        let maxLength: Int? = switch mode {
        case .single: nil
        case .singleTruncated: 32
        case .pairsTruncated: 40
        case .pairsPadded: 512
        }
        let input = directory.appendingPathComponent("in.jsonl"), output = directory.appendingPathComponent("out.txt")
        try writeRows(texts, pairs: pairs, to: input)
        try huggingFace(["encode", vocabPath, input.path, output.path, "--lowercase", lowercase ? "1" : "0"]
                        + (maxLength.map { ["--max-length", String($0)] } ?? []))
        let expected = try referenceLines(output)
        try #require(expected.count == texts.count)

        let tokenizer = WordPieceTokenizer(vocabulary: vocabulary, options: TokenizerOptions(lowercase: lowercase))
        var mismatches = 0, unknown = 0, truncated = 0
        for (index, line) in expected.enumerated() {
            let parts = line.split(separator: "|", omittingEmptySubsequences: false)
            let ours = try tokenizer.encode(texts[index], pair: pairs?[index], maxLength: maxLength, padded: maxLength != nil)
            if ours.ids != numbers(parts[0]) || ours.typeIDs != numbers(parts[1]) || ours.attentionMask != numbers(parts[2]) {
                if mismatches < 5 {
                    Issue.record("text \(index + 1) \(texts[index].debugDescription) pair \(pairs?[index].debugDescription ?? "-"):\n ours   \(ours.ids)\n theirs \(numbers(parts[0]))\n types \(ours.typeIDs) \(numbers(parts[1]))")
                }
                mismatches += 1
            }
            unknown += ours.ids.count { $0 == vocabulary.unknownID }
            truncated += ours.truncated ? 1 : 0
        }
        #expect(mismatches == 0, "\(mismatches) of \(texts.count) texts differ")
        // The corpus reaches the paths it is meant to: [UNK]s, and truncation where there is a limit.
        #expect(unknown > 0)
        if mode == .singleTruncated || mode == .pairsTruncated { #expect(truncated > 100) }
        print("\(mode) lowercase \(lowercase): \(texts.count) texts equal, \(unknown) [UNK], \(truncated) truncated")
    }
}
