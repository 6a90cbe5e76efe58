import Foundation
import Testing
import TestSupport
@testable import Text

@Suite struct VocabularyTests {
    func write(_ text: String) throws -> String {
        let path = temporaryDirectory("vocab").appendingPathComponent("vocab.txt").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func loadsOneTokenALineWithIDsInLineOrder() throws {
        let path = try write("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##lo\n")
        let vocabulary = try Vocabulary.load(path: path)
        #expect(vocabulary.count == 7)
        #expect((vocabulary.paddingID, vocabulary.unknownID, vocabulary.classifierID, vocabulary.separatorID) == (0, 1, 2, 3))
        #expect(vocabulary.maskID == 4)
        #expect(vocabulary.id(of: "hello") == 5 && vocabulary.id(of: "##lo") == 6 && vocabulary.id(of: "lo") == nil)
        // Without a final line break, and without [MASK] (optional), in another order.
        let other = try Vocabulary.load(path: try write("a\n[SEP]\n[CLS]\n[UNK]\n[PAD]"))
        #expect((other.paddingID, other.unknownID, other.classifierID, other.separatorID, other.maskID) == (4, 3, 2, 1, nil))
    }

    @Test func aDuplicateNamesBothLinesAndTheFix() throws {
        let path = try write("[PAD]\n[UNK]\n[CLS]\n[SEP]\nword\n##s\nword\n")
        #expect(throws: TextError.duplicateToken(path: path, line: 7, firstLine: 5, token: "word")) { try Vocabulary.load(path: path) }
        let message = "\(TextError.duplicateToken(path: path, line: 7, firstLine: 5, token: "word"))"
        #expect(message == "\(path) line 7: token 'word' is already on line 5; remove one of them (each token needs one id)")
    }

    @Test(arguments: ["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    func aMissingSpecialTokenNamesItAndTheFix(token: String) throws {
        let path = try write(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "word"].filter { $0 != token }.joined(separator: "\n") + "\n")
        #expect(throws: TextError.missingSpecialToken(path: path, token: token)) { try Vocabulary.load(path: path) }
        #expect("\(TextError.missingSpecialToken(path: path, token: token))".contains("\(path): no line holds \(token); a BERT vocabulary needs"))
    }

    @Test func badLinesAreNamed() throws {
        let empty = try write("[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n")
        #expect(throws: TextError.badToken(path: empty, line: 3, problem: "the line is empty")) { try Vocabulary.load(path: empty) }
        let windows = try write("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n")
        #expect(throws: TextError.badToken(path: windows, line: 1, problem: "the token holds a carriage return (convert the file's line ends to \\n)")) {
            try Vocabulary.load(path: windows)
        }
        let latin1 = temporaryDirectory("vocab").appendingPathComponent("vocab.txt")
        try Data("[PAD]\n[UNK]\n[CLS]\n[SEP]\ncaf".utf8 + [0xE9, 0x0A]).write(to: latin1)
        #expect(throws: TextError.badToken(path: latin1.path, line: 5, problem: "the line is not UTF-8")) { try Vocabulary.load(path: latin1.path) }
        #expect(throws: TextError.unreadable(path: "/nonexistent/vocab.txt", reason: "no such file")) { try Vocabulary.load(path: "/nonexistent/vocab.txt") }
    }

    @Test func writesWhatItReads() throws {
        let vocabulary = try Vocabulary(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "ü", "##ß", "東"])
        let path = temporaryDirectory("vocab").appendingPathComponent("vocab.txt").path
        try vocabulary.write(to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "[PAD]\n[UNK]\n[CLS]\n[SEP]\nü\n##ß\n東\n")
        #expect(try Vocabulary.load(path: path).tokens == vocabulary.tokens)
    }
}
