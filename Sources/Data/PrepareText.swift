import Foundation

/// Where `contrast prepare text` (and `prepare webdataset`) gets a test split from.
public enum HeldOutSplit: Sendable, Equatable {
    /// round(fraction x N) samples drawn at random under `seed` (`DatasetPreparation.testRows`),
    /// as `prepare npy --test-fraction` draws them.
    case fraction(Double, seed: UInt64)
    /// A file of the same format and columns (`prepare text --test-file`).
    case file(String)
}

extension SampleBlock {
    /// The samples at `indices`, in that order, every field included.
    func rows(_ indices: [Int], featureWidth: Int = 0, pairWidth: Int = 0) -> SampleBlock {
        func gather<T>(_ values: [T], width: Int) -> [T] {
            var out: [T] = []
            out.reserveCapacity(indices.count * width)
            for row in indices { out += values[(row * width)..<((row + 1) * width)] }
            return out
        }
        let features: FeatureValues? = switch features {
        case .uint8(let values): .uint8(gather(values, width: featureWidth))
        case .float32(let values): .float32(gather(values, width: featureWidth))
        case nil: nil
        }
        var picked: [String: FieldValues] = [:]
        for (name, values) in fields {
            switch values {
            case .uint8(let values): picked[name] = .uint8(gather(values, width: values.count / max(count, 1)))
            case .float32(let values): picked[name] = .float32(gather(values, width: values.count / max(count, 1)))
            case .int64(let values): picked[name] = .int64(gather(values, width: values.count / max(count, 1)))
            case .variable(let values):
                var out = VariableValues()
                for row in indices { out.append(values[row]) }
                picked[name] = .variable(out)
            }
        }
        return SampleBlock(count: indices.count, features: features, labels: labels.map { gather($0, width: 1) },
                           pairs: pairs.map { gather($0, width: pairWidth) }, fields: picked)
    }
}

extension DatasetPreparation {
    /// A text table (JSONL, TSV or CSV) into `out`: fields `text` (and `positive`, and
    /// `negative`, for 2 or 3 text columns) as UTF-8, NFC-normalised; `score` float32 when a
    /// score column is chosen; `labels` int64 when a label column is (integers as written,
    /// names numbered in sorted order with the names as `classes`). Bad rows are counted and
    /// the first few named in the summary's notes (`strict` stops at the first).
    /// - Parameters:
    ///   - test: a test split: a fraction of the rows drawn at random, or a second file.
    ///     With one, `out` holds train/ and test/ (`ShardedDataset.splits(of:)`).
    ///   - layout: how to cut the training split; the test split is cut the same way, into at
    ///     most one shard per sample.
    /// - Returns: one summary per folder written (the training split's first).
    public static func text(path: String, format: TextFormat, columns: TextColumns, header: Bool = false, strict: Bool = false,
                            test: HeldOutSplit? = nil, out: String, layout: ShardLayout, overwrite: Bool = false) throws -> [PrepareSummary] {
        try checkOutput(out, overwrite: overwrite)
        func read(_ path: String) throws -> TextRows {
            guard let contents = FileManager.default.contents(atPath: path) else { throw DataError.fileNotFound(path: path) }
            return try TextTable.read([UInt8](contents), path: path, format: format, columns: columns, header: header, strict: strict)
        }
        let all = try read(path)
        var notes = badRowNotes(all)
        let testTable: TextRows?
        if case .file(let testPath) = test {
            testTable = try read(testPath)
            notes += badRowNotes(testTable!).map { "test: " + $0 }
        } else {
            testTable = nil
        }
        // One label numbering for both splits: names are numbered over the union.
        let (labelOf, classes) = labelNumbering((all.labels ?? []) + (testTable?.labels ?? []))
        if let classes { notes.append("labels: \(classes.count) class names, numbered in sorted order (the manifest's classes)") }
        var fields = (0..<columns.texts.count).map { NamedField(name: TextColumns.fieldNames[$0], dtype: .utf8) }
        if columns.score != nil { fields.append(NamedField(name: "score", dtype: .float32, shape: [])) }
        func block(_ rows: TextRows) -> SampleBlock {
            var values: [String: FieldValues] = [:]
            for (column, texts) in rows.texts.enumerated() { values[TextColumns.fieldNames[column]] = .variable(VariableValues(strings: texts)) }
            if let scores = rows.scores { values["score"] = .float32(scores) }
            return SampleBlock(count: rows.count, features: nil, labels: rows.labels.map { $0.map { labelOf[$0]! } }, fields: values)
        }
        let sourceBytes = try fileSize(path)
        let samples = block(all)
        guard let test else {
            _ = try layout.ranges(sampleCount: samples.count)
            return [try placing(out) { staging in
                try writeSplit(samples, fields: fields, classes: classes, to: staging, named: out, layout: layout, sourceBytes: sourceBytes, notes: notes)
            }]
        }
        let train: SampleBlock, held: SampleBlock, trainBytes: Int, testBytes: Int
        switch test {
        case .fraction(let fraction, let seed):
            let split = try testSplit(sampleCount: samples.count, fraction: fraction, seed: seed)
            train = samples.rows(split.train)
            held = samples.rows(split.test)
            testBytes = Int((Double(sourceBytes) * Double(held.count) / Double(samples.count)).rounded())
            trainBytes = sourceBytes - testBytes
        case .file(let testPath):
            train = samples
            held = block(testTable!)
            trainBytes = sourceBytes
            testBytes = try fileSize(testPath)
        }
        return try placingSplits(train: train, test: held, fields: fields, classes: classes, out: out, layout: layout,
                                 sourceBytes: (trainBytes, testBytes), notes: notes)
    }

