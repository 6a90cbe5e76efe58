import Foundation
import Synchronization

/// The collective a rank is blocked in right now, kept cheaply for the watchdog.
///
/// Every collective gets the next sequence number (1, 2, ...), the same on every rank since all
/// ranks call collectives in the same order. A blocking collective is "waiting" for its whole
/// call; a non-blocking all-reduce only while its handle's `wait()` blocks (`test()` never
/// waits). Recording a wait is five relaxed/release atomic stores and one clock read: no lock,
/// no allocation. The slot is a seqlock: `since` is cleared first and set last, so a reader
/// that sees the same non-zero `since` before and after reading the other fields has a
/// consistent record.
public final class CollectiveActivity: Sendable {
    /// The collectives, by name as the watchdog reports them.
    public enum Operation: Int, Sendable, CaseIterable {
        case barrier = 1, broadcast, allGather, reduceScatter, allReduce, allReduceMax, gather, sendReceive

        public var name: String {
            switch self {
            case .barrier: "barrier"
            case .broadcast: "broadcast"
            case .allGather: "allgather"
            case .reduceScatter: "reduce-scatter"
            case .allReduce: "allreduce"
            case .allReduceMax: "allreduce-max"
            case .gather: "gather"
            case .sendReceive: "sendrecv"
            }
        }
    }

    /// What the rank is doing, which decides how long a collective may wait: a training step's
    /// collectives take milliseconds, while in evaluation rank 0 classifies alone for minutes and
    /// the other ranks wait for it.
    public enum Phase: Int, Sendable {
        case training = 0, evaluation

        /// The config key of the phase's limit.
        public var key: String {
            switch self {
            case .training: "communication.watchdog_seconds"
            case .evaluation: "communication.eval_watchdog_seconds"
            }
        }
    }

    /// A consistent view of the wait in progress.
    public struct Wait: Sendable, Equatable {
        public var sequence: Int
        public var operation: Operation
        public var bytes: Int
        /// Seconds since the wait began.
        public var seconds: Double
        /// The phase the rank was in when the watchdog looked.
        public var phase: Phase = .training
    }

    private let lastSequence = Atomic<Int>(0)
    private let sequence = Atomic<Int>(0)
    private let operation = Atomic<Int>(0)
    private let bytes = Atomic<Int>(0)
    /// CLOCK_MONOTONIC nanoseconds when the current wait began; 0: not waiting.
    private let since = Atomic<UInt64>(0)
    /// `Phase` raw value.
    private let phase = Atomic<Int>(0)

    public init() {}

    /// The next collective's sequence number (a non-blocking start: nothing waits yet).
    public func nextSequence() -> Int {
        lastSequence.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// A blocking collective begins: numbers it and marks the rank waiting in it. Returns its number.
    @discardableResult
    public func begin(_ operation: Operation, bytes: Int) -> Int {
        let number = nextSequence()
        beginWait(number, operation, bytes: bytes)
        return number
    }

    /// The rank blocks on collective `number` (started earlier, or just now).
    public func beginWait(_ number: Int, _ operation: Operation, bytes: Int) {
        since.store(0, ordering: .releasing)
        sequence.store(number, ordering: .relaxed)
        self.operation.store(operation.rawValue, ordering: .relaxed)
        self.bytes.store(bytes, ordering: .relaxed)
        since.store(Self.nanoseconds(), ordering: .releasing)
    }

    /// The wait is over.
    public func end() {
        since.store(0, ordering: .releasing)
    }

    /// Enters `phase`; returns the phase left, for the caller to restore.
    @discardableResult
    public func enter(_ phase: Phase) -> Phase {
        Phase(rawValue: self.phase.exchange(phase.rawValue, ordering: .relaxed)) ?? .training
    }

    public var currentPhase: Phase { Phase(rawValue: phase.load(ordering: .relaxed)) ?? .training }

    /// The wait in progress, if any.
    public func currentWait() -> Wait? {
        let start = since.load(ordering: .acquiring)
        guard start != 0 else { return nil }
        let number = sequence.load(ordering: .relaxed)
        let code = operation.load(ordering: .relaxed)
        let size = bytes.load(ordering: .relaxed)
        guard since.load(ordering: .acquiring) == start, let kind = Operation(rawValue: code) else { return nil }
        let now = Self.nanoseconds()
        return Wait(sequence: number, operation: kind, bytes: size, seconds: Double(now &- start) * 1e-9, phase: currentPhase)
    }

    /// CLOCK_MONOTONIC in nanoseconds, never 0.
    static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec) | 1
    }
}

