import CZlib
import Foundation

/// A WordNet synset as the database files (`data.noun`, `data.verb`, `data.adj`, `data.adv`;
/// Debian's `wordnet-base`, /usr/share/wordnet, format wndb(5WN)) describe it.
public struct WordNetSynset: Equatable, Sendable {
    /// n, v, a, s (adjective satellite) or r.
    public var partOfSpeech: Character
    /// The synset's byte offset in its data file: with the part of speech, its identity.
    public var offset: Int
    /// Its words, underscores turned into spaces and adjective markers ("(a)", "(p)", "(ip)")
    /// dropped, in the file's order, each once.
    public var lemmas: [String]
    /// The gloss's definition: the text after "|" up to the first quoted example.
    public var definition: String

    /// One number per synset across the four files: the part of speech's file (1 noun, 2 verb,
    /// 3 adjective, 4 adverb) times 2^32 plus the offset.
    public var id: Int64 {
        let file: Int64 = switch partOfSpeech { case "n": 1; case "v": 2; case "a", "s": 3; default: 4 }
        return file << 32 | Int64(offset)
    }
}

/// One FreeDict (dictd format) entry: an English headword and the German it translates to.
public struct FreeDictEntry: Equatable, Sendable {
    public var headword: String
    /// The entry's translation line, annotations (`<fem>`, `[geh.]`, `{...}`) removed.
    public var translation: String
}

/// Readers of the lexical databases Debian packages: WordNet and FreeDict bilingual dictionaries.
public enum Lexicon {
    /// The data files of a WordNet database folder, in the order their synsets are read.
    public static let wordNetFiles = ["data.noun", "data.verb", "data.adj", "data.adv"]

