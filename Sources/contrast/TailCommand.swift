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
        discussion: "Reads RUN_DIR/metrics/rank-<r>.jsonl (docs/monitoring.md) as they grow. Waits for a run that has not "
            + "started yet (up to --timeout seconds); stops when every rank has ended or the run's processes are gone "
            + "(killed or crashed), and then prints how the run stands.")

    @Argument(help: "Run directory (run_dir of a contrast train run).") var runDirectory: String
    @Option(help: "Steps per row (default: the run's train.log_every_steps).") var every: Int?
    @Option(help: "Seconds between reads.") var interval: Double = 2
    @Option(help: "Flag a rank whose compute time exceeds the median of the others by this factor.") var stragglerFactor: Double = 1.5
    @Flag(help: "Print what is there now and exit.") var once = false
    @Option(help: "Seconds to wait for a run that has not started (no RUN_DIR/metrics/ yet).") var timeout: Double = 600
    @Option(help: "A rank on another host (or without a recorded pid) counts as gone when its newest record is this many seconds old.")
    var staleAfter: Double = 600

    func validate() throws {
        if let every, every < 1 { throw ValidationError("--every must be at least 1, got \(every)") }
        guard interval > 0 else { throw ValidationError("--interval must be positive, got \(interval)") }
        guard timeout >= 0 else { throw ValidationError("--timeout must not be negative, got \(timeout)") }
        guard staleAfter > 0 else { throw ValidationError("--stale-after must be positive, got \(staleAfter)") }
        guard stragglerFactor > 1 else { throw ValidationError("--straggler-factor must be greater than 1, got \(stragglerFactor)") }
    }

    func run() throws {
        try reportingErrors {
            let url = URL(fileURLWithPath: runDirectory)
            if !once { try waitForStart(url) }
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
                if follower.processesGone(staleAfter: staleAfter) {
                    // Whatever the last process wrote before it went.
                    for row in try follower.poll() { say(follower.format(row)) }
                    break
                }
                Thread.sleep(forTimeInterval: interval)
            }
            if follower.skippedLines > 0 { say("(\(follower.skippedLines) unreadable line(s) skipped)") }
            if !once { say("run " + RunStatus.of(try RunMetrics.read(runDirectory: url), staleAfter: staleAfter).summary) }
        }
    }

    /// Waits until the run has made its metrics folder, at most `timeout` seconds.
    private func waitForStart(_ url: URL) throws {
        let metrics = url.appendingPathComponent("metrics").path
        guard !FileManager.default.fileExists(atPath: metrics) else { return }
        say("waiting for a run to start in \(url.path) (up to \(RunLog.duration(timeout)); --timeout to change)")
        let deadline = Date().addingTimeInterval(timeout)
        while !FileManager.default.fileExists(atPath: metrics) {
            guard Date() < deadline else {
                throw RunDirectory.Failure(description: "no run started in \(url.path) within \(RunLog.duration(timeout)) "
                                           + "(no metrics/ folder): give the run_dir of a contrast train run")
            }
            Thread.sleep(forTimeInterval: min(interval, max(0.01, deadline.timeIntervalSinceNow)))
        }
    }
}
