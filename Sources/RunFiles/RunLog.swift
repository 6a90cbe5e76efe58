import Foundation
import Storage

/// The files a run writes for people and tools (DESIGN.md decision 7): `train.log`, human
/// readable (rank 0; other ranks write their warnings and errors to `rank-<r>.log`), and
/// `metrics/rank-<r>.jsonl`, one JSON object per line in the schema of docs/monitoring.md.
/// Both are flushed line by line so `tail -f` and readers on other machines see progress as it
/// happens. A live progress line may be drawn on standard output; it never enters a file.
public final class RunLog {
    /// Version of the metrics schema (docs/monitoring.md); every `start` record carries it.
    public static let schemaVersion = 1

    public let directory: URL
    public let rank: Int
    private let text: FileHandle
    private let metrics: FileHandle
    private let echo: Bool
    /// Whether a progress line is on the terminal now (cleared before the next log line).
    private var progressShown = false
    /// Warnings written so far (for the end-of-run summary and tests).
    public private(set) var warnings: [String] = []
    /// Lines that could not be written (a full disk, say) and were dropped.
    public private(set) var droppedLines = 0

    /// Opens the log files of a run directory (created if needed) for rank `rank`.
    /// `echo`: also print the human-readable lines on standard output.
    public init(directory: URL, rank: Int = 0, echo: Bool = true) throws {
        self.directory = directory
        self.rank = rank
        self.echo = echo
        let metricsDirectory = directory.appendingPathComponent("metrics")
        try RunDirectory.createDirectory(metricsDirectory)
        text = try RunDirectory.openForAppend(directory.appendingPathComponent(rank == 0 ? "train.log" : "rank-\(rank).log"))
        metrics = try RunDirectory.openForAppend(metricsDirectory.appendingPathComponent("rank-\(rank).jsonl"))
    }

    /// This rank's human-readable log: train.log (rank 0) or rank-<r>.log.
    public var textFile: URL { directory.appendingPathComponent(rank == 0 ? "train.log" : "rank-\(rank).log") }

    deinit {
        try? text.close()
        try? metrics.close()
    }

    /// A line of the human-readable log, prefixed with the UTC time.
    public func info(_ message: String) {
        let line = "\(Self.timestamp()) \(message)\n"
        append(line, to: text, file: rank == 0 ? "train.log" : "rank-\(rank).log")
        if echo {
            clearProgress()
            FileHandle.standardOutput.write(Data(line.utf8))
        }
    }

    /// A health warning, as it happens: a `WARNING` line in this rank's log (train.log on rank
    /// 0, rank-<r>.log elsewhere; also on standard error off rank 0) and an `event` record.
    public func warn(_ message: String, step: Int) {
        warnings.append(message)
        info("WARNING " + message)
        if !echo { FileHandle.standardError.write(Data("contrast rank \(rank): WARNING \(message)\n".utf8)) }
        record("event", [("step", .int(step)), ("level", .string("warning")), ("message", .string(message))])
    }

    /// Redraws the live progress line on standard output (carriage return, erase line). Only
    /// called when standard output is a terminal, or when asked to always show it.
    public func progress(_ line: String) {
        FileHandle.standardOutput.write(Data("\r\u{1B}[K\(line)".utf8))
        progressShown = true
    }

    /// Removes the progress line so the next line starts clean.
    public func clearProgress() {
        guard progressShown else { return }
        FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        progressShown = false
    }

    /// One typed metrics record (docs/monitoring.md): `type`, `time` (Unix seconds), then `fields`.
    public func record(_ type: String, _ fields: [(String, JSONValue)]) {
        record([("type", .string(type)), ("time", .number((Date().timeIntervalSince1970 * 1000).rounded() / 1000))] + fields)
    }

    /// One metrics record: an ordered list of fields, written as one JSON object on one line.
    public func record(_ fields: [(String, JSONValue)]) {
        var line = "{"
        for (i, (key, value)) in fields.enumerated() {
            if i > 0 { line += "," }
            line += JSONValue.string(key).encoded + ":" + value.encoded
        }
        line += "}\n"
        append(line, to: metrics, file: "metrics/rank-\(rank).jsonl")
    }

    /// Writes `line` to `handle`. A failed write (ENOSPC, EIO, a read-only remount) must not end
    /// the run from inside a log call: the line is dropped, the first failure is said once on
    /// standard error, and training goes on to its next checkpoint, which reports the same
    /// condition as an error that names the file and stops the run with the earlier checkpoints
    /// intact (docs/reliability.md).
    private func append(_ line: String, to handle: FileHandle, file: String) {
        do { try handle.write(contentsOf: Data(line.utf8)) } catch {
            if droppedLines == 0 {
                FileHandle.standardError.write(Data("contrast rank \(rank): WARNING cannot write \(directory.path)/\(file): \(error.localizedDescription); log lines are dropped until writes succeed again\n".utf8))
            }
            droppedLines += 1
        }
    }

    static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date())
    }
}

/// The JSON values metrics records hold. Non-finite numbers become null (JSON has no NaN).
public enum JSONValue: Sendable {
    case int(Int)
    case number(Double)
    case string(String)
    case bool(Bool)

    public var encoded: String {
        switch self {
        case .int(let v): return String(v)
        case .number(let v): return v.isFinite ? String(v) : "null"
        case .bool(let v): return v ? "true" : "false"
        case .string(let s): return jsonQuoted(s)
        }
    }
}

/// File operations on a run directory, with errors that name the path and the fix.
public enum RunDirectory {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Makes `url` and its missing parents; the error names the path that could not be made,
    /// errno's reason and what to do.
    public static func createDirectory(_ url: URL) throws {
        do { try Directory.create(url.path) } catch {
            throw Failure(description: "cannot create directory \(url.path): " + cannotCreate(error))
        }
    }

    /// Why a directory could not be made, in words, with the fix.
    static func cannotCreate(_ error: StorageError) -> String {
        guard case .system(let code) = error.kind else { return "\(error)" }
        let change = "choose another run_dir (--set run_dir=PATH)"
        switch code {
        case ENOTDIR:
            return "\(error.path) is a file, not a directory; \(change) or move that file away"
        case EACCES, EPERM:
            return "no permission to create \(error.path) (\(error.reason)); \(change) or make "
                + "\((error.path as NSString).deletingLastPathComponent) writable"
        case EROFS:
            return "\(error.path) is on a read-only file system; \(change) on a writable one"
        default:
            return "mkdir \(error.path) failed: \(error.reason) (errno \(code)); \(change)"
        }
    }

    static func openForAppend(_ url: URL) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw Failure(description: "cannot create \(url.path); check that the run directory is writable")
            }
        }
        do {
            let handle = try FileHandle(forWritingTo: url)
            try handle.seekToEnd()
            return handle
        } catch {
            throw Failure(description: "cannot open \(url.path) for writing: \(error.localizedDescription)")
        }
    }
}

extension RunLog {
    /// "1h02m" or "3m07s"; "?" for a duration not known.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
