/// The communicator of a one-process run: every collective is the identity (or a copy),
/// so the trainer runs one code path whatever the rank count.
public final class SingleProcessCommunicator: Communicator {
    public let rank = 0
    public let size = 1

    public init() {}

    public func barrier() throws {}

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try check(root: root, call: "broadcast")
    }

    public func allGather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        try check(counts: counts, call: "allGather")
        if receive != UnsafeMutablePointer(mutating: send) { receive.update(from: send, count: counts[0]) }
    }

    public func gather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>?, counts: [Int], root: Int) throws {
        try check(counts: counts, call: "gather")
        guard root == 0, let receive else { throw CommunicatorError(call: "gather", rank: 0, size: 1, message: "root \(root) needs a receive buffer on rank 0 of 1") }
        if receive != UnsafeMutablePointer(mutating: send) { receive.update(from: send, count: counts[0]) }
    }

    public func allGatherBytes(_ send: UnsafeRawPointer, bytes: Int, into receive: UnsafeMutableRawPointer) throws {
        if receive != UnsafeMutableRawPointer(mutating: send) { receive.copyMemory(from: send, byteCount: bytes) }
    }

    public func reduceScatter(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        try check(counts: counts, call: "reduceScatter")
        if receive != UnsafeMutablePointer(mutating: send) { receive.update(from: send, count: counts[0]) }
    }

    public func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws {}

    public func startAllReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws -> AllReduceHandle {
        CompletedHandle()
    }

    public func allReduceMax(_ values: inout [Double]) throws {}

    public func sendReceive(_ send: UnsafeRawPointer, bytes: Int, to destination: Int,
                            into receive: UnsafeMutableRawPointer, from source: Int) throws {
        try check(root: destination, call: "sendReceive")
        try check(root: source, call: "sendReceive")
        if receive != UnsafeMutableRawPointer(mutating: send) { receive.copyMemory(from: send, byteCount: bytes) }
    }

    public func abort(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("contrast: error: \(message)\n".utf8))
        exit(code)
    }

    private func check(counts: [Int], call: String) throws {
        guard counts.count == 1 else {
            throw CommunicatorError(call: call, rank: 0, size: 1, message: "\(counts.count) counts given for 1 rank")
        }
    }

    private func check(root: Int, call: String) throws {
        guard root == 0 else { throw CommunicatorError(call: call, rank: 0, size: 1, message: "root \(root) out of range 0..<1") }
    }
}

/// A handle that is complete from the start.
final class CompletedHandle: AllReduceHandle {
    func test() throws -> Bool { true }
    func wait() throws {}
}

import Foundation
