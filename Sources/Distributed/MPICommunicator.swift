import CMPI
import Foundation
import Tensor

/// The communicator of ranks launched by mpirun (or srun): MPI_COMM_WORLD through the C shim.
///
/// MPI is initialised with MPI_THREAD_FUNNELED (one thread makes MPI calls; compute threads
/// such as OpenBLAS's never do) and MPI_ERRORS_RETURN on the world communicator, so every
/// failure comes back as a code that `check` turns into a `CommunicatorError` naming the call.
/// fp16 / bf16 all-reduces use two user-defined commutative reductions over MPI_UINT16_T
/// whose bodies are the C kernels `ck_f16_sum_into` / `ck_bf16_sum_into` (sum in fp32,
/// round once per pairwise sum).
///
/// MPI counts are Int32: element-wise collectives (broadcast, all-reduce) are cut into
/// chunks of at most Int32.max elements; gathers and reduce-scatters, whose displacements are
/// Int32 too, throw beyond Int32.max elements in all.
///
/// Every collective is recorded in `activity` (sequence number, operation, bytes, start) for the
/// collective watchdog (`startWatchdog`, CollectiveWatchdog.swift).
///
/// MPI state is per process and every call goes through the one thread that initialised it,
/// hence `@unchecked Sendable`: the class owns the handles, nothing else does. The one
/// exception is the watchdog's MPI_Abort from its own thread while the main thread is blocked
/// in a collective. The standard promises that only under MPI_THREAD_MULTIPLE; Open MPI 4.1's
/// MPI_Abort tells the launcher to end the job and exits without progressing the main thread's
/// communication, and the fault suite's hang trials exercise it (exit 69 every time). A launcher
/// or MPI where that fails would leave the job to its own time limit, as without a watchdog.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private let world: MPI_Comm?
    private var halfSumOperation: MPI_Op?
    private var bfloatSumOperation: MPI_Op?
    private var finalized = false
    /// The collective this rank waits in now, for the watchdog.
    public let activity = CollectiveActivity()

    /// Largest count of one MPI call (MPI counts are C ints).
    static let maximumCount = Int(Int32.max)

    private init(world: MPI_Comm?, rank: Int, size: Int) {
        self.world = world
        self.rank = rank
        self.size = size
    }

    /// Initialises MPI (unless something in the process already did) and returns the world
    /// communicator. Call once per process, from the thread that will make every MPI call.
    public static func initialize() throws -> MPICommunicator {
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        let environmentRank = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "") ?? -1
        if finalized != 0 {
            throw CommunicatorError(call: "MPI_Init_thread", rank: environmentRank, size: 0,
                                    message: "MPI was already finalized in this process; it cannot be initialised twice")
        }
        if initialized == 0 {
            var provided: Int32 = 0
            // MPI_Init's errors are fatal by default (there is no communicator to return them on).
            let code = MPI_Init_thread(nil, nil, CMPI_THREAD_FUNNELED(), &provided)
            if code != CMPI_SUCCESS() {
                throw CommunicatorError(call: "MPI_Init_thread", rank: environmentRank, size: 0, message: errorString(code))
            }
        }
        let world = CMPI_COMM_WORLD()
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(world, &rank)
        MPI_Comm_size(world, &size)
        let communicator = MPICommunicator(world: world, rank: Int(rank), size: Int(size))
        try communicator.check("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(world, CMPI_ERRORS_RETURN()))
        try communicator.createOperations()
        return communicator
    }

    /// Frees the reductions and calls MPI_Finalize; later calls do nothing. Every rank must
    /// call it (MPI_Finalize is collective) after its last collective.
    public func finalize() throws {
        if finalized { return }
        finalized = true
        if halfSumOperation != nil { try check("MPI_Op_free", MPI_Op_free(&halfSumOperation)) }
        if bfloatSumOperation != nil { try check("MPI_Op_free", MPI_Op_free(&bfloatSumOperation)) }
        var alreadyFinalized: Int32 = 0
        MPI_Finalized(&alreadyFinalized)
        if alreadyFinalized == 0 { try check("MPI_Finalize", MPI_Finalize()) }
    }

    // MARK: - The one chokepoint for MPI return codes

    /// Turns a non-success MPI return code into an error naming the call, rank and size.
    func check(_ call: String, _ code: Int32) throws {
        guard code != CMPI_SUCCESS() else { return }
        throw CommunicatorError(call: call, rank: rank, size: size, message: Self.errorString(code))
    }

    private static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(CMPI_MAX_ERROR_STRING()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == CMPI_SUCCESS() else { return "MPI error code \(code)" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self) + " (code \(code))"
    }

    private func usable(_ call: String) throws {
        if finalized { throw CommunicatorError(call: call, rank: rank, size: size, message: "the communicator was finalized") }
    }

    private func int32(_ count: Int, _ call: String, _ what: String) throws -> Int32 {
        guard count >= 0, count <= Self.maximumCount else {
            throw CommunicatorError(call: call, rank: rank, size: size,
                                    message: "\(what) \(count) is outside MPI's count range 0...\(Self.maximumCount)")
        }
        return Int32(count)
    }

    // MARK: - Collectives

    public func barrier() throws {
        try usable("MPI_Barrier")
        activity.begin(.barrier, bytes: 0)
        defer { activity.end() }
        try check("MPI_Barrier", MPI_Barrier(world))
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try usable("MPI_Bcast")
        try checkRoot(root, "MPI_Bcast")
        activity.begin(.broadcast, bytes: bytes)
        defer { activity.end() }
        var offset = 0
        while offset < bytes {
            let chunk = min(bytes - offset, Self.maximumCount)
            try check("MPI_Bcast", MPI_Bcast(buffer + offset, Int32(chunk), CMPI_BYTE(), Int32(root), world))
            offset += chunk
        }
    }

    public func allGather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        let call = "MPI_Allgatherv"
        try usable(call)
        try checkCounts(counts, call)
        let displacements = counts.prefixSums()
        _ = try int32(displacements.last! + counts.last!, call, "total count")
        // send aliasing its own block of receive is MPI_IN_PLACE (MPI forbids plain aliasing).
        let ownBlock: UnsafeMutablePointer<Float> = receive + displacements[rank]
        let inPlace = send == UnsafePointer(ownBlock)
        activity.begin(.allGather, bytes: (displacements.last! + counts.last!) * 4)
        defer { activity.end() }
        let sendBuffer: UnsafeRawPointer? = inPlace ? UnsafeRawPointer(CMPI_IN_PLACE()) : UnsafeRawPointer(send)
        if counts.allSatisfy({ $0 == counts[0] }) {
            let count = Int32(counts[0])
            try check("MPI_Allgather", MPI_Allgather(sendBuffer, count, CMPI_FLOAT(), receive, count, CMPI_FLOAT(), world))
        } else {
            let counts32 = counts.map { Int32($0) }, displacements32 = displacements.map { Int32($0) }
            try check(call, MPI_Allgatherv(sendBuffer, counts32[rank], CMPI_FLOAT(), receive, counts32, displacements32,
                                           CMPI_FLOAT(), world))
        }
    }

    public func gather(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>?, counts: [Int], root: Int) throws {
        let call = "MPI_Gatherv"
        try usable(call)
        try checkCounts(counts, call)
        guard root >= 0 && root < size else { throw CommunicatorError(call: call, rank: rank, size: size, message: "root \(root) is not a rank") }
        guard rank != root || receive != nil else { throw CommunicatorError(call: call, rank: rank, size: size, message: "the root needs a receive buffer") }
        let displacements = counts.prefixSums()
        _ = try int32(displacements.last! + counts.last!, call, "total count")
        let counts32 = counts.map { Int32($0) }, displacements32 = displacements.map { Int32($0) }
        // The root's own block already in place is MPI_IN_PLACE (MPI forbids plain aliasing).
        let inPlace = rank == root && send == UnsafePointer(receive! + displacements[rank])
        activity.begin(.gather, bytes: (displacements.last! + counts.last!) * 4)
        defer { activity.end() }
        let sendBuffer: UnsafeRawPointer? = inPlace ? UnsafeRawPointer(CMPI_IN_PLACE()) : UnsafeRawPointer(send)
        try check(call, MPI_Gatherv(sendBuffer, counts32[rank], CMPI_FLOAT(), receive.map { UnsafeMutableRawPointer($0) }, counts32,
                                    displacements32, CMPI_FLOAT(), Int32(root), world))
    }

    public func allGatherBytes(_ send: UnsafeRawPointer, bytes: Int, into receive: UnsafeMutableRawPointer) throws {
        let call = "MPI_Allgather"
        try usable(call)
        let count = try int32(bytes, call, "byte count")
        _ = try int32(bytes * size, call, "total byte count")
        let inPlace = send == UnsafeRawPointer(receive + rank * bytes)
        activity.begin(.allGather, bytes: bytes * size)
        defer { activity.end() }
        let sendBuffer: UnsafeRawPointer? = inPlace ? UnsafeRawPointer(CMPI_IN_PLACE()) : send
        try check(call, MPI_Allgather(sendBuffer, count, CMPI_BYTE(), receive, count, CMPI_BYTE(), world))
    }

    public func reduceScatter(_ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        let call = "MPI_Reduce_scatter"
        try usable(call)
        try checkCounts(counts, call)
        _ = try int32(counts.reduce(0, +), call, "total count")
        // receive == send: MPI_IN_PLACE, the input is the whole receive buffer and the block
        // lands at its start (what the single-process communicator does too).
        let inPlace = send == UnsafePointer(receive)
        activity.begin(.reduceScatter, bytes: counts.reduce(0, +) * 4)
        defer { activity.end() }
        let sendBuffer: UnsafeRawPointer? = inPlace ? UnsafeRawPointer(CMPI_IN_PLACE()) : UnsafeRawPointer(send)
        if counts.allSatisfy({ $0 == counts[0] }) {
            try check("MPI_Reduce_scatter_block",
                      MPI_Reduce_scatter_block(sendBuffer, receive, Int32(counts[0]), CMPI_FLOAT(), CMPI_SUM(), world))
        } else {
            let counts32 = counts.map { Int32($0) }
            try check(call, MPI_Reduce_scatter(sendBuffer, receive, counts32, CMPI_FLOAT(), CMPI_SUM(), world))
        }
    }

    public func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws {
        try usable("MPI_Allreduce")
        let (datatype, operation) = wireType(precision)
        activity.begin(.allReduce, bytes: count * precision.stride)
        defer { activity.end() }
        for (offset, chunk) in chunks(count) {
            try check("MPI_Allreduce", MPI_Allreduce(CMPI_IN_PLACE(), buffer + offset * precision.stride, Int32(chunk),
                                                     datatype, operation, world))
        }
    }

    public func startAllReduce(_ buffer: UnsafeMutableRawPointer, count: Int, precision: WirePrecision) throws -> AllReduceHandle {
        try usable("MPI_Iallreduce")
        let (datatype, operation) = wireType(precision)
        let handle = MPIRequestHandle(communicator: self, sequence: activity.nextSequence(), bytes: count * precision.stride)
        for (offset, chunk) in chunks(count) {
            var request: MPI_Request? = CMPI_REQUEST_NULL()
            try check("MPI_Iallreduce", MPI_Iallreduce(CMPI_IN_PLACE(), buffer + offset * precision.stride, Int32(chunk),
                                                       datatype, operation, world, &request))
            handle.requests.append(request)
        }
        return handle
    }

    public func allReduceMax(_ values: inout [Double]) throws {
        try usable("MPI_Allreduce")
        let count = try int32(values.count, "MPI_Allreduce", "count")
        activity.begin(.allReduceMax, bytes: values.count * 8)
        defer { activity.end() }
        try values.withUnsafeMutableBufferPointer { buffer in
            try check("MPI_Allreduce", MPI_Allreduce(CMPI_IN_PLACE(), buffer.baseAddress, count, CMPI_DOUBLE(), CMPI_MAX(), world))
        }
    }

    public func sendReceive(_ send: UnsafeRawPointer, bytes: Int, to destination: Int,
                            into receive: UnsafeMutableRawPointer, from source: Int) throws {
        let call = "MPI_Sendrecv"
        try usable(call)
        try checkRoot(destination, call)
        try checkRoot(source, call)
        guard bytes >= 0 else { throw CommunicatorError(call: call, rank: rank, size: size, message: "negative byte count \(bytes)") }
        guard send + bytes <= UnsafeRawPointer(receive) || UnsafeRawPointer(receive) + bytes <= send || bytes == 0 else {
            throw CommunicatorError(call: call, rank: rank, size: size, message: "the send and receive buffers overlap")
        }
        activity.begin(.sendReceive, bytes: bytes)
        defer { activity.end() }
        var offset = 0
        repeat {
            let chunk = min(bytes - offset, Self.maximumCount)
            try check(call, MPI_Sendrecv(send + offset, Int32(chunk), CMPI_BYTE(), Int32(destination), Self.ringTag,
                                         receive + offset, Int32(chunk), CMPI_BYTE(), Int32(source), Self.ringTag,
                                         world, CMPI_STATUS_IGNORE()))
            offset += chunk
        } while offset < bytes
    }

    /// The tag of `sendReceive`'s messages (nothing else sends point-to-point).
    private static let ringTag: Int32 = 22

    public func abort(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("contrast: rank \(rank) of \(size): error: \(message)\n".utf8))
        abortJob(code: code)
    }

    /// MPI_Abort with `code` and nothing printed (callable from any thread: the watchdog's).
    public func abortJob(code: Int32) -> Never {
        var finalizedNow: Int32 = 0
        MPI_Finalized(&finalizedNow)
        if finalizedNow == 0 { MPI_Abort(world, code) }
        exit(code)  // MPI_Abort does not return; this covers a finalized MPI.
    }

    /// Starts a watchdog that aborts the job (exit status `CollectiveWatchdog.exitCode`) when a
    /// collective of this communicator has waited more than `seconds`.
    public func startWatchdog(seconds: Double, evaluationSeconds: Double = 0) -> CollectiveWatchdog? {
        let watchdog = CollectiveWatchdog(activity: activity, limit: seconds, evaluationLimit: evaluationSeconds, rank: rank) { [self] in
            abortJob(code: CollectiveWatchdog.exitCode)
        }
        watchdog.start()
        return watchdog
    }

    @discardableResult
    public func enter(_ phase: CollectiveActivity.Phase) -> CollectiveActivity.Phase {
        activity.enter(phase)
    }

    // MARK: - Helpers

    /// The wire datatype and reduction of a precision.
    private func wireType(_ precision: WirePrecision) -> (MPI_Datatype?, MPI_Op?) {
        switch precision {
        case .fp32: return (CMPI_FLOAT(), CMPI_SUM())
        case .fp16: return (CMPI_UINT16(), halfSumOperation)
        case .bf16: return (CMPI_UINT16(), bfloatSumOperation)
        }
    }

    /// (offset, count) pieces of at most `maximumCount` elements; none for count 0 but one
    /// empty piece, so every rank still enters the collective.
    private func chunks(_ count: Int) -> [(Int, Int)] {
        if count <= Self.maximumCount { return [(0, max(count, 0))] }
        return stride(from: 0, to: count, by: Self.maximumCount).map { ($0, min(Self.maximumCount, count - $0)) }
    }

    /// The fp16 / bf16 sums as commutative MPI reductions; their bodies are the C kernels.
    private func createOperations() throws {
        try check("MPI_Op_create", MPI_Op_create({ input, accumulator, length, _ in
            guard let input, let accumulator, let length else { return }
            HalfPrecision.halfSum(input.assumingMemoryBound(to: UInt16.self), into: accumulator.assumingMemoryBound(to: UInt16.self),
                                  count: Int(length.pointee))
        }, 1, &halfSumOperation))
        try check("MPI_Op_create", MPI_Op_create({ input, accumulator, length, _ in
            guard let input, let accumulator, let length else { return }
            HalfPrecision.bfloatSum(input.assumingMemoryBound(to: UInt16.self), into: accumulator.assumingMemoryBound(to: UInt16.self),
                                    count: Int(length.pointee))
        }, 1, &bfloatSumOperation))
    }

    private func checkCounts(_ counts: [Int], _ call: String) throws {
        guard counts.count == size else {
            throw CommunicatorError(call: call, rank: rank, size: size, message: "\(counts.count) counts given for \(size) ranks")
        }
        if let bad = counts.first(where: { $0 < 0 }) {
            throw CommunicatorError(call: call, rank: rank, size: size, message: "negative count \(bad)")
        }
    }

    private func checkRoot(_ root: Int, _ call: String) throws {
        guard (0..<size).contains(root) else {
            throw CommunicatorError(call: call, rank: rank, size: size, message: "root \(root) out of range 0..<\(size)")
        }
    }
}

