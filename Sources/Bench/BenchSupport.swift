import Training
import Distributed
import Foundation
import Tensor

// What every `contrast bench` subcommand shares: repeats after warm-up with their median, the
// machine a figure was measured on, and the output (a table, or one JSON object per result).

extension Bench {
    /// The results of the last `repeats` of `warmup + repeats` calls of `body` (given the call's
    /// index): the warm-up calls fill caches, fault in pages and grow scratch buffers untimed.
    public static func afterWarmup<T>(repeats: Int, warmup: Int, _ body: (Int) throws -> T) rethrows -> [T] {
        var kept: [T] = []
        kept.reserveCapacity(repeats)
        for index in 0..<(warmup + repeats) {
            let value = try body(index)
            if index >= warmup { kept.append(value) }
        }
        return kept
    }

    /// Seconds of repeated calls: their median (the reported figure) and how it was taken.
    public struct Measurement: Sendable {
        public var median: Double
        public var minimum: Double
        public var repeats: Int
        public var warmup: Int

        public init(seconds: [Double], warmup: Int) {
            median = Bench.median(seconds)
            minimum = seconds.min() ?? .nan
            repeats = seconds.count
            self.warmup = warmup
        }

        /// The fields every JSON result carries: repeats, warmup, median_ms.
        public var fields: [String: Any] { ["repeats": repeats, "warmup": warmup, "median_ms": median * 1e3] }
    }

    /// Times `body`: `warmup` untimed calls, then the median of `repeats` timed ones.
    public static func measure(repeats: Int, warmup: Int, _ body: () throws -> Void) rethrows -> Measurement {
        let seconds = try afterWarmup(repeats: repeats, warmup: warmup) { _ -> Double in
            let t0 = monotonicSeconds()
            try body()
            return monotonicSeconds() - t0
        }
        return Measurement(seconds: seconds, warmup: warmup)
    }

    /// Median of `warmup + repeats` calls of `body`, each returning its own seconds (for timings
    /// that exclude a per-call setup, or that take the slowest rank's clock).
    public static func measureEach(repeats: Int, warmup: Int, _ body: () throws -> Double) rethrows -> Measurement {
        Measurement(seconds: try afterWarmup(repeats: repeats, warmup: warmup) { _ in try body() }, warmup: warmup)
    }
}

/// `text` padded with spaces to `width` characters (String(format:)'s %-Ns pads no Swift string on Linux).
func padded(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

/// The machine a benchmark ran on, as every JSON result names it.
public struct MachineDescription: Sendable {
    /// /proc/cpuinfo's first "model name".
    public var cpuModel: String
    public var logicalCores: Int
    /// openblas_get_config(): version and build options, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64".
    public var openBLASConfig: String
    /// openblas_get_corename(): the kernel set OpenBLAS chose for this CPU, e.g. "Zen" or "SkylakeX".
    public var openBLASCore: String
    /// MPI_Get_library_version's first line.
    public var mpiLibrary: String
    /// The instruction set contrast's C kernels dispatched to.
    public var kernelInstructionSet: String
    public var hostname: String

    public static func current() -> MachineDescription {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) }
        // The library's length counts its terminating NUL.
        let mpi = MPILibrary.libraryVersion.split(separator: "\n").first.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\0 ")) } ?? ""
        return MachineDescription(cpuModel: model ?? "unknown", logicalCores: ProcessInfo.processInfo.activeProcessorCount,
                                  openBLASConfig: BLASThreads.configuration.trimmingCharacters(in: .whitespaces),
                                  openBLASCore: BLASThreads.coreName, mpiLibrary: mpi,
                                  kernelInstructionSet: Kernels.instructionSet, hostname: ProcessInfo.processInfo.hostName)
    }

    public var fields: [String: Any] {
        ["cpu_model": cpuModel, "logical_cores": logicalCores, "openblas_config": openBLASConfig, "openblas_core": openBLASCore,
         "mpi_library": mpiLibrary, "kernel_instruction_set": kernelInstructionSet, "hostname": hostname]
    }

    /// One line for the head of a table.
    public var summary: String {
        "\(cpuModel), \(logicalCores) logical cores; \(openBLASConfig) (core \(openBLASCore)); \(mpiLibrary)"
    }
}

/// What a `contrast bench` subcommand prints: table lines for people, and results that
/// `--json` prints instead, one JSON object per line, each with `bench`, `machine` and its fields.
public final class BenchOutput {
    public let bench: String
    public private(set) var lines: [String] = []
    public private(set) var records: [[String: Any]] = []

    public init(bench: String) { self.bench = bench }

    public func line(_ text: String) { lines.append(text) }

    /// A result: `fields`, plus repeats / warmup / median_ms of `measurement` when given.
    public func record(_ fields: [String: Any], _ measurement: Bench.Measurement? = nil) {
        records.append(fields.merging(measurement?.fields ?? [:]) { own, _ in own })
    }

    /// The table.
    public var text: String { lines.joined(separator: "\n") }

    /// One JSON object per result, keys sorted; non-finite numbers become null (JSON has no NaN).
    public func jsonLines(machine: MachineDescription = .current()) -> [String] {
        records.map { record in
            var object = record.mapValues(Self.finite)
            object["bench"] = bench
            object["machine"] = machine.fields
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            return String(decoding: data, as: UTF8.self)
        }
    }

    /// The table, or with `json` the JSON lines.
    public func rendered(json: Bool) -> String { json ? jsonLines().joined(separator: "\n") : text }

    private static func finite(_ value: Any) -> Any {
        if let number = value as? Double, !number.isFinite { return NSNull() }
        if let object = value as? [String: Any] { return object.mapValues(finite) }
        return value
    }
}