/// A thread per rank that ends the job when a collective has waited too long
/// (`communication.watchdog_seconds`), instead of letting it hang until the cluster's time limit.
///
/// About once per `interval` it looks at the rank's `CollectiveActivity`; a wait older than its
/// phase's limit (`limit` in training, `evaluationLimit` in evaluation) is reported once, as one line on standard error and in the rank's log, and
/// after 1.5 intervals (so every other rank stuck in the collective reports its own line too)
/// `abort` ends the job (MPI_Abort: every rank exits). A rank that is itself stuck outside MPI
/// (a hang in compute) is not waiting in a collective: its partners are, and their watchdogs fire.
public final class CollectiveWatchdog: Sendable {
    /// Exit status of a job the watchdog ended (EX_UNAVAILABLE: a peer stopped answering).
    public static let exitCode: Int32 = 69

    public let activity: CollectiveActivity
    public let limit: Double
    /// The limit while the rank evaluates (0: evaluation is not watched).
    public let evaluationLimit: Double
    public let rank: Int
    private let interval: Double
    private let stopped = Atomic<Bool>(false)
    private let logFile = Mutex<String?>(nil)
    private let abort: @Sendable () -> Never

    /// `abort` must end the whole job; it is called at most once, from the watchdog's thread.
    public init(activity: CollectiveActivity, limit: Double, evaluationLimit: Double = 0, rank: Int, interval: Double = 1,
                abort: @escaping @Sendable () -> Never) {
        self.activity = activity
        self.limit = limit
        self.evaluationLimit = evaluationLimit
        self.rank = rank
        self.interval = interval
        self.abort = abort
    }

    /// The line a stuck wait produces.
    public static func message(rank: Int, wait: CollectiveActivity.Wait) -> String {
        String(format: "rank %d: collective #%d (%@, %d bytes) has not completed after %.1f s%@; aborting the job (%@)",
               rank, wait.sequence, wait.operation.name, wait.bytes, wait.seconds, wait.phase == .evaluation ? " in evaluation" : "",
               wait.phase.key)
    }

    /// Also append the line to this file (the rank's log) when firing.
    public func logTo(_ path: String) {
        logFile.withLock { $0 = path }
    }

    /// Starts the thread.
    public func start() {
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                usleep(UInt32(interval * 1e6))
                if stopped.load(ordering: .relaxed) { return }
                if let wait = activity.currentWait() {
                    let allowed = wait.phase == .evaluation ? evaluationLimit : limit
                    if allowed > 0 && wait.seconds > allowed { fire(wait) }
                }
            }
        }
        thread.name = "contrast-watchdog"
        thread.start()
    }

    /// Stops the thread (it exits within `interval`).
    public func stop() {
        stopped.store(true, ordering: .relaxed)
    }

    private func fire(_ wait: CollectiveActivity.Wait) -> Never {
        let line = Self.message(rank: rank, wait: wait)
        FileHandle.standardError.write(Data("contrast: \(line)\n".utf8))
        if let path = logFile.withLock({ $0 }), let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            let formatter = ISO8601DateFormatter()
            handle.write(Data("\(formatter.string(from: Date())) ERROR \(line)\n".utf8))
            try? handle.synchronize()
            try? handle.close()
        }
        usleep(UInt32(interval * 1.5e6))
        abort()
    }
}
