import Checkpoint
import Config
import Distributed
import Foundation
import TestSupport
import Testing
@testable import Training

/// Under mpirun, contrast's own message is the one the user reads: a config error is printed
/// once (by rank 0) and ends every rank with P = 1's status without MPI_Abort, and through
/// launch/mpirun.sh a stop or an error ends with contrast's line, not Open MPI's "the job has
/// been aborted" blocks.
@Suite(.serialized) struct MPIMessageTests {
    static let badKey = ["train", "--set", "optimiser.lr=0.1"]

    /// The error's lines on standard error (other lines there are mpirun's or the script's).
    func errorLines(_ text: String) -> [Substring] {
        text.split(separator: "\n").filter { $0.hasPrefix("contrast:") }
    }

    @Test func configErrorUnderMpirunIsPrintedOnceWithoutMPIAbort() throws {
        let alone = try runContrast(ranks: 1, Self.badKey)
        #expect(alone.status == 1)
        let two = try runContrast(ranks: 2, Self.badKey)
        #expect(two.status == alone.status, "\(two.error)")
        #expect(errorLines(two.error) == errorLines(alone.error), "\(two.error)")
        #expect(errorLines(two.error).count == 1 && two.error.contains("optimiser"), "\(two.error)")
        #expect(!two.error.contains("MPI_ABORT") && !two.error.contains("MPI_COMM_WORLD"), "\(two.error)")
    }

