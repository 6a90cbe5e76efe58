import Training
import RunFiles
import Distributed
import Foundation
import Tensor

/// A failed check of `contrast collectives-check`.
public struct CheckFailure: Error, CustomStringConvertible {
    public var description: String
}

/// `mpirun -np P contrast collectives-check`: every collective of the communicator, with
/// rank-dependent data, against the values each rank computes for itself.
///
/// Sizes: the 0-element edge, 1, odd sizes and 2,214,528 elements (the benchmark model's
/// gradient count). Expected values:
/// - fp32 and bytes: exact (the data are small integers, whose sums fp32 holds exactly).
/// - fp16 / bf16 all-reduce at P = 2: bit-exact against the pairwise sum
///   round(float(a0) + float(a1)) (one addition, so the order cannot matter), computed with
///   the C sum kernels, which TensorTests hold to Swift references element by element.
/// - fp16 / bf16 at P > 2: the reduction tree is MPI's choice, so against the exact sum S of
///   the inputs within (P - 1) u sum_r |a_r| + (P - 1) tiny, u = 2^-11 (fp16) or 2^-8 (bf16)
///   the unit roundoff and tiny half the smallest subnormal: the standard bound of P - 1
///   rounded additions. Overflow (fp16 60000 x P) must give inf and a NaN input NaN.
public enum CollectivesCheck {
    /// Runs every check on this rank; throws the first `CheckFailure`. `failOnRank` makes that rank
    /// throw midway (to test that the job aborts rather than hangs); `largeCount` is the largest
    /// buffer in elements.
    public static func run(communicator: Communicator, failOnRank: Int? = nil, largeCount: Int = 2_214_528) throws {
        try Checker(communicator: communicator, failOnRank: failOnRank, largeCount: largeCount).all()
    }
}

private final class Checker {
    let communicator: Communicator
    let failOnRank: Int?
    let largeCount: Int
    var halfReferences: [WirePrecision: HalfReference] = [:]
    var rank: Int { communicator.rank }
    var size: Int { communicator.size }
    var sizes: [Int] { [0, 1, 7, 1001, largeCount] }

    init(communicator: Communicator, failOnRank: Int?, largeCount: Int) {
        self.communicator = communicator
        self.failOnRank = failOnRank
        self.largeCount = largeCount
    }

    func all() throws {
        try communicator.barrier()
        try broadcast()
        try allGather()
        if failOnRank == rank { throw CheckFailure(description: "deliberate failure on rank \(rank) (--fail-on-rank)") }
        try allGatherBytes()
        try gather()
        try reduceScatter()
        try allReduceFloat()
        for precision in [WirePrecision.fp16, .bf16] { try allReduceHalf(precision) }
        try nonBlocking()
        try allReduceMax()
        try ringShift()
        try hostnames()
        try communicator.barrier()
    }

    func expect(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        if !condition { throw CheckFailure(description: what()) }
    }

    func expectEqual(_ got: [Float], _ expected: [Float], _ what: String) throws {
        try expect(got.count == expected.count, "\(what): \(got.count) values, expected \(expected.count)")
        if let i = got.indices.first(where: { got[$0] != expected[$0] }) {
            try expect(false, "\(what): element \(i) is \(got[i]), expected \(expected[i])")
        }
    }

    /// Where each rank's block starts: [0, c0, c0 + c1, ...].
    func offsets(_ counts: [Int]) -> [Int] { counts.indices.map { counts[..<$0].reduce(0, +) } }

    // MARK: data, small integers so fp32 sums are exact

    static func value(rank: Int, index: Int) -> Float { Float((index % 100_000) * 8 + rank) }
    static func summand(rank: Int, index: Int) -> Float { Float(index % 4096 - 2048 + rank * 5) }

    // MARK: checks

