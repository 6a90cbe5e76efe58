import Distributed
import Foundation
import Testing
@testable import Checkpoint

/// Save/load timing and compression ratios of a benchmark-sized state (~26 MB: parameters
/// and AdamW's two moments). Run with CONTRAST_CHECKPOINT_BENCH=1, in release for real figures:
/// `CONTRAST_CHECKPOINT_BENCH=1 swift test -c release --filter CheckpointBenchmark`.
@Suite struct CheckpointBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CONTRAST_CHECKPOINT_BENCH"] == "1"))
    func saveLoadAndCompression() throws {
        let count = 2_170_000  // x 3 buffers x 4 bytes = 26.0 MB
        let state = TestState()
        state.add("parameters", count: count, scale: 0.03)
        state.add("adam.m", count: count, scale: 1e-3)
        state.add("adam.v", count: count, scale: 1e-3, square: true)  // second moment: tiny, positive
        let megabytes = Double(state.totalBytes) / 1e6
        print(String(format: "state: %.1f MB", megabytes))
        for row in try CheckpointStore.compressionReport(buffers: state.buffers) { print(row) }

        try withRunDirectory { run in
            for settings in [CheckpointSettings(level: 1, shuffle: true), CheckpointSettings(level: 3, shuffle: true), CheckpointSettings(level: 3, shuffle: false)] {
                var saves: [Double] = [], loads: [Double] = [], verifies: [Double] = []
                for step in 1...3 {
                    let start = Date()
                    let directory = try save(state, to: run, step: step, settings: settings)
                    saves.append(Date().timeIntervalSince(start))
                    let loaded = state.emptyCopy()
                    let loadStart = Date()
                    _ = try CheckpointStore.load(directory, into: loaded.buffers)
                    loads.append(Date().timeIntervalSince(loadStart))
                    let verifyStart = Date()
                    try CheckpointStore.verify(directory)
                    verifies.append(Date().timeIntervalSince(verifyStart))
                    #expect(loaded.bitEqual(state))
                }
                let bytes = try CheckpointStore.manifest(at: CheckpointStore.list(runDirectory: run)[0]).shards[0].bytes
                let save = saves.min()!, load = loads.min()!, verify = verifies.min()!
                print(String(format: "P=1 level %d shuffle %@: %.2f MB on disk; save %.3f s (%.0f MB/s), load %.3f s (%.0f MB/s), verify %.3f s (best of 3)",
                             settings.level, settings.shuffle ? "on " : "off", Double(bytes) / 1e6,
                             save, megabytes / save, load, megabytes / load, verify))
                try CheckpointStore.prune(runDirectory: run, keepLast: 1, keepEvery: 0)
            }
        }
    }
}
