import Checkpoint
import Distributed
import Foundation
import TestSupport
import Testing

/// launch/slurm.sbatch under a real Slurm: launch/slurm-local.sh's one-node cluster (slurmctld and
/// slurmd of Debian's slurm-wlm on 127.0.0.1), brought up once before these tests and down after
/// them. Every job trains configs/smoke.yaml at P = 2 for `steps` steps; an uninterrupted job's
/// weights are the reference every interrupted one must end with, bit for bit.
///
/// Each test prints "slurm: ran NAME ..." when it ran; where the daemons cannot start (no root to
/// install Slurm, no Slurm package), each prints "slurm: skipped NAME: REASON" and is cancelled.
/// launch/test.sh counts both.
@Suite(.serialized, LocalSlurmCluster()) struct SlurmClusterTests {
    static let steps = 30

    // MARK: jobs

    /// The environment Slurm's commands run with: this process's without anything of a Slurm job
    /// or MPI launch that could run the tests, pointed at the local cluster.
    static func environment(_ cluster: SlurmCluster.Up, _ extra: [String: String] = [:]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("SLURM_") && !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") && !$0.key.hasPrefix("PMI_")
        }
        if getuid() == 0 {
            environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        environment["SLURM_CONF"] = cluster.configuration
        return environment.merging(extra) { _, new in new }
    }

    /// Runs a Slurm command (sbatch, scontrol, scancel, ...) against the cluster.
    static func slurm(_ cluster: SlurmCluster.Up, _ command: String, _ arguments: [String]) throws -> ProcessOutcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        process.currentDirectoryURL = repositoryRoot
        process.environment = environment(cluster)
        let pipe = Pipe(), errors = Pipe()
        process.standardOutput = pipe
        process.standardError = errors
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        let error = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProcessOutcome(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self),
                              error: String(decoding: error, as: UTF8.self))
    }

    /// A job submitted with `sbatch launch/slurm.sbatch` (one node, two tasks; its output in
    /// the job's own folder) and what the tests read of it.
    struct Job {
        var cluster: SlurmCluster.Up
        var id: String
        var directory: URL
        var run: String { directory.appendingPathComponent("run").path }
        var output: String { (try? String(contentsOf: directory.appendingPathComponent("slurm-\(id).out"), encoding: .utf8)) ?? "" }
        var trainLog: String { (try? String(contentsOfFile: run + "/train.log", encoding: .utf8)) ?? "" }

        /// `scontrol show job`'s fields (JobState, Restarts, RunTime, ...), empty once Slurm forgot it.
        var fields: [String: String] {
            guard let shown = try? SlurmClusterTests.slurm(cluster, "scontrol", ["show", "job", "-o", id]), shown.status == 0 else { return [:] }
            var fields: [String: String] = [:]
            for word in shown.output.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                guard let equals = word.firstIndex(of: "=") else { continue }
                fields[String(word[..<equals])] = String(word[word.index(after: equals)...])
            }
            return fields
        }
        var state: String { fields["JobState"] ?? "" }
        var restarts: Int { Int(fields["Restarts"] ?? "") ?? 0 }

        /// Step lines in rank 0's metrics so far.
        var steps: Int {
            guard let text = try? String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8) else { return 0 }
            return text.split(separator: "\n").filter { $0.contains("\"time_forward\"") }.count
        }

        /// The pids of the training ranks that srun started (step 0's tasks), by task number.
        /// `scontrol listpids` shows -1 for a task not started yet: a signal to -1 would reach
        /// every process, so only real pids are kept.
        var rankPidsByTask: [Int: pid_t] {
            guard let listed = try? SlurmClusterTests.slurm(cluster, "scontrol", ["listpids", id]) else { return [:] }
            var pids: [Int: pid_t] = [:]
            for line in listed.output.split(separator: "\n") {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                guard columns.count == 5, columns[2] == "0", let task = Int(columns[3]),
                      let pid = pid_t(columns[0]), pid > 1 else { continue }
                pids[task] = pid
            }
            return pids
        }
        var rankPids: [pid_t] {
            let byTask = rankPidsByTask
            return byTask.keys.sorted().compactMap { byTask[$0] }
        }

        func update(_ setting: String) throws {
            let outcome = try SlurmClusterTests.slurm(cluster, "scontrol", ["update", "JobId=\(id)", setting])
            #expect(outcome.status == 0, "scontrol update \(setting): \(outcome.error)")
        }

        /// What the test prints when an expectation failed: the job's output and Slurm's view.
        var story: String {
            "job \(id): \(fields["JobState"] ?? "gone") restarts \(restarts)\n--- output:\n\(output.suffix(4000))\n--- train.log:\n\(trainLog.suffix(2000))"
        }
    }

    /// Submits launch/slurm.sbatch with `launcher` on one node, two tasks, training `steps` steps.
    static func submit(_ cluster: SlurmCluster.Up, launcher: String, label: String, environment extra: [String: String] = [:],
                       options: [String] = []) throws -> Job {
        let directory = temporaryDirectory("slurm-\(label)")
        let train = ["--set", "run_dir=\(directory.appendingPathComponent("run").path)", "--set", "data.batch_per_rank=32",
                     "--set", "data.test_limit=200", "--set", "train.max_steps=\(steps)", "--set", "train.epochs=1000",
                     "--set", "checkpoint.every_steps=0", "--set", "checkpoint.every_minutes=0", "--set", "eval.knn_every_epochs=0"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2",
                             "--output=\(directory.path)/slurm-%j.out"] + options + ["launch/slurm.sbatch"] + train
        process.currentDirectoryURL = repositoryRoot
        process.environment = environment(cluster, ["LAUNCHER": launcher, "CONTRAST_BIN": contrastExecutable.path,
                                                    "CONTRAST_CONFIG": "configs/smoke.yaml"].merging(extra) { _, new in new })
        let pipe = Pipe(), errors = Pipe()
        process.standardOutput = pipe
        process.standardError = errors
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let error = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let id = output.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        guard process.terminationStatus == 0, Int(id) != nil else {
            throw SlurmCluster.Failure(description: "sbatch failed (\(process.terminationStatus)): \(output) \(error)")
        }
        return Job(cluster: cluster, id: id, directory: directory)
    }

    static func waitFor(seconds: Double, poll: Double = 0.2, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { return false }
            usleep(useconds_t(poll * 1_000_000))
        }
        return true
    }

    /// Waits until the job has trained a few steps of its current run.
    static func waitUntilTraining(_ job: Job, beyond step: Int = 0) -> Bool {
        waitFor(seconds: 180) { job.steps >= step + 3 || ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"].contains(job.state) }
            && job.state == "RUNNING"
    }

    /// Waits for the requeued job to finish and checks what every interrupted job must show:
    /// the step exited 75 after a checkpoint, the batch script requeued the job `requeues`
    /// times, the requeued run resumed from that checkpoint, the job completed, and its weights
    /// are the uninterrupted job's.
    static func expectResumedAndFinished(_ job: Job, requeues: Int, reference: Data) throws {
        #expect(waitFor(seconds: 300) { job.state == "COMPLETED" || ["FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"].contains(job.state) },
                "the job did not finish: \(job.story)")
        #expect(job.state == "COMPLETED", "\(job.story)")
        #expect(job.restarts == requeues, "\(job.story)")
        let output = job.output, trainLog = job.trainLog
        for restart in 1...requeues {
            #expect(output.contains("requeueing job \(job.id) (restart \(restart))"), "\(job.story)")
            #expect(output.contains("job \(job.id) (restart \(restart)) on"), "\(job.story)")
        }
        #expect(output.components(separatedBy: "training step exited with status 75").count - 1 == requeues, "\(job.story)")
        #expect(output.contains("contrast: training finished"), "\(job.story)")
        // srun started the two ranks as one world (PMIx), not two single-rank runs.
        #expect(trainLog.contains("world: rank 0 on") && trainLog.contains("rank 1 on"), "\(job.story)")
        let resumes = trainLog.split(separator: "\n").filter { $0.contains("resumed from checkpoint") }
        #expect(resumes.count == requeues, "\(job.story)")
        #expect(trainLog.contains("done: \(steps) steps"), "\(job.story)")
        let weights = try Data(contentsOf: URL(fileURLWithPath: job.run + "/weights.bin"))
        #expect(weights == reference, "job \(job.id)'s final weights differ from the uninterrupted job's")
    }

    // MARK: the reference: an uninterrupted job

    /// The weights of an uninterrupted job, made by the first test that needs them.
    static let referenceJob = SlurmCluster.Once<Data>()

    static func referenceWeights(_ cluster: SlurmCluster.Up) throws -> Data {
        try referenceJob.value {
            let job = try submit(cluster, launcher: "srun", label: "reference")
            defer { _ = try? slurm(cluster, "scancel", [job.id]) }
            #expect(waitFor(seconds: 300) { ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"].contains(job.state) }, "\(job.story)")
            #expect(job.state == "COMPLETED" && job.restarts == 0, "\(job.story)")
            #expect(job.output.contains("training step exited with status 0") && job.output.contains("contrast: training finished")
                    && !job.output.contains("requeueing"), "\(job.story)")
            #expect(job.trainLog.contains("2 rank(s)") && job.trainLog.contains("done: \(steps) steps"), "\(job.story)")
            return try Data(contentsOf: URL(fileURLWithPath: job.run + "/weights.bin"))
        }
    }

    /// An uninterrupted job trains to the end on two srun-started ranks and is not requeued.
    @Test func uninterruptedJobFinishes() throws {
        let cluster = try SlurmCluster.require("uninterruptedJobFinishes")
        let start = Date()
        _ = try Self.referenceWeights(cluster)
        print("slurm: ran uninterruptedJobFinishes in \(Int(Date().timeIntervalSince(start))) s")
    }

    // MARK: stop, checkpoint, requeue, resume

    /// The time limit's signal, as the batch script asks for it (`#SBATCH --time=04:00:00` and
    /// `--signal=B:USR1@300`): once the job trains, the test shortens its limit to a minute or
    /// two, so that Slurm's next time-limit check (every 30 s) sends SIGUSR1 to the batch shell
    /// ahead of the limit. The ranks are held (SIGSTOP) until that signal has come, so a fast
    /// machine cannot finish the short run first; released, they take the forwarded signal,
    /// checkpoint and exit 75; the batch script requeues the job; the test gives the requeued
    /// job its limit back, and it resumes and finishes.
    @Test func timeLimitSignalCheckpointsRequeuesAndResumes() throws {
        let cluster = try SlurmCluster.require("timeLimitSignalCheckpointsRequeuesAndResumes")
        let reference = try Self.referenceWeights(cluster)
        let start = Date()
        let job = try Self.submit(cluster, launcher: "srun", label: "time-limit")
        defer { _ = try? Self.slurm(cluster, "scancel", [job.id]) }
        try #require(Self.waitUntilTraining(job), "\(job.story)")
        let ranks = job.rankPids
        try #require(ranks.count == 2, "step 0's tasks: \(ranks)\n\(job.story)")
        for pid in ranks { kill(pid, SIGSTOP) }
        defer { for pid in ranks { kill(pid, SIGCONT) } }
        // A limit at least 60 s past now: Slurm's next check (at most 30 s away) comes before it.
        let elapsed = Self.seconds(job.fields["RunTime"] ?? "")
        let minutes = (elapsed + 60 + 59) / 60
        try job.update("TimeLimit=\(minutes)")
        let signalled = Self.waitFor(seconds: 45) { job.output.contains("SIGUSR1 received") }
        #expect(signalled, "Slurm sent no signal within 45 s of the time limit becoming \(minutes) min\n\(job.story)")
        usleep(500_000)   // srun passes the signal on to the held ranks
        for pid in ranks { kill(pid, SIGCONT) }
        #expect(Self.waitFor(seconds: 120) { job.restarts >= 1 }, "\(job.story)")
        try job.update("TimeLimit=04:00:00")
        try Self.expectResumedAndFinished(job, requeues: 1, reference: reference)
        #expect(!job.output.contains("DUE TO TIME LIMIT"), "\(job.story)")
        print("slurm: ran timeLimitSignalCheckpointsRequeuesAndResumes in \(Int(Date().timeIntervalSince(start))) s: 1 requeue cycle, survived")
    }

    /// `scancel --signal=USR1 JOB` mid-run: Slurm signals the job's steps, so srun's ranks get
    /// SIGUSR1 straight from slurmd, checkpoint and exit 75; srun exits 75 and the batch script
    /// requeues the job. The requeued job is stopped the same way once more, then finishes.
    @Test func scancelSignalCheckpointsRequeuesAndResumes() throws {
        let cluster = try SlurmCluster.require("scancelSignalCheckpointsRequeuesAndResumes")
        let reference = try Self.referenceWeights(cluster)
        let start = Date()
        let job = try Self.submit(cluster, launcher: "srun", label: "scancel")
        defer { _ = try? Self.slurm(cluster, "scancel", [job.id]) }
        for cycle in 1...2 {
            try #require(Self.waitUntilTraining(job, beyond: cycle == 1 ? 0 : job.steps), "cycle \(cycle): \(job.story)")
            let signalled = try Self.slurm(cluster, "scancel", ["--signal=USR1", job.id])
            #expect(signalled.status == 0, "\(signalled.error)")
            try #require(Self.waitFor(seconds: 120) { job.restarts >= cycle }, "cycle \(cycle): \(job.story)")
        }
        try Self.expectResumedAndFinished(job, requeues: 2, reference: reference)
        print("slurm: ran scancelSignalCheckpointsRequeuesAndResumes in \(Int(Date().timeIntervalSince(start))) s: 2 requeue cycles, survived")
    }

    /// LAUNCHER=mpirun: launch/mpirun.sh starts the ranks inside the allocation (on one node
    /// Open MPI starts them itself, with no Slurm step). `scancel --batch --signal=USR1`
    /// signals the batch shell, which passes it to mpirun, which passes it to the ranks.
    @Test(.enabled(if: ProcessInfo.processInfo.activeProcessorCount >= 2, "--bind core at 2 ranks needs 2 cores"))
    func mpirunInsideTheAllocationCheckpointsRequeuesAndResumes() throws {
        let cluster = try SlurmCluster.require("mpirunInsideTheAllocationCheckpointsRequeuesAndResumes")
        let reference = try Self.referenceWeights(cluster)
        let start = Date()
        let job = try Self.submit(cluster, launcher: "mpirun", label: "mpirun")
        defer { _ = try? Self.slurm(cluster, "scancel", [job.id]) }
        try #require(Self.waitUntilTraining(job), "\(job.story)")
        let signalled = try Self.slurm(cluster, "scancel", ["--batch", "--signal=USR1", job.id])
        #expect(signalled.status == 0, "\(signalled.error)")
        try #require(Self.waitFor(seconds: 120) { job.restarts >= 1 }, "\(job.story)")
        try Self.expectResumedAndFinished(job, requeues: 1, reference: reference)
        #expect(job.output.contains("Slurm allocation \(job.id)"), "launch/mpirun.sh did not see the allocation: \(job.story)")
        print("slurm: ran mpirunInsideTheAllocationCheckpointsRequeuesAndResumes in \(Int(Date().timeIntervalSince(start))) s: 1 requeue cycle, survived")
    }

    // MARK: a rank lost during start-up

    /// kill -9 of rank 1 right after it started, before it reached MPI_Init (once it wrote its
    /// start marker, RankMarkers): Slurm names the task and its host, and srun's --wait
    /// (SRUN_WAIT, 10 s here) ends rank 0, which would otherwise wait in PMIx's fence until the
    /// time limit (Slurm's PMIx plugin notices a lost rank only once it had connected); the job
    /// fails and is not requeued.
    @Test func aRankLostDuringStartupEndsTheJobNamingIt() throws {
        let cluster = try SlurmCluster.require("aRankLostDuringStartupEndsTheJobNamingIt")
        let start = Date()
        let markers = temporaryDirectory("slurm-markers")
        let job = try Self.submit(cluster, launcher: "srun", label: "startup-kill",
                                  environment: ["SRUN_WAIT": "10", "CONTRAST_RANK_MARKERS": markers.path])
        defer { _ = try? Self.slurm(cluster, "scancel", [job.id]) }
        // Rank 1's start marker: "rank 1 host H pid P", its first act.
        var words: [Substring] = []
        _ = Self.waitFor(seconds: 120, poll: 0.002) {
            words = ((try? String(contentsOf: markers.appendingPathComponent("rank-1.start"), encoding: .utf8)) ?? "").split(separator: " ")
            return words.count == 6 || ["FAILED", "COMPLETED", "CANCELLED"].contains(job.state)
        }
        let pid = try #require(words.count == 6 ? pid_t(words[5].trimmingCharacters(in: .whitespacesAndNewlines)) : nil,
                               "rank 1 wrote no start marker: \(job.story)")
        try #require(pid > 1)
        #expect(words[1] == "1" && words[3] == Launch.localHostname(), "\(words)")
        kill(pid, SIGKILL)
        let killed = Date()
        let ended = Self.waitFor(seconds: 90) { !["RUNNING", "PENDING", "COMPLETING", ""].contains(job.state) }
        #expect(ended, "the job still runs 90 s after rank 1 was killed: \(job.story)")
        #expect(job.state == "FAILED" && job.restarts == 0, "\(job.story)")
        #expect(!job.output.contains("run directory: "), "the kill came after the start-up: \(job.story)")
        #expect(job.output.contains("srun: error: \(Launch.localHostname()): task 1: Killed"), "\(job.story)")
        #expect(job.output.contains("contrast: training failed with status") && job.output.contains("not requeued"), "\(job.story)")
        print("slurm: ran aRankLostDuringStartupEndsTheJobNamingIt in \(Int(Date().timeIntervalSince(start))) s: "
              + "ended \(Int(Date().timeIntervalSince(killed))) s after the kill")
    }

    /// A step that fails to launch: srun then exits 0 ("task 0 launch failed"), which read as a
    /// finished run. The job is held until the test has put a folder where Slurm's PMIx plugin
    /// will create its step folder (as one left by an earlier cluster would be), so the step
    /// cannot start; the script finds no start marker of rank 0 and fails the job.
    @Test func aStepThatFailsToLaunchFailsTheJob() throws {
        let cluster = try SlurmCluster.require("aStepThatFailsToLaunchFailsTheJob")
        let start = Date()
        let job = try Self.submit(cluster, launcher: "srun", label: "launch-fails", options: ["--hold"])
        defer { _ = try? Self.slurm(cluster, "scancel", [job.id]) }
        let blocker = cluster.directory.appendingPathComponent("tmp/spmix_appdir_\(getuid())_\(job.id).0")
        try FileManager.default.createDirectory(at: blocker, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: blocker) }
        let released = try Self.slurm(cluster, "scontrol", ["release", job.id])
        #expect(released.status == 0, "\(released.error)")
        #expect(Self.waitFor(seconds: 120) { ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"].contains(job.state) }, "\(job.story)")
        #expect(job.output.contains("launch failed"), "the step launched after all: \(job.story)")
        #expect(job.state == "FAILED" && job.restarts == 0, "\(job.story)")
        #expect(job.output.contains("contrast: srun exited 0, but rank 0 of contrast never started") && !job.output.contains("training finished"),
                "\(job.story)")
        print("slurm: ran aStepThatFailsToLaunchFailsTheJob in \(Int(Date().timeIntervalSince(start))) s")
    }

    /// "[D-]HH:MM:SS" or "MM:SS" as seconds.
    static func seconds(_ time: String) -> Int {
        let parts = time.split(separator: "-")
        let days = parts.count == 2 ? Int(parts[0]) ?? 0 : 0
        let clock = (parts.last ?? "").split(separator: ":").compactMap { Int($0) }
        return days * 86_400 + clock.reduce(0) { $0 * 60 + $1 }
    }
}