    func broadcast() throws {
        for count in sizes {
            for root in size == 1 ? [0] : [0, size - 1] {  // not a Set: its order differs between processes
                var buffer = [UInt8](repeating: 0, count: count)
                for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: rank == root ? i &* 31 &+ root &* 7 : 0xee) }
                try buffer.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 8)!, bytes: count, root: root) }
                let bad = (0..<count).first { buffer[$0] != UInt8(truncatingIfNeeded: $0 &* 31 &+ root &* 7) }
                try expect(bad == nil, "broadcast of \(count) bytes from root \(root): byte \(bad ?? 0) differs")
            }
        }
    }

    func allGather() throws {
        var layouts = sizes.map { [Int](repeating: $0, count: size) }
        layouts.append((0..<size).map { $0 + 1 })                    // unequal, odd
        layouts.append((0..<size).map { $0 == 0 ? 0 : 3 })           // one rank sends nothing
        layouts.append((0..<size).map { $0 == size - 1 ? largeCount : 5 })
        for counts in layouts {
            let send = (0..<counts[rank]).map { Self.value(rank: rank, index: $0) }
            var receive = [Float](repeating: -1, count: counts.reduce(0, +))
            try communicator.allGather(send, into: &receive, counts: counts)
            let expected = (0..<size).flatMap { r in (0..<counts[r]).map { Self.value(rank: r, index: $0) } }
            try expectEqual(receive, expected, "allGather counts \(counts.prefix(4))")
        }
        // In place: rank r's block already in the receive buffer.
        let counts = (0..<size).map { 2 * $0 + 1 }, offsets = offsets(counts)
        var buffer = [Float](repeating: -1, count: counts.reduce(0, +))
        for i in 0..<counts[rank] { buffer[offsets[rank] + i] = Self.value(rank: rank, index: i) }
        try buffer.withUnsafeMutableBufferPointer { b in
            try communicator.allGather(b.baseAddress! + offsets[rank], into: b.baseAddress!, counts: counts)
        }
        try expectEqual(buffer, (0..<size).flatMap { r in (0..<counts[r]).map { Self.value(rank: r, index: $0) } }, "allGather in place")
    }

    func gather() throws {
        var layouts = [[Int](repeating: 3, count: size), (0..<size).map { $0 + 1 }, (0..<size).map { $0 == 0 ? 0 : 3 }]
        layouts.append((0..<size).map { $0 == size - 1 ? largeCount : 5 })
        for root in size == 1 ? [0] : [0, size - 1] {
            for counts in layouts {
                let send = (0..<counts[rank]).map { Self.value(rank: rank, index: $0) }
                if rank == root {
                    var receive = [Float](repeating: -1, count: counts.reduce(0, +))
                    try receive.withUnsafeMutableBufferPointer { try communicator.gather(send, into: $0.baseAddress!, counts: counts, root: root) }
                    let expected = (0..<size).flatMap { r in (0..<counts[r]).map { Self.value(rank: r, index: $0) } }
                    try expectEqual(receive, expected, "gather to root \(root), counts \(counts.prefix(4))")
                } else {
                    try communicator.gather(send, into: nil, counts: counts, root: root)
                }
            }
            // In place at the root: its block already in the receive buffer.
            let counts = (0..<size).map { 2 * $0 + 1 }, offsets = offsets(counts)
            var buffer = [Float](repeating: -1, count: counts.reduce(0, +))
            for i in 0..<counts[rank] { buffer[offsets[rank] + i] = Self.value(rank: rank, index: i) }
            try buffer.withUnsafeMutableBufferPointer { b in
                try communicator.gather(b.baseAddress! + offsets[rank], into: rank == root ? b.baseAddress! : nil, counts: counts, root: root)
            }
            if rank == root {
                try expectEqual(buffer, (0..<size).flatMap { r in (0..<counts[r]).map { Self.value(rank: r, index: $0) } }, "gather in place at root \(root)")
            }
        }
    }

    func allGatherBytes() throws {
        for bytes in [0, 1, 13] {
            let send = (0..<bytes).map { UInt8(truncatingIfNeeded: rank * 17 + $0) }
            var receive = [UInt8](repeating: 0, count: bytes * size + 1)
            try receive.withUnsafeMutableBytes { r in try send.withUnsafeBytes { s in
                try communicator.allGatherBytes(s.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, bytes: bytes, into: r.baseAddress!)
            } }
            let expected: [UInt8] = (0..<size).flatMap { r -> [UInt8] in (0..<bytes).map { UInt8(truncatingIfNeeded: r * 17 + $0) } } + [0]
            try expect(receive == expected, "allGatherBytes of \(bytes) bytes: \(receive.prefix(40))")
        }
    }

    func reduceScatter() throws {
        var layouts = sizes.map { [Int](repeating: $0, count: size) }
        layouts.append((0..<size).map { 2 * $0 + 1 })
        layouts.append((0..<size).map { $0 == 0 ? 0 : 7 })
        for counts in layouts {
            let total = counts.reduce(0, +)
            let send = (0..<total).map { Self.summand(rank: rank, index: $0) }
            var receive = [Float](repeating: .nan, count: counts[rank])
            try communicator.reduceScatter(send, into: &receive, counts: counts)
            let start = offsets(counts)[rank]
            let expected = (0..<counts[rank]).map { i in (0..<size).reduce(Float(0)) { $0 + Self.summand(rank: $1, index: start + i) } }
            try expectEqual(receive, expected, "reduceScatter counts \(counts.prefix(4))")
        }
    }

    func allReduceFloat() throws {
        for count in sizes {
            var buffer = (0..<count).map { Self.summand(rank: rank, index: $0) }
            try communicator.allReduce(&buffer, count: count)
            let expected = (0..<count).map { i in (0..<size).reduce(Float(0)) { $0 + Self.summand(rank: $1, index: i) } }
            try expectEqual(buffer, expected, "allReduce fp32 of \(count)")
        }
    }

    // MARK: fp16 / bf16

    /// Rank r's fp32 value at index i before the cast to the wire: non-integers of either
    /// sign up to about 10, with an overflow and a NaN at indices 1 and 2.
    static func wireValue(rank: Int, index: Int, precision: WirePrecision) -> Float {
        if index == 1 { return precision == .fp16 ? 60000 : 3e38 }     // overflows once two ranks add
        if index == 2 && rank == 0 { return .nan }
        var hash = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(rank) &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 31
        return Float(Int(hash % 20001) - 10000) / 997
    }

    static func fromWire(_ h: UInt16, _ precision: WirePrecision) -> Float {
        precision == .fp16 ? HalfPrecision.halfToFloatReference(h) : HalfPrecision.bfloatToFloatReference(h)
    }

    /// Every rank's wire values and their reference sums, computed once for the largest size
    /// (smaller sizes are prefixes: the data depend on the index only).
    final class HalfReference {
        var inputs: [[UInt16]] = []     // per rank
        var sequential: [UInt16] = []   // pairwise-rounded sum in rank order
    }

    func reference(_ precision: WirePrecision) -> HalfReference {
        if let cached = halfReferences[precision] { return cached }
        let reference = HalfReference()
        let count = max(largeCount, sizes.max()!)
        for r in 0..<size {
            let floats = (0..<count).map { Self.wireValue(rank: r, index: $0, precision: precision) }
            var wire = [UInt16](repeating: 0, count: count)
            if precision == .fp16 { HalfPrecision.floatToHalf(floats, &wire, count: count) }
            else { HalfPrecision.floatToBFloat(floats, &wire, count: count) }
            reference.inputs.append(wire)
            // The C sum kernels, tested against Swift references in TensorTests, stand in for
            // the element-wise references here: the Swift ones take seconds per run in debug.
            if r == 0 { reference.sequential = wire }
            else if precision == .fp16 { HalfPrecision.halfSum(wire, into: &reference.sequential, count: count) }
            else { HalfPrecision.bfloatSum(wire, into: &reference.sequential, count: count) }
        }
        halfReferences[precision] = reference
        return reference
    }

    func checkHalf(_ got: [UInt16], count: Int, _ precision: WirePrecision, _ what: String) throws {
        let unitRoundoff: Double = precision == .fp16 ? 0x1p-11 : 0x1p-8
        let tiny: Double = precision == .fp16 ? 0x1p-25 : 0x1p-134
        let reference = reference(precision)
        // Exact for P <= 2 (one rounded addition); for any P where the sum is not finite.
        if size <= 2 {
            if let i = (0..<count).first(where: { got[$0] != reference.sequential[$0] }) {
                let result = Self.fromWire(got[i], precision), expected = Self.fromWire(reference.sequential[i], precision)
                if !(result.isNaN && expected.isNaN) {
                    try expect(false, "\(what): element \(i) is \(result), expected \(expected) (bits \(got[i]) vs \(reference.sequential[i]))")
                }
            }
            return
        }
        for i in 0..<count {
            let result = Self.fromWire(got[i], precision), sequential = Self.fromWire(reference.sequential[i], precision)
            if sequential.isNaN {
                try expect(result.isNaN, "\(what): element \(i) is \(result), expected NaN")
            } else if !sequential.isFinite {
                try expect(result == sequential, "\(what): element \(i) is \(result), expected \(sequential)")
            } else {
                var exact = 0.0, magnitude = 0.0
                for r in 0..<size {
                    let value = Double(Self.fromWire(reference.inputs[r][i], precision))
                    exact += value
                    magnitude += abs(value)
                }
                let tolerance = Double(size - 1) * (unitRoundoff * magnitude + tiny)
                try expect(abs(Double(result) - exact) <= tolerance,
                           "\(what): element \(i) is \(result), exact sum \(exact), tolerance \(tolerance)")
            }
        }
    }

    func wireBuffer(count: Int, _ precision: WirePrecision) -> [UInt16] {
        Array(reference(precision).inputs[rank].prefix(count))
    }

    func allReduceHalf(_ precision: WirePrecision) throws {
        for count in sizes {
            var buffer = wireBuffer(count: count, precision)
            try buffer.withUnsafeMutableBytes { try communicator.allReduce($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 8)!, count: count, precision: precision) }
            try checkHalf(buffer, count: count, precision, "allReduce \(precision) of \(count)")
        }
    }

    /// Three reductions in flight at once, polled with test() until done, finished out of order.
    func nonBlocking() throws {
        let count = largeCount
        let floats = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        let halves = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: count)
        let bfloats = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: count)
        defer { floats.deallocate(); halves.deallocate(); bfloats.deallocate() }
        for i in 0..<count { floats[i] = Self.summand(rank: rank, index: i) }
        _ = halves.initialize(from: wireBuffer(count: count, .fp16))
        _ = bfloats.initialize(from: wireBuffer(count: count, .bf16))

        let floatHandle = try communicator.startAllReduce(UnsafeMutableRawPointer(floats.baseAddress!), count: count, precision: .fp32)
        let halfHandle = try communicator.startAllReduce(UnsafeMutableRawPointer(halves.baseAddress!), count: count, precision: .fp16)
        let bfloatHandle = try communicator.startAllReduce(UnsafeMutableRawPointer(bfloats.baseAddress!), count: count, precision: .bf16)
        var polls = 0
        while try !bfloatHandle.test() { polls += 1 }
        try expect(try bfloatHandle.test(), "test() after completion must stay true")
        try halfHandle.wait()
        try expect(try halfHandle.test(), "test() after wait() must be true")
        while try !floatHandle.test() { polls += 1 }
        try floatHandle.wait()

        let expected = (0..<count).map { i in (0..<size).reduce(Float(0)) { $0 + Self.summand(rank: $1, index: i) } }
        try expectEqual(Array(floats), expected, "startAllReduce fp32 (\(polls) polls)")
        try checkHalf(Array(halves), count: count, .fp16, "startAllReduce fp16")
        try checkHalf(Array(bfloats), count: count, .bf16, "startAllReduce bf16")

        // A zero-size non-blocking reduction completes too.
        var empty: [Float] = []
        let emptyHandle = try empty.withUnsafeMutableBytes { try communicator.startAllReduce($0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 8)!, count: 0, precision: .fp16) }
        try emptyHandle.wait()
    }

    /// Every rank's host name in rank order, this rank's own in its slot; rank 0 prints them
    /// (one line, for the test to compare with the machine's name).
    func hostnames() throws {
        let names = try communicator.hostnames()
        try expect(names.count == size, "hostnames gave \(names.count) names for \(size) ranks")
        try expect(names[rank] == Launch.localHostname(), "hostnames()[\(rank)] is '\(names[rank])', gethostname says '\(Launch.localHostname())'")
        try expect(names.allSatisfy { !$0.isEmpty }, "hostnames gave an empty name: \(names)")
        if rank == 0 { FileHandle.standardOutput.write(Data("collectives-check: hosts \(names.joined(separator: " "))\n".utf8)) }
    }

    func allReduceMax() throws {
        var values = [Double(rank), -Double(rank), 1.5 * Double(rank), 0]
        try communicator.allReduceMax(&values)
        try expect(values == [Double(size - 1), 0, 1.5 * Double(size - 1), 0], "allReduceMax gave \(values)")
    }

    /// The ring turn of the SigLIP loss: after k turns every rank holds the block rank - k sent,
    /// for sizes 0, 1, odd and large; and a send to a rank that does not exist is an error.
    func ringShift() throws {
        for count in sizes {
            var block = (0..<count).map { Self.value(rank: rank, index: $0) }
            var incoming = [Float](repeating: -1, count: count)
            for turn in 1...max(size, 1) {
                try block.withUnsafeBufferPointer { send in
                    try incoming.withUnsafeMutableBufferPointer { receive in
                        let empty = UnsafeMutablePointer<Float>(bitPattern: 8)!
                        try communicator.ringShift(send.baseAddress ?? UnsafePointer(empty), into: receive.baseAddress ?? empty, count: count)
                    }
                }
                swap(&block, &incoming)
                let owner = ((rank - turn) % size + size) % size
                try expectEqual(block, (0..<count).map { Self.value(rank: owner, index: $0) }, "ring shift of \(count) floats, turn \(turn)")
            }
        }
        let byte: UInt8 = 0
        var received: UInt8 = 0
        do {
            try communicator.sendReceive([byte], bytes: 1, to: size, into: &received, from: 0)
            try expect(false, "sendReceive to rank \(size) of \(size) did not throw")
        } catch is CommunicatorError {}
    }
}
