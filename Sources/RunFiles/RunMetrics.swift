import Foundation

/// What a run directory's `metrics/rank-<r>.jsonl` files hold, read for `contrast report`.
///
/// Reading is forgiving, because a report is often made of a run still in progress: a line
/// that does not parse (a half-written last line, a garbled one) is skipped and counted, a
/// field of an unexpected type is ignored. Lines written before the `type` field existed get
/// their kind from their keys (`MetricsKind.infer`).
public struct RunMetrics {
    /// One rank's file, records in file order.
    public struct Rank {
        public var rank: Int
        public var file: URL
        public var records: [MetricsRecord] = []
        /// Lines that were not a JSON object (counted, not fatal).
        public var unparsableLines = 0

        public func records(_ kind: MetricsKind) -> [MetricsRecord] { records.filter { $0.kind == kind } }
        public var start: MetricsRecord? { records.first { $0.kind == .start } }
    }

    /// The PCA picture of the test representations at one evaluation (`eval/pca-step-<S>.json`).
    public struct PCAPoints {
        public var step: Int
        public var epoch: Int?
        /// (PC1, PC2, label); label -1 means unlabelled.
        public var points: [(x: Double, y: Double, label: Int)]
        public var file: URL
    }

    public var directory: URL
    /// Ranks in ascending order.
    public var ranks: [Rank]
    public var pca: [PCAPoints]
    /// PCA files that did not parse.
    public var unparsablePCAFiles: [String]

    /// Rank 0's file, or the lowest rank present (every rank writes steps; rank 0 also evals).
    public var primary: Rank { ranks.first { $0.rank == 0 } ?? ranks[0] }

    /// Reads every `metrics/rank-<r>.jsonl` and `eval/pca-step-<S>.json` of `directory`.
    /// Throws only when there is no metrics file at all: then it is not a run directory.
    public static func read(runDirectory directory: URL) throws -> RunMetrics {
        let metricsDirectory = directory.appendingPathComponent("metrics")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: metricsDirectory.path)) ?? []
        var ranks: [Rank] = []
        for name in names {
            guard let rank = rankOfFileName(name) else { continue }
            ranks.append(readRank(rank, file: metricsDirectory.appendingPathComponent(name)))
        }
        guard !ranks.isEmpty else {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory)
            let why = !exists ? "it does not exist" : !isDirectory.boolValue ? "it is a file" : "it has no metrics/rank-<r>.jsonl files"
            throw RunDirectory.Failure(description: "\(directory.path) is not a run directory (\(why)); pass the run_dir of a training run")
        }
        ranks.sort { $0.rank < $1.rank }
        var result = RunMetrics(directory: directory, ranks: ranks, pca: [], unparsablePCAFiles: [])
        result.readPCAFiles()
        return result
    }

    /// `rank-<r>.jsonl` -> r.
    static func rankOfFileName(_ name: String) -> Int? {
        guard name.hasPrefix("rank-"), name.hasSuffix(".jsonl") else { return nil }
        let digits = name.dropFirst(5).dropLast(6)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    static func readRank(_ rank: Int, file: URL) -> Rank {
        var result = Rank(rank: rank, file: file)
        guard let data = try? Data(contentsOf: file) else {
            result.unparsableLines = 1
            return result
        }
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { continue }
            guard let fields = try? decoder.decode([String: MetricsValue].self, from: Data(line)) else {
                result.unparsableLines += 1
                continue
            }
            result.records.append(MetricsRecord(fields: fields))
        }
        return result
    }

    mutating func readPCAFiles() {
        let evalDirectory = directory.appendingPathComponent("eval")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: evalDirectory.path)) ?? [])
            .filter { $0.hasPrefix("pca-step-") && $0.hasSuffix(".json") }
        struct File: Decodable {
            var step: Int
            var epoch: Int?
            var points: [[Double?]]
        }
        for name in names {
            let url = evalDirectory.appendingPathComponent(name)
            guard let data = try? Data(contentsOf: url), let file = try? JSONDecoder().decode(File.self, from: data) else {
                unparsablePCAFiles.append(name)
                continue
            }
            let points = file.points.compactMap { point -> (x: Double, y: Double, label: Int)? in
                guard point.count >= 2, let x = point[0], let y = point[1], x.isFinite, y.isFinite else { return nil }
                let label = point.count >= 3 ? (point[2].map { Int(exactly: $0.rounded()) ?? -1 } ?? -1) : -1
                return (x, y, label)
            }
            pca.append(PCAPoints(step: file.step, epoch: file.epoch, points: points, file: url))
        }
        pca.sort { $0.step < $1.step }
    }
}

