import Foundation
import Tensor

/// Follows every rank's `metrics/rank-<r>.jsonl` of a run (docs/monitoring.md) and turns them
/// into one compact row per `every` steps: the global loss, accuracy and throughput, and each
/// rank's compute time per step (step time minus waiting in collectives), with ranks slower
/// than `stragglerFactor` times the median of the others flagged. Reads only complete lines, so
/// a line still being written is picked up on the next poll.
public final class MetricsFollower {
    public let runDirectory: URL
    public let every: Int
    public let stragglerFactor: Double

    /// Per rank: bytes consumed so far, and what the current group has gathered.
    private var offsets: [Int: UInt64] = [:]
    private var pending: [Int: [Int: Group]] = [:]       // group index -> rank -> sums
    private var printedGroups: Set<Int> = []
    private var ended: Set<Int> = []
    public private(set) var worldSize = 0
    public private(set) var hosts: [String] = []
    public private(set) var skippedLines = 0
    /// Per rank: the pid and host of its latest start record, and its newest record's time.
    private var processes: [Int: (pid: Int32?, host: String?)] = [:]
    private var newestRecord: [Int: Double] = [:]

    struct Group {
        var steps = 0, loss = 0.0, accuracy = 0.0, imagesPerSecond = 0.0, busy = 0.0, lastStep = 0
    }

    public struct Row: Sendable {
        public var step: Int
        public var loss: Double
        public var positiveAccuracy: Double
        public var imagesPerSecond: Double
        /// Mean compute seconds per step, by rank.
        public var busy: [Double]
        /// Ranks slower than the factor times the median of the others.
        public var stragglers: [Int]
    }

    public init(runDirectory: URL, every: Int = 10, stragglerFactor: Double = 1.5) {
        precondition(every >= 1, "MetricsFollower: every must be >= 1")
        self.runDirectory = runDirectory
        self.every = every
        self.stragglerFactor = stragglerFactor
    }

    /// Whether every rank that started has written its `end` record.
    public var finished: Bool { worldSize > 0 && ended.count >= worldSize }

    /// Whether no rank that started is alive any more (`RunStatus.isAlive`): after kill -9 or a
    /// crash no end record comes, and following would never stop.
    public func processesGone(now: Date = Date(), staleAfter: Double = 600) -> Bool {
        !processes.isEmpty && !processes.contains { rank, process in
            RunStatus.isAlive(pid: process.pid, host: process.host, newestRecord: newestRecord[rank], now: now, staleAfter: staleAfter)
        }
    }

    /// Whether some rank has written its `start` record (read by `poll`).
    public var hasStartRecord: Bool { !processes.isEmpty }

    /// When a file of the run last changed: the newest modification time of the run directory,
    /// its files and those of `metrics/` (nil when the directory does not exist).
    public var lastChange: Date? {
        let manager = FileManager.default
        func modified(_ url: URL) -> Date? { (try? manager.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date }
        let metrics = runDirectory.appendingPathComponent("metrics")
        let files = [runDirectory, metrics]
            + ((try? manager.contentsOfDirectory(at: runDirectory, includingPropertiesForKeys: nil)) ?? [])
            + ((try? manager.contentsOfDirectory(at: metrics, includingPropertiesForKeys: nil)) ?? [])
        return files.compactMap(modified).max()
    }

    /// Whether the run's metrics folder exists yet.
    public var started: Bool {
        FileManager.default.fileExists(atPath: runDirectory.appendingPathComponent("metrics").path)
    }

    /// Reads what the files gained since the last call; returns the rows now complete on every rank.
    /// - Throws: when the run directory has no metrics folder (not a run directory).
    public func poll() throws -> [Row] {
        let metrics = runDirectory.appendingPathComponent("metrics")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: metrics.path) else {
            throw RunDirectory.Failure(description: "\(runDirectory.path) is not a run directory (no metrics/ folder); "
                                   + "give the run_dir of a contrast train run")
        }
        for name in names where name.hasPrefix("rank-") && name.hasSuffix(".jsonl") {
            guard let rank = Int(name.dropFirst(5).dropLast(6)) else { continue }
            try read(rank: rank, file: metrics.appendingPathComponent(name))
        }
        var rows: [Row] = []
        let ranks = max(worldSize, pending.values.map(\.count).max() ?? 0)
        for index in pending.keys.sorted() where !printedGroups.contains(index) {
            guard let groups = pending[index], groups.count == ranks,
                  groups.values.allSatisfy({ $0.steps >= every || ended.count >= ranks }) else { continue }
            let zero = groups[0] ?? Group()
            let n = Double(max(1, zero.steps))
            let busy = (0..<ranks).map { rank in groups[rank].map { $0.busy / Double(max(1, $0.steps)) } ?? .nan }
            var stragglers: [Int] = []
            if ranks > 1 {
                for (rank, time) in busy.enumerated() {
                    var others = busy
                    others.remove(at: rank)
                    let median = Statistics.median(others)!
                    if time > stragglerFactor * median { stragglers.append(rank) }
                }
            }
            rows.append(Row(step: zero.lastStep, loss: zero.loss / n, positiveAccuracy: zero.accuracy / n,
                            imagesPerSecond: zero.imagesPerSecond / n, busy: busy, stragglers: stragglers))
            printedGroups.insert(index)
            pending[index] = nil
        }
        return rows
    }

