/// An error that every rank of the job raised alike, with the same message: rank 0 prints it
/// once and every rank exits 1 after MPI_Finalize, as one process would (`Launch.runOnRanks`).
/// MPI_Abort, which would print Open MPI's abort text after the message and name one rank as
/// if the others were fine, is for errors only some ranks see.
public struct SameOnEveryRank: Error, CustomStringConvertible {
    public let error: any Error
    public init(_ error: any Error) { self.error = error }
    public var description: String { "\(error)" }
}

extension Communicator {
    /// Runs `body` on every rank and compares how it ended: when every rank threw an error with
    /// the same message (a batch that does not divide across the ranks, a data set every rank
    /// finds missing), throws it as `SameOnEveryRank`; when only some ranks threw, or threw
    /// different messages (a shard missing on one node), each of those rethrows its own, which
    /// aborts the job naming that rank, and the others wait in a barrier for that abort.
    ///
    /// `body` must make no collective call: a rank that throws before reaching one would leave
    /// the others waiting in it while it waits in this comparison.
    public func agreeing<Value>(_ body: () throws -> Value) throws -> Value {
        let outcome = Result { try body() }
        guard size > 1 else { return try outcome.get() }
        let message: String
        switch outcome {
        case .success: message = ""
        case .failure(let error): message = "\(error)"
        }
        // Rank 0's message, then whether each rank's equals it: the same decision on every rank.
        let rootMessage = try broadcast(message)
        var mine: UInt8 = message == rootMessage && message.utf8.count < 4095 ? 1 : 0
        var all = [UInt8](repeating: 0, count: size)
        try all.withUnsafeMutableBytes { try allGatherBytes(&mine, bytes: 1, into: $0.baseAddress!) }
        if all.allSatisfy({ $0 == 1 }) {
            switch outcome {
            case .success(let value): return value
            case .failure(let error): throw SameOnEveryRank(error)
            }
        }
        if case .failure(let error) = outcome { throw error }
        try barrier()   // never completes: a rank that failed aborts the job
        throw CommunicatorError(call: "agreeing", rank: rank, size: size, message: "another rank failed and did not abort the job")
    }
}
