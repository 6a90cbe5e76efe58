import Foundation

// What BERT's basic tokenisation needs to know of a Unicode scalar, as the `tokenizers` package's
// BertNormalizer and BertPreTokenizer (the backend of transformers' BertTokenizerFast) decide it,
// so ids match theirs:
// - dropped (clean_text): NUL, U+FFFD, Cc other than \t \n \r, Co, and Cf. Their category tables
//   are Unicode 8.0's: a Cf scalar assigned later (U+08E2, U+110CD, U+13430...) is kept, and an
//   unassigned scalar (Cn) is kept, although their rule names Cn.
// - whitespace: \t \n \r and Unicode's White_Space (after the control scalars are dropped, so
//   \v \f U+0085 are dropped, not spaces).
// - CJK ideographs: the ranges of BERT's _is_chinese_char, each scalar a token of its own.
// - punctuation: ASCII punctuation (33-47, 58-64, 91-96, 123-126) and general categories P*,
//   again from Unicode 8.0's tables.
// - accents (strip_accents): NFD, then the nonspacing marks (Mn, Unicode 8.0's) dropped.
// - lower-casing: Rust's char::to_lowercase, from Unicode 15: scalars of Unicode 16 on keep their case.
// Scalars assigned after those versions are told apart with `Unicode.Scalar.Properties.age`; the
// few whose category changed since Unicode 8.0 are listed (`changedSinceUnicode8`). Tests/TextTests
// compare every scalar with `tokenizers`.

/// Classes of one scalar, as bits; ASCII and the Basic Multilingual Plane come from a table.
struct ScalarClass: OptionSet, Sendable {
    let rawValue: UInt8
    static let dropped = ScalarClass(rawValue: 1)
    static let whitespace = ScalarClass(rawValue: 2)
    static let ideograph = ScalarClass(rawValue: 4)
    static let punctuation = ScalarClass(rawValue: 8)
    /// A nonspacing mark that accent stripping drops.
    static let accent = ScalarClass(rawValue: 16)
    /// Lower-casing changes it.
    static let hasLowercase = ScalarClass(rawValue: 32)

    /// From the scalar's properties (the slow path, and how the table is filled).
    static func of(_ value: UInt32) -> ScalarClass {
        guard let scalar = Unicode.Scalar(value) else { return [] }
        let properties = scalar.properties
        var result: ScalarClass = []
        let oldEnough = properties.age.map { $0.major < 8 || ($0.major == 8 && $0.minor == 0) } ?? false
        let category = properties.generalCategory
        switch value {
        case 0, 0xFFFD: result.insert(.dropped)
        case 0x09, 0x0A, 0x0D: result.insert(.whitespace)
        default:
            if category == .control || category == .privateUse || (category == .format && oldEnough) { result.insert(.dropped) }
            else if properties.isWhitespace { result.insert(.whitespace) }
        }
        if isIdeograph(value) { result.insert(.ideograph) }
        if let old = changedSinceUnicode8[value] {
            if old == .otherPunctuation { result.insert(.punctuation) }
            if old == .nonspacingMark { result.insert(.accent) }
        } else {
            if (value < 0x80 && isASCIIPunctuation(UInt8(value))) || (oldEnough && isPunctuation(category)) { result.insert(.punctuation) }
            if oldEnough && category == .nonspacingMark { result.insert(.accent) }
        }
        if properties.changesWhenLowercased && (properties.age?.major ?? 99) < 16 { result.insert(.hasLowercase) }
        return result
    }

    /// Scalars whose general category in Unicode 8.0 (`tokenizers`' tables) differs from today's
    /// in a way the tokenizer sees: their Unicode 8.0 category.
    static let changedSinceUnicode8: [UInt32: Unicode.GeneralCategory] = [
        0x166D: .otherPunctuation,   // CANADIAN SYLLABICS CHI SIGN, now So
        0x111C9: .otherPunctuation,  // SHARADA SANDHI MARK, now Mn
        0x1734: .nonspacingMark,     // HANUNOO SIGN PAMUDPOD, now Mc
        0x1171E: .nonspacingMark,    // AHOM CONSONANT SIGN MEDIAL RA, now Mc
        0x1885: .otherLetter,        // MONGOLIAN LETTER ALI GALI BALUDA, now Mn
        0x1886: .otherLetter,        // MONGOLIAN LETTER ALI GALI THREE BALUDA, now Mn
        0xA9BD: .spacingMark,        // JAVANESE CONSONANT SIGN KERET, now Mn
    ]