    /// Every synset of the WordNet database in `directory` with a non-empty definition and at
    /// least one word, file by file and in file order. The licence lines at the head of each
    /// file (they start with two spaces) are skipped; a line that does not parse is an error
    /// naming the file and line.
    /// - Returns: the synsets, and how many were left out for having no definition.
    public static func wordNet(directory: String) throws -> (synsets: [WordNetSynset], withoutDefinition: Int) {
        var synsets: [WordNetSynset] = [], withoutDefinition = 0
        for name in wordNetFiles {
            let path = directory + "/" + name
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw DataError.textInvalid(path: path, problem: "no such WordNet data file; install Debian's wordnet-base "
                                            + "(apt-get install wordnet-base: /usr/share/wordnet) or name the folder that holds \(wordNetFiles.joined(separator: ", "))")
            }
            guard let text = String(bytes: contents, encoding: .utf8) ?? String(bytes: contents, encoding: .isoLatin1) else {
                throw DataError.textInvalid(path: path, problem: "cannot be read as text")
            }
            var lineNumber = 0
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                lineNumber += 1
                if line.isEmpty || line.hasPrefix("  ") { continue }
                guard let synset = parseSynset(line) else {
                    throw DataError.textInvalid(path: "\(path):\(lineNumber)", problem: "is not a WordNet synset line "
                                                + "(offset lex_filenum ss_type w_cnt word lex_id ... | gloss; wndb(5WN)); is this a WordNet 3.0 data file?")
                }
                if synset.definition.isEmpty || synset.lemmas.isEmpty { withoutDefinition += 1 } else { synsets.append(synset) }
            }
        }
        return (synsets, withoutDefinition)
    }

    /// One data-file line, or nil when it does not have the fields wndb(5WN) names.
    static func parseSynset(_ line: Substring) -> WordNetSynset? {
        guard let bar = line.firstIndex(of: "|") else { return nil }
        let fields = line[..<bar].split(separator: " ")
        guard fields.count >= 4, let offset = Int(fields[0]), let type = fields[2].first, "nvasr".contains(type),
              let wordCount = Int(fields[3], radix: 16), fields.count >= 4 + 2 * wordCount else { return nil }
        var lemmas: [String] = []
        for k in 0..<wordCount {
            var word = String(fields[4 + 2 * k])
            // Adjective syntactic markers follow the word without a space: "galore(ip)".
            for marker in ["(a)", "(p)", "(ip)"] where word.hasSuffix(marker) { word.removeLast(marker.count) }
            word = word.replacingOccurrences(of: "_", with: " ")
            if !word.isEmpty && !lemmas.contains(word) { lemmas.append(word) }
        }
        // The gloss: definitions, then examples in double quotes ("...; \"an example\"").
        var gloss = line[line.index(after: bar)...]
        if let quote = gloss.firstIndex(of: "\"") { gloss = gloss[..<quote] }
        let definition = gloss.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: ";, "))
        return WordNetSynset(partOfSpeech: type, offset: offset, lemmas: lemmas, definition: definition)
    }

    /// Every entry of a dictd dictionary (`NAME.index` and `NAME.dict.dz` or `NAME.dict`;
    /// Debian's `dict-freedict-eng-deu` puts them in /usr/share/dictd), in index order: the
    /// entry's first line is the headword (with pronunciation and forms), its second the
    /// translations. The database's own entries (headwords "00-database-...") are skipped, as
    /// are entries without a translation line (counted).
    public static func freeDict(index indexPath: String, dictionary dictionaryPath: String) throws -> (entries: [FreeDictEntry], withoutTranslation: Int) {
        guard let indexData = FileManager.default.contents(atPath: indexPath) else {
            throw DataError.textInvalid(path: indexPath, problem: "no such dictd index; install Debian's dict-freedict-eng-deu "
                                        + "(apt-get install dict-freedict-eng-deu: /usr/share/dictd/freedict-eng-deu.index)")
        }
        let body = try inflatedFile(dictionaryPath)
        guard let index = String(bytes: indexData, encoding: .utf8) else {
            throw DataError.textInvalid(path: indexPath, problem: "is not UTF-8; a dictd index is UTF-8 text")
        }
        var entries: [FreeDictEntry] = [], withoutTranslation = 0, lineNumber = 0
        var seen = Set<String>()
        for line in index.split(separator: "\n") {
            lineNumber += 1
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 3, let start = base64Number(fields[1]), let length = base64Number(fields[2]) else {
                throw DataError.textInvalid(path: "\(indexPath):\(lineNumber)", problem: "is not a dictd index line (headword TAB offset TAB length, base 64)")
            }
            let headword = String(fields[0])
            if headword.isEmpty || headword.hasPrefix("00-database") || headword.hasPrefix("00database") { continue }
            guard start >= 0, length >= 0, start + length <= body.count else {
                throw DataError.textInvalid(path: "\(indexPath):\(lineNumber)", problem: "points at bytes \(start)..<\(start + length) "
                                            + "of \(dictionaryPath), which holds \(body.count); the index and the dictionary do not belong together")
            }
            // An entry indexed twice under one headword is one pair.
            guard seen.insert("\(headword)\t\(start)").inserted else { continue }
            let text = String(decoding: body[start..<(start + length)], as: UTF8.self)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
            let translation = lines.count >= 2 ? cleanTranslation(lines[1]) : ""
            if translation.isEmpty { withoutTranslation += 1; continue }
            entries.append(FreeDictEntry(headword: headword, translation: translation))
        }
        return (entries, withoutTranslation)
    }

    /// A translation line without its grammatical and domain annotations: "Haus <neut>, Heim
    /// [geh.]" becomes "Haus, Heim".
    static func cleanTranslation(_ line: Substring) -> String {
        var out = "", depth = 0
        for character in line {
            switch character {
            case "<", "[", "{": depth += 1
            case ">", "]", "}": depth = max(0, depth - 1)
            default: if depth == 0 { out.append(character) }
            }
        }
        let words = out.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        return words.replacingOccurrences(of: " ,", with: ",").replacingOccurrences(of: " ;", with: ";")
            .trimmingCharacters(in: CharacterSet(charactersIn: " ,;"))
    }

    /// dictd's base-64 numbers (A-Z a-z 0-9 + /, most significant digit first).
    static func base64Number(_ digits: Substring) -> Int? {
        guard !digits.isEmpty, digits.count <= 10 else { return nil }
        var value = 0
        for byte in digits.utf8 {
            let digit: Int
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): digit = Int(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): digit = Int(byte - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "+"): digit = 62
            case UInt8(ascii: "/"): digit = 63
            default: return nil
            }
            value = value * 64 + digit
        }
        return value
    }

    /// A whole file, gunzipped when it is gzip (a dictzip .dict.dz is gzip with an index in an
    /// extra field, which zlib skips).
    static func inflatedFile(_ path: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else { throw DataError.fileNotFound(path: path) }
        guard let file = gzopen(path, "rb") else { throw DataError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { gzclose(file) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let read = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if read < 0 {
                var code: Int32 = 0
                throw DataError.corruptStream(path: path, detail: String(cString: gzerror(file, &code)))
            }
            if read == 0 { break }
            bytes += chunk[0..<Int(read)]
        }
        return bytes
    }
}

extension DatasetPreparation {
    /// Fields of a lexicon's pairs: the query text, its positive, and the group whose members
    /// are each other's positives (never each other's negatives; the retrieval evaluators'
    /// relevant set).
    static let lexiconFields = [NamedField(name: "text", dtype: .utf8), NamedField(name: "positive", dtype: .utf8),
                                NamedField(name: "group", dtype: .int64, shape: [])]

