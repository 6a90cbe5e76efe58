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
            + "started yet (no start record) while its directory keeps changing, and gives up once nothing in it has changed "
            + "for --timeout seconds; stops when every rank has ended or the run's processes are gone (killed or crashed), "
            + "and then prints how the run stands.")

    @Argument(help: "Run directory (run_dir of a contrast train run).") var runDirectory: String
    @Option(help: "Steps per row (default: the run's train.log_every_steps).") var every: Int?
    @Option(help: "Seconds between reads.") var interval: Double = 2
    @Option(help: "Flag a rank whose compute time exceeds the median of the others by this factor.") var stragglerFactor: Double = 1.5
    @Flag(help: "Print what is there now and exit.") var once = false
    @Option(help: "Seconds to wait for a run that has not started: for its metrics/ folder, then, without a change in RUN_DIR, for its start record.")
    var timeout: Double = 600
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
            // The row length comes from the run's config, which exists once its metrics do.
            let announced = once ? false : try waitForMetrics(url)
            let steps = every ?? (try? ConfigLoader.load(file: url.appendingPathComponent("config.yaml").path, overrides: []))?
                .train.logEverySteps ?? 10
            let follower = MetricsFollower(runDirectory: url, every: steps, stragglerFactor: stragglerFactor)
            var rows = once ? [] : try waitForStartRecord(follower, announced: announced)
            var headerShown = false
            while true {
                rows += try follower.poll()
                for row in rows {
                    if !headerShown { say(follower.header(ranks: row.busy.count)); headerShown = true }
                    say(follower.format(row))
                }
                rows = []
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

    /// Waits until the run has made its metrics folder, at most `timeout` seconds; returns
    /// whether it had to (and said so).
    private func waitForMetrics(_ url: URL) throws -> Bool {
        let metrics = url.appendingPathComponent("metrics").path
        guard !FileManager.default.fileExists(atPath: metrics) else { return false }
        say("waiting for a run to start in \(url.path) (up to \(RunLog.duration(timeout)); --timeout to change)")
        let deadline = Date().addingTimeInterval(timeout)
        while !FileManager.default.fileExists(atPath: metrics) {
            guard Date() < deadline else {
                throw RunDirectory.Failure(description: "no run started in \(url.path) within \(RunLog.duration(timeout)) "
                                           + "(no metrics/ folder): give the run_dir of a contrast train run")
            }
            Thread.sleep(forTimeInterval: min(interval, max(0.01, deadline.timeIntervalSinceNow)))
        }
        return true
    }

    /// Waits for the first `start` record, which carries the pids that tell a live run from a dead
    /// one; returns the rows read meanwhile. A run that dies while starting (after making its
    /// directory, before that record) writes nothing more, and no pid says it is gone: what says
    /// so is a directory in which nothing has changed for `timeout` seconds (counted from when
    /// tail began at the earliest, so a run still loading its data beside an old directory is
    /// given the whole timeout).
    private func waitForStartRecord(_ follower: MetricsFollower, announced: Bool) throws -> [MetricsFollower.Row] {
        var rows = try follower.poll()
        guard !follower.hasStartRecord else { return rows }
        let begun = Date()
        var announced = announced
        while true {
            rows += try follower.poll()
            if follower.hasStartRecord { return rows }
            let quietSince = max(begun, follower.lastChange ?? begun)
            if Date().timeIntervalSince(quietSince) >= timeout {
                throw RunDirectory.Failure(description: "no run started in \(follower.runDirectory.path): no start record, and nothing "
                    + "in it changed for \(RunLog.duration(timeout)), so the run died while starting or was never started; "
                    + "see its train.log and the launcher's output, or give --timeout to wait longer")
            }
            if !announced {
                say("waiting for the run in \(follower.runDirectory.path) to start (no start record yet; gives up after "
                    + "\(RunLog.duration(timeout)) without a change there; --timeout to change)")
                announced = true
            }
            Thread.sleep(forTimeInterval: min(interval, max(0.01, timeout - Date().timeIntervalSince(quietSince))))
        }
    }
}