    /// train/ and test/ into `out` through one staging folder.
    static func placingSplits(train: SampleBlock, test: SampleBlock, featureShape: [Int]? = nil, fields: [NamedField], classes: [String]?,
                              out: String, layout: ShardLayout, sourceBytes: (Int, Int), notes: [String]) throws -> [PrepareSummary] {
        _ = try layout.ranges(sampleCount: train.count)
        let testLayout: ShardLayout
        if case .count(let shards) = layout { testLayout = .count(min(shards, test.count)) } else { testLayout = layout }
        return try placing(out) { staging in
            [try writeSplit(train, featureShape: featureShape, fields: fields, classes: classes, to: staging + "/train", named: out + "/train",
                            layout: layout, sourceBytes: sourceBytes.0, notes: notes),
             try writeSplit(test, featureShape: featureShape, fields: fields, classes: classes, to: staging + "/test", named: out + "/test",
                            layout: testLayout, sourceBytes: sourceBytes.1, notes: [])]
        }
    }

    /// Writes one split of named fields (and features of `featureShape`, if any) and describes it as `name`.
    static func writeSplit(_ samples: SampleBlock, featureShape: [Int]? = nil, fields: [NamedField], classes: [String]?, to directory: String,
                           named name: String, layout: ShardLayout, sourceBytes: Int, notes: [String]) throws -> PrepareSummary {
        let manifest = try ShardedDatasetWriter.write(samples, featureShape: featureShape, fields: fields, to: directory, layout: layout,
                                                      classes: classes)
        return PrepareSummary(directory: name, sampleCount: manifest.sampleCount, shardCount: manifest.shards.count,
                              preparedBytes: manifest.totalShardBytes + (try fileSize(directory + "/" + ShardManifest.fileName)),
                              sourceBytes: sourceBytes, notes: notes)
    }

    /// "3 bad rows skipped" and the first few named, or nothing.
    static func badRowNotes(_ rows: TextRows) -> [String] {
        guard rows.badRowCount > 0 else { return [] }
        let more = rows.badRowCount > rows.badRowExamples.count ? " (the first \(rows.badRowExamples.count) below)" : ""
        return ["\(rows.badRowCount) bad row\(rows.badRowCount == 1 ? "" : "s") skipped\(more); --strict stops at the first"]
            + rows.badRowExamples
    }

    /// Label numbers for the labels as written: integers stay themselves when every label is
    /// one (no class names); otherwise the distinct names in sorted (byte) order are 0, 1, ...
    public static func labelNumbering(_ labels: [String]) -> (number: [String: Int64], classes: [String]?) {
        let distinct = Set(labels)
        let integers = distinct.compactMap { label in Int64(label).map { (label, $0) } }
        if integers.count == distinct.count { return (Dictionary(uniqueKeysWithValues: integers), nil) }
        let names = distinct.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return (Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int64($0)) }), names)
    }
}
