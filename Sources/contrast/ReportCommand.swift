import Bench
import Evaluation
import RunFiles
import ArgumentParser
import Foundation
import Training

/// `contrast report RUN_DIR`: one self-contained HTML page about a run (docs/monitoring.md).
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an HTML report of a run (summary, charts, PCA scatters): RUN_DIR/report.html.",
        discussion: "Works on a finished run and on one in progress. The page is a single file with inline SVG: no scripts, no network.")

    @Argument(help: "A run directory (the run_dir of a training run).") var runDirectory: String
    @Option(help: "Where to write the page (default RUN_DIR/report.html).") var out: String?

    func run() throws {
        try reportingErrors {
            let directory = URL(fileURLWithPath: runDirectory)
            let written = try Report.write(runDirectory: directory, to: out.map { URL(fileURLWithPath: $0) })
            say(String(format: "report: %@ (%.0f KB)", written.file.path, Double(written.bytes) / 1024))
        }
    }
}
