import Foundation
import TestSupport
@testable import Config
@testable import RunFiles
@testable import Evaluation
import Testing
@testable import Training

/// Runs `python` (a path, or a name looked up through /usr/bin/env) with `arguments`; nil when it cannot start.
private func runPython(_ python: String, _ arguments: [String]) -> (status: Int32, output: String)? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python.hasPrefix("/") ? python : "/usr/bin/env")
    process.arguments = (python.hasPrefix("/") ? [] : [python]) + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// The first python3 that imports tensorboard (`pip install tensorboard`); without one the
/// TensorBoard-reader test is skipped, not failed.
private let tensorBoardPython: String? = ["/usr/bin/python3", "python3"].first {
    runPython($0, ["-c", "import tensorboard"])?.status == 0
}

/// Loads a run directory with TensorBoard's own readers and prints, as JSON, the scalars
/// EventAccumulator collects (tag -> [[step, value, wall_time]]) and every Event of the first
/// event file as LegacyEventFileLoader decodes it (EventFileLoader would migrate simple_value to a tensor).
private let tensorBoardScript = """
import glob, json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
accumulator.Reload()
scalars = {tag: [[e.step, e.value, e.wall_time] for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
first = sorted(glob.glob(os.path.join(sys.argv[1], "*tfevents*")))[0]
events = [{"wall_time": e.wall_time, "step": e.step, "file_version": e.file_version,
           "values": [[v.tag, v.simple_value] for v in e.summary.value]} for e in LegacyEventFileLoader(first).Load()]
print(json.dumps({"scalars": scalars, "events": events}))
"""

/// What a test writes: per step, a few scalars (one not representable in float32, one large, one negative).
private let written: [(step: Int, wallTime: Double, scalars: [(tag: String, value: Double)])] = (0..<5).map { (i: Int) in
    let x = Double(i)
    let scalars: [(tag: String, value: Double)] = [("train/loss", 4.0 - 0.1 * x), ("train/lr", 1e-3 * (x + 1)), ("eval/knn_accuracy", -1e30 * x)]
    return (step: i * 10, wallTime: 1_700_000_000.25 + x, scalars: scalars)
}

/// `written` as the reader should return it, the oracle: file order, values rounded to float32.
private let expected = written.flatMap { event in
    event.scalars.map { (step: event.step, tag: $0.tag, value: Float($0.value), wallTime: event.wallTime) }
}

/// A writer in a fresh directory with `written` added; returns the file and its size after each record.
private func writeRun(_ label: String) throws -> (file: URL, recordEnds: [Int]) {
    let writer = try TensorBoardWriter(directory: temporaryDirectory(label).appendingPathComponent("tensorboard"), wallTime: 1_700_000_000.25)
    var ends = [try fileSize(writer.file)]
    for event in written {
        try writer.add(event.scalars, step: event.step, wallTime: event.wallTime)
        ends.append(try fileSize(writer.file))
    }
    try writer.flush()
    return (writer.file, ends)
}

private func fileSize(_ url: URL) throws -> Int {
    try #require(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
}

private func matchesExpected(_ scalars: [(step: Int, tag: String, value: Float, wallTime: Double)], prefix count: Int) -> Bool {
    scalars.count == count && zip(scalars, expected).allSatisfy {
        $0.step == $1.step && $0.tag == $1.tag && $0.value.bitPattern == $1.value.bitPattern && $0.wallTime == $1.wallTime
    }
}

