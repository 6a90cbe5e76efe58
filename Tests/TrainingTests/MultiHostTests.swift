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

    /// A copy of the contrast binary whose GNU build id differs in its last bit, in `directory`;
    /// returns its path and the two build ids (this binary's, the copy's).
    func binaryOfAnotherBuild(in directory: URL) throws -> (path: String, id: String, otherID: String) {
        let version = try runProcess(contrastExecutable, ["--version"]).output
        let id = try #require(version.split(separator: "(build id ").last?.split(separator: ")").first.map(String.init))
        var idBytes: [UInt8] = []
        var index = id.startIndex
        while let next = id.index(index, offsetBy: 2, limitedBy: id.endIndex), index < id.endIndex, let byte = UInt8(id[index..<next], radix: 16) {
            idBytes.append(byte)
            index = next
        }
        try #require(idBytes.count >= 16 && idBytes.count * 2 == id.count, "contrast --version: \(version)")
        var binary = try Data(contentsOf: contrastExecutable)
        let at = try #require(binary.range(of: Data(idBytes)), "the build id is not in the binary")
        binary[at.upperBound - 1] ^= 1
        let other = directory.appendingPathComponent("contrast-other")
        try binary.write(to: other)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: other.path)
        var otherBytes = idBytes
        otherBytes[otherBytes.count - 1] ^= 1
        return (other.path, id, otherBytes.map { String(format: "%02x", $0) }.joined())
    }

    /// contrast-h2 has another build installed at the same path (a copy whose build id differs
    /// in one bit, bound over the executable in that host's mount namespace only): the job ends
    /// with one line naming each build's ranks and hosts and the fix, and no run directory.
    @Test func differentBuildsOnTwoHostsAreNamedWithTheirHosts() throws {
        try NetnsCluster.with(hosts: 2, slots: 2) { cluster in
            let directory = temporaryDirectory("multihost-builds")
            let other = try binaryOfAnotherBuild(in: directory)
            try cluster.inMountNamespace(ofHost: 2, ["mount", "--bind", other.path, contrastExecutable.resolvingSymlinksInPath().path])
            let run = directory.appendingPathComponent("run").path
            let outcome = try cluster.runContrast(ranks: 4, arguments(run, ranks: 4, steps: 2, []), timeout: 180)
            #expect(!outcome.timedOut && outcome.status == 1, "\(outcome.error.suffix(2000))")
            let line = "the ranks run different builds of contrast: ranks 0, 1 on contrast-h1 run build id \(other.id); "
                + "ranks 2, 3 on contrast-h2 run build id \(other.otherID); install the same build at the same path on every node"
            #expect(outcome.error.contains(line), "\(outcome.error.suffix(2000))")
            #expect(outcome.error.components(separatedBy: "different builds").count == 2, "printed once: \(outcome.error)")
            #expect(!FileManager.default.fileExists(atPath: run))
        }
    }

    /// The folder holding run_dir is read-only on contrast-h2 alone (bound read-only in that
    /// host's mount namespace, as a node that mounts the shared file system read-only): before
    /// the first step the job ends on every rank with one line naming the rank, its host, the
    /// folder, the reason and the fix; no run directory is made, and the same command runs once
    /// the host can write.
    @Test func aCheckpointFolderOneHostCannotWriteEndsTheJobNamingTheHost() throws {
        try NetnsCluster.with(hosts: 2, slots: 1) { cluster in
            let shared = temporaryDirectory("multihost-readonly").appendingPathComponent("shared")
            try FileManager.default.createDirectory(at: shared, withIntermediateDirectories: true)
            try cluster.inMountNamespace(ofHost: 2, ["mount", "--bind", shared.path, shared.path])
            try cluster.inMountNamespace(ofHost: 2, ["mount", "-o", "remount,bind,ro", shared.path])
            let run = shared.appendingPathComponent("run").path
            let outcome = try cluster.runContrast(ranks: 2, arguments(run, ranks: 2, steps: 2, []), timeout: 180)
            #expect(!outcome.timedOut && outcome.status == 1, "\(outcome.error.suffix(2000))")
            let line = "rank 1 on contrast-h2 cannot write the checkpoint folder \(run)/checkpoints: creating a file in \(shared.path) "
                + "(the part of it that exists) failed: Read-only file system (errno 30); every rank writes its checkpoint shards"
            #expect(outcome.error.contains(line), "\(outcome.error.suffix(2000))")
            #expect(outcome.error.contains("mount it read-write on every node, or set run_dir to such a folder"))
            #expect(outcome.error.components(separatedBy: "cannot write the checkpoint folder").count == 2, "printed once: \(outcome.error)")
            #expect(!FileManager.default.fileExists(atPath: run), "nothing half-written")
            #expect(try FileManager.default.contentsOfDirectory(atPath: shared.path).isEmpty, "the probe files are gone")

            try cluster.inMountNamespace(ofHost: 2, ["umount", shared.path])
            let again = try cluster.runContrast(ranks: 2, arguments(run, ranks: 2, steps: 2, []), timeout: 180)
            #expect(again.status == 0, "\(again.error.suffix(2000))")
        }
    }

    /// run_dir in each host's private scratch (the same path, a different folder on every
    /// host, as a node-local /scratch): every host can write it, but no host holds a whole
    /// checkpoint. The job ends before the first step naming the ranks that do not see rank 0's
    /// file and the fix, and nothing is made on any host.
    @Test func aRunDirectoryThatIsNotSharedEndsTheJobNamingTheHost() throws {
        try NetnsCluster.with(hosts: 2, slots: 2) { cluster in
            let scratch = ProcessInfo.processInfo.environment["CONTRAST_NETNS_SCRATCH"] ?? "/tmp/contrast-netns"
            let run = scratch + "/local/run"
            let outcome = try cluster.runContrast(ranks: 4, arguments(run, ranks: 4, steps: 2, []), timeout: 180)
            #expect(!outcome.timedOut && outcome.status == 1, "\(outcome.error.suffix(2000))")
            let line = "ranks 2, 3 on contrast-h2 do not see the file rank 0 on contrast-h1 made in \(scratch)/local, "
                + "so the checkpoint folder \(run)/checkpoints is not shared: "
            #expect(outcome.error.contains(line), "\(outcome.error.suffix(2000))")
            #expect(outcome.error.contains("set run_dir to a folder every host shares (--set run_dir=PATH), not a node-local one"))
            for host in 1...2 {
                #expect(try FileManager.default.contentsOfDirectory(atPath: "\(scratch)/h\(host)").isEmpty, "contrast-h\(host)'s scratch")
            }
        }
    }

    /// contrast-h2's link rate-limited to 20 Mbit/s both ways (tc's token bucket filter on both
    /// ends of its veth pair), contrast-h1 and contrast-h3 unshaped: the start-up link probe
    /// names contrast-h2 and its rank, and no other host. The compute straggler warning cannot
    /// (a collective waits for its slowest member on every rank).
    @Test func aSlowLinkIsFlaggedNamingItsHost() throws {
        try NetnsCluster.with(hosts: 3, slots: 1) { cluster in
            let tc = URL(fileURLWithPath: "/usr/sbin/tc")
            let shape = ["root", "tbf", "rate", "20mbit", "burst", "65536", "latency", "50ms"]
            let outside = try runProcess(tc, ["qdisc", "replace", "dev", "contrast-h2"] + shape)
            #expect(outside.status == 0, "\(outside.error)")
            let inside = try runProcess(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "exec", "contrast-h2", tc.path, "qdisc", "replace", "dev", "eth0"] + shape)
            #expect(inside.status == 0, "\(inside.error)")
            let run = temporaryDirectory("multihost-slowlink").appendingPathComponent("run").path
            let outcome = try cluster.runContrast(ranks: 3, arguments(run, ranks: 3, steps: 2, ["monitor.link_probe_mb=1"]), timeout: 240)
            #expect(outcome.status == 0, "\(outcome.error.suffix(2000))")
            let log = try String(contentsOfFile: run + "/train.log", encoding: .utf8)
            #expect(log.contains("links: 1 MB exchanged each way between neighbouring hosts' first ranks, best of 3: contrast-h1 - contrast-h2 "),
                    "\(log.prefix(3000))")
            #expect(log.contains("WARNING the network link of contrast-h2 is slow (rank 1 on contrast-h2): "), "\(log.prefix(3000))")
            #expect(!log.contains("network link of contrast-h1") && !log.contains("network link of contrast-h3"), "\(log.prefix(3000))")
            let events = try records(run, rank: 0).filter { $0["type"] as? String == "event" }
            #expect(events.contains { ($0["message"] as? String)?.hasPrefix("the network link of contrast-h2 is slow") == true }, "\(events)")
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
