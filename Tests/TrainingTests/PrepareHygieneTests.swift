import Data
import Foundation
import TestSupport
import Testing

/// `contrast prepare`'s hygiene (issue 19, item 9), through the binary: non-finite floats are
/// refused naming their row, a non-empty output folder is refused unless `--overwrite`, and
/// `--overwrite` leaves exactly the files the new manifest names.
@Suite(.serialized) struct PrepareHygieneTests {
    func run(_ arguments: [String]) throws -> ProcessOutcome { try runProcess(contrastExecutable, arguments, timeout: 300) }

    func writeNPY(_ values: [Float], shape: [Int], _ url: URL) throws -> String {
        try Data(NPYArray.encode(float32: values, shape: shape)).write(to: url)
        return url.path
    }

    @Test func prepareRefusesNonFiniteFloatsNamingTheRow() throws {
        let folder = temporaryDirectory("prepare-nan")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("set").path
        for (bad, word) in [(Float.nan, "nan"), (Float.infinity, "inf"), (-Float.infinity, "-inf")] {
            var values = (0..<(40 * 6)).map { Float($0 % 5) }
            values[17 * 6 + 4] = bad
            values[30 * 6] = bad
            let features = try writeNPY(values, shape: [40, 2, 3], folder.appendingPathComponent("x.npy"))
            expectOneLineError(try run(["prepare", "npy", "--features", features, "--out", out, "--shards", "4"]),
                               mentioning: [features, "row 17, column 4 is \(word)", "not finite"])
            #expect(!FileManager.default.fileExists(atPath: out))
        }
        let allNaN = try writeNPY([Float](repeating: .nan, count: 40 * 6), shape: [40, 6], folder.appendingPathComponent("nan.npy"))
        expectOneLineError(try run(["prepare", "npy", "--features", allNaN, "--out", out, "--shards", "4"]), mentioning: ["row 0, column 0 is nan"])
        let good = try writeNPY((0..<(40 * 6)).map { Float($0 % 5) }, shape: [40, 6], folder.appendingPathComponent("good.npy"))
        var pairValues = [Float](repeating: 1, count: 40 * 3)
        pairValues[5 * 3 + 1] = .nan
        let pairs = try writeNPY(pairValues, shape: [40, 3], folder.appendingPathComponent("pairs.npy"))
        expectOneLineError(try run(["prepare", "npy", "--features", good, "--pairs", pairs, "--out", out, "--shards", "4"]),
                           mentioning: [pairs, "pair row 5, column 1 is nan"])
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func prepareRefusesANonEmptyFolderAndOverwriteLeavesNoStaleFile() throws {
        let folder = temporaryDirectory("prepare-overwrite")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("set").path
        let first = try writeNPY((0..<(40 * 6)).map { Float($0 % 5) }, shape: [40, 6], folder.appendingPathComponent("a.npy"))
        let second = try writeNPY((0..<(30 * 6)).map { Float($0 % 3) }, shape: [30, 6], folder.appendingPathComponent("b.npy"))
        func contents(_ path: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
        let prepared = try run(["prepare", "npy", "--features", first, "--out", out, "--shards", "8"])
        #expect(prepared.status == 0, "\(prepared.error)")
        #expect(try contents(out).count == 9)

        // Without --overwrite a non-empty folder is refused and left as it was.
        let manifest = try Data(contentsOf: URL(fileURLWithPath: out + "/dataset.json"))
        expectOneLineError(try run(["prepare", "npy", "--features", second, "--out", out, "--shards", "2"]),
                           mentioning: [out, "not empty", "--overwrite"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/dataset.json")) == manifest)
        #expect(try contents(out).count == 9)
        // A failure while writing (more shards than samples) leaves the old data set too.
        expectOneLineError(try run(["prepare", "npy", "--features", second, "--out", out, "--shards", "31", "--overwrite"]),
                           mentioning: ["--shards 30"])
        #expect(try ShardedDataset(directory: out).sampleCount == 40)

        // --overwrite with fewer shards: exactly the new manifest's files remain, nothing beside the folder.
        try Data("stray".utf8).write(to: URL(fileURLWithPath: out + "/notes.txt"))
        let replaced = try run(["prepare", "npy", "--features", second, "--out", out, "--shards", "2", "--overwrite"])
        #expect(replaced.status == 0, "\(replaced.error)")
        let dataset = try ShardedDataset(directory: out)
        #expect(dataset.sampleCount == 30 && dataset.shardCount == 2)
        #expect(try contents(out) == (["dataset.json"] + dataset.manifest.shards.map(\.file)).sorted())
        #expect(try contents(folder.path) == ["a.npy", "b.npy", "set"])

        // An empty folder is fine without --overwrite.
        let empty = folder.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect(try run(["prepare", "npy", "--features", second, "--out", empty, "--shards", "2"]).status == 0)
        #expect(try ShardedDataset(directory: empty).sampleCount == 30)
    }
}
