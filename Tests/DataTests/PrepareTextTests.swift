import Foundation
import Testing
import TestSupport
@testable import Data

/// Runs /usr/bin/python3 with `script` and `arguments`; fails the test on a non-zero exit.
func runPython(_ script: String, _ arguments: [String] = [], python: String = "/usr/bin/python3") throws {
    let outcome = try runProcess(URL(fileURLWithPath: python), ["-c", script] + arguments)
    try #require(outcome.status == 0, "python failed: \(outcome.error)")
}

/// Every field of every sample of the data set in `directory`: texts by field name, scores, labels.
func readTexts(_ directory: String) throws -> (texts: [String: [String]], scores: [Float], labels: [Int64], manifest: ShardManifest) {
    let dataset = try ShardedDataset(directory: directory)
    var texts: [String: [String]] = [:], scores: [Float] = [], labels: [Int64] = []
    for index in 0..<dataset.shardCount {
        let block = try dataset.readShard(index)
        for field in dataset.manifest.fields ?? [] where field.dtype == .utf8 {
            texts[field.name, default: []] += (0..<block.count).map { block.text(field.name, $0)! }
        }
        if case .float32(let values) = block.fields["score"] { scores += values }
        labels += block.labels ?? []
    }
    return (texts, scores, labels, dataset.manifest)
}

/// `contrast prepare text` end to end: files written by Python's csv and json modules (an
/// independent writer) prepare into data sets that read back equal.
@Suite(.serialized) struct PrepareTextTests {
    /// Rows with what breaks naive readers: commas, quotes, newlines, tabs in JSON, non-ASCII.
    static let anchors = ["plain", "comma, inside", "quote \"inside\" it", "two\nlines", "ünïcödé 漢字 🙂", "trailing space "]
    static let positives = ["p1", "p,2", "\"p3\"", "p4\r\nCRLF", "p5", "p6"]
    static let negatives = ["n1", "n2", "n3", "n4", "n5", "n,6"]
    static let scores: [Float] = [0.5, 1.25, -3, 4.75, 0, 2]
    static let labels = ["cat", "dog", "cat", "bird", "dog", "cat"]

