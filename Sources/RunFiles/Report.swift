import Config
import Foundation
import Storage
import Yams

/// `contrast report RUN_DIR`: one self-contained HTML page about a run — a summary table,
/// line charts of the metrics against the step, and PCA scatters of the test representations.
/// Inline SVG and CSS only: no script, no network, readable from a copied file.
///
/// Works on a run in progress (or killed): missing files and half-written lines are noted,
/// not fatal. Only a directory without any `metrics/rank-<r>.jsonl` is an error.
public enum Report {
    public static let fileName = "report.html"

    /// The page for `runDirectory`. `now` is printed as the generation time.
    public static func html(runDirectory: URL, now: Date = Date()) throws -> String {
        let run = try RunReport(directory: runDirectory)
        return ReportPage(run: run, generated: now).render()
    }

    /// Renders the page and writes it atomically to `output` (default RUN_DIR/report.html).
    /// Returns the file written and its size in bytes.
    @discardableResult
    public static func write(runDirectory: URL, to output: URL? = nil) throws -> (file: URL, bytes: Int) {
        let file = output ?? runDirectory.appendingPathComponent(fileName)
        let data = Data(try html(runDirectory: runDirectory).utf8)
        try AtomicFile.write(data, to: file)
        return (file, data.count)
    }
}

/// Everything the page shows, read once from the run directory.
struct RunReport {
    var directory: URL
    var metrics: RunMetrics
    var configText: String?
    var config: Node?
    var logTail: [String]
    var totalStepsFromLog: Int?
    var finished: Bool
    /// (directory name, step, complete) of `checkpoints/step-*`, ascending.
    var checkpoints: [(name: String, step: Int, complete: Bool)]
    /// The data set's class names by label, when it has them (`classNames(dataset:path:)`).
    var classNames: [String]? = nil

    init(directory: URL) throws {
        self.directory = directory
        metrics = try RunMetrics.read(runDirectory: directory)
        configText = try? String(contentsOf: directory.appendingPathComponent("config.yaml"), encoding: .utf8)
        config = configText.flatMap { try? Yams.compose(yaml: $0) }
        let log = (try? String(contentsOf: directory.appendingPathComponent("train.log"), encoding: .utf8)) ?? ""
        let lines = log.split(separator: "\n", omittingEmptySubsequences: true)
        logTail = lines.suffix(30).map(String.init)
        totalStepsFromLog = Self.totalSteps(inLog: lines.prefix(5).joined(separator: "\n"))
        finished = FileManager.default.fileExists(atPath: directory.appendingPathComponent("weights.bin").path)
        let checkpointsDirectory = directory.appendingPathComponent("checkpoints")
        checkpoints = ((try? FileManager.default.contentsOfDirectory(atPath: checkpointsDirectory.path)) ?? []).compactMap { name in
            guard name.hasPrefix("step-"), let step = Int(name.dropFirst(5)) else { return nil }
            let manifest = checkpointsDirectory.appendingPathComponent(name).appendingPathComponent("manifest.json")
            return (name, step, FileManager.default.fileExists(atPath: manifest.path))
        }.sorted { $0.step < $1.step }
        classNames = Self.classNames(dataset: config("data.dataset"), path: config("data.path"))
    }

    /// Class names by label: Fashion-MNIST's for a run on its IDX files; for a prepared data set
    /// the optional `classes` list of its dataset.json (docs/data-format.md; `prepare
    /// fashion-mnist` writes one), the test split's first. Nil when none is known or the data
    /// set is not where the config says (a report made elsewhere).
    static func classNames(dataset: String?, path: String?) -> [String]? {
        if dataset == DatasetKind.fashionMNIST.rawValue { return ReportPage.fashionMNISTClasses }
        guard dataset == DatasetKind.prepared.rawValue, let path, !path.isEmpty else { return nil }
        for directory in [path + "/test", path + "/train", path] {
            guard let data = FileManager.default.contents(atPath: directory + "/dataset.json") else { continue }
            let manifest = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            return (manifest?["classes"] as? [String]).flatMap { $0.isEmpty ? nil : $0 }
        }
        return nil
    }

    /// The trainer's first log line says "..., T steps (B per epoch, ...".
    static func totalSteps(inLog text: String) -> Int? {
        guard let range = text.range(of: #"[0-9]+ steps \("#, options: .regularExpression) else { return nil }
        return Int(text[range].prefix { $0.isNumber })
    }

    /// A config value by dotted path ("optimizer.lr"), as written; nil when absent.
    func config(_ path: String) -> String? {
        var node = config
        for key in path.split(separator: ".") { node = node?[Node(String(key))] }
        guard let node else { return nil }
        switch node {
        case .scalar(let scalar): return scalar.string
        case .sequence(let sequence): return "[" + sequence.compactMap { $0.scalar?.string }.joined(separator: ", ") + "]"
        case .mapping, .alias: return nil
        }
    }

    var primary: RunMetrics.Rank { metrics.primary }
    var steps: [MetricsRecord] { primary.records(.step) }

    /// Ranks of the run: the start line's world size, else the number of rank files.
    var worldSize: (count: Int, source: String) {
        if let size = primary.start?["world_size"].flatMap(MetricsRecord.integer), size > 0 { return (size, "start line") }
        return (metrics.ranks.count, "metrics files")
    }

    var totalSteps: Int? {
        if let total = primary.start?["total_steps"].flatMap(MetricsRecord.integer) { return total }
        if let total = totalStepsFromLog { return total }
        if let maxSteps = config("train.max_steps").flatMap(Int.init), maxSteps > 0 { return maxSteps }
        return nil
    }

    /// Seconds of one step on this rank: the sum of its exposed parts.
    static func stepSeconds(_ record: MetricsRecord) -> Double? {
        let parts = StepPart.all.compactMap { record[$0.key] }
        return parts.isEmpty ? nil : parts.reduce(0, +)
    }
}

/// The parts a step's time is split into, in the order they happen (the stacking order).
struct StepPart {
    var key: String
    var name: String
    static let all = [
        StepPart(key: "time_data_wait", name: "data wait"), StepPart(key: "time_forward", name: "forward"),
        StepPart(key: "time_gather", name: "gather"), StepPart(key: "time_loss", name: "loss"),
        StepPart(key: "time_backward", name: "backward"),
        StepPart(key: "time_communication_exposed", name: "communication (exposed)"),
        StepPart(key: "time_optimizer", name: "optimizer"),
    ]
}
