import ArgumentParser
import Bench
import Distributed
import Foundation

/// Runs `body` on this rank (see `Launch.runOnRanks`): under mpirun an error on one rank
/// aborts the whole job with one line naming the rank, and an error every rank threw alike
/// is one line from rank 0 and exit status 1 on every rank; in one process an error is
/// reported as one line and exit status 1, like every other command.
///
/// Rank 0 prints an error every rank threw alike before MPI_Finalize: once the ranks have left
/// it, the first to exit 1 makes mpirun kill the others, and rank 0, still on its way to the
/// line, was killed before writing it now and then (across netns hosts, about one job in four).
func runOnRanks(_ body: (Communicator) throws -> Void) throws {
    try reportingErrors {
        var printed = false
        do {
            try Launch.runOnRanks { communicator in
                do { try body(communicator) } catch let error as SameOnEveryRank {
                    if communicator.rank == 0 {
                        FileHandle.standardError.write(Data("contrast: error: \(error)\n".utf8))
                        printed = true
                    }
                    throw error
                }
            }
        } catch let error as SameOnEveryRank {
            if !printed && Launch.environmentRank() == 0 { FileHandle.standardError.write(Data("contrast: error: \(error)\n".utf8)) }
            throw ExitCode(1)
        }
    }
}

/// `runOnRanks`, first starting `ranks` copies of this command through mpirun when asked for
/// more than one and not already under a launcher (`--ranks N` of the bench commands).
func runOnRanks(relaunchingAs ranks: Int, tcp: Bool = false, _ body: (Communicator) throws -> Void) throws {
    if ranks > 1 && !Launch.isUnderLauncher() {
        try reportingErrors { try Relaunch.underMPI(ranks: ranks, tcp: tcp) }
    }
    try runOnRanks(body)
}

/// `mpirun -np P contrast collectives-check` (hidden; run by the tests): every collective of the
/// communicator against the values each rank computes for itself (Bench's `CollectivesCheck`).
struct CollectivesCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "collectives-check",
        abstract: "Check every collective under mpirun against locally computed results (for tests).",
        shouldDisplay: false)

    @Option(help: "This rank throws an error midway (to test that the job aborts rather than hangs).")
    var failOnRank: Int?

    @Option(help: "Largest buffer in elements.")
    var largeCount = 2_214_528

    func run() throws {
        try runOnRanks { communicator in
            try CollectivesCheck.run(communicator: communicator, failOnRank: failOnRank, largeCount: largeCount)
            say("collectives-check: OK rank \(communicator.rank) of \(communicator.size)")
        }
    }
}

/// `contrast reducer-check` (hidden; run under mpirun by the tests): the fp16 gradient all-reduce
/// skips an overflowing step on every rank, recovers, keeps gradients near fp16's smallest normal,
/// and grows the scale back after its window (Bench's `ReducerCheck`).
struct ReducerCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reducer-check", shouldDisplay: false)

    func run() throws {
        try runOnRanks { communicator in
            try ReducerCheck.run(communicator: communicator)
            say("reducer-check: OK rank \(communicator.rank) of \(communicator.size)")
        }
    }
}
