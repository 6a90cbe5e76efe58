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

    /// Creates and removes a file in `folder`, named after this host and process so ranks that
    /// share the folder never meet.
    static func tryWriting(_ folder: String) -> Outcome {
        let file = folder + "/.contrast-write-check-\(Launch.localHostname())-\(getpid())"
        let descriptor = open(file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return Outcome(folder: folder, errno: errno, step: "create") }
        close(descriptor)
        guard unlink(file) == 0 else { return Outcome(folder: folder, errno: errno, step: "remove") }
        return Outcome(folder: folder, errno: 0, step: "")
    }

    static let slotBytes = 1024

    /// Every rank tries to write the checkpoint folder (or the nearest folder of it that exists),
    /// and the outcomes are combined in one all-gather: when any rank could not, every rank
    /// throws the same line (`SameOnEveryRank`: printed once, exit 1) naming the ranks, their
    /// hosts, the folder, the reason and the fix. A collective: every rank calls it, before the
    /// run directory is made.
    static func check(runDirectory: URL, hosts: [String], communicator: Communicator) throws {
        let checkpoints = runDirectory.appendingPathComponent("checkpoints")
        let mine = folderToTry(checkpoints).map(tryWriting) ?? Outcome(folder: "", errno: 0, step: "")
        var outcomes = [mine]
        if communicator.size > 1 {
            var send = [UInt8](repeating: 0, count: slotBytes)
            withUnsafeBytes(of: mine.errno.littleEndian) { send.replaceSubrange(0..<4, with: $0) }
            send[4] = mine.step == "remove" ? 2 : mine.step == "create" ? 1 : 0
            let folder = Array(mine.folder.utf8.prefix(slotBytes - 6))
            send.replaceSubrange(5..<(5 + folder.count), with: folder)
            var all = [UInt8](repeating: 0, count: slotBytes * communicator.size)
            try send.withUnsafeBytes { s in
                try all.withUnsafeMutableBytes { try communicator.allGatherBytes(s.baseAddress!, bytes: slotBytes, into: $0.baseAddress!) }
            }
            outcomes = (0..<communicator.size).map { rank in
                let slot = all[(rank * slotBytes)..<((rank + 1) * slotBytes)]
                let code = slot.prefix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                let step = slot[slot.startIndex + 4]
                return Outcome(folder: String(decoding: slot.dropFirst(5).prefix { $0 != 0 }, as: UTF8.self),
                               errno: Int32(bitPattern: code), step: step == 2 ? "remove" : step == 1 ? "create" : "")
            }
        }
        if let message = failure(outcomes, checkpoints: checkpoints.standardizedFileURL.path, hosts: hosts) {
            let error = RunDirectory.Failure(description: message)
            throw communicator.size > 1 ? SameOnEveryRank(error) : error
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