/// The MPI requests of one non-blocking all-reduce (one per chunk of at most Int32.max elements).
final class MPIRequestHandle: AllReduceHandle {
    var requests: [MPI_Request?] = []
    private let communicator: MPICommunicator
    private var complete = false
    /// The collective's sequence number and size, for the watchdog's record of a wait.
    private let sequence: Int
    private let bytes: Int

    init(communicator: MPICommunicator, sequence: Int, bytes: Int) {
        self.communicator = communicator
        self.sequence = sequence
        self.bytes = bytes
    }

    func test() throws -> Bool {
        if complete { return true }
        var flag: Int32 = 0
        try communicator.check("MPI_Testall", MPI_Testall(Int32(requests.count), &requests, &flag, CMPI_STATUSES_IGNORE()))
        complete = flag != 0
        return complete
    }

    func wait() throws {
        if complete { return }
        communicator.activity.beginWait(sequence, .allReduce, bytes: bytes)
        defer { communicator.activity.end() }
        try communicator.check("MPI_Waitall", MPI_Waitall(Int32(requests.count), &requests, CMPI_STATUSES_IGNORE()))
        complete = true
    }

    /// A handle dropped in flight still waits: MPI would otherwise write into a buffer its
    /// owner believes free.
    deinit { if !complete { try? wait() } }
}

extension Array where Element == Int {
    /// [0, a0, a0 + a1, ...]: the start of each rank's block.
    func prefixSums() -> [Int] {
        var sums = [Int](), total = 0
        for value in self { sums.append(total); total += value }
        return sums
    }
}
