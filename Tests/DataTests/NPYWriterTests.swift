import Foundation
import Testing
@testable import Data

/// Runs python3 with `script` in `directory`; returns its exit status.
private func python(_ script: String, in directory: String) -> Int32 {
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

private let numpyAvailable = python("import numpy", in: NSTemporaryDirectory()) == 0

@Suite struct NPYWriterTests {
    let floats: [Float] = (0..<15).map { Float(sin(Double($0))) * 1e3 } + [.infinity, -0.0, .leastNonzeroMagnitude]
    let integers: [Int64] = [0, -1, .max, .min, 1_000_000_007, 42, -5]

    @Test func roundTripsThroughTheReader() throws {
        for shape in [[18], [6, 3], [2, 3, 3], [18, 1]] {
            let file = NPYArray.encode(float32: floats, shape: shape)
            #expect(file.count % 64 == floats.count * 4 % 64, "data starts at a multiple of 64 bytes")
            let array = try NPYArray(bytes: [UInt8](file), path: "f.npy")
            #expect(array.dtype == .float32 && array.shape == shape)
            #expect(array.float32Values().map(\.bitPattern) == floats.map(\.bitPattern))
        }
        let array = try NPYArray(bytes: [UInt8](NPYArray.encode(int64: integers, shape: [7])), path: "i.npy")
        #expect(array.dtype == .int64 && array.shape == [7] && array.int64Values() == integers)
        let empty = try NPYArray(bytes: [UInt8](NPYArray.encode(float32: [], shape: [0, 4])), path: "e.npy")
        #expect(empty.shape == [0, 4] && empty.float32Values().isEmpty)
    }

    @Test func headerIsNewlineTerminatedAndAligned() {
        let file = NPYArray.encode(float32: floats, shape: [6, 3])
        let headerLength = Int(file[8]) | Int(file[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        #expect(file[10 + headerLength - 1] == UInt8(ascii: "\n"))
        #expect(String(decoding: file[10 ..< 10 + headerLength], as: UTF8.self)
                    .hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (6, 3), }"))
    }

    /// numpy loads what we wrote, and writes the same bytes for the same arrays.
    @Test(.enabled(if: numpyAvailable, "needs python3 with numpy")) func numpyAgrees() throws {
        let folder = NSTemporaryDirectory() + "contrast-npy-writer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try NPYArray.encode(float32: floats, shape: [6, 3]).write(to: URL(fileURLWithPath: folder + "/f.npy"))
        try NPYArray.encode(int64: integers, shape: [7]).write(to: URL(fileURLWithPath: folder + "/i.npy"))
        let floatLiterals = floats.map { $0.isInfinite ? "np.inf" : "\($0)" }.joined(separator: ", ")
        let integerLiterals = integers.map(String.init).joined(separator: ", ")
        let script = """
        import numpy as np, io
        f = np.load('f.npy'); i = np.load('i.npy')
        expected_f = np.array([\(floatLiterals)], dtype=np.float32).reshape(6, 3)
        expected_i = np.array([\(integerLiterals)], dtype=np.int64)
        assert f.dtype == np.float32 and f.shape == (6, 3) and np.array_equal(f, expected_f), f
        assert i.dtype == np.int64 and i.shape == (7,) and np.array_equal(i, expected_i), i
        for name, array in (('f.npy', expected_f), ('i.npy', expected_i)):
            buffer = io.BytesIO(); np.save(buffer, array)
            assert buffer.getvalue() == open(name, 'rb').read(), name
        """
        #expect(python(script, in: folder) == 0)
    }
}
