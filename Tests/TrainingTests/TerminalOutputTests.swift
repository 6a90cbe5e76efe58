import Foundation
import TestSupport
import Config
import Testing
@testable import Training

/// What a first run shows on the terminal (issue 19 item 7): no warnings on a healthy run, lines
/// that fit 120 columns, the resolved config's path instead of its text, and an evaluation
/// that says when it starts.
@Suite(.serialized) struct TerminalOutputTests {
    /// configs/smoke.yaml end to end, as getting-started runs it (only the run directory moved).
    @Test func smokeRunFitsTheTerminal() throws {
        let run = temporaryDirectory("terminal").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        // Paths are as long as the user's directory names: measured as the "RUN" and "PATH" of the docs.
        let shown = outcome.output.replacingOccurrences(of: run, with: "RUN")
            .replacingOccurrences(of: #"(?<![\w])/[^\s:;,()]+/[^\s:;,()]+"#, with: "PATH", options: .regularExpression)
        let lines = shown.split(separator: "\n")
        #expect(lines.count > 5)
        // The one warning a healthy smoke run may earn is a real data wait: a machine busy enough
        // (tests in parallel on two cores) to starve the view maker past both thresholds. The step
        // records say whether it did; then its warning is the only one allowed.
        let defaults = MonitorSection()
        let steps = try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "step" }
        let intervals = stride(from: 5, to: steps.count, by: 5).map { Array(steps[$0..<min($0 + 5, steps.count)]) }   // not the first
        let starved = intervals.contains { interval in
            let wait = interval.reduce(0.0) { $0 + ($1["time_data_wait"] as? Double ?? 0) }
            let total = interval.reduce(0.0) { $0 + Double(64) / ($1["images_per_second"] as? Double ?? 1) }
            return Monitor.waitedTooLong(dataWait: wait, total: total, steps: interval.count, monitor: defaults)
        }
        let warnings = lines.filter { $0.contains("WARNING") }
        if starved {
            #expect(warnings.allSatisfy { $0.contains("WARNING the training loop waited for data") }, "\(warnings)")
        } else {
            #expect(warnings.isEmpty && !outcome.error.contains("WARNING"), "\(outcome.output)\(outcome.error)")
        }
        for line in lines where !line.contains("WARNING") { #expect(line.count <= 120, "\(line.count) columns: \(line)") }
        #expect(outcome.output.contains(" resolved config: \(run)/config.yaml\n"), "\(outcome.output)")
        // No YAML dump: no line of the resolved config's text appears on its own.
        let yaml = try String(contentsOfFile: run + "/config.yaml", encoding: .utf8)
        #expect(yaml.contains("monitor:") && !outcome.output.contains("\nmonitor:") && !outcome.output.contains("  data_wait_fraction"))
        #expect(lines.contains { $0.contains("evaluating: kNN on 512 test samples against 2048 training samples") }, "\(outcome.output)")
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        #expect(log.contains("resolved config: \(run)/config.yaml") && !log.contains("\nmonitor:"))
    }

    /// The straggler rule: the ratio alone, or the milliseconds alone, is no straggler; both are.
    @Test func stragglerNeedsRatioAndMilliseconds() {
        var monitor = MonitorSection()
        monitor.stragglerFactor = 1.5
        monitor.stragglerMinMs = 10
        #expect(!Monitor.isStraggler(seconds: 0.0015, median: 0.001, monitor: monitor))    // 1.5x... and 0.5 ms
        #expect(!Monitor.isStraggler(seconds: 0.0030, median: 0.001, monitor: monitor))    // 3x, only 2 ms
        #expect(!Monitor.isStraggler(seconds: 0.120, median: 0.100, monitor: monitor))     // 20 ms, only 1.2x
        #expect(Monitor.isStraggler(seconds: 0.020, median: 0.001, monitor: monitor))      // 20x and 19 ms
        monitor.stragglerMinMs = 0
        #expect(Monitor.isStraggler(seconds: 0.0030, median: 0.001, monitor: monitor))     // 0: the ratio alone
    }

    /// The data-wait rule over an interval of 10 steps: fraction and milliseconds per step both.
    @Test func dataWaitNeedsFractionAndMilliseconds() {
        var monitor = MonitorSection()
        monitor.dataWaitFraction = 0.1
        monitor.dataWaitMinMs = 2
        // 0.3 ms steps waiting 0.1 ms each: 33 % of the time but 0.1 ms a step.
        #expect(!Monitor.waitedTooLong(dataWait: 10 * 0.0001, total: 10 * 0.0003, steps: 10, monitor: monitor))
        // 100 ms steps waiting 5 ms each: 5 ms a step but 5 %.
        #expect(!Monitor.waitedTooLong(dataWait: 10 * 0.005, total: 10 * 0.1, steps: 10, monitor: monitor))
        // 50 ms steps waiting 10 ms each: both.
        #expect(Monitor.waitedTooLong(dataWait: 10 * 0.010, total: 10 * 0.05, steps: 10, monitor: monitor))
        monitor.dataWaitMinMs = 0
        #expect(Monitor.waitedTooLong(dataWait: 10 * 0.0001, total: 10 * 0.0003, steps: 10, monitor: monitor))
    }
}
