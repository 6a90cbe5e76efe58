import Foundation
import Storage

/// A WordPiece vocabulary: token i is line i + 1 of a `vocab.txt` (BERT's format), pieces inside a
/// word written with the prefix "##".
///
/// Lookups go through an open-addressing hash table over the tokens' UTF-8 bytes, with pieces that
/// continue a word keyed without their "##", so the tokenizer never builds a String to look one up.
public final class Vocabulary: Sendable {
    /// The tokens in id order.
    public let tokens: [String]
    /// Where they came from (the file, or a name), for messages.
    public let source: String
    public let paddingID: Int32
    public let unknownID: Int32
    public let classifierID: Int32
    public let separatorID: Int32
    /// [MASK], when the vocabulary has one (it is optional).
    public let maskID: Int32?
    /// The special tokens found as they are in raw text, before normalisation (as BertTokenizerFast
    /// does): ([UNK]'s bytes, id), ..., longest first.
    let specials: [([UInt8], Int32)]
    let table: PieceTable

    public static let specialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    public var count: Int { tokens.count }

    /// Validates `tokens`: none empty or holding a line break, none twice, [PAD] [UNK] [CLS] [SEP] present.
    public init(tokens: [String], source: String = "vocabulary") throws {
        var lines: [String: Int] = [:]
        for (index, token) in tokens.enumerated() {
            if token.isEmpty { throw TextError.badToken(path: source, line: index + 1, problem: "the line is empty") }
            if token.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) {
                throw TextError.badToken(path: source, line: index + 1, problem: "the token holds a carriage return (convert the file's line ends to \\n)")
            }
            if let first = lines[token] { throw TextError.duplicateToken(path: source, line: index + 1, firstLine: first, token: token) }
            lines[token] = index + 1
        }
        func id(_ token: String) throws -> Int32 {
            guard let line = lines[token] else { throw TextError.missingSpecialToken(path: source, token: token) }
            return Int32(line - 1)
        }
        paddingID = try id("[PAD]")
        unknownID = try id("[UNK]")
        classifierID = try id("[CLS]")
        separatorID = try id("[SEP]")
        maskID = lines["[MASK]"].map { Int32($0 - 1) }
        self.tokens = tokens
        self.source = source
        specials = Self.specialTokens.compactMap { token in lines[token].map { (Array(token.utf8), Int32($0 - 1)) } }
            .sorted { $0.0.count > $1.0.count }
        table = PieceTable(tokens)
    }

    /// Reads and validates a `vocab.txt`: UTF-8, one token a line, a final line break optional.
    public static func load(path: String) throws -> Vocabulary {
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file"
            throw TextError.unreadable(path: path, reason: reason)
        }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        var tokens: [String] = []
        tokens.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            guard let token = String(validating: line, as: UTF8.self) else {
                throw TextError.badToken(path: path, line: index + 1, problem: "the line is not UTF-8")
            }
            tokens.append(token)
        }
        return try Vocabulary(tokens: tokens, source: path)
    }

    /// Writes the tokens one a line, atomically (a temporary file, fsync, rename).
    public func write(to path: String) throws {
        try AtomicFile.write(Data(tokens.map { $0 + "\n" }.joined().utf8), to: URL(fileURLWithPath: path))
    }

    /// The id of `token` ("##" for a piece inside a word), or nil.
    public func id(of token: String) -> Int32? {
        let bytes = Array(token.utf8)
        if bytes.isEmpty { return nil }
        return bytes.withUnsafeBufferPointer { table.find($0.baseAddress!, $0.count, hash: PieceTable.hash($0.baseAddress!, $0.count), continuation: false) }
    }
}

/// Open addressing (linear probing, at most half full) from a piece's bytes to its id. A token
/// "##x" is stored twice: as "##x" at the start of a word, and as "x" continuing one.
struct PieceTable: Sendable {
    /// One slot of the table (16 bytes: a probe reads one cache line); id -1 is empty.
    private struct Slot {
        var offset: Int32 = 0
        var length: Int32 = 0
        var id: Int32 = -1
        var continuation = false
    }

    private var bytes: [UInt8] = []
    private var slots: [Slot]
    private let mask: Int
    /// The longest piece in bytes: the tokenizer looks no further ahead.
    private(set) var longestPiece = 0

    init(_ tokens: [String]) {
        var capacity = 16
        while capacity < tokens.count * 4 { capacity *= 2 }
        slots = Array(repeating: Slot(), count: capacity)
        mask = capacity - 1
        for (id, token) in tokens.enumerated() {
            let utf8 = Array(token.utf8)
            insert(utf8[...], id: Int32(id), continuation: false)
            if utf8.count > 2 && utf8[0] == UInt8(ascii: "#") && utf8[1] == UInt8(ascii: "#") {
                insert(utf8[2...], id: Int32(id), continuation: true)
            }
        }
    }

    private mutating func insert(_ piece: ArraySlice<UInt8>, id: Int32, continuation: Bool) {
        let offset = bytes.count
        bytes.append(contentsOf: piece)
        longestPiece = max(longestPiece, piece.count)
        let hash = piece.withUnsafeBufferPointer { Self.hash($0.baseAddress!, $0.count) }
        var slot = Self.slot(hash, continuation: continuation, mask: mask)
        while slots[slot].id >= 0 { slot = (slot + 1) & mask }
        slots[slot] = Slot(offset: Int32(offset), length: Int32(piece.count), id: id, continuation: continuation)
    }

    /// FNV-1a over bytes; the tokenizer extends it a byte at a time over a word's prefixes.
    static let hashSeed: UInt64 = 0xcbf2_9ce4_8422_2325
    @inline(__always) static func extend(_ hash: UInt64, _ byte: UInt8) -> UInt64 { (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }

    static func hash(_ pointer: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        var hash = hashSeed
        for index in 0..<count { hash = extend(hash, pointer[index]) }
        return hash
    }

    @inline(__always) private static func slot(_ hash: UInt64, continuation: Bool, mask: Int) -> Int {
        let mixed = (hash ^ (continuation ? 0x9e37_79b9_7f4a_7c15 : 0)) &* 0xff51_afd7_ed55_8ccd
        return Int(truncatingIfNeeded: mixed >> 32) & mask
    }

    /// The id of the piece `pointer[0..<count]` (whose FNV-1a hash is `hash`), or nil.
    @inline(__always) func find(_ pointer: UnsafePointer<UInt8>, _ count: Int, hash: UInt64, continuation: Bool) -> Int32? {
        var index = Self.slot(hash, continuation: continuation, mask: mask)
        return slots.withUnsafeBufferPointer { slots in
            bytes.withUnsafeBufferPointer { stored in
                while true {
                    let slot = slots[index]
                    if slot.id < 0 { return nil }
                    if Int(slot.length) == count && slot.continuation == continuation
                        && memcmp(stored.baseAddress! + Int(slot.offset), pointer, count) == 0 { return slot.id }
                    index = (index + 1) & mask
                }
            }
        }
    }
}
