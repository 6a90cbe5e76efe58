import Config
import Evaluation
import Foundation
import NN
import RunFiles
import Testing
import Training

// Helpers every test target shares: temporary folders, the smoke config, running the built
// `contrast` (directly or under mpirun) and reading what a run wrote.

/// The repository root, found from this file's path (Tests/TestSupport/Support.swift).
public let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fresh, empty temporary directory.
public func temporaryDirectory(_ label: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("contrast-\(label)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// configs/smoke.yaml with its run directory moved into a temporary directory.
public func smokeConfig(_ overrides: [String] = []) throws -> TrainingConfig {
    let runDirectory = temporaryDirectory("run").appendingPathComponent("run").path
    return try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/smoke.yaml").path,
                                 overrides: ["run_dir=\(runDirectory)"] + overrides)
}

/// The built `contrast` next to the test bundle (both live in .build/<configuration>/).
public var contrastExecutable: URL {
    let bundleDirectory = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
    let besideTests = bundleDirectory.appendingPathComponent("contrast")
    if FileManager.default.isExecutableFile(atPath: besideTests.path) { return besideTests }
    return repositoryRoot.appendingPathComponent(".build/debug/contrast")
}

/// What a finished process left: exit status and its two output streams.
public struct ProcessOutcome {
    public var status: Int32
    public var output: String
    public var error: String
    public var timedOut = false

    public init(status: Int32, output: String, error: String, timedOut: Bool = false) {
        self.status = status
        self.output = output
        self.error = error
        self.timedOut = timedOut
    }
}

/// `contrast ARGUMENTS` under `ulimit -d` (RLIMIT_DATA) of `limitMB` MB, killed after 300 s, with one
/// OpenBLAS thread: a worker's 128 MB buffer fails under the limit and it retries at exit.
public func runContrastUnderDataLimit(_ arguments: [String], limitMB: Int) throws -> ProcessOutcome {
    let command = ([contrastExecutable.path] + arguments).map { "'\($0)'" }.joined(separator: " ")
    return try runProcess(URL(fileURLWithPath: "/usr/bin/timeout"),
                          ["-s", "KILL", "300", "/bin/sh", "-c", "ulimit -d \(limitMB * 1024) && exec \(command)"],
                          environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 320)
}

/// Runs `executable` with `arguments` from the repository root; kills it after `timeout` seconds.
public func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String] = [:],
                timeout: Double = 300) throws -> ProcessOutcome {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = repositoryRoot
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let outFile = temporaryDirectory("out").appendingPathComponent("stdout")
    let errFile = outFile.deletingLastPathComponent().appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outFile.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errFile.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: outFile)
    process.standardError = try FileHandle(forWritingTo: errFile)
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while process.isRunning {
        if Date() > deadline { process.terminate(); timedOut = true; break }
        usleep(20_000)
    }
    process.waitUntilExit()
    return ProcessOutcome(status: process.terminationStatus,
                          output: (try? String(contentsOf: outFile, encoding: .utf8)) ?? "",
                          error: (try? String(contentsOf: errFile, encoding: .utf8)) ?? "", timedOut: timedOut)
}

/// How ranks talk: Open MPI's default (shared memory between ranks of one machine) or TCP only.
public enum Transport: String, CaseIterable, Sendable {
    case sharedMemory, tcp
    /// TCP over loopback only: Open MPI would otherwise also open connections on the netns
    /// cluster's bridge, which MultiHostTests bring up and take down while other suites run.
    public var mpirunArguments: [String] { self == .tcp ? ["--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"] : [] }
}

/// `contrast ARGUMENTS` on `ranks` ranks: directly for one, through mpirun for more
/// (one thread each, unbound, oversubscribed past the machine's cores; as root when root).
public func runContrast(ranks: Int, transport: Transport = .sharedMemory, _ arguments: [String], environment extra: [String: String] = [:],
                 timeout: Double = 300) throws -> ProcessOutcome {
    guard ranks > 1 else { return try runProcess(contrastExecutable, arguments, environment: extra, timeout: timeout) }
    guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw RunDirectory.Failure(description: "mpirun not found: install openmpi-bin (launch/setup.sh does)")
    }
    var environment = extra.merging(["OMPI_MCA_rmaps_base_oversubscribe": "1", "OPENBLAS_NUM_THREADS": "1"]) { a, _ in a }
    if getuid() == 0 {
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    }
    let launcher = ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] + transport.mpirunArguments
        + extra.keys.sorted().flatMap { ["-x", $0] }
    return try runProcess(URL(fileURLWithPath: mpirun), launcher + [contrastExecutable.path] + arguments,
                          environment: environment, timeout: timeout)
}