@Suite struct TensorBoardTests {
    /// iSCSI's CRC32C test vectors (RFC 3720 B.4) and TensorBoard's masked_crc32c
    /// (tensorboard/compat/tensorflow_stub/pywrap_tensorflow.py); the table agrees with the bitwise reference.
    @Test func crc32cKnownAnswers() {
        #expect(CRC32C.checksum(Array("123456789".utf8)[...]) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)[...]) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)[...]) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0...31).map { UInt8($0) }[...]) == 0x46DD_794E)
        #expect(CRC32C.checksum((0...31).reversed().map { UInt8($0) }[...]) == 0x113F_DB5C)
        #expect(CRC32C.checksum([][...]) == 0)
        #expect(CRC32C.masked(Array("123456789".utf8)[...]) == 0xC78A_B0E5)
        #expect(CRC32C.masked([UInt8](repeating: 0, count: 8)[...]) == 0x0798_0329)
        var generator = SystemRandomNumberGenerator()
        for length in [1, 7, 64, 1000] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(CRC32C.checksum(bytes[...]) == CRC32C.checksumBitwise(bytes[...]))
        }
    }

    @Test func scalarsReadBackInOrderAfterTheFileVersionRecord() throws {
        let (file, ends) = try writeRun("tb-roundtrip")
        #expect(file.lastPathComponent == "events.out.tfevents.1700000000.\(TensorBoardWriter.hostname())")
        #expect(matchesExpected(try TensorBoardReader.scalars(file: file), prefix: expected.count))

        let events = try TensorBoardReader.events(file: file)
        #expect(events.count == written.count + 1)
        #expect(events[0].fileVersion == "brain.Event:2")
        #expect(events[0].wallTime == 1_700_000_000.25 && events[0].values.isEmpty)
        #expect(events.dropFirst().allSatisfy { $0.fileVersion == nil && $0.values.count == 3 })
        #expect(ends.last == (try fileSize(file)))
    }

    @Test func unusualStepsValuesAndTagsRoundTrip() throws {
        let writer = try TensorBoardWriter(directory: temporaryDirectory("tb-unusual"))
        try writer.add([(tag: "nan", value: .nan), (tag: "inf", value: -.infinity), (tag: "τ/温度", value: 0.07)], step: -3)
        try writer.add([], step: 1 << 40)
        try writer.add([(tag: "", value: 0)], step: 0)
        let scalars = try TensorBoardReader.scalars(file: writer.file)
        #expect(scalars.map(\.tag) == ["nan", "inf", "τ/温度", ""])
        #expect(scalars.map(\.step) == [-3, -3, -3, 0])
        #expect(scalars[0].value.isNaN && scalars[1].value == -.infinity && scalars[2].value == Float(0.07))
        #expect(try TensorBoardReader.events(file: writer.file).map(\.step) == [0, -3, 1 << 40, 0])
    }

    /// A resumed run opens a new file; the earlier one is left as it was.
    @Test func aSecondWriterNeverClobbersTheFirst() throws {
        let directory = temporaryDirectory("tb-resume")
        let first = try TensorBoardWriter(directory: directory, wallTime: 1_700_000_000)
        try first.add([(tag: "loss", value: 1)], step: 1)
        let before = try Data(contentsOf: first.file)
        let second = try TensorBoardWriter(directory: directory, wallTime: 1_700_000_000)
        let third = try TensorBoardWriter(directory: directory, wallTime: 1_700_000_000)
        try second.add([(tag: "loss", value: 2)], step: 2)
        #expect(second.file.lastPathComponent == first.file.lastPathComponent + ".1")
        #expect(third.file.lastPathComponent == first.file.lastPathComponent + ".2")
        #expect(try Data(contentsOf: first.file) == before)
        #expect(try TensorBoardReader.scalars(file: second.file).map(\.value) == [2])
    }

    /// A flipped byte in a record's length or data: an error naming the file and that record's offset.
    @Test func aFlippedByteIsAnErrorNamingTheOffset() throws {
        let (file, ends) = try writeRun("tb-flip")
        let original = try Data(contentsOf: file)
        for (position, problem) in [(ends[2] + 3, "length crc32c"), (ends[2] + 12 + 5, "data crc32c"), (ends[3] - 1, "data crc32c")] {
            var damaged = original
            damaged[position] ^= 0x10
            try damaged.write(to: file)
            let error = try #require(throws: TensorBoardError.self) { try TensorBoardReader.scalars(file: file) }
            let recordStart = ends.last { $0 <= position }!
            #expect(error.offset == recordStart)
            #expect(error.problem.contains(problem))
            #expect(error.description.contains("\(file.path) at byte \(recordStart):"))
        }
    }

    /// A last record cut anywhere (header or data): the run is still writing, the complete records are returned.
    @Test func aTruncatedLastRecordReturnsTheCompleteOnes() throws {
        let (file, ends) = try writeRun("tb-truncated")
        let original = try Data(contentsOf: file)
        for (length, completeEvents) in [(ends[3] + 5, 3), (ends[3] + 12, 3), (ends[4] - 1, 3), (ends[1] + 1, 1), (ends[0] - 1, 0), (0, 0)] {
            try original.prefix(length).write(to: file)
            let scalars = try TensorBoardReader.scalars(file: file)
            #expect(matchesExpected(scalars, prefix: completeEvents * 3), "cut at \(length)")
        }
    }

    /// TensorBoard's own readers (EventAccumulator, LegacyEventFileLoader; TFRecord reading checks the CRCs) see what was written.
    @Test(.enabled(if: tensorBoardPython != nil, "needs python3 with tensorboard (pip install tensorboard)"))
    func tensorBoardReadsWhatWasWritten() throws {
        let (file, _) = try writeRun("tb-python")
        let result = try #require(runPython(tensorBoardPython!, ["-c", tensorBoardScript, file.deletingLastPathComponent().path]))
        #expect(result.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])

        let scalars = try #require(json["scalars"] as? [String: [[Double]]])
        #expect(Set(scalars.keys) == Set(expected.map(\.tag)))
        for (tag, points) in scalars {
            let mine = expected.filter { $0.tag == tag }
            #expect(points.map { Int($0[0]) } == mine.map(\.step), "\(tag)")
            #expect(points.map { Float($0[1]) } == mine.map(\.value), "\(tag)")
            #expect(points.map { $0[2] } == mine.map(\.wallTime), "\(tag)")
        }

        let events = try #require(json["events"] as? [[String: Any]])
        #expect(events.count == written.count + 1)
        #expect(events.first?["file_version"] as? String == "brain.Event:2")
        #expect(events.first?["wall_time"] as? Double == 1_700_000_000.25)
        for (event, mine) in zip(events.dropFirst(), written) {
            #expect(event["step"] as? Int == mine.step)
            let values = try #require(event["values"] as? [[Any]])
            #expect(values.map { $0[0] as? String } == mine.scalars.map(\.tag))
            #expect(values.map { ($0[1] as? Double).map(Float.init) } == mine.scalars.map { Float($0.value) })
        }
    }
}
