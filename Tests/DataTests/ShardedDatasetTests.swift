import Foundation
import Storage
import Testing
@testable import Data

private func temporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "contrast-shards-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// All shards of `dataset` concatenated.
private func readAll(_ dataset: ShardedDataset) throws -> [SampleBlock] {
    try (0..<dataset.shardCount).map { try dataset.readShard($0) }
}

private func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

/// Flips one byte of `path` at `offset` (from the end when negative).
private func flipByte(_ path: String, at offset: Int) throws {
    var bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
    let index = offset >= 0 ? offset : bytes.count + offset
    bytes[index] ^= 0x5A
    try Foundation.Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite struct ShardedDatasetTests {
    @Test func roundTripUInt8WithLabels() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let count = 23
        let features = (0..<(count * 12)).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let labels = (0..<count).map { Int64($0) * 1_000_000_007 - 5 }
        let manifest = try ShardedDatasetWriter.write(SampleBlock(count: count, features: .uint8(features), labels: labels),
                                                      featureShape: [3, 4], to: folder, shardSize: 10)
        #expect(manifest.shards.map(\.sampleCount) == [10, 10, 3])
        #expect(manifest.shards.map(\.file) == ["shard-00000.bin", "shard-00001.bin", "shard-00002.bin"])
        let dataset = try ShardedDataset(directory: folder)
        #expect(dataset.manifest == manifest && dataset.sampleCount == count)
        let blocks = try readAll(dataset)
        var gotFeatures: [UInt8] = [], gotLabels: [Int64] = []
        for block in blocks {
            guard case .uint8(let values) = block.features else { Issue.record("features not uint8"); return }
            gotFeatures += values
            gotLabels += block.labels ?? []
            #expect(block.pairs == nil)
        }
        #expect(gotFeatures == features && gotLabels == labels)
        #expect(!FileManager.default.fileExists(atPath: folder + "/dataset.json.tmp"))
    }

    /// The optional class names round-trip through dataset.json; a manifest without them (as
    /// written before they existed) reads as none, and names without labels are refused.
    @Test func classNamesAreOptional() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let samples = SampleBlock(count: 4, features: .uint8([UInt8](repeating: 7, count: 8)), labels: [0, 1, 1, 0])
        let named = try ShardedDatasetWriter.write(samples, featureShape: [2], to: folder, layout: .size(2), classes: ["cat", "dog"])
        #expect(try ShardedDataset(directory: folder).manifest.classes == ["cat", "dog"] && named.classes == ["cat", "dog"])
        let path = folder + "/dataset.json"
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("\"classes\""))

        var object = try #require(try JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        object["classes"] = nil
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        #expect(try ShardedDataset(directory: folder).manifest.classes == nil)

        object["classes"] = ["cat", "dog"]
        object["labels"] = nil
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        do {
            _ = try ShardedDataset(directory: folder)
            Issue.record("classes without labels were accepted")
        } catch {
            #expect("\(error)".contains("classes (2 names) needs a non-empty list and labels"), "\(error)")
        }
    }

    @Test func roundTripFloat32WithLabelsAndPairs() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let count = 17
        var features = (0..<(count * 6)).map { Float(sin(Double($0))) * 1e3 }
        features[0] = -0.0; features[1] = .infinity; features[2] = .nan; features[3] = .leastNonzeroMagnitude
        let pairs = (0..<(count * 5)).map { Float($0) / 7 - 3 }
        let labels = (0..<count).map { Int64(-$0) }
        try ShardedDatasetWriter.write(SampleBlock(count: count, features: .float32(features), labels: labels, pairs: pairs),
                                       featureShape: [2, 3], pairShape: [5], to: folder, shardSize: 4)
        let dataset = try ShardedDataset(directory: folder)
        #expect(dataset.shardCount == 5 && dataset.manifest.pairs?.shape == [5])
        #expect(dataset.manifest.shards[0].frames.map(\.encoding) == [.shuffleZstd, .zstd, .shuffleZstd])
        var gotFeatures: [Float] = [], gotPairs: [Float] = [], gotLabels: [Int64] = []
        for block in try readAll(dataset) {
            guard case .float32(let values) = block.features else { Issue.record("features not float32"); return }
            gotFeatures += values
            gotPairs += block.pairs ?? []
            gotLabels += block.labels ?? []
        }
        #expect(bits(gotFeatures) == bits(features) && bits(gotPairs) == bits(pairs) && gotLabels == labels)
    }

    /// `limit` ends the data set after its first N samples (data.train_limit / test_limit): the
    /// shard the limit cuts gives only its samples before N, in memory and on disk alike, and
    /// `shards(of:holdingFirst:)` names only the shards that hold them.
    @Test func readStopsAtTheLimit() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let count = 23
        let features = (0..<(count * 12)).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let pairs = (0..<(count * 2)).map { Float($0) / 3 }
        try ShardedDatasetWriter.write(SampleBlock(count: count, features: .uint8(features), labels: (0..<count).map { Int64($0) }, pairs: pairs),
                                       featureShape: [3, 4], pairShape: [2], to: folder, shardSize: 10)
        let dataset = try ShardedDataset(directory: folder)
        #expect(ShardedDataset.shards(of: dataset.manifest, holdingFirst: 0) == 0..<3)
        #expect(ShardedDataset.shards(of: dataset.manifest, holdingFirst: 10) == 0..<1)
        #expect(ShardedDataset.shards(of: dataset.manifest, holdingFirst: 14) == 0..<2)
        #expect(ShardedDataset.shards(of: dataset.manifest, holdingFirst: 100) == 0..<3)
        for spill in [nil, folder] as [String?] {
            let rows = try SampleRows.read(dataset, shards: 1..<2, limit: 14, spillDirectory: spill)
            #expect(rows.held == 10..<14 && rows.totalCount == 14 && rows.labels == [10, 11, 12, 13])
            var inputs = [Float](repeating: 0, count: 4 * 12), pairRows = [Float](repeating: 0, count: 4 * 2)
            inputs.withUnsafeMutableBufferPointer { rows.writeInputs(rows.held, into: $0.baseAddress!) }
            pairRows.withUnsafeMutableBufferPointer { rows.writePairs(rows.held, into: $0.baseAddress!) }
            #expect(inputs == features[120..<168].map { Float($0) / 255 })
            #expect(pairRows == Array(pairs[20..<28]))
            let all = try SampleRows.read(dataset, shards: 0..<3, spillDirectory: spill)
            #expect(all.held == 0..<23 && all.totalCount == 23)
        }
    }

    @Test func shardCountLayoutIsTheSamplersVirtualShards() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let count = 997, shards = 64
        let features = (0..<(count * 3)).map { Float(sin(Double($0))) * 1e3 }
        let pairs = (0..<(count * 2)).map { Float($0) / 7 - 3 }
        let labels = (0..<count).map { Int64($0 % 10) }
        let manifest = try ShardedDatasetWriter.write(SampleBlock(count: count, features: .float32(features), labels: labels, pairs: pairs),
                                                      featureShape: [3], pairShape: [2], to: folder, layout: .count(shards))
        let sampler = try Sampler(sampleCount: count, globalBatchSize: shards, virtualShards: shards, seed: 0)
        #expect(manifest.shards.map { $0.firstSample ..< $0.firstSample + $0.sampleCount } == (0..<shards).map(sampler.shardRange))
        #expect(Set(manifest.shards.map(\.sampleCount)) == [15, 16])

        let dataset = try ShardedDataset(directory: folder)
        var gotFeatures: [Float] = [], gotPairs: [Float] = [], gotLabels: [Int64] = []
        for block in try readAll(dataset) {
            guard case .float32(let values) = block.features else { Issue.record("features not float32"); return }
            gotFeatures += values
            gotPairs += block.pairs ?? []
            gotLabels += block.labels ?? []
        }
        #expect(bits(gotFeatures) == bits(features) && bits(gotPairs) == bits(pairs) && gotLabels == labels)
    }

    @Test func layoutsCutTheExpectedRanges() throws {
        #expect(try ShardLayout.size(4).ranges(sampleCount: 10) == [0..<4, 4..<8, 8..<10])
        #expect(try ShardLayout.count(3).ranges(sampleCount: 10) == [0..<3, 3..<6, 6..<10])
        #expect(try ShardLayout.count(10).ranges(sampleCount: 10).allSatisfy { $0.count == 1 })
        #expect(throws: DataError.tooManyShards(shards: 11, sampleCount: 10)) { try ShardLayout.count(11).ranges(sampleCount: 10) }
    }

    @Test func tooManyShardsWritesNothing() throws {
        let folder = NSTemporaryDirectory() + "contrast-shards-\(UUID().uuidString)"
        let error = #expect(throws: DataError.self) {
            try ShardedDatasetWriter.write(SampleBlock(count: 5, features: .uint8([UInt8](repeating: 1, count: 5))),
                                           featureShape: [1], to: folder, layout: .count(8))
        }
        #expect(error?.description.contains("--shards 5 or fewer") == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: folder))
    }

    @Test func fashionMNISTPrefixMatchesIDX() throws {
        let source = FashionMNIST.defaultDirectory
        guard FileManager.default.fileExists(atPath: source + "/t10k-images-idx3-ubyte.gz") else { return }
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let summaries = try DatasetPreparation.fashionMNIST(source: source, out: folder, layout: .size(700), limit: 3000)
        #expect(summaries.map(\.shardCount) == [5, 5] && summaries.allSatisfy { $0.sampleCount == 3000 })
        for split in FashionMNIST.Split.allCases {
            let original = try FashionMNIST.load(split: split, limit: 3000)
            let dataset = try ShardedDataset(directory: folder + "/" + split.rawValue)
            #expect(dataset.manifest.features == FieldLayout(dtype: .uint8, shape: [28, 28]))
            var pixels: [UInt8] = [], labels: [Int64] = []
            for block in try readAll(dataset) {
                if case .uint8(let values) = block.features { pixels += values }
                labels += block.labels ?? []
            }
            #expect(pixels == original.images && labels == original.labels.map { Int64($0) })
        }
    }

    /// A small data set of 3 shards for the failure tests.
    private func smallDataset() throws -> String {
        let folder = try temporaryFolder()
        let features = (0..<(30 * 8)).map { Float($0) * 0.25 }
        try ShardedDatasetWriter.write(SampleBlock(count: 30, features: .float32(features), labels: (0..<30).map { Int64($0) }),
                                       featureShape: [8], to: folder, shardSize: 10)
        return folder
    }

    @Test func corruptShardNamesFileAndShard() throws {
        let folder = try smallDataset()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/shard-00001.bin"
        try flipByte(path, at: 20)
        let dataset = try ShardedDataset(directory: folder)  // same size: opening succeeds
        _ = try dataset.readShard(0)
        let error = #expect(throws: DataError.self) { try dataset.readShard(1) }
        guard case .shardInvalid(let errorPath, let shard, let problem)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(errorPath == path && shard == 1 && problem.contains("crc32"))
        #expect(error!.description.contains("shard 1") && error!.description.contains("shard-00001.bin"))
    }

    @Test func corruptFrameCaughtByZstdChecksumWhenCRCIsUpdated() throws {
        // Damage the frame and fix the manifest's crc32, so only zstd's own checksum can tell.
        let folder = try smallDataset()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/shard-00002.bin"
        try flipByte(path, at: 40)
        let manifestPath = folder + "/dataset.json"
        var manifest = try ShardManifest.decoder().decode(ShardManifest.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: manifestPath)))
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        manifest.shards[2].crc32 = bytes.withUnsafeBytes { CRC32.prefixedHex(CRC32.checksum($0)) }
        try ShardManifest.encoder().encode(manifest).write(to: URL(fileURLWithPath: manifestPath))
        let error = #expect(throws: DataError.self) { try ShardedDataset(directory: folder).readShard(2) }
        guard case .shardInvalid(let errorPath, 2, let problem)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(errorPath == path && problem.contains("features frame"))
    }

    @Test func truncatedShardRejectedOnOpen() throws {
        let folder = try smallDataset()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/shard-00002.bin"
        #expect(truncate(path, 50) == 0)
        let error = #expect(throws: DataError.self) { try ShardedDataset(directory: folder) }
        guard case .shardInvalid(path, 2, let problem)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(problem.contains("50 bytes"))
    }

    @Test func missingShardRejectedOnOpen() throws {
        let folder = try smallDataset()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/shard-00001.bin"
        try FileManager.default.removeItem(atPath: path)
        let error = #expect(throws: DataError.self) { try ShardedDataset(directory: folder) }
        guard case .shardInvalid(path, 1, let problem)? = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(problem.contains("missing"))
        #expect(error!.description.contains(path))
    }

    @Test func manifestShardMismatchRejected() throws {
        let folder = try smallDataset()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let manifestPath = folder + "/dataset.json"
        let original = try ShardManifest.decoder().decode(ShardManifest.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: manifestPath)))
        func expectRejected(_ change: (inout ShardManifest) -> Void, _ fragment: String) throws {
            var manifest = original
            change(&manifest)
            try ShardManifest.encoder().encode(manifest).write(to: URL(fileURLWithPath: manifestPath))
            let error = #expect(throws: DataError.self) { try ShardedDataset(directory: folder) }
            #expect(error?.description.contains(fragment) == true, "\(String(describing: error)) lacks \(fragment)")
        }
        try expectRejected({ $0.sampleCount = 31 }, "shards hold 30 samples")
        try expectRejected({ $0.shards[1].bytes += 1 }, "shard-00001.bin")
        try expectRejected({ $0.shards[2].firstSample = 21 }, "shard 2")
        try expectRejected({ $0.version = "2.0" }, "version 2.0")
        try expectRejected({ $0.shards.removeLast() }, "shards hold 20 samples")
        try expectRejected({ $0.labels = nil }, "frames")
        // The labels are int64: a shuffle4 frame there is not something the writer makes.
        try expectRejected({ $0.shards[0].frames[1].encoding = .shuffleZstd },
                           "the labels frame is shuffle4+zstd, but the section holds int64; only float32 sections are shuffled")
        try FileManager.default.removeItem(atPath: manifestPath)
        #expect(throws: DataError.self) { try ShardedDataset(directory: folder) }
    }

    /// A text set (format 1.1): named utf8 fields, a float32 score and labels, no features. Each
    /// sample's text reads back through `SampleBlock.text`, shards split the offsets, the
    /// manifest declares every field and each variable field's two frames.
    @Test func namedTextFieldsRoundTrip() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let anchors = ["a cat", "ünïcödé ✓", "", "three", "x"], positives = ["a feline", "unicode", "none", "3", "ex"]
        let samples = SampleBlock(count: 5, features: nil, labels: [0, 1, 0, 2, 1],
                                  fields: ["text": .variable(VariableValues(strings: anchors)),
                                           "positive": .variable(VariableValues(strings: positives)),
                                           "score": .float32([0.5, 1, -2, 0.25, 4])])
        let fields = [NamedField(name: "text", dtype: .utf8), NamedField(name: "positive", dtype: .utf8),
                      NamedField(name: "score", dtype: .float32, shape: [])]
        let manifest = try ShardedDatasetWriter.write(samples, featureShape: nil, fields: fields, to: folder, layout: .count(2),
                                                      classes: ["x", "y", "z"])
        #expect(manifest.version == "1.1" && manifest.features == nil && manifest.fields == fields)
        #expect(manifest.shards[0].frames.map { FrameKey($0).description }
                == ["labels", "text.offsets", "text.data", "positive.offsets", "positive.data", "score"])
        let dataset = try ShardedDataset(directory: folder)
        #expect(dataset.manifest == manifest)
        var texts: [String] = [], gotPositives: [String] = [], scores: [Float] = [], labels: [Int64] = []
        for index in 0..<dataset.shardCount {
            let block = try dataset.readShard(index)
            #expect(block.features == nil)
            for sample in 0..<block.count {
                texts.append(try #require(block.text("text", sample)))
                gotPositives.append(try #require(block.text("positive", sample)))
                #expect(block.bytes("positive", sample).map(Array.init) == Array(gotPositives.last!.utf8))
            }
            guard case .float32(let values) = block.fields["score"] else { Issue.record("score is not float32"); return }
            scores += values
            labels += block.labels ?? []
            #expect(block.text("score", 0) == nil && block.text("missing", 0) == nil)
        }
        #expect(texts == anchors && gotPositives == positives && scores == [0.5, 1, -2, 0.25, 4] && labels == [0, 1, 0, 2, 1])

        // What needs features says what the set holds instead, before reading a shard.
        let error = #expect(throws: DataError.self) { try SampleRows.read(dataset, shards: 0..<2) }
        #expect(error?.description.contains("holds text (fields text, positive, score) and no features; it trains the text encoder "
                                            + "(contrast train with model.encoder: bert and data.vocab") == true, "\(String(describing: error))")
    }

    /// Values append, index and slice by their offsets; a slice's offsets start at 0.
    @Test func variableValuesSliceRebasesOffsets() {
        let values = VariableValues([[1, 2], [], [3], [4, 5, 6]])
        #expect(values.count == 4 && values.offsets == [0, 2, 2, 3, 6] && Array(values[3]) == [4, 5, 6] && values[1].isEmpty)
        let middle = values.slice(1..<4)
        #expect(middle.offsets == [0, 0, 1, 4] && middle.bytes == [3, 4, 5, 6] && middle == VariableValues([[], [3], [4, 5, 6]]))
        #expect(values.slice(2..<2) == VariableValues() && VariableValues(strings: ["é"]).string(0) == "é")
        #expect(SampleBlock(count: 4, features: nil, fields: ["v": .variable(values)]).decodedBytes == 5 * 8 + 6)
    }

    /// A data set written as format 1.0 (no `fields`, no frame `part`) opens and reads as before.
    @Test func version10DataSetsStillOpen() throws {
        let folder = try smallDataset()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/dataset.json"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"version\" : \"1.1\"") && !text.contains("\"fields\"") && !text.contains("\"part\""))
        text = text.replacingOccurrences(of: "\"version\" : \"1.1\"", with: "\"version\" : \"1.0\"")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let dataset = try ShardedDataset(directory: folder)
        #expect(dataset.manifest.version == "1.0" && dataset.manifest.features == FieldLayout(dtype: .float32, shape: [8]))
        #expect(try dataset.verifyAll() == 30)
    }

    /// Offsets that decrease, or a field's frames missing, are refused naming the shard.
    @Test func damagedVariableFieldsAreRefused() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let samples = SampleBlock(count: 3, features: nil, fields: ["caption": .variable(VariableValues(strings: ["ab", "cd", "ef"]))])
        var manifest = try ShardedDatasetWriter.write(samples, featureShape: nil, fields: [NamedField(name: "caption", dtype: .utf8)],
                                                      to: folder, layout: .count(1))
        // Rewrite the shard with offsets 0, 4, 2, 6 and matching sizes and crc32.
        let encoder = try FrameEncoder(level: 3)
        let offsets = [Int64](arrayLiteral: 0, 4, 2, 6).map { $0.littleEndian }
        var file = [UInt8](try offsets.withUnsafeBytes { try encoder.encode($0) })
        let data = [UInt8](try Array("abcdef".utf8).withUnsafeBytes { try encoder.encode($0) })
        manifest.shards[0].frames = [.init(section: "caption", part: .offsets, offset: 0, bytes: file.count, encoding: .zstd),
                                     .init(section: "caption", part: .data, offset: file.count, bytes: data.count, encoding: .zstd)]
        file += data
        manifest.shards[0].bytes = file.count
        manifest.shards[0].crc32 = file.withUnsafeBytes { CRC32.prefixedHex(CRC32.checksum($0)) }
        try Foundation.Data(file).write(to: URL(fileURLWithPath: folder + "/" + manifest.shards[0].file))
        let manifestURL = URL(fileURLWithPath: folder + "/dataset.json")
        try ShardManifest.encoder().encode(manifest).write(to: manifestURL)
        let error = #expect(throws: DataError.self) { try ShardedDataset(directory: folder).readShard(0) }
        #expect(error?.description.contains("caption offset 2 is 2 after 4; offsets start at 0 and never decrease") == true,
                "\(String(describing: error))")

        manifest.shards[0].frames.removeLast()
        try ShardManifest.encoder().encode(manifest).write(to: manifestURL)
        let missing = #expect(throws: DataError.self) { try ShardedDataset(directory: folder) }
        #expect(missing?.description.contains("expected [\"caption.offsets\", \"caption.data\"]") == true, "\(String(describing: missing))")
        manifest.fields = [NamedField(name: "labels", dtype: .utf8)]
        try ShardManifest.encoder().encode(manifest).write(to: manifestURL)
        let reserved = #expect(throws: DataError.self) { try ShardedDataset(directory: folder) }
        #expect(reserved?.description.contains("not one of features, labels, pairs") == true, "\(String(describing: reserved))")
    }
}
