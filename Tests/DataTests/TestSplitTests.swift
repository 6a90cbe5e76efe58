import Foundation
import Testing
@testable import Data

/// `prepare npy`'s test split: `--test-fraction` (a seeded random draw) and `--test-features`
/// (the user's own arrays), written as OUT/train and OUT/test.
struct TestSplitTests {
    /// 40 samples of [2, 3] float32 features, sorted by class (4 classes of 10): feature value
    /// 1000 x class + row, so every row can be traced back to its source row.
    func sortedSet(in folder: String, rows: Int = 40) throws -> (features: String, labels: String) {
        let features = folder + "/x.npy", labels = folder + "/y.npy"
        let classes = (0..<rows).map { $0 * 4 / rows }
        var values: [Float] = []
        for row in 0..<rows {
            for column in 0..<6 { values.append(Float(1000 * classes[row] + row) + Float(column) / 10) }
        }
        try NPYArray.encode(float32: values, shape: [rows, 2, 3]).write(to: URL(fileURLWithPath: features))
        try NPYArray.encode(int64: classes.map { Int64($0) }, shape: [rows]).write(to: URL(fileURLWithPath: labels))
        return (features, labels)
    }

    /// Every sample of a prepared folder: its source row (from the feature value) and label.
    func rows(_ directory: String) throws -> [(row: Int, label: Int64)] {
        let dataset = try ShardedDataset(directory: directory)
        var result: [(Int, Int64)] = []
        for shard in 0..<dataset.shardCount {
            let block = try dataset.readShard(shard)
            guard case .float32(let values) = block.features else { Issue.record("not float32"); return [] }
            for sample in 0..<block.count {
                result.append((Int(values[sample * 6]) % 1000, block.labels![sample]))
            }
        }
        return result
    }

