import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Data
@testable import Training

/// Faults found by launch/faults.sh (docs/reliability.md), each pinned here so it stays fixed.
@Suite struct FaultRegressionTests {
    /// A full disk under the logs: `FileHandle.write(_:)` trapped (a stack trace from inside a
    /// log call). Now each line that cannot be written is dropped and counted, and the run goes
    /// on to its checkpoint, which stops it with an error. /dev/full fails every write with ENOSPC.
    @Test func logWritesOnAFullDiskAreDroppedNotFatal() throws {
        try #require(FileManager.default.fileExists(atPath: "/dev/full"), "needs /dev/full")
        let directory = temporaryDirectory("full-log")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("metrics"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("train.log").path, withDestinationPath: "/dev/full")
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("metrics/rank-0.jsonl").path,
                                                   withDestinationPath: "/dev/full")
        let log = try RunLog(directory: directory, rank: 0, echo: false)
        log.info("a line for train.log")
        log.record("event", [("step", .int(1))])
        log.warn("a warning: one more line for each file", step: 1)
        #expect(log.droppedLines == 4)
    }

    /// A prepared data set of 64 uint8 8x8 images in 4 shards with `labels`.
    func dataset(labels: [Int64]) throws -> String {
        let folder = temporaryDirectory("labels").appendingPathComponent("data").path
        let features = (0..<(64 * 64)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try ShardedDatasetWriter.write(SampleBlock(count: 64, features: .uint8(features), labels: labels),
                                       featureShape: [8, 8], to: folder, layout: .count(4))
        return folder
    }

    func load(_ folder: String, _ extra: [String] = []) throws -> TrainingData {
        let config = try smokeConfig(["data.dataset=prepared", "data.path=\(folder)", "data.train_limit=0", "data.batch_per_rank=8"] + extra)
        return try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: true)
    }

    /// Labels outside 0 ..< 2^24 trapped in the first SupCon step (Float -> Int32) or would merge
    /// classes; now they stop the run while the data is read, naming the sample and the label.
    @Test func labelsOutOfRangeAreRefusedWhenTheDataIsRead() throws {
        var good = (0..<64).map { Int64($0 % 10) }
        good[5] = TrainingData.labelLimit - 1
        _ = try load(try dataset(labels: good), ["loss.kind=supcon"])
        for bad: Int64 in [-1, TrainingData.labelLimit, 1 << 40] {
            var labels = good
            labels[37] = bad
            let folder = try dataset(labels: labels)
            let error = #expect(throws: RunDirectory.Failure.self) { try load(folder, ["loss.kind=supcon"]) }
            #expect(error?.description.contains("sample 37 of the training split has label \(bad)") == true, "\(String(describing: error))")
            #expect(throws: RunDirectory.Failure.self) { try load(folder) }      // also for ntxent: kNN evaluation reads labels
        }
    }
}