    /// `contrast prepare wordnet`: one pair per (synset, word): `text` the synset's definition,
    /// `positive` the word, `group` the synset (`WordNetSynset.id`) — a synset's other words are
    /// extra positives of its definition. A `testFraction` of the synsets (drawn under `seed`,
    /// all their pairs with them) is the test split, so no definition is in both.
    public static func wordNet(directory: String, testFraction: Double?, seed: UInt64, out: String, layout: ShardLayout,
                               overwrite: Bool = false) throws -> [PrepareSummary] {
        try checkOutput(out, overwrite: overwrite)
        let (synsets, withoutDefinition) = try Lexicon.wordNet(directory: directory)
        var notes = ["\(synsets.count) synsets, \(synsets.reduce(0) { $0 + $1.lemmas.count }) (definition, word) pairs; "
                     + "field group is the synset (its words are each other's positives)"]
        if withoutDefinition > 0 { notes.append("\(withoutDefinition) synsets without a definition or a word left out") }
        let groups = synsets.map { synset in synset.lemmas.map { (synset.definition, $0) } }
        let ids = synsets.map(\.id)
        let sourceBytes = try Lexicon.wordNetFiles.reduce(0) { $0 + (try fileSize(directory + "/" + $1)) }
        return try writeLexicon(groups: groups, ids: ids, testFraction: testFraction, seed: seed, out: out, layout: layout,
                                sourceBytes: sourceBytes, notes: notes)
    }

    /// `contrast prepare freedict`: one pair per dictionary entry: `text` the English headword,
    /// `positive` its German translations, `group` the headword (entries of one headword are
    /// each other's positives). A `testFraction` of the headwords (drawn under `seed`, all their
    /// entries with them) is the test split.
    public static func freeDict(index: String, dictionary: String, testFraction: Double?, seed: UInt64, out: String, layout: ShardLayout,
                                overwrite: Bool = false) throws -> [PrepareSummary] {
        try checkOutput(out, overwrite: overwrite)
        let (entries, withoutTranslation) = try Lexicon.freeDict(index: index, dictionary: dictionary)
        // Groups in order of each headword's first entry.
        var groupOf: [String: Int] = [:], groups: [[(String, String)]] = []
        for entry in entries {
            let group = groupOf[entry.headword] ?? { groups.append([]); groupOf[entry.headword] = groups.count - 1; return groups.count - 1 }()
            groups[group].append((entry.headword, entry.translation))
        }
        var notes = ["\(groups.count) headwords, \(entries.count) (English, German) pairs; field group is the headword"]
        if withoutTranslation > 0 { notes.append("\(withoutTranslation) entries without a translation line left out") }
        return try writeLexicon(groups: groups, ids: (0..<groups.count).map(Int64.init), testFraction: testFraction, seed: seed, out: out,
                                layout: layout, sourceBytes: try fileSize(index) + (try fileSize(dictionary)), notes: notes)
    }

    /// Pairs grouped (`ids[g]` the group of `groups[g]`) into `out`, or into out/train and
    /// out/test with a `testFraction` of the groups held out.
    static func writeLexicon(groups: [[(String, String)]], ids: [Int64], testFraction: Double?, seed: UInt64, out: String,
                             layout: ShardLayout, sourceBytes: Int, notes: [String]) throws -> [PrepareSummary] {
        func block(_ chosen: [Int]) -> SampleBlock {
            var texts: [String] = [], positives: [String] = [], group: [Int64] = []
            for g in chosen {
                for (text, positive) in groups[g] {
                    texts.append(text.precomposedStringWithCanonicalMapping)
                    positives.append(positive.precomposedStringWithCanonicalMapping)
                    group.append(ids[g])
                }
            }
            return SampleBlock(count: texts.count, features: nil, labels: nil,
                               fields: ["text": .variable(VariableValues(strings: texts)),
                                        "positive": .variable(VariableValues(strings: positives)), "group": .int64(group)])
        }
        guard let testFraction else {
            let samples = block(Array(groups.indices))
            _ = try layout.ranges(sampleCount: samples.count)
            return [try placing(out) { staging in
                try writeSplit(samples, fields: lexiconFields, classes: nil, to: staging, named: out, layout: layout,
                               sourceBytes: sourceBytes, notes: notes)
            }]
        }
        let split = try testSplit(sampleCount: groups.count, fraction: testFraction, seed: seed)
        let train = block(split.train), test = block(split.test)
        let testBytes = Int((Double(sourceBytes) * Double(test.count) / Double(max(1, train.count + test.count))).rounded())
        return try placingSplits(train: train, test: test, fields: lexiconFields, classes: nil, out: out, layout: layout,
                                 sourceBytes: (sourceBytes - testBytes, testBytes),
                                 notes: notes + ["test split: \(split.test.count) of \(groups.count) groups (\(test.count) pairs), drawn with seed \(seed)"])
    }
}
