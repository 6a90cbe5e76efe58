import Foundation

/// The file formats `contrast prepare text` reads.
public enum TextFormat: String, Sendable, CaseIterable {
    /// One JSON object per line; columns are keys.
    case jsonl
    /// Tab-separated, no quoting: a cell is everything between tabs (a tab or newline cannot be
    /// inside a cell, as in the STS benchmark's and most sentence-pair TSV files).
    case tsv
    /// Comma-separated with RFC 4180 quoting: a cell in double quotes may hold commas, newlines
    /// and doubled quotes (`""` is one `"`).
    case csv

    /// The format a file name's extension says (.jsonl/.ndjson, .tsv/.tab, .csv), or nil.
    public init?(path: String) {
        switch (path as NSString).pathExtension.lowercased() {
        case "jsonl", "ndjson": self = .jsonl
        case "tsv", "tab": self = .tsv
        case "csv": self = .csv
        default: return nil
        }
    }
}

/// A column of a text table: by name (a JSONL key, or a header cell with `--header`) or by
/// 1-based position (a CSV or TSV file without a header).
public enum TextColumn: Sendable, Equatable, CustomStringConvertible {
    case name(String)
    case position(Int)

    /// "3" is a position, anything else a name.
    public init(_ text: String) {
        if let position = Int(text), position > 0 { self = .position(position) } else { self = .name(text) }
    }

    public var description: String {
        switch self {
        case .name(let name): return "'\(name)'"
        case .position(let position): return "\(position)"
        }
    }
}

/// Which columns of a text table make a sample: 1-3 texts (single sentences; anchor, positive;
/// anchor, positive, hard negative), an optional score and an optional label.
public struct TextColumns: Sendable, Equatable {
    public var texts: [TextColumn]
    public var score: TextColumn?
    public var label: TextColumn?

    public init(texts: [TextColumn], score: TextColumn? = nil, label: TextColumn? = nil) {
        precondition((1...3).contains(texts.count), "TextColumns: 1 to 3 text columns, got \(texts.count)")
        self.texts = texts
        self.score = score
        self.label = label
    }

    /// The data set's field names of the text columns, in order.
    public static let fieldNames = ["text", "positive", "negative"]
}

/// The rows of a text table that passed the checks, column by column, and the rows that did not.
public struct TextRows: Sendable, Equatable {
    /// texts[c][r]: text column c of good row r, valid UTF-8, NFC-normalised, not empty.
    public var texts: [[String]]
    /// The score of each good row, when a score column was chosen.
    public var scores: [Float]?
    /// The label of each good row as written (an integer's digits, or a name), when a label column was chosen.
    public var labels: [String]?
    /// The source line each good row starts on (1-based).
    public var lines: [Int] = []
    /// Rows refused: wrong column count, invalid UTF-8, empty text, a bad score, a quoting error.
    public var badRowCount = 0
    /// The first few refused rows, "FILE:LINE: problem".
    public var badRowExamples: [String] = []

    public var count: Int { lines.count }

    /// How many bad rows are named in `badRowExamples`.
    public static let namedBadRows = 5
}

/// Reads CSV, TSV and JSONL tables from bytes (no file I/O: the fuzz target drives it directly).
public enum TextTable {
    /// A refused row: what is wrong with it, said so that it reads after "FILE:LINE: ".
    struct RowProblem: Error { var line: Int; var reason: String }

