import Foundation
import Testing
@testable import Checkpoint

/// Mounts a tmpfs of `kilobytes` at a fresh directory (root only), else returns nil.
private func mountSmallFileSystem(kilobytes: Int) -> URL? {
    let point = FileManager.default.temporaryDirectory.appendingPathComponent("contrast-full-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: point, withIntermediateDirectories: true)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/mount")
    process.arguments = ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", point.path]
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { try? FileManager.default.removeItem(at: point); return nil }
    return point
}

private func unmount(_ point: URL) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/umount")
    process.arguments = [point.path]
    try? process.run()
    process.waitUntilExit()
    try? FileManager.default.removeItem(at: point)
}

@Suite struct DiskFullTests {
    /// A write that runs out of space: a clear error, no temporary file left, no manifest, and
    /// the previous checkpoint intact and loadable. On a real 256 KiB tmpfs when the tests run as
    /// root, else with a simulated capacity (writes fail with ENOSPC past it).
    @Test func diskFullLeavesThePreviousCheckpoint() throws {
        let small = TestState()
        small.add("parameters", count: 20_000, scale: 0.03)
        let large = TestState()
        large.add("parameters", count: 200_000, scale: 0.03)  // ~700 KB compressed: does not fit

        let mounted = mountSmallFileSystem(kilobytes: 256)
        defer { if let mounted { unmount(mounted) } }
        let run = mounted ?? FileManager.default.temporaryDirectory.appendingPathComponent("contrast-full-\(UUID().uuidString)")
        defer { if mounted == nil { try? FileManager.default.removeItem(at: run) } }

        let previous = try save(small, to: run, step: 1)
        let error = checkpointError {
            if mounted != nil {
                _ = try save(large, to: run, step: 2)
            } else {
                try FileIO.$simulatedCapacity.withValue(200_000) { _ = try save(large, to: run, step: 2) }
            }
        }
        let failure = try #require(error)
        print("disk full (\(mounted == nil ? "simulated" : "tmpfs")): \(failure)")
        #expect(failure.kind == .diskFull)
        #expect(failure.file.hasSuffix("step-000000002/shard-0-of-1.bin"))
        #expect(failure.description.contains("No space left on device"))
        // No step-000000002/ at all: an empty one looks like a checkpoint that is not one (issue 19).
        let directory = run.appendingPathComponent("checkpoints/step-000000002")
        #expect(!FileManager.default.fileExists(atPath: directory.path))

        #expect(CheckpointStore.list(runDirectory: run) == [previous])
        #expect(CheckpointStore.latest(runDirectory: run) == previous)
        try CheckpointStore.verify(previous)
        let loaded = small.emptyCopy()
        _ = try CheckpointStore.load(previous, into: loaded.buffers)
        #expect(loaded.bitEqual(small))
    }

    /// The disk fills between the shards and the manifest (the shard fits, the manifest does not):
    /// the shards written are deleted with their directory, the previous checkpoint stays the newest.
    @Test func manifestThatDoesNotFitLeavesNoDirectory() throws {
        let state = TestState()
        state.add("parameters", count: 64, scale: 0.03)
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("contrast-full-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: run) }
        let previous = try save(state, to: run, step: 1)
        let shardBytes = try #require(try CheckpointStore.manifest(at: previous).shards.first?.bytes)
        let manifestBytes = try #require(FileManager.default.attributesOfItem(atPath: previous.appendingPathComponent("manifest.json").path)[.size] as? Int)
        #expect(shardBytes < manifestBytes)     // else the capacity below cannot tell them apart
        let error = checkpointError {
            try FileIO.$simulatedCapacity.withValue(shardBytes) { _ = try save(state, to: run, step: 2) }
        }
        let failure = try #require(error)
        #expect(failure.kind == .diskFull)
        #expect(failure.file.contains("step-000000002/manifest.json"))  // its temporary file: the one that did not fit
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoints/step-000000002").path))
        #expect(CheckpointStore.list(runDirectory: run) == [previous])
        #expect(CheckpointStore.latest(runDirectory: run) == previous)
    }
}
