import Foundation
import Testing
@testable import Data

/// The CSV, TSV and JSONL readers of `contrast prepare text`, on bytes.
@Suite struct TextTableTests {
    private func read(_ text: String, _ format: TextFormat, _ columns: [String], score: String? = nil, label: String? = nil,
                      header: Bool = false, strict: Bool = false) throws -> TextRows {
        try read(Array(text.utf8), format, columns, score: score, label: label, header: header, strict: strict)
    }

    private func read(_ bytes: [UInt8], _ format: TextFormat, _ columns: [String], score: String? = nil, label: String? = nil,
                      header: Bool = false, strict: Bool = false) throws -> TextRows {
        try TextTable.read(bytes, path: "t", format: format,
                           columns: TextColumns(texts: columns.map(TextColumn.init), score: score.map(TextColumn.init), label: label.map(TextColumn.init)),
                           header: header, strict: strict)
    }

    /// RFC 4180: quoted cells hold commas, CRLF and LF line breaks and doubled quotes; records
    /// end at LF or CRLF; a BOM is dropped; a record's line is the line it starts on.
    @Test func csvQuotingEdgeCases() throws {
        let csv = "\u{FEFF}a,b\r\n\"x, y\",\"she said \"\"no\"\"\"\r\n\"two\nlines\",\"three\r\nlines\nhere\"\nplain \"quote\" kept,\"\"\"\"\n\n\"last\",\"\"\"edge\"\"\""
        let rows = try read(csv, .csv, ["a", "b"], header: true)
        #expect(rows.texts[0] == ["x, y", "two\nlines", "plain \"quote\" kept", "last"])
        #expect(rows.texts[1] == ["she said \"no\"", "three\r\nlines\nhere", "\"", "\"edge\""])
        #expect(rows.lines == [2, 3, 7, 9] && rows.badRowCount == 0, "\(rows.lines)")
    }

