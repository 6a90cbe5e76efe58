import Foundation
import Testing
@testable import Data

/// Runs python3 with `script`; returns its exit status.
private func python(_ script: String, in directory: String = NSTemporaryDirectory()) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script]
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return -1 }
    process.waitUntilExit()
    return process.terminationStatus
}

private let numpyAvailable = python("import numpy") == 0

/// .npy files written by numpy itself into a fresh folder.
private func numpyFiles() throws -> String {
    let folder = NSTemporaryDirectory() + "contrast-npy-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let script = """
    import numpy as np
    n = 11
    np.save('u1.npy', (np.arange(n * 12) * 37 % 256).astype(np.uint8).reshape(n, 3, 4))
    np.save('f4.npy', (np.sin(np.arange(n * 6)) * 1e3).astype(np.float32).reshape(n, 6))
    np.save('f8.npy', np.linspace(-1, 1, n * 2).reshape(n, 2))
    np.save('i8.npy', np.arange(n, dtype=np.int64) * 1000000007 - 5)
    np.save('i8short.npy', np.arange(n - 1, dtype=np.int64))
    np.save('fortran.npy', np.asfortranarray(np.arange(n * 3, dtype=np.float32).reshape(n, 3)))
    np.save('object.npy', np.array([[1], 'a'] * 2, dtype=object), allow_pickle=True)
    np.save('big.npy', np.arange(n, dtype='>f4'))
    np.save('i4.npy', np.arange(n, dtype=np.int32))
    np.lib.format.write_array(open('v2.npy', 'wb'), np.arange(n, dtype=np.float32), version=(2, 0))
    np.lib.format.write_array(open('v3.npy', 'wb'), np.arange(n, dtype=np.float32), version=(3, 0))
    data = open('f4.npy', 'rb').read(); open('truncated.npy', 'wb').write(data[:-5])
    """
    #expect(python(script, in: folder) == 0)
    return folder
}

private func problem(_ body: () throws -> Void) -> String {
    do { try body() } catch let error as DataError { return error.description } catch { return "\(error)" }
    return "no error"
}

@Suite(.enabled(if: numpyAvailable, "python3 with numpy is needed")) struct NPYTests {
    @Test func readsNumpyDtypes() throws {
        let folder = try numpyFiles()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let u1 = try NPYArray(path: folder + "/u1.npy")
        #expect(u1.dtype == .uint8 && u1.shape == [11, 3, 4] && u1.sampleShape == [3, 4])
        #expect(u1.uint8Values() == (0..<132).map { UInt8($0 * 37 % 256) })
        let f4 = try NPYArray(path: folder + "/f4.npy")
        #expect(f4.dtype == .float32 && f4.shape == [11, 6])
        #expect(f4.float32Values().map(\.bitPattern) == (0..<66).map { Float(sin(Double($0)) * 1e3).bitPattern })
        let f8 = try NPYArray(path: folder + "/f8.npy")
        #expect(f8.dtype == .float64 && f8.shape == [11, 2])
        let expected = (0..<22).map { Float(-1 + 2 * Double($0) / 21) }
        #expect(zip(f8.float32Values(), expected).allSatisfy { abs($0 - $1) < 1e-6 })
        let i8 = try NPYArray(path: folder + "/i8.npy")
        #expect(i8.dtype == .int64 && i8.shape == [11] && i8.int64Values() == (0..<11).map { Int64($0) * 1_000_000_007 - 5 })
        for version in ["v2", "v3"] {
            #expect(try NPYArray(path: folder + "/\(version).npy").float32Values() == (0..<11).map { Float($0) })
        }
    }

    @Test func rejectsWithClearMessages() throws {
        let folder = try numpyFiles()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cases = ["fortran": "Fortran-order", "object": "object arrays", "big": "big-endian", "i4": "not supported",
                     "truncated": "truncated data"]
        for (name, fragment) in cases {
            let message = problem { _ = try NPYArray(path: folder + "/\(name).npy") }
            #expect(message.contains(fragment) && message.contains("\(name).npy"), "\(name): \(message)")
            #expect(!message.contains("\n"))
        }
    }

    @Test func prepareRoundTripAndMismatchedCounts() throws {
        let folder = try numpyFiles()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let summaries = try DatasetPreparation.npy(features: folder + "/f8.npy", labels: folder + "/i8.npy", pairs: folder + "/f4.npy",
                                                   out: folder + "/out", layout: .size(4))
        #expect(summaries.count == 1)
        let summary = summaries[0]
        #expect(summary.sampleCount == 11 && summary.shardCount == 3 && summary.notes == ["features: float64 converted to float32"])
        let dataset = try ShardedDataset(directory: folder + "/out")
        var features: [Float] = [], pairs: [Float] = [], labels: [Int64] = []
        for index in 0..<dataset.shardCount {
            let block = try dataset.readShard(index)
            if case .float32(let values) = block.features { features += values }
            pairs += block.pairs ?? []
            labels += block.labels ?? []
        }
        #expect(features.map(\.bitPattern) == (try NPYArray(path: folder + "/f8.npy")).float32Values().map(\.bitPattern))
        #expect(pairs.map(\.bitPattern) == (try NPYArray(path: folder + "/f4.npy")).float32Values().map(\.bitPattern))
        #expect(labels == (try NPYArray(path: folder + "/i8.npy")).int64Values())

        let images = try DatasetPreparation.npy(features: folder + "/u1.npy", out: folder + "/u1", layout: .size(5))[0]
        #expect(images.notes.isEmpty)
        #expect(try ShardedDataset(directory: folder + "/u1").manifest.features == FieldLayout(dtype: .uint8, shape: [3, 4]))

        let message = problem {
            _ = try DatasetPreparation.npy(features: folder + "/u1.npy", labels: folder + "/i8short.npy", out: folder + "/bad", layout: .size(4))
        }
        #expect(message.contains("holds 11 samples") && message.contains("i8short.npy") && message.contains("holds 10"), "\(message)")
    }
}