    private func read(rank: Int, file: URL) throws {
        guard let handle = try? FileHandle(forReadingFrom: file) else { return }
        defer { try? handle.close() }
        let start = offsets[rank] ?? 0
        try handle.seek(toOffset: start)
        guard let data = try handle.readToEnd(), !data.isEmpty else { return }
        // Only whole lines; the rest waits for the next poll.
        guard let lastNewline = data.lastIndex(of: 0x0A) else { return }
        offsets[rank] = start + UInt64(lastNewline - data.startIndex + 1)
        for line in data[data.startIndex...lastNewline].split(separator: 0x0A) {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                skippedLines += 1
                continue
            }
            let type = record["type"] as? String ?? (record["time_forward"] != nil ? "step" : "")
            if let time = record["time"] as? Double { newestRecord[rank] = max(newestRecord[rank] ?? 0, time) }
            switch type {
            case "start":
                worldSize = max(worldSize, record["world_size"] as? Int ?? 0)
                if let list = record["hosts"] as? String { hosts = list.split(separator: ",").map(String.init) }
                // A resumed run appends a new start: this rank runs again.
                ended.remove(rank)
                processes[rank] = ((record["pid"] as? Int).map(Int32.init), record["host"] as? String)
            case "end":
                ended.insert(rank)
            case "step":
                guard let step = record["step"] as? Int else { continue }
                func number(_ key: String) -> Double { record[key] as? Double ?? Double(record[key] as? Int ?? 0) }
                let total = number("time_data_wait") + number("time_forward") + number("time_gather") + number("time_loss")
                    + number("time_backward") + number("time_communication_exposed") + number("time_optimizer")
                let index = (step - 1) / every
                var group = pending[index]?[rank] ?? Group()
                group.steps += 1
                group.loss += number("loss")
                group.accuracy += number("positive_accuracy")
                group.imagesPerSecond += number("images_per_second")
                group.busy += total - number("time_gather") - number("time_communication_exposed")
                group.lastStep = max(group.lastStep, step)
                pending[index, default: [:]][rank] = group
            default:
                continue
            }
        }
    }

    /// The table's header for `ranks` ranks.
    public func header(ranks: Int) -> String {
        "  step     loss  pos_acc     img/s |" + (0..<ranks).map { rank -> String in
            let name = "rank \(rank)"
            return " " + String(repeating: " ", count: max(0, 9 - name.count)) + name
        }.joined()
            + "   (compute ms per step)"
    }

    /// One row of the table; stragglers are marked with `*` and named after the row.
    public func format(_ row: Row) -> String {
        var line = String(format: "%6d %8.4f %8.3f %9.0f |", row.step, row.loss, row.positiveAccuracy, row.imagesPerSecond)
        for (rank, busy) in row.busy.enumerated() {
            line += String(format: " %8.1f%@", busy * 1e3, row.stragglers.contains(rank) ? "*" : " ")
        }
        for rank in row.stragglers {
            line += "  straggler: rank \(rank)" + (rank < hosts.count ? " on \(hosts[rank])" : "")
        }
        return line
    }
}
