import Distributed
import Foundation
import Tensor
@testable import Checkpoint

/// The repository root, found from this file's path (Tests/CheckpointTests/Support.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fresh run directory, removed after `body`.
func withRunDirectory<T>(_ body: (URL) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("contrast-ckpt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url)
}

/// Owned float arrays that hand out `CheckpointBuffer`s.
final class TestState {
    var arrays: [(name: String, values: UnsafeMutablePointer<Float>, count: Int)] = []

    /// Normal values with standard deviation `scale` (trained-weight-like), from a Philox stream.
    func add(_ name: String, count: Int, scale: Float, seed: UInt64 = 7, square: Bool = false) {
        let values = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        var random = RandomStream(seed: seed, stream: UInt64(arrays.count))
        for i in 0..<count {
            let value = random.nextNormal() * scale
            values[i] = square ? value * value : value
        }
        arrays.append((name, values, count))
    }

    /// Same names and counts, zero-filled: the load target.
    func emptyCopy() -> TestState {
        let copy = TestState()
        for array in arrays {
            let values = UnsafeMutablePointer<Float>.allocate(capacity: max(array.count, 1))
            values.initialize(repeating: 0, count: max(array.count, 1))
            copy.arrays.append((array.name, values, array.count))
        }
        return copy
    }

    var buffers: [CheckpointBuffer] { arrays.map { CheckpointBuffer(name: $0.name, pointer: $0.values, count: $0.count) } }

    /// Bitwise equality of every array.
    func bitEqual(_ other: TestState) -> Bool {
        zip(arrays, other.arrays).allSatisfy { a, b in
            a.name == b.name && a.count == b.count && memcmp(a.values, b.values, a.count * 4) == 0
        } && arrays.count == other.arrays.count
    }

    var totalBytes: Int { arrays.reduce(0) { $0 + $1.count * 4 } }

    deinit { for array in arrays { array.values.deallocate() } }
}

/// Parameters, AdamW's two moments and an odd-length extra, small enough for unit tests.
func smallState() -> TestState {
    let state = TestState()
    state.add("parameters", count: 10_007, scale: 0.03)
    state.add("adam.m", count: 10_007, scale: 0.001)
    state.add("adam.v", count: 10_007, scale: 0.0003, square: true)
    state.add("temperature", count: 1, scale: 1)
    state.add("empty", count: 0, scale: 1)
    return state
}

let sampleState = Data(#"{"epoch":3,"rng":18446744073709551557,"lr":0.001,"config":{"model":"mlp"}}"#.utf8)

func save(_ state: TestState, to run: URL, step: Int, settings: CheckpointSettings = CheckpointSettings(),
          communicator: Communicator = SingleProcessCommunicator()) throws -> URL {
    try CheckpointStore.save(runDirectory: run, step: step, buffers: state.buffers, state: sampleState,
                             communicator: communicator, settings: settings)
}

/// Captures a thrown CheckpointError.
func checkpointError(_ body: () throws -> Void) -> CheckpointError? {
    do { try body() } catch let error as CheckpointError { return error } catch { return nil }
    return nil
}

/// Rank 0 of a pretend world of `size` ranks: its collectives combine its own contribution
/// with scripted outcomes for the other ranks (to test how save reacts to their failures).
final class ScriptedCommunicator: Communicator {
    let rank = 0
    let size: Int
    let others: [Data]

    init(size: Int, others: [CheckpointStore.ShardOutcome]) throws {
        self.size = size
        self.others = try others.map { try JSONEncoder().encode($0) }
    }

    func barrier() throws {}
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {}
    func allGather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws { fatalError() }
    func gather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>?, counts: [Int], root: Int) throws { fatalError() }
    func allGatherBytes(_ send: UnsafeRawPointer, bytes: Int, into receive: UnsafeMutableRawPointer) throws {
        receive.copyMemory(from: send, byteCount: bytes)
        for (index, other) in others.enumerated() {
            let slot = receive + (index + 1) * bytes
            slot.initializeMemory(as: UInt8.self, repeating: 0x20, count: bytes)
            other.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }
    func reduceScatter(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws { fatalError() }
    func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws { fatalError() }
    func startAllReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws -> AllReduceHandle { fatalError() }
    private var maxCalls = 0
    func allReduceMax(_ values: inout [Double]) throws {
        // save's first max-reduce is the record length: the scripted records count too.
        if maxCalls == 0 { values[0] = max(values[0], Double(others.map(\.count).max() ?? 0)) }
        maxCalls += 1
    }
    func sendReceive(_ send: UnsafeRawPointer, bytes: Int, to destination: Int, into receive: UnsafeMutableRawPointer,
                     from source: Int) throws { fatalError() }
    func abort(_ message: String, code: Int32) -> Never { fatalError(message) }
}