    /// Text after a closing quote and a quote never closed are bad rows, named by line; the rows
    /// around them are read.
    @Test func csvQuotingErrorsAreBadRows() throws {
        let rows = try read("a,b\n\"x\"y,z\nok,fine\n\"open,never closed\nmore\n", .csv, ["1", "2"])
        #expect(rows.texts == [["a", "ok"], ["b", "fine"]])
        #expect(rows.badRowCount == 2)
        #expect(rows.badRowExamples == ["t:2: text after the closing quote of cell 1 (a quote inside a quoted cell is written \"\")",
                                        "t:4: a quoted cell is never closed (the file ends inside it)"])
    }

    @Test func tsvIsSplitAtTabsWithoutQuoting() throws {
        let rows = try read("s1\ts2\t0.5\n\"q\"\tb, c\t1e0\r\n\nx\ty\n", .tsv, ["1", "2"], score: "3")
        #expect(rows.texts == [["s1", "\"q\""], ["s2", "b, c"]] && rows.scores == [0.5, 1])
        #expect(rows.badRowExamples == ["t:4: has 2 columns, the first row has 3"])
    }

    /// JSONL: keys pick the columns; scores may be numbers or numeric strings; labels integers or
    /// names; other keys are ignored; blank lines skipped; a missing key or a non-string text is a bad row.
    @Test func jsonlColumnsByKey() throws {
        let jsonl = """
        {"anchor": "a", "positive": "b", "negative": "c", "score": 0.25, "label": 3, "other": [1]}

        {"anchor": "d", "positive": "e", "negative": "f", "score": "2", "label": "cat"}
        {"anchor": "g", "positive": "h", "score": 1}
        {"anchor": 5, "positive": "h", "negative": "i", "score": 1, "label": 1}
        not json
        ["a"]
        """
        let rows = try read(jsonl, .jsonl, ["anchor", "positive", "negative"], score: "score", label: "label")
        #expect(rows.texts == [["a", "d"], ["b", "e"], ["c", "f"]] && rows.scores == [0.25, 2] && rows.labels == ["3", "cat"])
        #expect(rows.badRowExamples == ["t:4: no key 'negative'", "t:5: 'anchor' is not a string", "t:6: the line is not valid JSON",
                                        "t:7: the line is not a JSON object"])
    }

    /// Decomposed input (e + U+0301 COMBINING ACUTE) is stored composed (U+00E9), in every format.
    @Test func textIsNFCNormalised() throws {
        let decomposed = "cafe\u{0301} n\u{0303}"
        #expect(Array(decomposed.utf8).count == 10)
        for (text, format, columns) in [(decomposed + ",x\n", TextFormat.csv, ["1"]), (decomposed + "\tx\n", .tsv, ["1"]),
                                        ("{\"t\": \"cafe\\u0301 n\\u0303\"}\n", .jsonl, ["t"])] {
            let rows = try read(text, format, columns)
            #expect(Array(rows.texts[0][0].utf8) == Array("caf\u{00E9} \u{00F1}".utf8), "\(format)")
            #expect(Array(rows.texts[0][0].utf8).count == 8)
        }
    }

    /// Invalid UTF-8 (a lone continuation byte, an overlong encoding) is a bad row, and with
    /// --strict the error naming the line.
    @Test func invalidUTF8IsABadRow() throws {
        let bytes = Array("good,row\n".utf8) + [0x61, 0x80, 0x2C, 0x62, 0x0A] + [0xC0, 0xAF, 0x2C, 0x63, 0x0A] + Array("also,good\n".utf8)
        let rows = try read(bytes, .csv, ["1", "2"])
        #expect(rows.texts[0] == ["good", "also"])
        #expect(rows.badRowExamples == ["t:2: column 1 is not valid UTF-8", "t:3: column 1 is not valid UTF-8"])
        let jsonl = Array("{\"t\": \"ok\"}\n{\"t\": \"".utf8) + [0xFF] + Array("\"}\n".utf8)
        #expect(try read(jsonl, .jsonl, ["t"]).badRowExamples == ["t:2: the line is not valid UTF-8"])
        let error = #expect(throws: DataError.self) { try read(bytes, .csv, ["1", "2"], strict: true) }
        #expect(error?.description == "text file t: line 2: column 1 is not valid UTF-8 (--strict stops at the first bad row)")
    }

    /// Empty texts, ragged rows and bad scores are counted; the first five are named.
    @Test func badRowsAreCountedAndTheFirstFiveNamed() throws {
        var csv = "a,b,s\n"
        for line in 2...9 { csv += line % 2 == 0 ? "x,,1\n" : "x,y\n" }
        csv += "x,y,nan\nx,y,1.5\n"
        let rows = try read(csv, .csv, ["a", "b"], score: "s", header: true)
        #expect(rows.count == 1 && rows.scores == [1.5] && rows.lines == [11])
        #expect(rows.badRowCount == 9 && rows.badRowExamples.count == 5)
        #expect(rows.badRowExamples.prefix(2) == ["t:2: column 'b' is empty", "t:3: has 2 columns, the header has 3"])
        let allBad = #expect(throws: DataError.self) { try read("a\n \n", .csv, ["a"], header: true) }
        #expect(allBad?.description == "text file t: no usable rows (1 bad); the first bad row: t:2: column 'a' is empty")
    }

    @Test func missingColumnsAreOneError() throws {
        let named = #expect(throws: DataError.self) { try read("a,b\nx,y\n", .csv, ["a", "c"], header: true) }
        #expect(named?.description == "text file t: no column 'c' in the header (columns: a, b)")
        let position = #expect(throws: DataError.self) { try read("x,y\n", .csv, ["1", "3"]) }
        #expect(position?.description == "text file t: column 3 does not exist: the first row has 2 columns")
        let jsonPosition = #expect(throws: DataError.self) { try read("{\"a\": \"x\"}\n", .jsonl, ["a", "2"]) }
        #expect(jsonPosition?.description == "text file t: JSONL columns are keys, but column 2 is a position; "
                + "name the keys (e.g. --columns anchor,positive)")
        let noHeader = #expect(throws: DataError.self) { try read("x,y\n", .csv, ["a"]) }
        #expect(noHeader?.description.contains("add --header if its first row names the columns") == true)
    }

    /// Integer labels stay themselves; any name makes every label a name, numbered in sorted order.
    @Test func labelNumbering() {
        #expect(DatasetPreparation.labelNumbering(["3", "1", "3"]).classes == nil)
        #expect(DatasetPreparation.labelNumbering(["3", "1"]).number == ["3": 3, "1": 1])
        let named = DatasetPreparation.labelNumbering(["dog", "cat", "7", "dog", "Éclair"])
        #expect(named.classes == ["7", "cat", "dog", "Éclair"] && named.number["dog"] == 2)
    }
}