/// The local cluster's state while the suite runs.
enum SlurmCluster {
    struct Up: Sendable {
        var directory: URL
        var configuration: String
    }
    enum State: Sendable {
        case notStarted
        case up(Up)
        case unavailable(String)
    }
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    final class Box<Value>: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Value
        init(_ value: Value) { stored = value }
        var value: Value {
            get { lock.lock(); defer { lock.unlock() }; return stored }
            set { lock.lock(); stored = newValue; lock.unlock() }
        }
    }

    /// A value made once, by the first caller, and kept.
    final class Once<Value>: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Value?
        func value(_ make: () throws -> Value) throws -> Value {
            lock.lock(); defer { lock.unlock() }
            if let stored { return stored }
            let made = try make()
            stored = made
            return made
        }
    }

    static let state = Box<State>(.notStarted)

    /// The running cluster; when the daemons could not start, prints why (the line
    /// launch/test.sh counts) and cancels the calling test.
    static func require(_ test: String) throws -> Up {
        switch state.value {
        case .up(let cluster):
            return cluster
        case .unavailable(let reason):
            print("slurm: skipped \(test): \(reason)")
            try Test.cancel("slurm: skipped: \(reason)")
        case .notStarted:
            print("slurm: skipped \(test): the suite's LocalSlurmCluster trait did not run")
            try Test.cancel("slurm: skipped: no cluster")
        }
    }
}

