import Distributed
import Foundation
import TestSupport
import Testing
@testable import Training

/// The lines that name hosts when a cluster is set up wrong (different builds, a checkpoint
/// folder one host cannot write, a slow link), from the records the ranks gather; the same
/// across real hosts in MultiHostTests.
struct HostChecksTests {
    let hosts = ["node1", "node1", "node2", "node2", "node3"]

    @Test func ranksAreNamedWithTheirHostsGroupedAndShortened() {
        #expect(Launch.ranksOnHosts([2], hosts: hosts) == "rank 2 on node2")
        #expect(Launch.ranksOnHosts([3, 2, 4], hosts: hosts) == "ranks 2, 3 on node2 and rank 4 on node3")
        #expect(Launch.ranksOnHosts([0, 2, 4], hosts: hosts) == "rank 0 on node1, rank 2 on node2 and rank 4 on node3")
        let big = (0..<64).map { "n\($0 / 8)" }
        #expect(Launch.ranksOnHosts(Array(0..<8) + [9], hosts: big) == "ranks 0-7 on n0 and rank 9 on n1")
        #expect(Launch.ranksOnHosts(Array(0..<64), hosts: big) == "ranks 0-7 on n0, ranks 8-15 on n1, ranks 16-23 on n2 and 40 ranks on 5 more hosts")
    }

    @Test func differentBuildsNameEachBuildsRanksAndHosts() throws {
        #expect(Trainer.differentBuilds(["ab", "ab", "ab", "ab", "ab"], hosts: hosts) == nil)
        let line = try #require(Trainer.differentBuilds(["ab", "ab", "cd", "cd", "ab"], hosts: hosts))
        #expect(line == "the ranks run different builds of contrast: ranks 0, 1 on node1 and rank 4 on node3 run build id ab; "
                + "ranks 2, 3 on node2 run build id cd; install the same build at the same path on every node "
                + "(contrast --version prints a build's id)")
        let unknown = try #require(Trainer.differentBuilds(["ab", ""], hosts: ["a", "b"]))
        #expect(unknown.contains("rank 0 on a runs build id ab; rank 1 on b runs a build without a build id; install"))
    }

    @Test func aFolderSomeRanksCannotWriteIsNamedWithThem() throws {
        let ok = WritableCheck.Outcome(folder: "/shared/runs", errno: 0, step: "")
        let readOnly = WritableCheck.Outcome(folder: "/shared/runs", errno: EROFS, step: "create")
        #expect(WritableCheck.failure([ok, ok, ok], checkpoints: "/shared/runs/x/checkpoints", hosts: hosts) == nil)
        let line = try #require(WritableCheck.failure([ok, ok, readOnly, readOnly, ok], checkpoints: "/shared/runs/x/checkpoints", hosts: hosts))
        #expect(line.hasPrefix("ranks 2, 3 on node2 cannot write the checkpoint folder /shared/runs/x/checkpoints: creating a file in "
                               + "/shared/runs (the part of it that exists) failed: Read-only file system (errno 30); "), "\(line)")
        #expect(line.hasSuffix("mount it read-write on every node, or set run_dir to such a folder (--set run_dir=PATH)"))
        let alone = try #require(WritableCheck.failure([WritableCheck.Outcome(folder: "/r/checkpoints", errno: EACCES, step: "remove")],
                                                       checkpoints: "/r/checkpoints", hosts: ["a"]))
        #expect(alone.hasPrefix("cannot write the checkpoint folder /r/checkpoints: removing a file in it failed: Permission denied (errno 13); "), "\(alone)")
    }

    /// The real probe and the check in one process: a writable folder passes, leaving nothing;
    /// a path below a file is left to the run directory's creation to explain.
    @Test func theWriteCheckLeavesNothingBehind() throws {
        let folder = temporaryDirectory("writable")
        #expect(WritableCheck.tryWriting(folder.path) == WritableCheck.Outcome(folder: folder.path, errno: 0, step: ""))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
        #expect(WritableCheck.folderToTry(folder.appendingPathComponent("a/b/checkpoints")) == folder.path)
        try Data().write(to: folder.appendingPathComponent("file"))
        #expect(WritableCheck.folderToTry(folder.appendingPathComponent("file/run/checkpoints")) == nil)
        try WritableCheck.check(runDirectory: folder.appendingPathComponent("run"), hosts: ["here"], communicator: SingleProcessCommunicator())
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["file"])
    }

    /// A host is as fast as its better link: the slow host has both its links slow, its
    /// neighbours one each; only it is flagged, and never with two hosts (one link for both).
    @Test func theSlowHostIsTheOneWithBothLinksSlow() {
        let bytes = 1 << 20
        // Links h1-h2, h2-h3, h3-h4, h4-h1: 0.4 s through h2, 4 ms elsewhere.
        let four = LinkProbe.Result(hosts: ["h1", "h2", "h3", "h4"], seconds: [0.4, 0.4, 0.004, 0.004], bytes: bytes)
        let slow = four.slowHosts(factor: 2)
        #expect(slow.map(\.host) == [1])
        #expect(abs(slow[0].rate - Double(bytes) * 8 / 0.4) < 1)
        #expect(LinkProbe.Result(hosts: ["h1", "h2", "h3"], seconds: [0.004, 0.005, 0.006], bytes: bytes).slowHosts(factor: 2).isEmpty)
        #expect(LinkProbe.Result(hosts: ["h1", "h2"], seconds: [0.4], bytes: bytes).slowHosts(factor: 2).isEmpty)
        #expect(LinkProbe.leaders(hosts) == [0, 2, 4])
        #expect(LinkProbe.summary(four).hasPrefix("links: 1 MB exchanged each way between neighbouring hosts' first ranks, best of 3: h1 - h2 21.0 Mb/s, h2 - h3 21.0 Mb/s, h3 - h4 2.10 Gb/s"),
                "\(LinkProbe.summary(four))")
    }

    /// One host, or the probe off: no collective at all (a single-host job pays nothing).
    @Test func noProbeOnOneHost() throws {
        #expect(try LinkProbe.measure(megabytes: 4, hosts: ["here"], communicator: SingleProcessCommunicator()) == nil)
    }
}