/// What a metrics line reports (its `type` field, or inferred from its keys).
public enum MetricsKind: String, Sendable, CaseIterable {
    case start, step, epoch, eval, geometry, event
    /// How a process's training loop ended (written once per rank and session; none after kill -9 or a crash).
    case end
    /// A line whose kind is neither given nor recognisable; kept, not plotted.
    case unknown

    /// The kind of a line without a `type` field (written before schema version 1).
    static func infer(_ fields: [String: MetricsValue]) -> MetricsKind {
        let keys = fields.keys
        if keys.contains("epoch_mean_loss") { return .epoch }
        if keys.contains("knn_accuracy") || keys.contains(where: { $0.hasPrefix("recall_at_") }) { return .eval }
        if keys.contains("alignment") || keys.contains("uniformity") || keys.contains("effective_rank") { return .geometry }
        if keys.contains("schema_version") || keys.contains("world_size") { return .start }
        if keys.contains("time_forward") || keys.contains("loss") { return .step }
        // Anything else with fields of its own (such as the trainer's checkpoint lines) is an event.
        return keys.contains(where: { $0 != "step" && $0 != "epoch" && $0 != "time" }) ? .event : .unknown
    }
}

/// One value of a metrics line, as loosely typed as JSON is.
public enum MetricsValue: Decodable, Sendable {
    case number(Double)
    case bool(Bool)
    case string(String)
    case strings([String])
    /// null (a non-finite number, RunLog writes), or an object / array of another shape.
    case other

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Double.self) { self = .number(number) }
        else if let bool = try? container.decode(Bool.self) { self = .bool(bool) }
        else if let string = try? container.decode(String.self) { self = .string(string) }
        else if let strings = try? container.decode([String].self) { self = .strings(strings) }
        else { self = .other }
    }
}

/// One metrics line: its kind, numbers (booleans as 0 / 1) and texts.
public struct MetricsRecord: Sendable {
    public var kind: MetricsKind
    public var numbers: [String: Double] = [:]
    public var texts: [String: String] = [:]
    public var lists: [String: [String]] = [:]

    init(fields: [String: MetricsValue]) {
        if case .string(let type)? = fields["type"] {
            kind = MetricsKind(rawValue: type) ?? .unknown
        } else {
            kind = MetricsKind.infer(fields)
        }
        for (key, value) in fields where key != "type" {
            switch value {
            case .number(let v): if v.isFinite { numbers[key] = v }
            case .bool(let v): numbers[key] = v ? 1 : 0
            case .string(let v): texts[key] = v
            case .strings(let v): lists[key] = v
            case .other: break
            }
        }
    }

    public subscript(_ key: String) -> Double? { numbers[key] }
    public var step: Int? { numbers["step"].flatMap(Self.integer) }

    /// A number as an Int, nil when it is out of Int's range (a garbled line must not trap).
    static func integer(_ value: Double) -> Int? { Int(exactly: value.rounded()) }
}

extension Array where Element == MetricsRecord {
    /// (step, value) of every record that has both, in step order. A step seen twice (a run
    /// resumed from a checkpoint repeats the steps after it) keeps its last value, so the
    /// lines do not fold back on themselves.
    func series(_ key: String) -> [(Double, Double)] {
        series { $0[key] }
    }

