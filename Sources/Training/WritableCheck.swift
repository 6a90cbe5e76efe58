import Distributed
import Foundation
import RunFiles

/// Every rank writes into the run directory: its metrics, and its shard of every checkpoint in
/// `run_dir/checkpoints`, which must be one folder all hosts share (docs/launching.md, "Where
/// the files go"). A node that mounts the shared file system read-only, or another node's
/// permissions, would otherwise fail at the first checkpoint, after the work since the start was
/// done, or leave a run directory that the corrected command refuses to reuse.
enum WritableCheck {
    /// One rank's result: the folder it tried and errno (0: it could create and remove a file there).
    struct Outcome: Equatable {
        var folder: String
        var errno: Int32
        /// "create" or "remove": the step that failed.
        var step: String
    }

    /// The folder to try for `target`: `target` when it exists, else its nearest existing
    /// parent (where the directories will be made); nil when that is not a directory (the
    /// run directory's creation names that case: a file in the way).
    static func folderToTry(_ target: URL) -> String? {
        var path = target.standardizedFileURL.path
        while true {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) { return isDirectory.boolValue ? path : nil }
            let parent = (path as NSString).deletingLastPathComponent
            guard !parent.isEmpty, parent != path else { return nil }
            path = parent
        }
    }

    /// The file a rank's check makes in `folder`, named after its host and process so ranks
    /// that share the folder never meet.
    static func probeFile(_ folder: String, host: String, pid: Int32) -> String {
        folder + "/.contrast-write-check-\(host)-\(pid)"
    }

    /// Creates and removes a file in `folder`.
    static func tryWriting(_ folder: String) -> Outcome {
        let created = create(folder)
        guard created.errno == 0 else { return created }
        return remove(folder)
    }

    static func create(_ folder: String) -> Outcome {
        let descriptor = open(probeFile(folder, host: Launch.localHostname(), pid: getpid()), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return Outcome(folder: folder, errno: errno, step: "create") }
        close(descriptor)
        return Outcome(folder: folder, errno: 0, step: "")
    }

    static func remove(_ folder: String) -> Outcome {
        guard unlink(probeFile(folder, host: Launch.localHostname(), pid: getpid())) == 0 else {
            return Outcome(folder: folder, errno: errno, step: "remove")
        }
        return Outcome(folder: folder, errno: 0, step: "")
    }

    static let slotBytes = 1024

    /// Every rank tries to write the checkpoint folder (or the nearest folder of it that exists):
    /// it creates a file there and the outcomes are combined in an all-gather; each rank looks
    /// for rank 0's file (a rank on another host that does not see it has a folder of its own at
    /// that path, not a shared one), a second all-gather combines those, each rank removes its
    /// file, and a third (4 bytes a rank) combines the removals.
    /// When any rank could not write, or does not share rank 0's folder, every rank throws the
    /// same line (`SameOnEveryRank`: printed once, exit 1) naming the ranks, their hosts, the
    /// folder, the reason and the fix. A collective: every rank calls it, before the run
    /// directory is made.
    static func check(runDirectory: URL, hosts: [String], communicator: Communicator) throws {
        let checkpoints = runDirectory.appendingPathComponent("checkpoints")
        let folder = folderToTry(checkpoints)
        let shown = checkpoints.standardizedFileURL.path
        func fail(_ message: String) -> Error {
            let error = RunDirectory.Failure(description: message)
            return communicator.size > 1 ? SameOnEveryRank(error) : error
        }
        guard communicator.size > 1 else {
            if let folder, let message = failure([tryWriting(folder)], checkpoints: shown, hosts: hosts) { throw fail(message) }
            return
        }
        let created = folder.map(create) ?? Outcome(folder: "", errno: 0, step: "")
        var send = [UInt8](repeating: 0, count: slotBytes)
        withUnsafeBytes(of: created.errno.littleEndian) { send.replaceSubrange(0..<4, with: $0) }
        send[4] = created.errno == 0 ? 0 : 1
        withUnsafeBytes(of: getpid().littleEndian) { send.replaceSubrange(5..<9, with: $0) }
        let path = Array(created.folder.utf8.prefix(slotBytes - 10))
        send.replaceSubrange(9..<(9 + path.count), with: path)
        var all = [UInt8](repeating: 0, count: slotBytes * communicator.size)
        try send.withUnsafeBytes { s in
            try all.withUnsafeMutableBytes { try communicator.allGatherBytes(s.baseAddress!, bytes: slotBytes, into: $0.baseAddress!) }
        }
        func int32(_ rank: Int, _ offset: Int) -> Int32 {
            Int32(bitPattern: all[(rank * slotBytes + offset)..<(rank * slotBytes + offset + 4)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }
        var outcomes = (0..<communicator.size).map { rank in
            Outcome(folder: String(decoding: all[(rank * slotBytes + 9)..<((rank + 1) * slotBytes)].prefix { $0 != 0 }, as: UTF8.self),
                    errno: int32(rank, 0), step: all[rank * slotBytes + 4] == 1 ? "create" : "")
        }
        if let message = failure(outcomes, checkpoints: shown, hosts: hosts) {
            if let folder, created.errno == 0 { _ = remove(folder) }
            throw fail(message)
        }
        // Rank 0's file, seen from here, gathered before any file goes; then each rank removes its own.
        let rootFolder = outcomes[0].folder
        var seen: Int32 = rootFolder.isEmpty || access(probeFile(rootFolder, host: hosts[0], pid: int32(0, 5)), F_OK) == 0 ? 1 : 0
        var seenByRank = [Int32](repeating: 0, count: communicator.size)
        try seenByRank.withUnsafeMutableBytes { try communicator.allGatherBytes(&seen, bytes: 4, into: $0.baseAddress!) }
        // A rank without a folder (a file in the way: making the run directory explains it) made no file.
        var removed = (folder.map(remove) ?? Outcome(folder: "", errno: 0, step: "")).errno
        var removedByRank = [Int32](repeating: 0, count: communicator.size)
        try removedByRank.withUnsafeMutableBytes { try communicator.allGatherBytes(&removed, bytes: 4, into: $0.baseAddress!) }
        for rank in outcomes.indices where removedByRank[rank] != 0 {
            outcomes[rank] = Outcome(folder: outcomes[rank].folder, errno: removedByRank[rank], step: "remove")
        }
        if let message = failure(outcomes, checkpoints: shown, hosts: hosts) { throw fail(message) }
        let unseen = outcomes.indices.filter { seenByRank[$0] == 0 }
        if !unseen.isEmpty {
            throw fail(Launch.ranksOnHosts(unseen, hosts: hosts) + (unseen.count == 1 ? " does" : " do")
                       + " not see the file rank 0 on \(hosts[0]) made in \(rootFolder), so the checkpoint folder \(shown) is not shared: "
                       + "every rank writes its checkpoint shards into run_dir, and a checkpoint is whole only where one folder holds "
                       + "every rank's; set run_dir to a folder every host shares (--set run_dir=PATH), not a node-local one")
        }
    }

    /// The line for the ranks that could not write (outcomes by rank), nil when all could:
    /// "rank 2 on node7 cannot write the checkpoint folder F: creating a file in F failed:
    /// Read-only file system (errno 30); FIX". Ranks failing alike are named together.
    static func failure(_ outcomes: [Outcome], checkpoints: String, hosts: [String]) -> String? {
        var groups: [(outcome: Outcome, ranks: [Int])] = []
        for (rank, outcome) in outcomes.enumerated() where outcome.errno != 0 {
            if let index = groups.firstIndex(where: { $0.outcome == outcome }) { groups[index].ranks.append(rank) } else { groups.append((outcome, [rank])) }
        }
        guard !groups.isEmpty else { return nil }
        let parts = groups.map { group -> String in
            let o = group.outcome
            let place = o.folder == checkpoints ? "in it" : "in \(o.folder)" + (checkpoints.hasPrefix(o.folder) ? " (the part of it that exists)" : "")
            return (outcomes.count == 1 ? "cannot" : Launch.ranksOnHosts(group.ranks, hosts: hosts) + " cannot")
                + " write the checkpoint folder \(checkpoints): \(o.step == "remove" ? "removing" : "creating") a file \(place) failed: "
                + String(cString: strerror(o.errno)) + " (errno \(o.errno))"
        }
        return parts.joined(separator: "; ") + "; every rank writes its checkpoint shards and metrics into run_dir, so it must be one folder "
            + "that every host shares and can write: mount it read-write on every node, or set run_dir to such a folder (--set run_dir=PATH)"
    }
}
