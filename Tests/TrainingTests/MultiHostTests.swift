import Checkpoint
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import NN
@testable import Training

/// contrast across hosts: launch/netns-cluster.sh's network namespaces on this machine, each
/// with its own host name and address, mpirun reaching them through launch/netns-agent.sh instead
/// of ssh and the ranks talking TCP over a bridge. The central tests again (P ranks equal one
/// process; a killed run resumes bit-exactly), at 2 hosts x 2 ranks and 3 hosts x 1 rank, and
/// the host names where a person reads them: the world line, the per-rank metrics, the
/// straggler warning and a failing rank's message.
@Suite(.serialized, .enabled(if: NetnsCluster.unavailableReason == nil,
                             "multi-host tests skipped: \(NetnsCluster.unavailableReason ?? "")"))
struct MultiHostTests {
    /// (hosts, ranks): 4 ranks two to a host, and 3 ranks one to a host.
    static let layouts = [(2, 4), (3, 3)]
    /// Divisible by 8 virtual shards and by 1, 3 and 4 ranks.
    static let globalBatch = 48

    func arguments(_ run: String, ranks: Int, steps: Int, _ overrides: [String]) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
         "--set", "data.batch_per_rank=\(Self.globalBatch / ranks)", "--set", "train.max_steps=\(steps)",
         "--set", "communication.precision=fp32", "--set", "data.test_limit=200",
         "--set", "eval.knn_every_epochs=0"] + overrides.flatMap { ["--set", $0] }
    }

    /// Every JSON record of rank `rank`'s metrics.
    func records(_ run: String, rank: Int) throws -> [[String: Any]] {
        try String(contentsOfFile: "\(run)/metrics/rank-\(rank).jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The hosts where a person reads them: train.log's world line names every rank's host,
    /// and each rank's `start` record carries its own host and the whole list.
    func expectHostsNamed(_ run: String, cluster: NetnsCluster, ranks: Int) throws {
        let names = (0..<ranks).map { cluster.hostname(ofRank: $0) }
        let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
        let world = "world: " + names.enumerated().map { "rank \($0.offset) on \($0.element)" }.joined(separator: ", ")
        #expect(log.contains(world), "\(log.prefix(2000))")
        for rank in 0..<ranks {
            let start = try #require(try records(run, rank: rank).last { $0["type"] as? String == "start" })
            #expect(start["host"] as? String == names[rank] && start["hosts"] as? String == names.joined(separator: ","), "\(start)")
        }
    }

    /// Every collective with rank-dependent data, checked on every rank over TCP between hosts;
    /// `hostnames()` gathers each namespace's own name in rank order.
    @Test(arguments: layouts) func collectivesAcrossHosts(hosts: Int, ranks: Int) throws {
        try NetnsCluster.with(hosts: hosts, slots: ranks / hosts) { cluster in
            let outcome = try cluster.runContrast(ranks: ranks, ["collectives-check", "--large-count", "300001"], timeout: 180)
            #expect(outcome.status == 0 && !outcome.timedOut, "\(outcome.error.suffix(2000))")
            for rank in 0..<ranks { #expect(outcome.output.contains("collectives-check: OK rank \(rank) of \(ranks)")) }
            let names = (0..<ranks).map { cluster.hostname(ofRank: $0) }.joined(separator: " ")
            #expect(outcome.output.contains("collectives-check: hosts \(names)\n"), "\(outcome.output)")
        }
    }

    /// One plain SGD step on P ranks across hosts equals one process on the whole global batch
    /// (DESIGN.md decision 3), to 1e-5 relative element by element, as on one host.
    @Test(arguments: layouts) func oneStepAcrossHostsEqualsOneProcess(hosts: Int, ranks: Int) throws {
        let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]
        let reference = try trainSmoke("multihost-ref", ranks: 1, steps: 1, globalBatch: Self.globalBatch, sgd)
        try NetnsCluster.with(hosts: hosts, slots: ranks / hosts) { cluster in
            let run = temporaryDirectory("multihost").appendingPathComponent("run").path
            let outcome = try cluster.runContrast(ranks: ranks, arguments(run, ranks: ranks, steps: 1, sgd))
            #expect(outcome.status == 0, "\(outcome.error.suffix(2000))")
            let model = ContrastiveModel(reference.config.model, inputWidth: 784, imageShape: [28, 28])
            try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run + "/weights.bin"))
            let loss = try #require(try records(run, rank: 0).first { $0["time_forward"] != nil }?["loss"] as? Double)
            #expect(abs(loss - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
            let difference = zip(model.arena.parameters.array, reference.parameters)
                .map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0
            #expect(difference <= 1e-5)
            try expectHostsNamed(run, cluster: cluster, ranks: ranks)
        }
    }

    /// A run killed right after its step-15 checkpoint committed (before `latest` moved) and
    /// resumed, all across hosts, ends bitwise where the same P ranks on one host (shared
    /// memory) end: parameters, AdamW moments and the metric lines of steps 16...30, across
    /// the epoch boundary at step 20. Neither the hosts nor the transport change a bit.
    @Test(arguments: layouts) func killedRunAcrossHostsResumesBitExactly(hosts: Int, ranks: Int) throws {
        let settings = ["checkpoint.every_steps=15", "data.train_limit=960"]
        let resumeTests = CheckpointResumeTests()
        let straight = temporaryDirectory("multihost-straight").appendingPathComponent("run").path
        let local = try runContrast(ranks: ranks, arguments(straight, ranks: ranks, steps: 30, settings))
        #expect(local.status == 0, "\(local.error.suffix(2000))")
        try NetnsCluster.with(hosts: hosts, slots: ranks / hosts) { cluster in
            let killed = temporaryDirectory("multihost-killed").appendingPathComponent("run").path
            let crash = try cluster.runContrast(ranks: ranks, arguments(killed, ranks: ranks, steps: 30, settings),
                                                environment: ["CONTRAST_CHECKPOINT_CRASH_AT": "before-latest"])
            #expect(crash.status != 0)
            let resumed = try cluster.runContrast(ranks: ranks, arguments(killed, ranks: ranks, steps: 30, settings))
            #expect(resumed.status == 0, "\(resumed.error.suffix(2000))")
            let log = try String(contentsOfFile: killed + "/train.log", encoding: .utf8)
            #expect(log.contains("resumed from checkpoint"), "\(log.suffix(1500))")
            #expect(try resumeTests.newestState(killed) == resumeTests.newestState(straight))
            #expect(try resumeTests.stepRecords(killed, from: 16) == resumeTests.stepRecords(straight, from: 16))
            try expectHostsNamed(killed, cluster: cluster, ranks: ranks)
        }
    }

    /// A rank slowed by 1 s a step on the second host is flagged with that host's name, and
    /// the other host's rank is not.
    @Test func stragglerWarningNamesItsHost() throws {
        try NetnsCluster.with(hosts: 2, slots: 1) { cluster in
            let run = temporaryDirectory("multihost-slow").appendingPathComponent("run").path
            let outcome = try cluster.runContrast(ranks: 2, arguments(run, ranks: 2, steps: 10, ["train.log_every_steps=5", "data.prefetch=0"]),
                                                  environment: ["CONTRAST_SLOW_RANK": "1:1000"])
            #expect(outcome.status == 0, "\(outcome.error.suffix(2000))")
            let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
            #expect(log.contains("WARNING rank 1 on contrast-h2 is a straggler"), "\(log.suffix(1500))")
            #expect(!log.contains("WARNING rank 0 on "))
        }
    }

    /// `launch/mpirun.sh --netns` on 2 hosts x 1 rank, a long run (rank 0 sleeps 0.1 s a step)
    /// with a checkpoint every 2 steps; returns once step 4 is logged, with the job running.
    func startLongRun(_ run: String, ranks: Int = 2) throws -> StartedProcess {
        let job = try startProcess(["launch/mpirun.sh", "--netns", "-np", "\(ranks)", "-x", "CONTRAST_SLOW_RANK=0:100", contrastExecutable.path]
                                   + arguments(run, ranks: ranks, steps: 400, ["checkpoint.every_steps=2", "communication.watchdog_seconds=3"]),
                                   environment: ["CONTRAST_ABORT_GRACE": "3"], label: "multihost-job")
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, job.process.isRunning,
              !((try? String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8)) ?? "").contains("\"step\":4,") {
            usleep(100_000)
        }
        return job
    }

    /// contrast-h2's link goes down mid-run. The watchdog on contrast-h1 fires (3 s), but mpirun
    /// waits for contrast-h2's daemon, which can no longer answer, for many minutes: the launch
    /// script ends it CONTRAST_ABORT_GRACE (3 s) after the abort, naming the rank that never
    /// reported and its host. The run then resumes on the remaining host alone, at P = 1 with
    /// the same global batch, and finishes.
    @Test func linkDownEndsTheJobNamingTheHostAndTheRunResumesOnTheRest() throws {
        try NetnsCluster.with(hosts: 2, slots: 1) { cluster in
            let run = temporaryDirectory("multihost-link").appendingPathComponent("run").path
            let job = try startLongRun(run)
            let cut = Date()
            _ = try runProcess(URL(fileURLWithPath: "/usr/sbin/ip"), ["link", "set", "contrast-h2", "down"])
            let status = job.exitStatus(within: 60)
            #expect(status == 69, "\(job.error.suffix(2000))")
            #expect(Date().timeIntervalSince(cut) < 30)
            #expect(job.error.contains("rank 0 on contrast-h1: collective #"), "\(job.error.suffix(2000))")
            #expect(job.error.contains("mpirun had not ended 3 s later: rank 1 on contrast-h2 never reported"), "\(job.error.suffix(2000))")
            let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
            #expect(log.contains("the run was aborted and rank 1 on contrast-h2 never reported"), "\(log.suffix(1500))")

            let hostfile = temporaryDirectory("multihost-remaining").appendingPathComponent("hosts")
            try "contrast-h1 slots=1\n".write(to: hostfile, atomically: true, encoding: .utf8)
            let resumed = try runProcess(repositoryRoot.appendingPathComponent("launch/mpirun.sh"),
                                         ["--netns", "--hostfile", hostfile.path, "-np", "1", contrastExecutable.path]
                                         + arguments(run, ranks: 1, steps: 12, []))
            #expect(resumed.status == 0, "\(resumed.error.suffix(2000))")
            let resumedLog = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
            #expect(resumedLog.contains("resumed from checkpoint") && resumedLog.contains("world: rank 0 on contrast-h1\n"))
        }
    }

    /// Every process of contrast-h2 killed at once, as when a machine dies: mpirun ends the job,
    /// and the launch script's last line names the host whose daemon was lost.
    @Test func aDeadHostIsNamed() throws {
        try NetnsCluster.with(hosts: 2, slots: 1) { cluster in
            let run = temporaryDirectory("multihost-dead").appendingPathComponent("run").path
            let job = try startLongRun(run)
            let pids = try runProcess(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "pids", "contrast-h2"]).output
            for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            let status = job.exitStatus(within: 60)
            #expect(status != nil && status != 0, "\(job.error.suffix(2000))")
            #expect(job.error.contains("the run ended: mpirun lost its daemon on contrast-h2"), "\(job.error.suffix(2000))")
        }
    }

    /// A hostfile naming a host the cluster does not have: the launch fails at once with the
    /// agent's line naming the host and the fix, as ssh's "Could not resolve hostname" would.
    @Test func hostfileNamingAnUnknownHostFailsNamingIt() throws {
        try NetnsCluster.with(hosts: 2, slots: 1) { _ in
            let hostfile = temporaryDirectory("multihost-unknown").appendingPathComponent("hosts")
            try "contrast-h1 slots=1\ncontrast-h9 slots=1\n".write(to: hostfile, atomically: true, encoding: .utf8)
            let outcome = try runProcess(repositoryRoot.appendingPathComponent("launch/mpirun.sh"),
                                         ["--netns", "--hostfile", hostfile.path, "-np", "2", contrastExecutable.path,
                                          "collectives-check", "--large-count", "1000"], timeout: 60)
            #expect(!outcome.timedOut && outcome.status != 0)
            #expect(outcome.error.contains("launch/netns-agent.sh: no host 'contrast-h9' in this machine's netns cluster (contrast-h1 contrast-h2); check the hostfile"),
                    "\(outcome.error)")
        }
    }

    /// A rank that fails on one host ends the job with a line naming the rank and that host.
    @Test func failingRankIsNamedWithItsHost() throws {
        try NetnsCluster.with(hosts: 2, slots: 1) { cluster in
            let outcome = try cluster.runContrast(ranks: 2, ["collectives-check", "--fail-on-rank", "1", "--large-count", "1000"],
                                                  timeout: 120)
            #expect(!outcome.timedOut && outcome.status != 0)
            #expect(outcome.error.contains("contrast: rank 1 of 2 on contrast-h2: error: deliberate failure on rank 1"), "\(outcome.error)")
        }
    }
}
