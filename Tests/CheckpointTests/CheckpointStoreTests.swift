import Distributed
import Foundation
import Testing
@testable import Checkpoint

@Suite struct CheckpointStoreTests {
    @Test func roundTripIsBitExact() throws {
        try withRunDirectory { run in
            let state = smallState()
            let directory = try save(state, to: run, step: 42)
            #expect(directory.lastPathComponent == "step-000000042")
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("shard-0-of-1.bin").path))
            let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
            #expect(latest == "step-000000042\n")
            #expect(CheckpointStore.latest(runDirectory: run) == directory)

            let manifest = try CheckpointStore.manifest(at: directory)
            #expect(manifest.formatVersion == CheckpointManifest.currentFormatVersion && manifest.step == 42 && manifest.worldSize == 1)
            #expect(manifest.buffers.map(\.name) == ["parameters", "adam.m", "adam.v", "temperature", "empty"])
            #expect(manifest.compression == .init(level: 3, shuffle: true))
            #expect(manifest.state == sampleState)  // verbatim, 64-bit integer included
            try CheckpointStore.verify(directory)

            let loaded = state.emptyCopy()
            let returned = try CheckpointStore.load(directory, into: loaded.buffers.reversed())  // order is free
            #expect(returned == sampleState)
            #expect(loaded.bitEqual(state))
        }
    }

    @Test(arguments: [Int32(1), 3])
    func plainAndShuffledBothLoad(level: Int32) throws {
        var sizes: [Bool: Int] = [:]
        for shuffle in [false, true] {
            try withRunDirectory { run in
                let state = smallState()
                let directory = try save(state, to: run, step: 1, settings: .init(level: level, shuffle: shuffle))
                let manifest = try CheckpointStore.manifest(at: directory)
                #expect(manifest.shards[0].frames.allSatisfy { $0.transform == (shuffle ? "shuffle4+zstd" : "zstd") })
                sizes[shuffle] = manifest.shards[0].bytes
                let loaded = state.emptyCopy()
                _ = try CheckpointStore.load(directory, into: loaded.buffers)
                #expect(loaded.bitEqual(state))
            }
        }
        #expect(sizes[true]! < sizes[false]!, "shuffled \(sizes[true]!) bytes vs plain \(sizes[false]!)")
    }

    @Test func listIgnoresDirectoriesWithoutManifestAndOrdersBySteps() throws {
        try withRunDirectory { run in
            let state = smallState()
            for step in [5, 100, 20] { _ = try save(state, to: run, step: step) }
            let checkpoints = run.appendingPathComponent("checkpoints")
            for name in ["step-000000200", "step-abc", "other"] {
                try FileManager.default.createDirectory(at: checkpoints.appendingPathComponent(name), withIntermediateDirectories: true)
            }
            try Data("step-000000005\n".utf8).write(to: checkpoints.appendingPathComponent("latest"))
            #expect(CheckpointStore.list(runDirectory: run).map(\.lastPathComponent) == ["step-000000100", "step-000000020", "step-000000005"])
            #expect(CheckpointStore.list(runDirectory: run.appendingPathComponent("nothing")).isEmpty)
        }
    }

    @Test func errorsNameTheDamagedFile() throws {
        try withRunDirectory { run in
            let state = smallState()
            let directory = try save(state, to: run, step: 7)
            let shard = directory.appendingPathComponent("shard-0-of-1.bin")
            let manifestFile = directory.appendingPathComponent("manifest.json")
            let original = try Data(contentsOf: shard)
            let originalManifest = try Data(contentsOf: manifestFile)

            // One flipped byte in the middle of a frame.
            var flipped = original
            flipped[flipped.count / 2] ^= 0x10
            try flipped.write(to: shard)
            let verifyFlip = checkpointError { try CheckpointStore.verify(directory) }
            #expect(verifyFlip?.kind == .corrupt && verifyFlip?.file == shard.path)
            #expect(verifyFlip?.description.contains("crc32") == true)
            let target = state.emptyCopy()
            let loadFlip = checkpointError { _ = try withExtendedLifetime(target) { try CheckpointStore.load(directory, into: target.buffers) } }
            #expect(loadFlip?.kind == .corrupt && loadFlip?.file == shard.path)

            // Truncated.
            try original.prefix(original.count - 100).write(to: shard)
            let truncated = checkpointError { try CheckpointStore.verify(directory) }
            #expect(truncated?.kind == .corrupt && truncated?.file == shard.path)
            #expect(truncated?.description.contains("truncated") == true)

            // Missing.
            try FileManager.default.removeItem(at: shard)
            let missing = checkpointError { try CheckpointStore.verify(directory) }
            #expect(missing?.kind == .missing && missing?.file == shard.path)
            try original.write(to: shard)
            try CheckpointStore.verify(directory)

            // Corrupt manifest: cut short, and valid JSON with a wrong field.
            try originalManifest.prefix(originalManifest.count / 2).write(to: manifestFile)
            let cut = checkpointError { try CheckpointStore.verify(directory) }
            #expect(cut?.kind == .corrupt && cut?.file == manifestFile.path)
            let wrong = String(decoding: originalManifest, as: UTF8.self).replacingOccurrences(of: "\"bytes\" : ", with: "\"bytes\" : 1")
            try Data(wrong.utf8).write(to: manifestFile)
            let badSize = checkpointError { try CheckpointStore.verify(directory) }
            #expect(badSize?.kind == .corrupt && badSize?.file == manifestFile.path)
            print(cut!, badSize!, separator: "\n")
        }
    }

    @Test func unknownMajorVersionIsRejected() throws {
        try withRunDirectory { run in
            let directory = try save(smallState(), to: run, step: 3)
            let file = directory.appendingPathComponent("manifest.json")
            let text = try String(contentsOf: file, encoding: .utf8)
            let current = "\"formatVersion\" : \"\(CheckpointManifest.currentFormatVersion)\""
            #expect(text.contains(current))
            try Data(text.replacingOccurrences(of: current, with: "\"formatVersion\" : \"2.0\"").utf8).write(to: file)
            let error = checkpointError { _ = try CheckpointStore.manifest(at: directory) }
            #expect(error?.kind == .unsupportedVersion && error?.file == file.path)
            #expect(error?.description.contains("2.0") == true && error?.description.contains("1.x") == true)

            // A newer minor reads; its checksum covers the version, so the edit is resealed.
            let newer = Data(text.replacingOccurrences(of: current, with: "\"formatVersion\" : \"1.7\"").utf8)
            let stateEnd = try #require(try JSONScan.valueRange(ofTopLevelKey: "state", in: newer)).upperBound
            let old = "\"\(CheckpointManifest.checksumKey)\" : \"\(CheckpointManifest.checksum(of: Data(text.utf8), end: stateEnd))\""
            let resealed = "\"\(CheckpointManifest.checksumKey)\" : \"\(CheckpointManifest.checksum(of: newer, end: stateEnd))\""
            #expect(text.contains(old))
            try Data(String(decoding: newer, as: UTF8.self).replacingOccurrences(of: old, with: resealed).utf8).write(to: file)
            #expect(try CheckpointStore.manifest(at: directory).formatVersion == "1.7")
            // Unsealed, the same edit is damage.
            try Data(text.replacingOccurrences(of: current, with: "\"formatVersion\" : \"1.7\"").utf8).write(to: file)
            #expect(checkpointError { _ = try CheckpointStore.manifest(at: directory) }?.description.contains("manifest checksum") == true)
        }
    }

    /// A manifest of format 1.1 or later without its checksum is refused; a 1.0 manifest (written
    /// before the checksum existed) still loads.
    @Test func manifestChecksumIsRequiredFromFormat11() throws {
        try withRunDirectory { run in
            let state = smallState()
            let directory = try save(state, to: run, step: 4)
            let file = directory.appendingPathComponent("manifest.json")
            let text = try String(contentsOf: file, encoding: .utf8)
            let field = try #require(text.range(of: ",\n  \"\(CheckpointManifest.checksumKey)\" : \"[0-9a-f]{8}\"", options: .regularExpression))
            var unsealed = text
            unsealed.removeSubrange(field)
            try Data(unsealed.utf8).write(to: file)
            #expect(checkpointError { _ = try CheckpointStore.manifest(at: directory) }?.description
                        .contains("manifest has no \"\(CheckpointManifest.checksumKey)\"") == true)
            let old = unsealed.replacingOccurrences(of: "\"formatVersion\" : \"\(CheckpointManifest.currentFormatVersion)\"",
                                                    with: "\"formatVersion\" : \"1.0\"")
            try Data(old.utf8).write(to: file)
            #expect(try CheckpointStore.manifest(at: directory).step == 4)
            try CheckpointStore.verify(directory)
        }
    }

    @Test func loadRejectsOtherBuffers() throws {
        try withRunDirectory { run in
            let state = smallState()
            let directory = try save(state, to: run, step: 1)
            let other = TestState()
            other.add("parameters", count: 10_008, scale: 1)
            let error = checkpointError { _ = try CheckpointStore.load(directory, into: other.buffers) }
            #expect(error?.kind == .mismatch)
            #expect(error?.description.contains("parameters[10008]") == true)
        }
    }

    @Test func stateMustBeAJSONObject() throws {
        try withRunDirectory { run in
            let state = smallState()
            let error = checkpointError {
                _ = try CheckpointStore.save(runDirectory: run, step: 1, buffers: state.buffers, state: Data("[1, 2".utf8),
                                             communicator: SingleProcessCommunicator(), settings: .init())
            }
            #expect(error?.kind == .mismatch && error?.description.contains("not a JSON object") == true)
            #expect(CheckpointStore.list(runDirectory: run).isEmpty)
        }
    }

    @Test func pruneKeepsTheRightOnes() throws {
        try withRunDirectory { run in
            let state = TestState()
            state.add("p", count: 10, scale: 1)
            for step in stride(from: 10, through: 100, by: 10) { _ = try save(state, to: run, step: step) }
            let checkpoints = run.appendingPathComponent("checkpoints")
            for name in ["step-000000035", "step-000000200"] {  // partial: one older, one newer than the newest
                try FileManager.default.createDirectory(at: checkpoints.appendingPathComponent(name), withIntermediateDirectories: true)
            }
            try Data().write(to: checkpoints.appendingPathComponent("latest.tmp"))
            try Data().write(to: checkpoints.appendingPathComponent("step-000000100/shard-0-of-1.bin.tmp"))

            try CheckpointStore.prune(runDirectory: run, keepLast: 2, keepEvery: 50)
            #expect(CheckpointStore.list(runDirectory: run).map(\.lastPathComponent) == ["step-000000100", "step-000000090", "step-000000050"])
            let left = try FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted()
            #expect(left == ["latest", "step-000000050", "step-000000090", "step-000000100", "step-000000200"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: checkpoints.appendingPathComponent("step-000000100").path).sorted()
                == ["manifest.json", "shard-0-of-1.bin"])

            try CheckpointStore.prune(runDirectory: run, keepLast: 0, keepEvery: 0)  // still keeps the newest
            #expect(CheckpointStore.list(runDirectory: run).map(\.lastPathComponent) == ["step-000000100"])
            #expect(CheckpointStore.latest(runDirectory: run)?.lastPathComponent == "step-000000100")
        }
    }

    /// Every crash point, simulated in-process: the files are left as a crash leaves them,
    /// and the newest complete checkpoint is the old one until the manifest is renamed.
    @Test(arguments: CrashPoint.allCases)
    func crashLeavesTheLastCompleteCheckpoint(point: CrashPoint) throws {
        try withRunDirectory { run in
            let state = smallState()
            let previous = try save(state, to: run, step: 10)
            let error = checkpointError {
                try CrashPoint.$simulated.withValue(.init(point.rawValue + "@step=20")) { _ = try save(state, to: run, step: 20) }
            }
            #expect(error?.kind == .simulatedCrash)
            let committed: Set<CrashPoint> = [.afterManifestRename, .beforeLatest, .afterLatest]
            let newest = try #require(CheckpointStore.list(runDirectory: run).first)
            #expect(newest.lastPathComponent == (committed.contains(point) ? "step-000000020" : "step-000000010"))
            #expect(CheckpointStore.latest(runDirectory: run)?.lastPathComponent == (point == .afterLatest ? "step-000000020" : "step-000000010"))
            try CheckpointStore.verify(newest)
            let loaded = state.emptyCopy()
            _ = try CheckpointStore.load(newest, into: loaded.buffers)
            #expect(loaded.bitEqual(state))
            try CheckpointStore.verify(previous)

            // The next save of the same step repairs whatever the crash left.
            _ = try save(state, to: run, step: 20)
            try CheckpointStore.prune(runDirectory: run, keepLast: 5, keepEvery: 0)
            let files = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("checkpoints/step-000000020").path)
            #expect(files.sorted() == ["manifest.json", "shard-0-of-1.bin"])
        }
    }

    @Test func crashTriggerParses() {
        #expect(CrashPoint.Trigger("after-shard-tmp") == .init(point: .afterShardTmp, rank: nil, step: nil))
        let trigger = CrashPoint.Trigger("before-latest@rank=1@step=30")
        #expect(trigger == .init(point: .beforeLatest, rank: 1, step: 30))
        #expect(trigger?.matches(.beforeLatest, rank: 1, step: 30) == true)
        #expect(trigger?.matches(.beforeLatest, rank: 0, step: 30) == false)
        #expect(CrashPoint.Trigger("nowhere") == nil && CrashPoint.Trigger("after-latest@bank=1") == nil)
    }

    @Test func failedRankMeansNoManifest() throws {
        try withRunDirectory { run in
            let state = smallState()
            _ = try save(state, to: run, step: 10)
            let failure = CheckpointStore.ShardOutcome(rank: 1, file: "shard-1-of-2.bin", shard: nil,
                                                       error: "write failed: No space left on device", kind: "diskFull")
            let communicator = try ScriptedCommunicator(size: 2, others: [failure])
            let error = checkpointError { _ = try save(state, to: run, step: 20, communicator: communicator) }
            #expect(error?.kind == .rankFailed)
            #expect(error?.file.hasSuffix("step-000000020/shard-1-of-2.bin") == true)
            #expect(error?.description.contains("rank 1 of 2") == true)
            let directory = run.appendingPathComponent("checkpoints/step-000000020")
            #expect(!FileManager.default.fileExists(atPath: directory.path))  // own shard and the directory removed too
            #expect(CheckpointStore.list(runDirectory: run).map(\.lastPathComponent) == ["step-000000010"])
        }
    }

    /// A checkpoint written by 3 ranks (in small frames) loads on 1, and any element range
    /// of a buffer reads right across frame and shard boundaries.
    @Test func loadsACheckpointWrittenByOtherRankCount() throws {
        try withRunDirectory { run in
            let state = smallState()
            let directory = run.appendingPathComponent("checkpoints/step-000000005")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let shards = try (0..<3).map { rank in
                try CheckpointStore.writeShard(directory: directory, file: CheckpointStore.shardName(rank: rank, size: 3), buffers: state.buffers,
                                               rank: rank, size: 3, step: 5, settings: .init(), frameElements: 1000)
            }
            let manifest = CheckpointManifest(formatVersion: "1.0", step: 5, worldSize: 3, created: "2025-01-01T00:00:00Z",
                                              buffers: state.buffers.map { .init(name: $0.name, count: $0.count) }, shards: shards,
                                              compression: .init(level: 3, shuffle: true), state: sampleState)
            try CheckpointStore.commit(manifest, directory: directory, rank: 0, step: 5)
            try CheckpointStore.verify(directory)
            #expect(shards.map(\.frames.count) == [13, 12, 12])  // 3336 + 3336 + 3335 of each in frames of 1000; temperature on rank 0

            let loaded = state.emptyCopy()
            #expect(try CheckpointStore.load(directory, into: loaded.buffers) == sampleState)
            #expect(loaded.bitEqual(state))

            let reader = try CheckpointReader(directory: directory, manifest: try CheckpointStore.manifest(at: directory))
            let source = state.arrays[1].values
            for range in [0..<1, 999..<1001, 3000..<7000, 3335..<3337, 10_006..<10_007, 0..<10_007] {
                let part = UnsafeMutablePointer<Float>.allocate(capacity: range.count)
                defer { part.deallocate() }
                try reader.read(buffer: "adam.m", elements: range, into: part)
                #expect(memcmp(part, source + range.lowerBound, range.count * 4) == 0, "elements \(range)")
            }
        }
    }

    @Test func stateIsFoundAmongOtherValues() throws {
        let json = Data(#"{"a":"}\"{","state" : {"x":[1,{"y":"]"}],"z":"\\"} , "b":2}"#.utf8)
        let range = try #require(try JSONScan.valueRange(ofTopLevelKey: "state", in: json))
        #expect(String(decoding: json[range], as: UTF8.self) == #"{"x":[1,{"y":"]"}],"z":"\\"}"#)
        #expect(try JSONScan.valueRange(ofTopLevelKey: "missing", in: json) == nil)
        let scalar = Data(#"{"state": 12345678901234567890 }"#.utf8)
        #expect(try JSONScan.valueRange(ofTopLevelKey: "state", in: scalar).map { String(decoding: scalar[$0], as: UTF8.self) } == "12345678901234567890")
    }
}
