import Bench
import RunFiles
import Config
import ArgumentParser
import Foundation
import Training

/// `contrast tail RUN_DIR`: follow a run's metrics, all ranks, as a compact table.
struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow all ranks' metrics of a run live: one row per interval, stragglers flagged.",
        discussion: "Reads RUN_DIR/metrics/rank-<r>.jsonl (docs/monitoring.md) as they grow; stops when every rank has ended.")

    @Argument(help: "Run directory (run_dir of a contrast train run).") var runDirectory: String
    @Option(help: "Steps per row (default: the run's train.log_every_steps).") var every: Int?
    @Option(help: "Seconds between reads.") var interval: Double = 2
    @Option(help: "Flag a rank whose compute time exceeds the median of the others by this factor.") var stragglerFactor: Double = 1.5
    @Flag(help: "Print what is there now and exit.") var once = false

    func validate() throws {
        if let every, every < 1 { throw ValidationError("--every must be at least 1, got \(every)") }
        guard interval > 0 else { throw ValidationError("--interval must be positive, got \(interval)") }
        guard stragglerFactor > 1 else { throw ValidationError("--straggler-factor must be greater than 1, got \(stragglerFactor)") }
    }

    func run() throws {
        try reportingErrors {
            let url = URL(fileURLWithPath: runDirectory)
            let steps = every ?? (try? ConfigLoader.load(file: url.appendingPathComponent("config.yaml").path, overrides: []))?
                .train.logEverySteps ?? 10
            let follower = MetricsFollower(runDirectory: url, every: steps, stragglerFactor: stragglerFactor)
            var headerShown = false
            while true {
                for row in try follower.poll() {
                    if !headerShown { say(follower.header(ranks: row.busy.count)); headerShown = true }
                    say(follower.format(row))
                }
                if once || follower.finished { break }
                Thread.sleep(forTimeInterval: interval)
            }
            if follower.skippedLines > 0 { say("(\(follower.skippedLines) unreadable line(s) skipped)") }
        }
    }
}