    /// A mistake found after MPI starts that depends on the rank count (a global batch of 2 x 3
    /// that 8 virtual shards do not divide) is found alike by every rank: printed once, every
    /// rank exits 1, no MPI_Abort, nothing written.
    @Test func rankCountErrorUnderMpirunIsPrintedOnceWithoutMPIAbort() throws {
        let run = temporaryDirectory("rank-count-error").appendingPathComponent("run").path
        let two = try runContrast(ranks: 2, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                             "--set", "data.batch_per_rank=3"], timeout: 120)
        #expect(two.status == 1, "\(two.error)")
        #expect(errorLines(two.error) == ["contrast: error: global batch 6 (data.batch_per_rank x ranks) is not a multiple of "
                                          + "data.virtual_shards = 8; choose data.batch_per_rank so that it is"], "\(two.error)")
        #expect(!two.error.contains("MPI_ABORT") && !two.error.contains("MPI_COMM_WORLD"), "\(two.error)")
        #expect(!FileManager.default.fileExists(atPath: run))
    }

    /// init_from is checked by rank 0 and its verdict sent to every rank: a missing path is one
    /// line and status 1 without MPI_Abort, as in one process.
    @Test func initFromErrorUnderMpirunIsPrintedOnceWithoutMPIAbort() throws {
        let folder = temporaryDirectory("init-from-missing")
        let arguments = ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(folder.path)/run",
                         "--set", "init_from=\(folder.path)/nothing"]
        let alone = try runContrast(ranks: 1, arguments)
        let two = try runContrast(ranks: 2, arguments, timeout: 120)
        #expect(alone.status == 1 && two.status == 1, "\(two.error)")
        #expect(errorLines(two.error) == errorLines(alone.error) && errorLines(two.error).count == 1, "\(two.error)")
        #expect(two.error.contains("init_from: \(folder.path)/nothing does not exist"), "\(two.error)")
        #expect(!two.error.contains("MPI_ABORT"), "\(two.error)")
    }

    /// An error only one rank meets (rank 1's data folder is missing) still aborts the job with
    /// that rank's line: the others could not have printed it.
    @Test func anErrorOfOneRanksDataStillAbortsNamingTheRank() throws {
        let folder = temporaryDirectory("per-rank-data")
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("fm0").path,
                                                   withDestinationPath: TrainingConfig().data.path)
        let run = folder.appendingPathComponent("run").path
        let two = try runContrast(ranks: 2, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                             "--set", "data.path=\(folder.path)/fm{rank}"], timeout: 120)
        #expect(two.status != 0, "\(two.error)")
        #expect(errorLines(two.error).count == 1, "\(two.error)")
        #expect(two.error.contains("contrast: rank 1 of 2 on \(Launch.localHostname()): error: data file \(folder.path)/fm1/train-images-idx3-ubyte"), "\(two.error)")
    }

    /// Through launch/mpirun.sh (standard error and output in one stream, as on a terminal): the
    /// error is the last line and none of mpirun's abort text is shown.
    @Test func configErrorThroughTheLaunchScriptEndsWithContrastsLine() throws {
        let stop = StopSignalTests()
        let started = try stop.start(["/bin/bash", "-c", "exec \"$@\" 2>&1", "bash", "launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe",
                                      contrastExecutable.path] + Self.badKey, name: "config-error-mpirun")
        let status = stop.waitForExit(started, runDirectory: "optimiser.lr", timeout: 60)
        #expect(status == 1, "\(started.output)")
        let lines = started.output.split(separator: "\n")
        #expect(lines.last?.hasPrefix("contrast: error:") == true && lines.last?.contains("optimiser") == true, "\(started.output)")
        #expect(errorLines(started.output).count == 1, "\(started.output)")
        #expect(!started.output.contains("abort"), "\(started.output)")
    }

    /// SIGUSR1 to launch/mpirun.sh at P = 2: exit 75, and the last line on the terminal is the
    /// stop line, with no "aborted" / "Exit code: 75" text from mpirun.
    @Test func stopThroughTheLaunchScriptEndsWithTheStopLine() throws {
        let stop = StopSignalTests()
        let run = temporaryDirectory("usr1-mpirun-message").appendingPathComponent("run").path
        let started = try stop.start(["/bin/bash", "-c", "exec \"$@\" 2>&1", "bash", "launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe",
                                      contrastExecutable.path] + stop.arguments(run, ranks: 2, steps: 100_000), name: "usr1-mpirun-message")
        try stop.waitForSteps(run, 10, started)
        kill(started.process.processIdentifier, SIGUSR1)
        let status = stop.waitForExit(started, runDirectory: run)
        #expect(status == Trainer.interruptedExitCode, "\(started.output.suffix(2500))")
        let last = started.output.split(separator: "\n").last ?? ""
        #expect(last.hasSuffix("; run the same command to resume") && last.contains("stopped at step"), "\(started.output.suffix(2500))")
        #expect(!started.output.contains("abort") && !started.output.contains("Exit code"), "\(started.output.suffix(2500))")
    }

    /// kill -9 of one rank under launch/mpirun.sh: nothing in contrast can say how the run
    /// ended, so the script does, as the last line on the terminal and in train.log, with the
    /// checkpoint a resume starts from and the command as given.
    @Test func aRankKilledThroughTheLaunchScriptEndsWithHowAndTheResumeCommand() throws {
        let stop = StopSignalTests()
        let run = temporaryDirectory("kill9-mpirun").appendingPathComponent("run").path
        let command = ["launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe", contrastExecutable.path]
            + stop.arguments(run, ranks: 2, steps: 100_000, ["checkpoint.every_steps=5"])
        let started = try stop.start(["/bin/bash", "-c", "exec \"$@\" 2>&1", "bash"] + command, name: "kill9-mpirun")
        try stop.waitForSteps(run, 7, started)
        let records = try String(contentsOfFile: run + "/metrics/rank-1.jsonl", encoding: .utf8)
        let start = try #require(records.split(separator: "\n").first { $0.contains("\"type\":\"start\"") })
        let pid = try #require((try JSONSerialization.jsonObject(with: Data(start.utf8)) as? [String: Any])?["pid"] as? Int)
        kill(pid_t(pid), SIGKILL)
        let status = stop.waitForExit(started, runDirectory: run)
        #expect(status == 128 + SIGKILL, "\(started.output.suffix(2500))")
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first)
        // The script's path as bash was given it (startProcess makes it absolute), then the rest as given.
        let how = "launch/mpirun.sh: the run ended: rank 1 on \(Launch.localHostname()) (pid \(pid)) was killed by signal 9 (Killed); "
            + "to resume from checkpoint \(checkpoint.path), run the same command: "
        let last = String(started.output.split(separator: "\n").last ?? "")
        #expect(last.hasPrefix(how) && last.hasSuffix("launch/mpirun.sh " + command.dropFirst().joined(separator: " ")),
                "\(started.output.suffix(2500))")
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        #expect(log.split(separator: "\n").last?.hasSuffix("Z " + last) == true, "\(log.suffix(1500))")
    }

    /// kill -9 of rank 1 during start-up, before the run directory exists (issue 23: at P = 4 the
    /// job then ended with none of our lines, and Open MPI's text named no rank): the script's
    /// last line names the rank, its host and its pid, from the markers each rank writes first
    /// thing (RankMarkers); rank 0, ended by mpirun's SIGTERM, is not named, and has its markers.
    @Test func aRankKilledDuringStartupIsNamedWithItsHostAndPid() throws {
        let stop = StopSignalTests()
        let folder = temporaryDirectory("kill9-startup")
        let run = folder.appendingPathComponent("run").path, markers = folder.appendingPathComponent("markers").path
        let command = ["launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe", contrastExecutable.path]
            + stop.arguments(run, ranks: 2, steps: 100_000)
        let started = try stop.start(["/bin/bash", "-c", "exec \"$@\" 2>&1", "bash"] + command,
                                     environment: ["CONTRAST_RANK_MARKERS": markers], name: "kill9-startup")
        // Rank 1's start marker: "rank 1 host H pid P", written before MPI starts.
        let marker = markers + "/rank-1.start"
        let deadline = Date().addingTimeInterval(60)
        var words: [Substring] = []
        while words.count < 6 && Date() < deadline && started.process.isRunning {
            words = ((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "").split(separator: " ")
            usleep(2_000)
        }
        let pid = try #require(Int32(words.count == 6 ? words[5].trimmingCharacters(in: .whitespacesAndNewlines) : ""),
                               "no start marker for rank 1: \(started.output.suffix(2000))")
        #expect(words[0] == "rank" && words[1] == "1" && words[3] == Launch.localHostname(), "\(words)")
        kill(pid, SIGKILL)
        let status = stop.waitForExit(started, runDirectory: run)
        #expect(status == 128 + SIGKILL, "\(started.output.suffix(2500))")
        #expect(!started.output.contains("run directory: "), "the kill came after the start-up: \(started.output.suffix(2500))")
        let last = String(started.output.split(separator: "\n").last ?? "")
        let named = "launch/mpirun.sh: the job ended during start-up, before its run directory was set up: "
            + "rank 1 on \(Launch.localHostname()) (pid \(pid)) "
        // The script's path as bash was given it (startProcess makes it absolute), then the rest as given.
        #expect(last.hasPrefix(named) && last.contains("; to start it again, run the same command: ")
                && last.hasSuffix("launch/mpirun.sh " + command.dropFirst().joined(separator: " ")), "\(last)")
        #expect(!last.contains("rank 0"), "\(last)")
        let files = Set((try? FileManager.default.contentsOfDirectory(atPath: markers)) ?? [])
        #expect(files.contains("rank-0.start") && (files.contains("rank-0.signalled") || files.contains("rank-0.exit")), "\(files)")
        #expect(!files.contains("rank-1.exit") && !files.contains("rank-1.signalled"), "\(files)")
    }

    /// An error one rank meets alone still ends the job through MPI_Abort, and launch/mpirun.sh
    /// prints the rank's line again after mpirun's text (an MPI_ABORT block, or, when Open MPI
    /// fails to show it, an ORTE_ERROR_LOG line: which one varies from run to run).
    @Test func oneRanksErrorThroughTheLaunchScriptEndsWithItsLine() throws {
        let stop = StopSignalTests()
        let started = try stop.start(["/bin/bash", "-c", "exec \"$@\" 2>&1", "bash", "launch/mpirun.sh", "-np", "2", "--mpi", "--oversubscribe",
                                      contrastExecutable.path, "collectives-check", "--fail-on-rank", "1", "--large-count", "1000"],
                                     name: "one-rank-error-mpirun")
        let status = stop.waitForExit(started, runDirectory: "fail-on-rank", timeout: 60)
        #expect(status == 1, "\(started.output)")
        let last = started.output.split(separator: "\n").last ?? ""
        #expect(last == "contrast: rank 1 of 2 on \(Launch.localHostname()): error: deliberate failure on rank 1 (--fail-on-rank)", "\(started.output)")
    }
}