    /// Parses `bytes` (the contents of `path`) and picks `columns` from every row.
    /// - Parameters:
    ///   - header: the first CSV/TSV row names the columns (JSONL always has names).
    ///   - strict: stop at the first bad row instead of counting it.
    /// - Throws: `DataError.textInvalid` for a column that is not there (a name missing from the
    ///   header, a position past the first row), a bad row with `strict`, or no good rows.
    public static func read(_ bytes: [UInt8], path: String, format: TextFormat, columns: TextColumns,
                            header: Bool = false, strict: Bool = false) throws -> TextRows {
        var rows = TextRows(texts: Array(repeating: [], count: columns.texts.count),
                            scores: columns.score == nil ? nil : [], labels: columns.label == nil ? nil : [])
        func refuse(_ problem: RowProblem) throws {
            let named = "\(path):\(problem.line): \(problem.reason)"
            if strict { throw DataError.textInvalid(path: path, problem: "line \(problem.line): \(problem.reason) (--strict stops at the first bad row)") }
            rows.badRowCount += 1
            if rows.badRowExamples.count < TextRows.namedBadRows { rows.badRowExamples.append(named) }
        }
        // A UTF-8 byte order mark (Excel's CSV) is not part of the first cell.
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes[3...] : bytes[...]

        switch format {
        case .jsonl:
            let chosen = columns.texts + [columns.score, columns.label].compactMap { $0 }
            if let position = chosen.first(where: { if case .position = $0 { true } else { false } }) {
                throw DataError.textInvalid(path: path, problem: "JSONL columns are keys, but column \(position) is a position; "
                                            + "name the keys (e.g. --columns anchor,positive)")
            }
            for (line, text) in lines(body) {
                guard !text.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) else { continue }
                do { add(try jsonCells(text, line: line, columns: columns), line: line, to: &rows) } catch let problem as RowProblem {
                    try refuse(problem)
                }
            }
        case .csv, .tsv:
            var names: [String]?
            var width: Int?
            var indices: [Int?] = []
            let records = format == .csv ? csvRecords(body) : tsvRecords(body)
            for record in records {
                switch record.cells {
                case .failure(let problem): try refuse(problem); continue
                case .success(let cells):
                    if header && names == nil {
                        names = cells.map { String(decoding: $0, as: UTF8.self).precomposedStringWithCanonicalMapping }
                        width = cells.count
                        indices = try columnIndices(columns, names: names, width: cells.count, path: path)
                        continue
                    }
                    if width == nil {
                        width = cells.count
                        indices = try columnIndices(columns, names: nil, width: cells.count, path: path)
                    }
                    do {
                        guard cells.count == width else {
                            throw RowProblem(line: record.line, reason: "has \(cells.count) columns, "
                                             + (header ? "the header" : "the first row") + " has \(width!)")
                        }
                        let picked = indices.map { $0.map { cells[$0] } }
                        add(try cellValues(picked, line: record.line, columns: columns), line: record.line, to: &rows)
                    } catch let problem as RowProblem {
                        try refuse(problem)
                    }
                }
            }
        }
        guard rows.count > 0 else {
            let first = rows.badRowExamples.first.map { "; the first bad row: \($0)" } ?? ""
            throw DataError.textInvalid(path: path, problem: "no usable rows (\(rows.badRowCount) bad)\(first)")
        }
        return rows
    }

    /// The number of cells in the first record of a CSV or TSV file (0 when it has none).
    public static func firstRowWidth(_ bytes: [UInt8], format: TextFormat) throws -> Int {
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? bytes[3...] : bytes[...]
        let records = format == .csv ? csvRecords(body) : tsvRecords(body)
        guard let first = records.first, case .success(let cells) = first.cells else { return 0 }
        return cells.count
    }

    /// The values of one row: texts, then score, then label (nil when not chosen).
    struct RowValues { var texts: [String]; var score: Float?; var label: String? }

    private static func add(_ values: RowValues, line: Int, to rows: inout TextRows) {
        for (column, text) in values.texts.enumerated() { rows.texts[column].append(text) }
        if let score = values.score { rows.scores?.append(score) }
        if let label = values.label { rows.labels?.append(label) }
        rows.lines.append(line)
    }

    /// Valid UTF-8, NFC-normalised, not empty (nor only white space).
    static func text(_ bytes: some Collection<UInt8>, line: Int, column: TextColumn) throws -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw RowProblem(line: line, reason: "column \(column) is not valid UTF-8")
        }
        guard !string.allSatisfy(\.isWhitespace) else { throw RowProblem(line: line, reason: "column \(column) is empty") }
        return string.precomposedStringWithCanonicalMapping
    }

    static func score(_ text: String, line: Int, column: TextColumn) throws -> Float {
        guard let value = Float(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw RowProblem(line: line, reason: "score column \(column) is \"\(text.prefix(40))\", not a finite number")
        }
        return value
    }

    /// CSV/TSV cells picked by `columnIndices` (texts, score, label) into a row's values.
    private static func cellValues(_ picked: [[UInt8]?], line: Int, columns: TextColumns) throws -> RowValues {
        let texts = try zip(picked, columns.texts).map { try text($0!, line: line, column: $1) }
        var values = RowValues(texts: texts)
        var next = columns.texts.count
        if let column = columns.score {
            values.score = try score(try text(picked[next]!, line: line, column: column), line: line, column: column)
            next += 1
        }
        if let column = columns.label {
            values.label = try text(picked[next]!, line: line, column: column).trimmingCharacters(in: .whitespaces)
        }
        return values
    }

    /// The 0-based cell index of every chosen column: texts, then score and label when chosen.
    private static func columnIndices(_ columns: TextColumns, names: [String]?, width: Int, path: String) throws -> [Int?] {
        let chosen = columns.texts + [columns.score, columns.label].compactMap { $0 }
        return try chosen.map { column in
            switch column {
            case .position(let position):
                guard position <= width else {
                    throw DataError.textInvalid(path: path, problem: "column \(position) does not exist: the "
                                                + (names == nil ? "first row" : "header") + " has \(width) columns")
                }
                return position - 1
            case .name(let name):
                guard let names else {
                    throw DataError.textInvalid(path: path, problem: "column '\(name)' is a name, but the file has no header: "
                                                + "add --header if its first row names the columns, or give positions (1, 2, ...)")
                }
                guard let index = names.firstIndex(of: name) else {
                    throw DataError.textInvalid(path: path, problem: "no column '\(name)' in the header (columns: \(names.joined(separator: ", ")))")
                }
                return index
            }
        }
    }

    /// One JSONL line's chosen values. A text must be a string; a score a number or a numeric
    /// string; a label an integer or a string.
    private static func jsonCells(_ text: ArraySlice<UInt8>, line: Int, columns: TextColumns) throws -> RowValues {
        guard String(validating: text, as: UTF8.self) != nil else { throw RowProblem(line: line, reason: "the line is not valid UTF-8") }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: Foundation.Data(text), options: [.fragmentsAllowed]) as? [String: Any] else {
                throw RowProblem(line: line, reason: "the line is not a JSON object")
            }
            object = parsed
        } catch let problem as RowProblem { throw problem } catch {
            throw RowProblem(line: line, reason: "the line is not valid JSON")
        }
        func value(_ column: TextColumn) throws -> Any {
            guard case .name(let name) = column else { preconditionFailure("TextTable.read refuses positions for JSONL") }
            guard let value = object[name], !(value is NSNull) else { throw RowProblem(line: line, reason: "no key '\(name)'") }
            return value
        }
        let texts = try columns.texts.map { column -> String in
            guard let string = try value(column) as? String else { throw RowProblem(line: line, reason: "\(column) is not a string") }
            return try Self.text(Array(string.utf8), line: line, column: column)
        }
        var values = RowValues(texts: texts)
        if let column = columns.score {
            switch try value(column) {
            case let string as String: values.score = try score(string, line: line, column: column)
            case let number as NSNumber where !isBoolean(number): values.score = try score("\(number.doubleValue)", line: line, column: column)
            default: throw RowProblem(line: line, reason: "score \(column) is not a number")
            }
        }
        if let column = columns.label {
            switch try value(column) {
            case let string as String: values.label = try Self.text(Array(string.utf8), line: line, column: column)
            case let number as NSNumber where !isBoolean(number):
                let double = number.doubleValue
                guard double == double.rounded(), abs(double) < 9e15 else {
                    throw RowProblem(line: line, reason: "label \(column) is \(double), not an integer or a name")
                }
                values.label = String(Int64(double))
            default: throw RowProblem(line: line, reason: "label \(column) is neither an integer nor a string")
            }
        }
        return values
    }

    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c" && (number == NSNumber(value: true) || number == NSNumber(value: false))
    }

    /// Lines split at LF (a CR before it dropped), numbered from 1.
    static func lines(_ bytes: ArraySlice<UInt8>) -> [(line: Int, text: ArraySlice<UInt8>)] {
        var result: [(Int, ArraySlice<UInt8>)] = []
        var start = bytes.startIndex, line = 1
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.endIndex
            var text = bytes[start..<end]
            if text.last == 0x0D { text = text.dropLast() }
            result.append((line, text))
            start = end + 1
            line += 1
        }
        return result
    }

    /// One record of a CSV or TSV file: its first line, and its cells or what is wrong with it.
    struct Record { var line: Int; var cells: Result<[[UInt8]], RowProblem> }

    /// TSV: a record a line, cells split at tabs; blank lines skipped.
    static func tsvRecords(_ bytes: ArraySlice<UInt8>) -> [Record] {
        lines(bytes).compactMap { line, text in
            text.isEmpty ? nil : Record(line: line, cells: .success(text.split(separator: 0x09, omittingEmptySubsequences: false).map(Array.init)))
        }
    }

    /// CSV by RFC 4180: records end at LF or CRLF outside quotes; a quoted cell may hold commas,
    /// line breaks and `""` (one quote). A quote inside an unquoted cell is kept as it is (as
    /// Python's csv module does); text after a closing quote, or a quote never closed, makes
    /// the record bad (the rest of its line, or of the file, is skipped). Blank lines are skipped.
    static func csvRecords(_ bytes: ArraySlice<UInt8>) -> [Record] {
        let quote: UInt8 = 0x22, comma: UInt8 = 0x2C, newline: UInt8 = 0x0A, carriageReturn: UInt8 = 0x0D
        var records: [Record] = []
        var index = bytes.startIndex, line = 1
        func atLineEnd(_ i: Int) -> Bool {
            i >= bytes.endIndex || bytes[i] == newline || (bytes[i] == carriageReturn && i + 1 < bytes.endIndex && bytes[i + 1] == newline)
        }
        /// Moves past the line end at `i` (LF or CRLF), counting the line.
        func skipLineEnd(_ i: inout Int) {
            if i < bytes.endIndex && bytes[i] == carriageReturn { i += 1 }
            if i < bytes.endIndex && bytes[i] == newline { i += 1; line += 1 }
        }
        while index < bytes.endIndex {
            let first = line
            if atLineEnd(index) { skipLineEnd(&index); continue }   // a blank line
            var cells: [[UInt8]] = [], cell: [UInt8] = []
            var problem: String?
            while true {
                if index < bytes.endIndex && bytes[index] == quote {
                    index += 1
                    var closed = false
                    while index < bytes.endIndex {
                        let byte = bytes[index]
                        if byte == quote {
                            if index + 1 < bytes.endIndex && bytes[index + 1] == quote { cell.append(quote); index += 2; continue }
                            index += 1
                            closed = true
                            break
                        }
                        if byte == newline { line += 1 }
                        cell.append(byte)
                        index += 1
                    }
                    if !closed { problem = "a quoted cell is never closed (the file ends inside it)"; break }
                    if !(atLineEnd(index) || bytes[index] == comma) {
                        problem = "text after the closing quote of cell \(cells.count + 1) (a quote inside a quoted cell is written \"\")"
                        while !atLineEnd(index) { index += 1 }
                        break
                    }
                } else {
                    while !atLineEnd(index) && bytes[index] != comma { cell.append(bytes[index]); index += 1 }
                }
                cells.append(cell)
                cell = []
                if index < bytes.endIndex && bytes[index] == comma { index += 1; continue }
                break
            }
            skipLineEnd(&index)
            records.append(Record(line: first, cells: problem.map { .failure(RowProblem(line: first, reason: $0)) } ?? .success(cells)))
        }
        return records
    }
}
