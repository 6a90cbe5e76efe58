import Foundation
import TestSupport
import Testing
@testable import Training

/// Under mpirun, contrast's own message is the one the user reads: a config error is printed
/// once (by rank 0) and ends every rank with P = 1's status without MPI_Abort.
@Suite(.serialized) struct MPIMessageTests {
    static let badKey = ["train", "--set", "optimiser.lr=0.1"]

    /// The error's lines on standard error (other lines there are mpirun's or the script's).
    func errorLines(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { $0.hasPrefix("contrast:") }
    }

    @Test func configErrorUnderMpirunIsPrintedOnceWithoutMPIAbort() throws {
        let alone = try runContrast(ranks: 1, Self.badKey)
        #expect(alone.status == 1)
        let two = try runContrast(ranks: 2, Self.badKey)
        #expect(two.status == alone.status, "\(two.error)")
        #expect(errorLines(two.error) == errorLines(alone.error), "\(two.error)")
        #expect(errorLines(two.error).count == 1 && two.error.contains("optimiser"), "\(two.error)")
        #expect(!two.error.contains("MPI_ABORT") && !two.error.contains("MPI_COMM_WORLD"), "\(two.error)")
    }
}