    @Test func testRowsAreASeededRandomDrawOfTheRoundedFraction() throws {
        let rows = try DatasetPreparation.testRows(sampleCount: 1_000, fraction: 0.2, seed: 0)
        #expect(rows.count == 200 && rows == rows.sorted() && Set(rows).count == 200 && rows.allSatisfy { (0..<1_000).contains($0) })
        // Pinned: a user's split must not change between versions for the same seed and files.
        #expect(Array(rows.prefix(8)) == Self.pinnedSeed0)
        // Not the last rows: each quarter of sorted input (a class) gets a share near 50.
        for quarter in 0..<4 {
            let share = rows.filter { $0 / 250 == quarter }.count
            #expect((30...70).contains(share), "quarter \(quarter): \(share)")
        }
        let other = try DatasetPreparation.testRows(sampleCount: 1_000, fraction: 0.2, seed: 1)
        #expect(other.count == 200 && other != rows)
        #expect(try DatasetPreparation.testRows(sampleCount: 7, fraction: 0.5, seed: 0).count == 4)   // round(3.5)

        #expect(throws: DataError.testSplitEmpty(fraction: 0.01, sampleCount: 40, testCount: 0)) {
            try DatasetPreparation.testRows(sampleCount: 40, fraction: 0.01, seed: 0)
        }
        let none = DataError.testSplitEmpty(fraction: 0.99, sampleCount: 40, testCount: 40)
        #expect(none.description.contains("no training sample") && none.description.contains("e.g. 0.2"))
    }

    static let pinnedSeed0 = [3, 4, 9, 11, 13, 15, 17, 21]

    @Test func fractionWritesTrainTestAndTheirRowNumbers() throws {
        try withTemporaryDirectory { folder in
            let (features, labels) = try sortedSet(in: folder)
            let out = folder + "/set"
            let summaries = try DatasetPreparation.npy(features: features, labels: labels, test: .fraction(0.25, seed: 3), out: out,
                                                       layout: .count(8))
            #expect(summaries.map(\.directory) == [out + "/train", out + "/test"])
            #expect(summaries.map(\.sampleCount) == [30, 10] && summaries.map(\.shardCount) == [8, 8])
            #expect(ShardedDataset.splits(of: out) == (out + "/train", out + "/test"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["test", "test-rows.npy", "train"])

            let train = try rows(out + "/train"), test = try rows(out + "/test")
            let expectedTest = try DatasetPreparation.testRows(sampleCount: 40, fraction: 0.25, seed: 3)
            // Each split keeps the source order; together they are every row once; labels travel with their rows.
            #expect(test.map(\.row) == expectedTest)
            #expect(train.map(\.row) == (0..<40).filter { !expectedTest.contains($0) })
            #expect((train + test).allSatisfy { $0.label == Int64($0.row * 4 / 40) })
            #expect(try NPYArray(path: out + "/test-rows.npy").int64Values() == expectedTest.map { Int64($0) })
            // Features are the source values bit for bit, not only their first column.
            let source = try NPYArray(path: features).float32Values()
            let dataset = try ShardedDataset(directory: out + "/test")
            var values: [Float] = []
            for shard in 0..<dataset.shardCount { if case .float32(let v) = try dataset.readShard(shard).features { values += v } }
            #expect(values == expectedTest.flatMap { source[($0 * 6)..<($0 * 6 + 6)] })

            // A test split smaller than the shard count is cut into one shard per sample.
            let small = try DatasetPreparation.npy(features: features, labels: labels, test: .fraction(0.1, seed: 0), out: folder + "/small",
                                                   layout: .count(8))
            #expect(small.map(\.shardCount) == [8, 4])
            // A fraction leaving nothing to test is refused before anything is written.
            #expect(throws: DataError.testSplitEmpty(fraction: 0.01, sampleCount: 40, testCount: 0)) {
                _ = try DatasetPreparation.npy(features: features, test: .fraction(0.01, seed: 0), out: folder + "/none", layout: .count(4))
            }
            #expect(!FileManager.default.fileExists(atPath: folder + "/none"))
        }
    }

    @Test func ownTestFilesAreCheckedAsTheTrainingFilesAndAgainstThem() throws {
        try withTemporaryDirectory { folder in
            let (features, labels) = try sortedSet(in: folder)
            let testFolder = folder + "/t"
            try FileManager.default.createDirectory(atPath: testFolder, withIntermediateDirectories: true)
            let (testFeatures, testLabels) = try sortedSet(in: testFolder, rows: 12)
            let out = folder + "/set"
            let summaries = try DatasetPreparation.npy(features: features, labels: labels,
                                                       test: .files(features: testFeatures, labels: testLabels, pairs: nil), out: out, layout: .count(4))
            #expect(summaries.map(\.sampleCount) == [40, 12] && summaries.map(\.shardCount) == [4, 4])
            #expect(try rows(out + "/test").map(\.row) == Array(0..<12))
            #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["test", "train"])

            func problem(_ test: TestSplit) -> String {
                do { _ = try DatasetPreparation.npy(features: features, labels: labels, test: test, out: folder + "/bad", layout: .count(4)) }
                catch { return "\(error)" }
                return "no error"
            }
            // Another sample shape, another dtype, a NaN, missing labels: one line each, nothing written.
            let wide = testFolder + "/wide.npy", bytes = testFolder + "/u1.npy", nan = testFolder + "/nan.npy"
            try NPYArray.encode(float32: [Float](repeating: 1, count: 12 * 7), shape: [12, 7]).write(to: URL(fileURLWithPath: wide))
            try NPYArray.encode(float32: [Float](repeating: .nan, count: 12 * 6), shape: [12, 2, 3]).write(to: URL(fileURLWithPath: nan))
            try (NPYArray.header(descr: "|u1", shape: [12, 2, 3]) + Data(repeating: 7, count: 12 * 6)).write(to: URL(fileURLWithPath: bytes))
            let shape = problem(.files(features: wide, labels: testLabels, pairs: nil))
            #expect(shape.contains(wide) && shape.contains("float32 [7]") && shape.contains("float32 [2, 3]") && shape.contains("same dtype and sample shape"),
                    "\(shape)")
            let dtype = problem(.files(features: bytes, labels: testLabels, pairs: nil))
            #expect(dtype.contains("uint8 [2, 3]") && dtype.contains("float32 [2, 3]"), "\(dtype)")
            let notFinite = problem(.files(features: nan, labels: testLabels, pairs: nil))
            #expect(notFinite.contains(nan) && notFinite.contains("feature row 0, column 0 is nan"), "\(notFinite)")
            let unlabeled = problem(.files(features: testFeatures, labels: nil, pairs: nil))
            #expect(unlabeled.contains("--test-labels"), "\(unlabeled)")
            let miscounted = problem(.files(features: testFeatures, labels: labels, pairs: nil))
            #expect(miscounted.contains("holds 12 samples") && miscounted.contains("holds 40"), "\(miscounted)")
            #expect(!FileManager.default.fileExists(atPath: folder + "/bad"))
        }
    }
}
