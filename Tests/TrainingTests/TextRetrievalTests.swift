import Foundation
import Testing
import TestSupport
@testable import Config
@testable import Data
@testable import Text
@testable import Training

/// A text set's tokenized samples and its retrieval task, on a set small enough to write out:
/// the BERT rows, the pair ids (group, else the positive's hash), the truncation count, the
/// corpus of distinct positives and each query's relevant documents.
struct TextRetrievalTests {
    static let vocabulary = try! Vocabulary(tokens: Vocabulary.specialTokens + ["a", "b", "c", "x", "y", "z"])

    func write(_ texts: [String], _ positives: [String], groups: [Int64]? = nil, scores: [Float]? = nil) throws -> ShardedDataset {
        let folder = temporaryDirectory("text-samples").path
        var fields: [String: FieldValues] = ["text": .variable(VariableValues(strings: texts)),
                                             "positive": .variable(VariableValues(strings: positives))]
        var named = [NamedField(name: "text", dtype: .utf8), NamedField(name: "positive", dtype: .utf8)]
        if let groups { fields["group"] = .int64(groups); named.append(NamedField(name: "group", dtype: .int64, shape: [])) }
        if let scores { fields["score"] = .float32(scores); named.append(NamedField(name: "score", dtype: .float32, shape: [])) }
        try ShardedDatasetWriter.write(SampleBlock(count: texts.count, features: nil, fields: fields), featureShape: nil, fields: named,
                                       to: folder, layout: .count(2))
        return try ShardedDataset(directory: folder)
    }

    func samples(_ dataset: ShardedDataset, tokens: Int = 5, overlong: OverlongTextKind = .truncate) throws -> TextSamples {
        try TextSamples(dataset, shards: 0..<dataset.shardCount, limit: 0, tokenizer: WordPieceTokenizer(vocabulary: Self.vocabulary),
                        tokens: tokens, overlong: overlong)
    }

    @Test func rowsIdsAndTruncation() throws {
        let dataset = try write(["a b", "a b c a", "c", "A"], ["x", "y", "x", "z z"])
        let texts = try samples(dataset)
        // [CLS] = 2, [SEP] = 3, a = 5 ...: "a b c a" is 6 tokens, cut to 5.
        #expect(texts.truncated == 1)
        var row = [Float](repeating: -1, count: 15)
        row.withUnsafeMutableBufferPointer { texts.anchors.writeRow(0, tokens: 5, padding: 0, into: $0.baseAddress!) }
        #expect(row == [2, 5, 6, 3, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
        row.withUnsafeMutableBufferPointer { texts.anchors.writeRow(1, tokens: 5, padding: 0, into: $0.baseAddress!) }
        #expect(row == [2, 5, 6, 7, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
        // Lower-cased by default: "A" is "a".
        row.withUnsafeMutableBufferPointer { texts.anchors.writeRow(3, tokens: 5, padding: 0, into: $0.baseAddress!) }
        #expect(Array(row.prefix(5)) == [2, 5, 3, 0, 0])
        // Without a group, the pair id is the positive's hash: equal positives, equal ids, on any reading.
        #expect(texts.pairIds[0] == texts.pairIds[2] && texts.pairIds[0] != texts.pairIds[1] && texts.pairIds[0] == TextSamples.hash("x"))
        let error = #expect(throws: ConfigError.self) { try samples(dataset, overlong: .error) }
        #expect(error?.description.contains("sample 1 of the data set \(dataset.directory) has a text of 6 tokens, more than model.bert.max_length 5") == true,
                "\(String(describing: error))")
    }

    /// The ids carried in the batch: small groups exactly, hashes folded below 2^24.
    @Test func carriedIds() {
        #expect(TextSamples.carried(12345) == 12345)
        let folded = TextSamples.carried(TextSamples.hash("the same answer"))
        #expect(folded >= 0 && folded < 16_777_216 && folded == folded.rounded())
        #expect(TextSamples.carried(TextSamples.hash("x")) == TextSamples.carried(TextSamples.hash("x")))
    }

    /// Queries a, b, c, a b; positives x, y, x, z: the corpus is x, y, z (x once); with groups
    /// {0, 0, 1, 2} query 0's relevant documents are x (its own) and y (its group's), query 2's x.
    @Test func corpusAndRelevance() throws {
        let grouped = TextRetrieval(try samples(try write(["a", "b", "c", "a b"], ["x", "y", "x", "z"], groups: [0, 0, 1, 2], scores: [1, 2, 3, 4])))
        #expect(grouped.documentCount == 3 && grouped.queryCount == 4)
        #expect(grouped.documentOf == [0, 1, 0, 2])
        #expect(grouped.relevant == [[0, 1], [0, 1], [0], [2]])
        #expect(grouped.scores == [1, 2, 3, 4])
        // Without groups: a query's own positive only, equal texts one document.
        let plain = TextRetrieval(try samples(try write(["a", "b", "c", "a b"], ["x", "y", "x", "z"])))
        #expect(plain.relevant == [[0], [1], [0], [2]] && plain.scores == nil)
    }
}