/// Brings launch/slurm-local.sh's cluster up in a temporary folder before the suite's tests, and
/// down after them, whatever they did.
struct LocalSlurmCluster: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let directory = temporaryDirectory("slurm-cluster")
        let script = repositoryRoot.appendingPathComponent("launch/slurm-local.sh").path
        let environment = ["CONTRAST_SLURM_DIR": directory.path]
        let start = Date()
        let up = try runProcess(URL(fileURLWithPath: "/bin/bash"), [script, "up"], environment: environment, timeout: 900)
        if up.status == 0 {
            SlurmCluster.state.value = .up(.init(directory: directory, configuration: directory.appendingPathComponent("slurm.conf").path))
            print("slurm: cluster up in \(String(format: "%.1f", Date().timeIntervalSince(start))) s: \(up.error.split(separator: "\n").last ?? "")")
        } else {
            let reason = up.error.split(separator: "\n").last(where: { $0.hasPrefix("launch/slurm-local.sh:") }).map(String.init)
                ?? "launch/slurm-local.sh up exited \(up.status)\(up.timedOut ? " (timed out)" : "")"
            SlurmCluster.state.value = .unavailable(reason)
            print("slurm: the local cluster could not start: \(reason)\n\(up.error.suffix(3000))")
        }
        defer {
            if case .up = SlurmCluster.state.value {
                let down = try? runProcess(URL(fileURLWithPath: "/bin/bash"), [script, "down"], environment: environment, timeout: 120)
                print("slurm: cluster down: \(down?.error.split(separator: "\n").last ?? "launch/slurm-local.sh down did not run")")
            }
            SlurmCluster.state.value = .notStarted
            try? FileManager.default.removeItem(at: directory)
        }
        try await function()
    }
}