    /// BERT's _is_chinese_char (the CJK Unified Ideographs blocks and their extensions and
    /// compatibility blocks; not Hangul, kana or CJK punctuation). `tokenizers` writes the range
    /// after extension C as 0x2B920-0x2CEAF, BERT's Python 0x2B820-0x2CEAF: theirs is matched.
    static func isIdeograph(_ value: UInt32) -> Bool {
        switch value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }

    static func isASCIIPunctuation(_ byte: UInt8) -> Bool {
        (33...47).contains(byte) || (58...64).contains(byte) || (91...96).contains(byte) || (123...126).contains(byte)
    }

    static func isPunctuation(_ category: Unicode.GeneralCategory) -> Bool {
        switch category {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
}

/// The classes of every scalar of the Basic Multilingual Plane (64 KiB, filled once, about 10 ms),
/// so the tokenizer asks Unicode's properties only for the other planes.
let basicPlaneClasses: [ScalarClass] = (0..<0x10000).map { value in
    (0xD800..<0xE000).contains(value) ? [] : ScalarClass.of(UInt32(value))
}

@inline(__always) func scalarClass(_ value: UInt32) -> ScalarClass {
    value < 0x10000 ? basicPlaneClasses[Int(value)] : ScalarClass.of(value)
}

/// Appends the lower-case mapping of `value` (Unicode's full mapping, as Rust's char::to_lowercase:
/// U+0130 becomes "i" + U+0307, U+03A3 always U+03C3).
@inline(__always) func appendLowercase(_ value: UInt32, to scalars: inout [UInt32]) {
    guard scalarClass(value).contains(.hasLowercase), let scalar = Unicode.Scalar(value) else { scalars.append(value); return }
    for lower in scalar.properties.lowercaseMapping.unicodeScalars { scalars.append(lower.value) }
}

/// Canonical decompositions (NFD) of every assigned scalar that has one, made by one call to
/// Foundation over all of them (tens of milliseconds, on first use of accent stripping); Hangul
/// syllables are decomposed arithmetically instead (Unicode 3.12).
let canonicalDecompositions: [UInt32: [UInt32]] = {
    var values: [UInt32] = []
    var text = String.UnicodeScalarView()
    for value in UInt32(0x80)...0x10FFFF {
        if (0xD800..<0xE000).contains(value) || (0xAC00...0xD7A3).contains(value) { continue }
        guard let scalar = Unicode.Scalar(value), scalar.properties.age != nil,
              scalar.properties.generalCategory != .privateUse else { continue }
        values.append(value)
        text.append(scalar)
        text.append("\u{1}")   // a starter without a decomposition: nothing reorders across it
    }
    let decomposed = String(text).decomposedStringWithCanonicalMapping.unicodeScalars
    var table: [UInt32: [UInt32]] = [:]
    var index = 0
    var current: [UInt32] = []
    for scalar in decomposed {
        if scalar.value == 1 {
            if current != [values[index]] { table[values[index]] = current }
            current.removeAll(keepingCapacity: true)
            index += 1
        } else {
            current.append(scalar.value)
        }
    }
    precondition(index == values.count, "NFD of the scalar table lost its separators")
    return table
}()

/// Appends the canonical decomposition of `value` (itself when it has none).
@inline(__always) func appendDecomposition(_ value: UInt32, to scalars: inout [UInt32]) {
    if (0xAC00...0xD7A3).contains(value) {
        let index = value - 0xAC00
        scalars.append(0x1100 + index / 588)
        scalars.append(0x1161 + (index % 588) / 28)
        if index % 28 != 0 { scalars.append(0x11A7 + index % 28) }
    } else if value >= 0xC0, let parts = canonicalDecompositions[value] {
        scalars.append(contentsOf: parts)
    } else {
        scalars.append(value)
    }
}
