import ArgumentParser
import Distributed
import Foundation
import Training

/// `contrast bench checkpoint [--ranks N]`.
struct BenchCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoint",
        abstract: "Save and load time of the full training state, and zstd compression with and without byte shuffling.")
    @Option(help: "Timed saves and loads per setting (median reported).") var repeats = 5
    @Option(help: "Ranks to start through mpirun when not already under a launcher.") var ranks = 1
    @OptionGroup var options: ConfigOptions

    func run() throws {
        try runOnRanks(relaunchingAs: ranks) { communicator in
            let report = try Training.Bench.checkpoint(config: try options.load(), communicator: communicator, repeats: repeats)
            if communicator.rank == 0 { say(report) }
        }
    }
}
