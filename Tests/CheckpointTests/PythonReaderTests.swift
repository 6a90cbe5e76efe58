import Foundation
import Storage
import Testing
@testable import Checkpoint

/// Runs python3 with `arguments`; nil when it cannot start.
private func python(_ arguments: [String]) -> (status: Int32, output: String)? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// python3 with zstandard and numpy (`pip install zstandard numpy`), else the test is skipped.
private let pythonReaderAvailable = python(["-c", "import zstandard, numpy"])?.status == 0

@Suite struct PythonReaderTests {
    @Test(.enabled(if: pythonReaderAvailable, "needs python3 with zstandard and numpy"))
    func pythonReadsWhatSwiftWrote() throws {
        try withRunDirectory { run in
            let state = smallState()
            // Shuffled from one rank, plain from the other: the reader handles both transforms.
            let plain = try save(state, to: run, step: 1, settings: .init(level: 1, shuffle: false))
            let shuffled = try save(state, to: run, step: 2)
            for directory in [plain, shuffled] {
                let result = try #require(python([repositoryRoot.appendingPathComponent("tools/read_checkpoint.py").path, "--json", directory.path]))
                #expect(result.status == 0)
                let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
                let buffers = try #require(summary["buffers"] as? [String: [String: Any]])
                #expect(buffers.count == state.arrays.count)
                for array in state.arrays {
                    let bytes = UnsafeRawBufferPointer(start: array.values, count: array.count * 4)
                    let entry = try #require(buffers[array.name])
                    #expect(entry["count"] as? Int == array.count)
                    #expect(entry["crc32"] as? String == CRC32.hex(CRC32.checksum(bytes)), "\(array.name)")
                    let head = (0..<min(4, array.count)).map { Int(array.values[$0].bitPattern) }
                    #expect(entry["head"] as? [Int] == head)
                }
                let pythonState = try #require(summary["state"] as? [String: Any])
                let swiftState = try #require(try JSONSerialization.jsonObject(with: sampleState) as? [String: Any])
                #expect(NSDictionary(dictionary: pythonState).isEqual(to: swiftState))
            }
            // The plain summary mode runs too.
            #expect(python([repositoryRoot.appendingPathComponent("tools/read_checkpoint.py").path, shuffled.path])?.status == 0)
        }
    }
}