    func writeRows(_ format: TextFormat, to path: String) throws {
        let rows = (0..<Self.anchors.count).map { [Self.anchors[$0], Self.positives[$0], Self.negatives[$0], "\(Self.scores[$0])", Self.labels[$0]] }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: rows), as: UTF8.self)
        switch format {
        case .csv:
            try runPython("""
                import csv, json, sys
                rows = json.loads(sys.argv[2])
                with open(sys.argv[1], "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f); w.writerow(["anchor", "positive", "negative", "score", "label"]); w.writerows(rows)
                """, [path, json])
        case .jsonl:
            try runPython("""
                import json, sys
                rows = json.loads(sys.argv[2])
                with open(sys.argv[1], "w", encoding="utf-8") as f:
                    for a, p, n, s, l in rows:
                        f.write(json.dumps({"anchor": a, "positive": p, "negative": n, "score": float(s), "label": l, "id": 1}) + "\\n")
                """, [path, json])
        case .tsv:
            // TSV has no quoting: only rows without tabs and newlines.
            try runPython("""
                import json, sys
                rows = json.loads(sys.argv[2])
                with open(sys.argv[1], "w", encoding="utf-8") as f:
                    for row in rows: f.write("\\t".join(c.replace("\\r", " ").replace("\\n", " ") for c in row) + "\\n")
                """, [path, json])
        }
    }

    @Test(arguments: TextFormat.allCases)
    func filesWrittenByPythonRoundTrip(format: TextFormat) throws {
        let folder = temporaryDirectory("prepare-text").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/rows." + format.rawValue
        try writeRows(format, to: file)
        let columns = format == .tsv ? ["--columns", "1,2,3", "--score-column", "4", "--label-column", "5"]
            : ["--columns", "anchor,positive,negative", "--score-column", "score", "--label-column", "label"] + (format == .csv ? ["--header"] : [])
        let outcome = try runContrast(ranks: 1, ["prepare", "text", file, "--out", folder + "/set", "--shards", "2"] + columns)
        try #require(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.contains("set: 6 samples in 2 shards") && outcome.output.contains("verified"), "\(outcome.output)")
        let read = try readTexts(folder + "/set")
        func flat(_ texts: [String]) -> [String] {
            format == .tsv ? texts.map { $0.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ") } : texts
        }
        #expect(read.texts["text"] == flat(Self.anchors) && read.texts["positive"] == flat(Self.positives) && read.texts["negative"] == flat(Self.negatives))
        #expect(read.scores == Self.scores)
        #expect(read.manifest.classes == ["bird", "cat", "dog"] && read.labels == [1, 2, 1, 0, 2, 1])
        #expect(read.manifest.features == nil && read.manifest.fields?.map(\.name) == ["text", "positive", "negative", "score"])
    }

    /// One text column (sentences), a test split by fraction, and a headerless CSV's default columns.
    @Test func sentencesWithATestFraction() throws {
        let folder = temporaryDirectory("prepare-text").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let sentences = (0..<20).map { "sentence number \($0)" }
        try (sentences.joined(separator: "\n") + "\n").write(toFile: folder + "/s.csv", atomically: true, encoding: .utf8)
        let outcome = try runContrast(ranks: 1, ["prepare", "text", folder + "/s.csv", "--out", folder + "/set", "--shards", "2",
                                                 "--test-fraction", "0.25", "--split-seed", "3"])
        try #require(outcome.status == 0, "\(outcome.error)")
        let train = try readTexts(folder + "/set/train").texts["text"]!, test = try readTexts(folder + "/set/test").texts["text"]!
        let expected = try DatasetPreparation.testRows(sampleCount: 20, fraction: 0.25, seed: 3)
        #expect(test == expected.map { sentences[$0] } && train.count == 15 && Set(train + test) == Set(sentences))
    }

    /// An output folder that holds a data set is refused without --overwrite; a prepare that
    /// fails (--strict on a bad row) leaves the old one as it was; --overwrite replaces it.
    @Test func existingOutputIsKeptUntilTheNewSetIsComplete() throws {
        let folder = temporaryDirectory("prepare-text").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "a\tb\nc\td\n".write(toFile: folder + "/one.tsv", atomically: true, encoding: .utf8)
        try "e\tf\n\tg\nh\ti\n".write(toFile: folder + "/two.tsv", atomically: true, encoding: .utf8)
        let out = folder + "/set"
        let arguments = ["--out", out, "--shards", "1"]
        try #require(try runContrast(ranks: 1, ["prepare", "text", folder + "/one.tsv"] + arguments).status == 0)
        let refused = try runContrast(ranks: 1, ["prepare", "text", folder + "/two.tsv"] + arguments)
        #expect(refused.status != 0 && refused.error.contains("the output folder \(out) is not empty"), "\(refused.error)")
        let strict = try runContrast(ranks: 1, ["prepare", "text", folder + "/two.tsv", "--strict", "--overwrite"] + arguments)
        #expect(strict.status != 0 && strict.error.contains("two.tsv: line 2: column 1 is empty (--strict stops at the first bad row)"),
                "\(strict.error)")
        #expect(try readTexts(out).texts["text"] == ["a", "c"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["one.tsv", "set", "two.tsv"])
        let replaced = try runContrast(ranks: 1, ["prepare", "text", folder + "/two.tsv", "--overwrite"] + arguments)
        try #require(replaced.status == 0, "\(replaced.error)")
        #expect(replaced.output.contains("1 bad row skipped") && replaced.output.contains("two.tsv:2: column 1 is empty"), "\(replaced.output)")
        #expect(try readTexts(out).texts["text"] == ["e", "h"] && readTexts(out).texts["positive"] == ["f", "i"])
    }

    /// A text set given to training with an encoder other than BERT stops before any step with one
    /// line saying what it holds and how it trains (configs/text-smoke.yaml trains one: TextTrainingTests).
    @Test func trainingATextSetWithoutTheTextEncoderSaysHowItTrains() throws {
        let folder = temporaryDirectory("prepare-text").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try (0..<64).map { "s\($0)\tt\($0)" }.joined(separator: "\n").write(toFile: folder + "/p.tsv", atomically: true, encoding: .utf8)
        try #require(try runContrast(ranks: 1, ["prepare", "text", folder + "/p.tsv", "--out", folder + "/set", "--shards", "4"]).status == 0)
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "data.dataset=prepared",
                                                 "--set", "data.path=\(folder)/set", "--set", "run_dir=\(folder)/run"])
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("holds text (fields text, positive), which trains the text encoder, but config key 'model.encoder' is mlp")
                && outcome.error.contains("set model.encoder: bert and data.vocab"), "\(outcome.error)")
        #expect(outcome.error.split(separator: "\n").count == 1, "\(outcome.error)")
        #expect(!outcome.error.contains("Fatal error") && !FileManager.default.fileExists(atPath: folder + "/run"))
    }
}