/// A short run of configs/smoke.yaml through `contrast train` (fp32 on the wire, 200 test images, no
/// kNN), `globalBatch` samples a step over `ranks` ranks: its final model (weights.bin, built from
/// the run's resolved config) and its step records in order. The objective tests compare these
/// across rank counts.
public struct SmokeRun {
    public var config: TrainingConfig
    public var model: ContrastiveModel
    public var steps: [[String: Any]]
    public var parameters: [Float] { model.arena.parameters.array }
    public var losses: [Double] { steps.compactMap { $0["loss"] as? Double } }
}

public func trainSmoke(_ label: String, ranks: Int, transport: Transport = .sharedMemory, steps: Int, globalBatch: Int = 64,
                _ overrides: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> SmokeRun {
    let runDirectory = temporaryDirectory(label).appendingPathComponent("run").path
    let arguments = ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                     "--set", "data.batch_per_rank=\(globalBatch / ranks)", "--set", "train.max_steps=\(steps)",
                     "--set", "communication.precision=fp32", "--set", "data.test_limit=200",
                     "--set", "eval.knn_every_epochs=0"] + overrides.flatMap { ["--set", $0] }
    let outcome = try runContrast(ranks: ranks, transport: transport, arguments)
    #expect(outcome.status == 0, "P=\(ranks): \(outcome.error.suffix(2000))", sourceLocation: sourceLocation)
    let config = try ConfigLoader.load(file: runDirectory + "/config.yaml", overrides: [])
    let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28],
                                 learnableTemperature: config.loss.temperatureMode == .learnable,
                                 learnableBias: config.loss.learnsLogitBias, reconstruction: config.loss.reconstructionWeight > 0)
    try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: runDirectory + "/weights.bin"))
    let records = try String(contentsOfFile: runDirectory + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n")
        .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        .filter { $0["time_forward"] != nil }
    return SmokeRun(config: config, model: model, steps: records)
}

/// A process started in the background and the files holding its output.
public struct StartedProcess {
    public var process: Process
    public var outputFile: URL
    public var errorFile: URL
    public var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }
    public var error: String { (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "" }

    /// The exit status, after at most `timeout` seconds; nil (and the process killed) when it did not exit.
    public func exitStatus(within timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        let hung = process.isRunning
        if hung { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return hung || process.terminationReason != .exit ? nil : process.terminationStatus
    }
}

/// Starts `command` from the repository root as a user's shell would: SIGINT and SIGHUP at their
/// defaults and no signal blocked (the test runner blocks some, SIGUSR1 among them, and a child
/// inherits the mask; a background job of a non-interactive shell would ignore SIGINT), through
/// perl-base's POSIX, which exec's it (the pid is the command's). As root, mpirun may run.
public func startProcess(_ command: [String], environment extra: [String: String] = [:], label: String = "started") throws -> StartedProcess {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
    var environment = ProcessInfo.processInfo.environment
    environment["OPENBLAS_NUM_THREADS"] = "1"
    if getuid() == 0 { environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" }
    environment.merge(extra) { $1 }
    process.environment = environment
    process.currentDirectoryURL = repositoryRoot
    process.arguments = ["-MPOSIX", "-e",
                         "$SIG{INT} = 'DEFAULT'; $SIG{HUP} = 'DEFAULT'; sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die"]
        + command
    let directory = temporaryDirectory(label)
    let (outputFile, errorFile) = (directory.appendingPathComponent("stdout"), directory.appendingPathComponent("stderr"))
    _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: outputFile)
    process.standardError = try FileHandle(forWritingTo: errorFile)
    try process.run()
    return StartedProcess(process: process, outputFile: outputFile, errorFile: errorFile)
}

/// The built `contrast` with `arguments`, started by `startProcess`.
public func startContrast(_ arguments: [String], environment extra: [String: String] = [:]) throws -> StartedProcess {
    try startProcess([contrastExecutable.path] + arguments, environment: extra)
}
