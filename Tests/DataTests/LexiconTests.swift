import Foundation
import Testing
import TestSupport
@testable import Data

/// `contrast prepare wordnet` and `prepare freedict`: the readers on hand-written files in the
/// databases' formats, the group-wise test split, and the real Debian files where installed.
@Suite(.serialized) struct LexiconTests {
    /// A licence line, then synsets as wndb(5WN) writes them (pointers, frames, examples).
    static let nouns = """
          1 This software and database is being provided to you, the LICENSEE, by
        00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)  
        00002137 03 n 02 abstraction 0 abstract_entity 0 010 @ 00001740 n 0000 + 00692347 v 0101 | a general concept formed by extracting common features from specific examples  
        00003000 03 n 02 house 0 House 1 000 | a dwelling; "he bought a house"; "the house was full"  

        """
    static let verbs = """
        00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v 0000 02 + 08 00 + 02 00 | draw air into, and expel out of, the lungs; "I can breathe better now"  

        """
    static let adjectives = """
        00001740 00 a 01 able 0 005 = 05207437 n 0000 | (usually followed by `to') having the necessary means or skill; "able to swim"  
        00002000 00 s 02 galore(ip) 0 in_abundance(ip) 0 001 & 00001740 a 0000 | in great numbers; "apples galore"  
        00002100 00 s 01 quoted 0 000 | "only an example"  

        """
    static let adverbs = """
        00001740 02 r 01 a_cappella 0 000 | without musical accompaniment; "they performed a cappella"  

        """

    static func writeWordNet(in folder: String) throws -> String {
        let directory = folder + "/wordnet"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in zip(Lexicon.wordNetFiles, [nouns, verbs, adjectives, adverbs]) {
            try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test func wordNetLinesParseIntoDefinitionsAndWords() throws {
        let folder = temporaryDirectory("wordnet").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (synsets, withoutDefinition) = try Lexicon.wordNet(directory: try Self.writeWordNet(in: folder))
        #expect(withoutDefinition == 1)  // "quoted": its gloss is only an example
        #expect(synsets.map(\.lemmas) == [["entity"], ["abstraction", "abstract entity"], ["house", "House"],
                                           ["breathe", "take a breath", "respire", "suspire"], ["able"], ["galore", "in abundance"],
                                           ["a cappella"]])
        #expect(synsets[2].definition == "a dwelling")
        #expect(synsets[3].definition == "draw air into, and expel out of, the lungs")
        #expect(synsets[4].definition == "(usually followed by `to') having the necessary means or skill")
        #expect(synsets[0].definition.hasSuffix("(living or nonliving)"))
        // One id per synset, although offsets repeat across files.
        #expect(Set(synsets.map(\.id)).count == synsets.count)
        #expect(synsets[3].id == 2 << 32 | 1740 && synsets[5].id == 3 << 32 | 2000)
    }

    @Test func wordNetTestSplitHoldsWholeSynsets() throws {
        let folder = temporaryDirectory("wordnet").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let directory = try Self.writeWordNet(in: folder)
        let summaries = try DatasetPreparation.wordNet(directory: directory, testFraction: 0.3, seed: 5, out: folder + "/set", layout: .count(1))
        #expect(summaries.count == 2)
        var groupsBySplit: [[Int64]] = [], pairs = 0
        for split in ["train", "test"] {
            let dataset = try ShardedDataset(directory: folder + "/set/" + split)
            let block = try dataset.readShard(0)
            guard case .int64(let groups) = block.fields["group"] else { Issue.record("no group field"); return }
            groupsBySplit.append(groups)
            pairs += block.count
            for row in 0..<block.count {
                // Every pair's definition and word belong to the synset its group names.
                let word = block.text("positive", row)!, definition = block.text("text", row)!
                let synset = try #require(try Lexicon.wordNet(directory: directory).synsets.first { $0.id == groups[row] })
                #expect(synset.lemmas.contains(word) && synset.definition == definition)
            }
        }
        #expect(pairs == 13)
        #expect(Set(groupsBySplit[0]).isDisjoint(with: Set(groupsBySplit[1])))
        #expect(Set(groupsBySplit[1]).count == 2)  // round(0.3 x 7) synsets
    }