    /// (x, value) of every record with both, against another field (`epoch`), in x order; an
    /// x seen twice keeps its last value.
    func series(_ key: String, x: String) -> [(Double, Double)] {
        var byX: [Double: Double] = [:]
        for record in self {
            guard let at = record[x], let v = record[key], v.isFinite else { continue }
            byX[at] = v
        }
        return byX.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// (step, value(record)) in step order, the last record of a repeated step winning.
    func series(_ value: (MetricsRecord) -> Double?) -> [(Double, Double)] {
        var byStep: [Double: Double] = [:]
        for record in self {
            guard let step = record["step"], let v = value(record), v.isFinite else { continue }
            byStep[step] = v
        }
        return byStep.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

/// How a run stands, from its metrics, files and processes: the line `contrast report` and
/// `contrast tail` print. A run is alive while a pid recorded in a rank's latest `start` record
/// still exists on this host; a rank on another host (or written before pids were recorded) is
/// alive while its newest record is younger than `staleAfter` seconds.
public struct RunStatus: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// No rank has written its start record yet.
        case notStarted
        /// Processes alive, no end record since the latest start.
        case running
        /// The end record of a completed run (weights.bin written).
        case ended
        /// The end record of a run stopped by a signal, with a checkpoint.
        case stopped
        /// An end record without weights.bin and not interrupted (train.max_skipped_steps), with the log's reason.
        case failed(reason: String?)
        /// Processes gone without an end record: killed (kill -9, out of memory) or crashed.
        case vanished
    }

    public var state: State
    /// The newest step rank 0 logged (its end record's step when there is one).
    public var step: Int
    /// The newest complete checkpoint's directory name (checkpoints/step-N with a manifest), if any.
    public var checkpoint: String?

    /// Whether the run's processes are done (with or without an end record).
    public var isOver: Bool {
        switch state {
        case .notStarted, .running: return false
        case .ended, .stopped, .failed, .vanished: return true
        }
    }

    /// One line for a user: how the run stands and, when it did not end, how to go on.
    public var summary: String {
        let resume = "run the same command to resume" + (checkpoint.map { " from checkpoint \($0)" } ?? " (no complete checkpoint yet: it starts over)")
        switch state {
        case .notStarted: return "not started (no step logged yet)"
        case .running: return "running (step \(step))"
        case .ended: return "ended at step \(step) (weights.bin written)"
        case .stopped: return "stopped at step \(step) by a stop signal: \(resume)"
        case .failed(let reason): return "failed at step \(step)" + (reason.map { ": \($0)" } ?? "") + "; " + resume
        case .vanished: return "stopped without an end record at step \(step) (killed or crashed): \(resume)"
        }
    }

    /// The status of the run in `runDirectory` as read into `metrics`, at `now`.
    public static func of(_ metrics: RunMetrics, now: Date = Date(), staleAfter: Double = 600) -> RunStatus {
        let directory = metrics.directory
        let primary = metrics.ranks.isEmpty ? nil : metrics.primary
        // A resumed run appends a new start record: only what follows the latest one counts.
        let session = primary.map { rank in Array(rank.records.suffix(from: rank.records.lastIndex { $0.kind == .start } ?? 0)) } ?? []
        let end = session.last { $0.kind == .end }
        var step = session.compactMap { $0.kind == .step || $0.kind == .end ? $0.step : nil }.max()
            ?? session.first { $0.kind == .start }?["start_step"].map(Int.init) ?? 0
        if let endStep = end?.step { step = endStep }
        let checkpoint = newestCompleteCheckpoint(directory)
        let hasWeights = FileManager.default.fileExists(atPath: directory.appendingPathComponent("weights.bin").path)
        let state: State
        if primary?.start == nil {
            state = .notStarted
        } else if let end {
            if (end["interrupted"] ?? 0) != 0 { state = .stopped }
            else if hasWeights { state = .ended }
            else { state = .failed(reason: lastError(directory)) }
        } else {
            let alive = metrics.ranks.contains { rank in
                guard let start = rank.records.last(where: { $0.kind == .start }) else { return false }
                return isAlive(pid: start["pid"].map(Int32.init), host: start.texts["host"],
                               newestRecord: rank.records.compactMap { $0["time"] }.max(), now: now, staleAfter: staleAfter)
            }
            // weights.bin is written just before the end record: a run killed between the two, or
            // one written before end records existed, finished all the same.
            state = alive ? .running : hasWeights ? .ended : .vanished
        }
        return RunStatus(state: state, step: step, checkpoint: checkpoint)
    }

    /// Whether the process a start record names is alive: kill(pid, 0) for a pid on this host;
    /// otherwise whether its newest record (Unix seconds) is younger than `staleAfter`.
    public static func isAlive(pid: Int32?, host: String?, newestRecord: Double?, now: Date, staleAfter: Double) -> Bool {
        if let pid, pid > 0, host == nil || host == thisHost {
            // EPERM: it exists, owned by someone else.
            return kill(pid, 0) == 0 || errno == EPERM
        }
        guard let newestRecord else { return false }
        return now.timeIntervalSince1970 - newestRecord < staleAfter
    }

    /// This machine's name as `gethostname` gives it, as the trainer records it.
    public static var thisHost: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(cString: buffer)
    }

    static func newestCompleteCheckpoint(_ directory: URL) -> String? {
        let folder = directory.appendingPathComponent("checkpoints")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.compactMap { name -> (String, Int)? in
            guard name.hasPrefix("step-"), let step = Int(name.dropFirst(5)),
                  FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).appendingPathComponent("manifest.json").path)
            else { return nil }
            return (name, step)
        }.max { $0.1 < $1.1 }?.0
    }

    /// The trainer's last "ERROR ..." line in train.log (how train.max_skipped_steps says why it stopped).
    static func lastError(_ directory: URL) -> String? {
        guard let log = try? String(contentsOf: directory.appendingPathComponent("train.log"), encoding: .utf8) else { return nil }
        guard let line = log.split(separator: "\n").last(where: { $0.contains("ERROR ") }),
              let range = line.range(of: "ERROR ") else { return nil }
        return String(line[range.upperBound...])
    }
}
