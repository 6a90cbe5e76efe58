import Foundation

/// A deterministic corpus of what breaks tokenizers: mixed-case English, accents and combining
/// marks, Greek and Cyrillic, CJK (with extension B and compatibility ideographs), Hangul and
/// kana, emoji (with skin tones and ZWJ sequences), ASCII and Unicode punctuation, control and
/// format scalars, odd whitespace, numbers, words of about 100 scalars, and special tokens
/// written in the text; plus the lines of Debian's licence texts when present.
enum Corpus {
    static let english = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "Hello", "WORLD", "tokenization",
                          "unaffable", "running", "HuggingFace", "contrastive", "Learning", "embeddings", "retrieval", "isn't",
                          "they're", "U.S.A.", "e-mail", "state-of-the-art", "McDonald's", "iPhone", "camelCaseWord", "snake_case_word",
                          "a", "I", "an", "of", "to", "in", "and", "representation", "negatives", "batch", "gradient"]
    static let accented = ["café", "naïve", "résumé", "Ångström", "Zürich", "São", "Paulo", "Øresund", "Łódź", "Straße", "ﬁnance",
                           "İstanbul", "ǅemal", "Ελληνικά", "Ὀδυσσεύς", "ΣΊΣΥΦΟΣ", "Москва", "Ёлка", "ǰ", "e\u{301}te\u{301}",
                           "n\u{303}", "Ŀ", "ȷ", "Ǆ", "ﬀ", "Å", "K", "ϔ", "ᾼ", "Þórr", "Việt", "Nguyễn", "ḍ", "Åsa", "עִבְרִית",
                           "العَرَبِيَّة", "हिन्दी", "ไทย", "ᄀ", "각", "Ωmega", "µ", "ß", "ẞ"]
    static let cjk = ["中文", "汉字测试", "日本語", "ひらがな", "カタカナ", "한국어", "서울", "𠀀𠀁", "豈更", "我爱北京天安门", "東京タワー",
                      "〇", "㐀", "𪜀", "𫝀", "𬺰", "𰀀"]
    static let emoji = ["😀", "👍🏽", "🥰", "👨\u{200D}👩\u{200D}👧", "🫠", "❤️", "🇩🇪", "🤖", "✨", "☃", "🪐"]
    static let punctuation = [",", ".", "!", "?", "...", "“quoted”", "‘single’", "—", "–", "…", "«", "»", "¿", "¡", "、", "。", "(", ")",
                              "[", "]", "{", "}", "#", "@", "$", "%", "^", "&", "*", "_", "~", "`", "|", "\\", "/", "'", "\"", "+",
                              "=", "<", ">", "§", "¶", "†", "‰", "′", "⁂", "、", "・", "「", "」", "‐", "‿", "⸻", "꙳", "\u{1FEF}", "᭠", "𑂻"]
    static let controls = ["\u{0}", "\u{7}", "\u{1B}", "\u{7F}", "\u{85}", "\u{200B}", "\u{200D}", "\u{FEFF}", "\u{FFFD}", "\t", "\r\n",
                            "\n", "\u{2028}", "\u{A0}", "\u{3000}", "\u{0B}", "\u{0C}", "\u{AD}", "\u{E000}", "\u{890}", "\u{1C}",
                            "\u{202F}", "\u{180E}", "\u{2066}", "\u{E0001}", "\u{F0000}", "\u{1D173}"]
    static let numbers = ["3.14", "1,000,000", "2026-12-07", "42", "0x1F", "1e-5", "½", "²", "٣", "१२", "Ⅻ", "007", "98.6°F"]
    static let specials = ["[MASK]", "[SEP]", "[CLS]", "[UNK]", "[PAD]", "[mask]", "[ SEP]", "[SEP", "x[CLS]y"]

    /// `count` sentences from the generator seeded with `seed`.
    static func sentences(_ count: Int, seed: UInt64) -> [String] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in sentence(&random) }
    }

    static func sentence(_ random: inout SplitMix64) -> String {
        var text = ""
        let words = 1 + random.below(30)
        for _ in 0..<words {
            let pool: [String]
            switch random.below(100) {
            case 0..<45: pool = english
            case 45..<58: pool = accented
            case 58..<66: pool = cjk
            case 66..<71: pool = emoji
            case 71..<82: pool = punctuation
            case 82..<88: pool = controls
            case 88..<95: pool = numbers
            case 95..<97: pool = specials
            default: pool = [longWord(&random)]
            }
            var word = pool[random.below(pool.count)]
            switch random.below(10) {
            case 0: word = word.uppercased()
            case 1: word = word.prefix(1).uppercased() + word.dropFirst()
            default: break
            }
            text += word
            text += ["", " ", " ", " ", " ", "  ", "\t", " "][random.below(8)]
        }
        return text
    }

    /// Letters (some accented) around the 100-scalar limit of a word.
    static func longWord(_ random: inout SplitMix64) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzéü")
        return String((0..<(95 + random.below(12))).map { _ in letters[random.below(letters.count)] })
    }

    /// Lines of /usr/share/common-licenses (English prose) in the files named, or none.
    static func licenceLines(_ names: [String]) -> [String] {
        names.flatMap { name -> [String] in
            guard let text = try? String(contentsOfFile: "/usr/share/common-licenses/\(name)", encoding: .utf8) else { return [] }
            return text.split(separator: "\n").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        }
    }
}

/// SplitMix64 (Steele et al. 2014): a small deterministic generator for the corpus.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}