    @Test func missingWordNetSaysWhichPackage() throws {
        let folder = temporaryDirectory("wordnet").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outcome = try runContrast(ranks: 1, ["prepare", "wordnet", folder, "--out", folder + "/set"])
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("\(folder)/data.noun") && outcome.error.contains("apt-get install wordnet-base"), "\(outcome.error)")
        #expect(outcome.error.split(separator: "\n").count == 1 && !FileManager.default.fileExists(atPath: folder + "/set"))
        try "00001740 03 n 01 entity\n".write(toFile: folder + "/data.noun", atomically: true, encoding: .utf8)
        let broken = try runContrast(ranks: 1, ["prepare", "wordnet", folder, "--out", folder + "/set"])
        #expect(broken.status != 0 && broken.error.contains("\(folder)/data.noun:1") && broken.error.contains("is not a WordNet synset line"),
                "\(broken.error)")
    }

    /// dictd's index: headword, offset and length in base 64 (A = 0, ..., / = 63).
    static func dictd(_ entries: [(String, String)], extraIndexLines: [String] = []) -> (index: String, body: String) {
        let digits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        func base64(_ value: Int) -> String {
            var value = value, out = ""
            repeat { out = String(digits[value % 64]) + out; value /= 64 } while value > 0
            return out
        }
        var body = "", index: [String] = []
        for (headword, entry) in entries {
            index.append("\(headword)\t\(base64(body.utf8.count))\t\(base64(entry.utf8.count))")
            body += entry
        }
        return ((index + extraIndexLines).joined(separator: "\n") + "\n", body)
    }

    @Test func freeDictEntriesPairHeadwordsWithCleanTranslations() throws {
        let folder = temporaryDirectory("freedict").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (index, body) = Self.dictd([
            ("00-database-info", "00-database-info\nThis is the dictionary\n"),
            ("house", "house /hˈaʊs/\nHaus <neut>\n      \"build a house\"  - ein Haus bauen\n"),
            ("house", "house /hˈaʊs/\nGeschlecht <neut>, Familie <fem>\n"),
            ("go", "go /ɡˈəʊ/ <v>\nablaufen, laufen, vor sich gehen <v, intr> [geh.]\n see: {going}\n"),
            ("empty", "empty\n"),
        ])
        // The same entry indexed twice under one headword counts once.
        let repeated = index.split(separator: "\n")[1]
        try (index + repeated + "\n").write(toFile: folder + "/d.index", atomically: true, encoding: .utf8)
        try body.write(toFile: folder + "/d.dict", atomically: true, encoding: .utf8)
        let (entries, withoutTranslation) = try Lexicon.freeDict(index: folder + "/d.index", dictionary: folder + "/d.dict")
        #expect(entries == [FreeDictEntry(headword: "house", translation: "Haus"),
                            FreeDictEntry(headword: "house", translation: "Geschlecht, Familie"),
                            FreeDictEntry(headword: "go", translation: "ablaufen, laufen, vor sich gehen")])
        #expect(withoutTranslation == 1)
        // dictzip (.dict.dz) is gzip: the same entries through zlib.
        let gzip = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", "gzip -c '\(folder)/d.dict' > '\(folder)/d.dict.dz'"])
        try #require(gzip.status == 0)
        #expect(try Lexicon.freeDict(index: folder + "/d.index", dictionary: folder + "/d.dict.dz").entries == entries)

        // Headword groups: both "house" entries in one split.
        try DatasetPreparation.freeDict(index: folder + "/d.index", dictionary: folder + "/d.dict.dz", testFraction: 0.5, seed: 1,
                                        out: folder + "/set", layout: .count(1))
        var headwordsBySplit: [Set<String>] = []
        for split in ["train", "test"] {
            let block = try ShardedDataset(directory: folder + "/set/" + split).readShard(0)
            headwordsBySplit.append(Set((0..<block.count).map { block.text("text", $0)! }))
            guard case .int64(let groups) = block.fields["group"] else { Issue.record("no group field"); return }
            #expect(groups.count == block.count)
        }
        #expect(headwordsBySplit[0].isDisjoint(with: headwordsBySplit[1]) && headwordsBySplit[0].union(headwordsBySplit[1]) == ["house", "go"])
    }

    @Test func anIndexThatDoesNotFitItsDictionaryIsNamed() throws {
        let folder = temporaryDirectory("freedict").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "house\tA\tZZ\n".write(toFile: folder + "/d.index", atomically: true, encoding: .utf8)
        try "house\nHaus\n".write(toFile: folder + "/d.dict", atomically: true, encoding: .utf8)
        let outcome = try runContrast(ranks: 1, ["prepare", "freedict", folder, "--name", "d", "--out", folder + "/set"])
        #expect(outcome.status != 0 && outcome.error.contains("\(folder)/d.index:1") && outcome.error.contains("do not belong together"),
                "\(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/set"))
        #expect(Lexicon.base64Number("B8") == 124 && Lexicon.base64Number("a-") == nil)
    }

    /// Debian's packages, where installed: the counts this reader gives WordNet 3.0 and
    /// FreeDict eng-deu 2022.04 (docs/text.md quotes them).
    @Test func debianDatabases() throws {
        if FileManager.default.fileExists(atPath: "/usr/share/wordnet/data.noun") {
            let (synsets, _) = try Lexicon.wordNet(directory: "/usr/share/wordnet")
            #expect(synsets.count == 117_659 && synsets.reduce(0) { $0 + $1.lemmas.count } == 206_978)
            #expect(synsets.first { $0.lemmas == ["entity"] }?.definition
                    == "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)")
        } else {
            print("LexiconTests: skipped WordNet (/usr/share/wordnet missing; apt-get install wordnet-base)")
        }
        if FileManager.default.fileExists(atPath: "/usr/share/dictd/freedict-eng-deu.index") {
            let (entries, _) = try Lexicon.freeDict(index: "/usr/share/dictd/freedict-eng-deu.index",
                                                    dictionary: "/usr/share/dictd/freedict-eng-deu.dict.dz")
            #expect(entries.count == 464_146)
            #expect(entries.contains(FreeDictEntry(headword: "house", translation: "Haus")))
        } else {
            print("LexiconTests: skipped FreeDict (/usr/share/dictd/freedict-eng-deu.index missing; apt-get install dict-freedict-eng-deu)")
        }
    }
}
