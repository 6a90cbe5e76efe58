/// Collective communication over buffers (DESIGN.md: the collective layer knows nothing of
/// models or losses; the trainer is the only place they meet).
///
/// Two implementations share this API so one code path serves both: `MPICommunicator`
/// (ranks launched by mpirun or srun) and `SingleProcessCommunicator` (P = 1, no MPI).
/// Every failing call throws `CommunicatorError` naming the call, the rank and the size.
/// All collectives must be called by every rank in the same order (MPI's rule).
public protocol Communicator: AnyObject {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// Number of ranks.
    var size: Int { get }

    func barrier() throws

    /// Copies `bytes` bytes of `root`'s buffer into every rank's buffer.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws

    /// Gathers `counts[r]` floats from each rank r into `receive`, rank-major
    /// (rank r's block starts at counts[0] + ... + counts[r-1]). `send` holds counts[rank] floats.
    func allGather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws

    /// Gathers `counts[r]` floats from each rank r into `receive` on `root` alone, rank-major
    /// as `allGather`; the other ranks pass nil (their memory is never touched). For results
    /// one rank uses, such as evaluation's representations of the whole training set.
    func gather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>?, counts: [Int], root: Int) throws

    /// Gathers `bytes` bytes from every rank into `receive` (size x bytes, rank-major): for
    /// small records such as config hashes and flags.
    func allGatherBytes(_ send: UnsafeRawPointer, bytes: Int, into receive: UnsafeMutableRawPointer) throws

    /// Sums `send` (counts.sum floats, the same layout on every rank) over the ranks; rank r
    /// receives its block: counts[r] floats starting at counts[0] + ... + counts[r-1].
    func reduceScatter(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws

    /// In-place sum over ranks of `count` elements in wire format `precision`: Float32 for
    /// fp32; IEEE binary16 or bfloat16 bit patterns (UInt16) for fp16 / bf16, each pairwise
    /// sum done in fp32 and rounded to the wire format (a commutative user-defined reduction).
    func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws

    /// Starts the same reduction without blocking. The buffer must stay valid and untouched
    /// until the handle reports completion. MPI makes progress only inside MPI calls: call
    /// `test()` between chunks of compute, or nothing overlaps.
    func startAllReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws -> AllReduceHandle

    /// In-place element-wise maximum of `values` over ranks (flags, counters, timings).
    func allReduceMax(_ values: inout [Double]) throws

    /// Sends `bytes` bytes of `send` to rank `destination` and receives `bytes` bytes from rank
    /// `source` into `receive`, in one call (MPI_Sendrecv), so a ring of ranks each sending to the
    /// next and receiving from the previous cannot deadlock. `send` and `receive` must not overlap.
    /// Point-to-point, but every rank of a ring calls it together, and the watchdog covers it.
    func sendReceive(_ send: UnsafeRawPointer, bytes: Int, to destination: Int,
                     into receive: UnsafeMutableRawPointer, from source: Int) throws

    /// Ends the whole job from this rank: prints `message` naming the rank on standard error
    /// and makes every rank exit non-zero (MPI_Abort), so one failure never hangs the others.
    func abort(_ message: String, code: Int32) -> Never

    /// Starts a watchdog that ends the job when one of this communicator's collectives waits
    /// longer than `seconds` (`evaluationSeconds` in the evaluation phase; 0: unwatched there).
    /// nil where no collective can wait for another process (one process).
    func startWatchdog(seconds: Double, evaluationSeconds: Double) -> CollectiveWatchdog?

    /// Enters `phase`, which decides how long the watchdog lets a collective wait; returns the
    /// phase left, for the caller to restore.
    @discardableResult
    func enter(_ phase: CollectiveActivity.Phase) -> CollectiveActivity.Phase

    /// Shuts the communication runtime down (MPI_Finalize) after this rank's last collective;
    /// later calls do nothing.
    func finalize() throws
}

/// Element format of a buffer on the wire.
public enum WirePrecision: String, Sendable, Codable, CaseIterable {
    case fp32, bf16, fp16
    /// Bytes per element.
    public var stride: Int { self == .fp32 ? 4 : 2 }
}

/// A non-blocking collective in flight.
public protocol AllReduceHandle: AnyObject {
    /// Makes progress; true once complete (then the result is in the buffer). Idempotent after completion.
    func test() throws -> Bool
    /// Blocks until complete.
    func wait() throws
}

/// A failed collective: which call, on which rank of how many, and the library's message.
public struct CommunicatorError: Error, CustomStringConvertible, Sendable {
    public var call: String
    public var rank: Int
    public var size: Int
    public var message: String

    public init(call: String, rank: Int, size: Int, message: String) {
        self.call = call
        self.rank = rank
        self.size = size
        self.message = message
    }

    public var description: String { "\(call) failed on rank \(rank) of \(size): \(message)" }
}

extension Communicator {
    /// Whether this is rank 0, which writes the shared files and the human-readable log.
    public var isRoot: Bool { rank == 0 }

    // A communicator without a runtime to shut down and whose collectives never wait for
    // another process (one process, or a test's scripted one) needs no watchdog and no phases.
    public func startWatchdog(seconds: Double, evaluationSeconds: Double) -> CollectiveWatchdog? { nil }
    @discardableResult
    public func enter(_ phase: CollectiveActivity.Phase) -> CollectiveActivity.Phase { .training }
    public func finalize() throws {}

    /// Equal counts: every rank gathers `count` floats.
    public func allGather(_ send: UnsafePointer<Float>, count: Int, into receive: UnsafeMutablePointer<Float>) throws {
        try allGather(send, into: receive, counts: [Int](repeating: count, count: size))
    }

    /// Root's `text` on every rank (at most 4,095 UTF-8 bytes: paths and short messages).
    public func broadcast(_ text: String, root: Int = 0) throws -> String {
        guard size > 1 else { return text }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let bytes = Array(text.utf8.prefix(4095))
        buffer.replaceSubrange(0..<bytes.count, with: bytes)
        try buffer.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: 4096, root: root) }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// One turn of a ring: `count` floats of `send` go to rank + 1 and those of rank - 1 arrive in
    /// `receive` (modulo the size). In one process the floats come back to the sender.
    public func ringShift(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, count: Int) throws {
        try sendReceive(UnsafeRawPointer(send), bytes: count * MemoryLayout<Float>.stride, to: (rank + 1) % size,
                        into: UnsafeMutableRawPointer(receive), from: (rank + size - 1) % size)
    }

    /// In-place fp32 sum.
    public func allReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try allReduce(UnsafeMutableRawPointer(buffer), count: count, precision: .fp32)
    }
}
