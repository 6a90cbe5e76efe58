import Distributed
import Foundation
import Testing

/// The MPI communicator end to end: `mpirun` starts `contrast collectives-check`, which runs
/// every collective with rank-dependent data and checks the results on every rank, over
/// shared memory (vader) and over TCP, at 2 ranks and at 4 oversubscribed on this 2-core
/// machine. At 4 ranks the largest buffer is 300,001 values rather than 2,214,528: the checks
/// run in a debug build on oversubscribed cores, and the full size is covered at 2 ranks.
@Suite(.serialized) struct MPIRunTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The built `contrast` next to the test bundle (both live in .build/<configuration>/).
    static var executable: URL {
        let bundleDirectory = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
        let besideTests = bundleDirectory.appendingPathComponent("contrast")
        if FileManager.default.isExecutableFile(atPath: besideTests.path) { return besideTests }
        return repositoryRoot.appendingPathComponent(".build/debug/contrast")
    }

    static var mpirun: URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    struct Outcome { var status: Int32; var output: String; var error: String; var timedOut: Bool }

    /// Runs `mpirun -np ranks [extra] --bind-to none contrast arguments`, killing it after `timeout` seconds.
    func mpirun(ranks: Int, _ extra: [String], _ arguments: [String], timeout: Double = 120) throws -> Outcome {
        guard let mpirun = Self.mpirun else {
            Issue.record("mpirun not found on PATH: install Open MPI (launch/setup.sh installs openmpi-bin and libopenmpi-dev)")
            return Outcome(status: -1, output: "", error: "", timedOut: false)
        }
        let process = Process()
        process.executableURL = mpirun
        process.arguments = ["-np", "\(ranks)", "--bind-to", "none"] + (ranks > 2 ? ["--oversubscribe"] : []) + extra
            + [Self.executable.path] + arguments
        var environment = ProcessInfo.processInfo.environment
        if getuid() == 0 {
            environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        process.environment = environment
        process.currentDirectoryURL = Self.repositoryRoot
        // Files rather than pipes: nothing blocks on a full pipe while we wait with a deadline.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mpirun-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("out"), errURL = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                process.terminate()  // mpirun forwards SIGTERM to its ranks
                Thread.sleep(forTimeInterval: 2)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        process.waitUntilExit()
        try out.close(); try err.close()
        return Outcome(status: process.terminationStatus, output: try String(contentsOf: outURL, encoding: .utf8),
                       error: try String(contentsOf: errURL, encoding: .utf8), timedOut: timedOut)
    }

    static let transports: [[String]] = [["--mca", "btl", "self,vader"], ["--mca", "btl", "self,tcp"]]

    @Test(arguments: transports)
    func everyCollectiveAtTwoRanks(transport: [String]) throws {
        // 25 s on a debug build at load 5; the whole suite beside it on 2 cores made it pass 120 s.
        let outcome = try mpirun(ranks: 2, transport, ["collectives-check"], timeout: 400)
        #expect(!outcome.timedOut, "mpirun did not finish in time")
        #expect(outcome.status == 0, "stderr: \(outcome.error)\nstdout: \(outcome.output)")
        for rank in 0..<2 { #expect(outcome.output.contains("collectives-check: OK rank \(rank) of 2"), "\(outcome.output)") }
        // Both ranks run here: hostnames() gathers this machine's name twice, in rank order.
        let host = Launch.localHostname()
        #expect(outcome.output.contains("collectives-check: hosts \(host) \(host)\n"), "\(outcome.output)")
    }

    @Test(arguments: transports)
    func everyCollectiveAtFourOversubscribedRanks(transport: [String]) throws {
        let outcome = try mpirun(ranks: 4, transport, ["collectives-check", "--large-count", "300001"])
        #expect(!outcome.timedOut, "mpirun did not finish in time")
        #expect(outcome.status == 0, "stderr: \(outcome.error)\nstdout: \(outcome.output)")
        for rank in 0..<4 { #expect(outcome.output.contains("collectives-check: OK rank \(rank) of 4"), "\(outcome.output)") }
    }

    /// One rank's error ends the job quickly, non-zero, with a message naming the rank,
    /// while the other rank waits in a collective: it must not hang. (Quickly is seconds; the
    /// limit is generous because on a machine starved by other jobs two debug binaries took over
    /// 30 s just to start.)
    @Test func aFailingRankAbortsTheJob() throws {
        let started = Date()
        let outcome = try mpirun(ranks: 2, [], ["collectives-check", "--fail-on-rank", "1"], timeout: 120)
        #expect(!outcome.timedOut, "the job hung after rank 1 failed (killed after 120 s)")
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("contrast: rank 1 of 2 on \(Launch.localHostname()): error: deliberate failure on rank 1"), "stderr: \(outcome.error)")
        #expect(!outcome.output.contains("OK rank 1"))
        #expect(Date().timeIntervalSince(started) < 120)
    }
}
