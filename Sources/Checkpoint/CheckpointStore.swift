import Distributed
import Foundation
import Storage

/// A flat Float32 buffer of the trainer's state (parameters, one optimizer state buffer, ...).
/// Buffers may differ in length; names must be unique.
public struct CheckpointBuffer {
    public var name: String
    public var pointer: UnsafeMutablePointer<Float>
    public var count: Int

    public init(name: String, pointer: UnsafeMutablePointer<Float>, count: Int) {
        self.name = name
        self.pointer = pointer
        self.count = count
    }
}

public struct CheckpointSettings: Sendable {
    /// zstd level (1 fastest ... 19; 3 is zstd's default).
    public var level: Int32 = 3
    /// Byte-plane shuffle of the floats before zstd.
    public var shuffle: Bool = true

    public init(level: Int32 = 3, shuffle: Bool = true) {
        self.level = level
        self.shuffle = shuffle
    }
}

/// Sharded, compressed, checksummed checkpoints that commit atomically
/// (DESIGN.md decision 6; the format is docs/checkpoint-format.md).
///
/// Layout: `<run>/checkpoints/step-<9 digits>/{shard-<r>-of-<P>.bin, manifest.json}` and
/// `<run>/checkpoints/latest`. A directory without `manifest.json` is not a checkpoint.
public enum CheckpointStore {
    public static let manifestName = "manifest.json"
    static let latestName = "latest"
    /// Floats per zstd frame (4 MiB): the unit a partial load reads.
    static let frameElements = 1 << 20

    static func checkpointsDirectory(_ runDirectory: URL) -> URL {
        runDirectory.appendingPathComponent("checkpoints", isDirectory: true)
    }

    static func directoryName(step: Int) -> String {
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 9 - digits.count)) + digits
    }

    /// The step of a `step-<digits>` name, else nil.
    static func step(ofDirectoryName name: String) -> Int? {
        guard name.hasPrefix("step-") else { return nil }
        let digits = name.dropFirst(5)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    static func shardName(rank: Int, size: Int) -> String { "shard-\(rank)-of-\(size).bin" }

    /// Elements [lower, upper) of `count` that part `part` of `parts` holds: near-equal
    /// contiguous parts, the first `count % parts` one element longer.
    public static func elementRange(count: Int, part: Int, parts: Int) -> Range<Int> {
        let base = count / parts, extra = count % parts
        let lower = part * base + min(part, extra)
        return lower..<(lower + base + (part < extra ? 1 : 0))
    }

    // MARK: - Save

    /// What one rank reports after writing its shard: the record, or why it failed.
    struct ShardOutcome: Codable {
        var rank: Int
        var file: String
        var shard: CheckpointManifest.Shard?
        var error: String?
        var kind: String?
        var fix: String?

        /// Keeps a failure for the exchange (the other ranks must hear of it, not hang);
        /// a simulated crash leaves at once, as a real one would.
        mutating func record(_ failure: Error) throws {
            if let failure = failure as? CheckpointError, failure.kind == .simulatedCrash { throw failure }
            if let failure = failure as? CheckpointError {
                error = failure.problem
                fix = failure.fix
                kind = failure.kind.rawValue
            } else {
                error = "\(failure)"
                kind = CheckpointError.Kind.io.rawValue
            }
        }
    }

    /// Collective (every rank calls it): writes checkpoint `step` under
    /// `<runDirectory>/checkpoints/step-<9 digits>/` and returns that directory.
    ///
    /// Rank r writes elements `elementRange(count:part:r,parts:P)` of every buffer to
    /// `shard-<r>-of-<P>.bin` (temporary name, fsync, rename, fsync directory). The ranks
    /// all-gather their shard records; only if every rank succeeded does rank 0 write
    /// `manifest.json` (the commit) and then replace `latest`, both atomically. If any rank
    /// failed, every rank throws an error naming the failed rank and its file, and no manifest
    /// is written. `state` (a JSON object; rank 0's is used, the other ranks may pass anything)
    /// is stored verbatim under "state". Saving a step
    /// that already exists first removes its manifest: it stops being a checkpoint until the
    /// new one commits.
    public static func save(runDirectory: URL, step: Int, buffers: [CheckpointBuffer], state: Data,
                            communicator: Communicator, settings: CheckpointSettings = CheckpointSettings()) throws -> URL {
        let rank = communicator.rank, size = communicator.size
        let directory = checkpointsDirectory(runDirectory).appendingPathComponent(directoryName(step: step), isDirectory: true)
        let manifestPath = directory.appendingPathComponent(manifestName).path
        var outcome = ShardOutcome(rank: rank, file: shardName(rank: rank, size: size))
        do {
            // A bad argument is reported through the exchange like a failed write, so that
            // no rank is left waiting in a collective.
            try checkArguments(step: step, buffers: buffers, state: rank == 0 ? state : nil, file: manifestPath)
            try FileIO.makeDirectory(directory.path)
            if rank == 0, FileManager.default.fileExists(atPath: manifestPath) {
                guard unlink(manifestPath) == 0 else { throw FileIO.error("unlink", manifestPath) }
                try FileIO.syncDirectory(directory.path)
            }
        } catch {
            try outcome.record(error)
        }
        try communicator.barrier()  // no rank writes a shard while an old manifest of this step stands

        if outcome.error == nil {
            do {
                outcome.shard = try writeShard(directory: directory, file: outcome.file, buffers: buffers,
                                               rank: rank, size: size, step: step, settings: settings)
            } catch {
                try outcome.record(error)
            }
        }
        let outcomes = try exchange(outcome, communicator: communicator)
        if let failed = outcomes.first(where: { $0.error != nil }) {
            if outcome.error == nil { unlink(directory.appendingPathComponent(outcome.file).path) }
            // Once every rank has removed its shard, the directory goes too: an empty
            // step-NNNNNNNNN/ after a full disk looks like a checkpoint that is not one.
            try communicator.barrier()
            if rank == 0 { removeUnfinished(directory) }
            let own = failed.rank == rank ? failed.kind.flatMap(CheckpointError.Kind.init(rawValue:)) : nil
            let others = outcomes.filter { $0.error != nil }.count - 1
            throw CheckpointError(own ?? .rankFailed, file: directory.appendingPathComponent(failed.file).path,
                                  problem: "rank \(failed.rank) of \(size) could not write its shard of step \(step): \(failed.error ?? "")"
                                      + (others > 0 ? " (\(others) more rank(s) failed too)" : ""),
                                  fix: (failed.fix.map { $0 + "; " } ?? "") + "no manifest was written: the earlier checkpoints stay the newest")
        }
        try CrashPoint.reach(.beforeManifest, rank: rank, step: step)

        var commitError: CheckpointError?
        if rank == 0 {
            do {
                let manifest = CheckpointManifest(
                    formatVersion: CheckpointManifest.currentFormatVersion, step: step, worldSize: size,
                    created: Date.now.ISO8601Format(),
                    buffers: buffers.map { .init(name: $0.name, count: $0.count) },
                    shards: outcomes.compactMap(\.shard).sorted { $0.rank < $1.rank },
                    compression: .init(level: settings.level, shuffle: settings.shuffle), state: state)
                try commit(manifest, directory: directory, rank: rank, step: step)
            } catch let error as CheckpointError where error.kind != .simulatedCrash {
                commitError = error
            } catch let error as CheckpointError {
                throw error
            } catch {
                commitError = CheckpointError(.io, file: directory.appendingPathComponent(manifestName).path,
                                              problem: "cannot write the manifest: \(error)", fix: "check the file system")
            }
        }
        // Every rank returns only once the checkpoint exists (or learns that it does not).
        var failed = [commitError == nil ? 0.0 : 1.0]
        try communicator.allReduceMax(&failed)
        if failed[0] != 0 && rank == 0 { removeUnfinished(directory) }  // every shard is written by now
        if let commitError { throw commitError }
        if failed[0] != 0 {
            throw CheckpointError(.rankFailed, file: manifestPath, problem: "rank 0 failed to commit checkpoint step \(step)",
                                  fix: "rank 0's error says why; earlier checkpoints are intact")
        }
        return directory
    }

    /// Deletes a step directory whose save failed, unless it holds a manifest (then it is a
    /// complete checkpoint: the failure came after the commit, or before an old manifest was
    /// removed). Best effort: the save's own error is the one to report, and `prune` deletes a
    /// directory left behind once a newer checkpoint commits.
    static func removeUnfinished(_ directory: URL) {
        guard !FileManager.default.fileExists(atPath: directory.appendingPathComponent(manifestName).path) else { return }
        guard (try? FileManager.default.removeItem(at: directory)) != nil else { return }
        try? FileIO.syncDirectory(directory.deletingLastPathComponent().path)
    }

    static func checkArguments(step: Int, buffers: [CheckpointBuffer], state: Data?, file: String) throws {
        guard step >= 0 else {
            throw CheckpointError(.mismatch, file: file, problem: "step \(step) is negative", fix: "pass the optimizer step count")
        }
        var names = Set<String>()
        for buffer in buffers {
            guard names.insert(buffer.name).inserted, buffer.count >= 0 else {
                throw CheckpointError(.mismatch, file: file, problem: "buffer '\(buffer.name)' is repeated or has a negative count",
                                      fix: "give every buffer a unique name")
            }
        }
        guard let state else { return }
        guard (try? JSONSerialization.jsonObject(with: state)) is [String: Any] else {
            throw CheckpointError(.mismatch, file: file, problem: "the trainer state is not a JSON object",
                                  fix: "pass the state as a UTF-8 JSON object (JSONEncoder of a struct)")
        }
    }

    /// Writes this rank's elements of every buffer as zstd frames to `file` (through file.tmp).
    static func writeShard(directory: URL, file: String, buffers: [CheckpointBuffer], rank: Int, size: Int,
                           step: Int, settings: CheckpointSettings,
                           frameElements: Int = CheckpointStore.frameElements) throws -> CheckpointManifest.Shard {
        let writer = try FileIO.writer(path: directory.appendingPathComponent(file).path)
        do {
            let encoder = try FrameEncoder(level: settings.level)
            let transform: FrameTransform = settings.shuffle ? .shuffleZstd : .zstd
            var frames: [CheckpointManifest.Frame] = []
            for buffer in buffers {
                let range = elementRange(count: buffer.count, part: rank, parts: size)
                for offset in stride(from: range.lowerBound, to: range.upperBound, by: frameElements) {
                    let count = min(frameElements, range.upperBound - offset)
                    let bytes = try encoder.encode(buffer.pointer + offset, count: count, transform: transform)
                    frames.append(.init(buffer: buffer.name, elementOffset: offset, elementCount: count,
                                        byteOffset: writer.bytesWritten, byteCount: bytes.count,
                                        transform: transform.rawValue, uncompressedBytes: count * MemoryLayout<Float>.size))
                    try writer.write(bytes)
                    if frames.count == 1 { try CrashPoint.reach(.midShardTmp, rank: rank, step: step) }
                }
            }
            try writer.synchronize()
            try CrashPoint.reach(.afterShardTmp, rank: rank, step: step)
            try writer.commit()
            try CrashPoint.reach(.afterShardRename, rank: rank, step: step)
            return .init(rank: rank, file: file, bytes: writer.bytesWritten, checksum: CRC32.hex(writer.crc), frames: frames)
        } catch let error as CheckpointError where error.kind == .simulatedCrash {
            throw error  // leave the files as a crash would
        } catch {
            writer.abandon()
            throw (error as? StorageError).map { CheckpointError($0) } ?? error
        }
    }

    /// All-gathers every rank's outcome: a max-reduce of the encoded length, then a
    /// fixed-width allGatherBytes (records padded with spaces, which JSON ignores).
    static func exchange(_ outcome: ShardOutcome, communicator: Communicator) throws -> [ShardOutcome] {
        let encoded = [UInt8](try JSONEncoder().encode(outcome))
        var width = [Double(encoded.count)]
        try communicator.allReduceMax(&width)
        let stride = Int(width[0])
        var send = [UInt8](repeating: 0x20, count: stride)
        send.replaceSubrange(0..<encoded.count, with: encoded)
        var receive = [UInt8](repeating: 0, count: stride * communicator.size)
        try send.withUnsafeBytes { sendBytes in
            try receive.withUnsafeMutableBytes { receiveBytes in
                try communicator.allGatherBytes(sendBytes.baseAddress!, bytes: stride, into: receiveBytes.baseAddress!)
            }
        }
        return try (0..<communicator.size).map { rank in
            try JSONDecoder().decode(ShardOutcome.self, from: Data(receive[(rank * stride)..<((rank + 1) * stride)]))
        }
    }

    /// Rank 0: manifest.json (the commit point), then `latest`; then removes files of earlier
    /// attempts at this step that the manifest does not name.
    static func commit(_ manifest: CheckpointManifest, directory: URL, rank: Int, step: Int) throws {
        let manifestPath = directory.appendingPathComponent(manifestName).path
        try FileIO.writeAtomically(try manifest.encoded(), to: manifestPath) {
            try CrashPoint.reach(.afterManifestTmp, rank: rank, step: step)
        }
        try CrashPoint.reach(.afterManifestRename, rank: rank, step: step)
        try CrashPoint.reach(.beforeLatest, rank: rank, step: step)
        let checkpoints = directory.deletingLastPathComponent()
        try FileIO.writeAtomically(Data((directory.lastPathComponent + "\n").utf8),
                                   to: checkpoints.appendingPathComponent(latestName).path)
        try CrashPoint.reach(.afterLatest, rank: rank, step: step)
        let named = Set(manifest.shards.map(\.file) + [manifestName])
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where !named.contains(file) {
            unlink(directory.appendingPathComponent(file).path)
        }
    }

    // MARK: - Find

    /// Complete checkpoints (directories with a manifest) in a run directory, newest step
    /// first. Does not read `latest`.
    public static func list(runDirectory: URL) -> [URL] {
        let checkpoints = checkpointsDirectory(runDirectory)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard let step = step(ofDirectoryName: name) else { return nil }
            let directory = checkpoints.appendingPathComponent(name, isDirectory: true)
            guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(manifestName).path) else { return nil }
            return (step, directory)
        }
        .sorted { $0.0 > $1.0 }
        .map(\.1)
    }

    /// The checkpoint `latest` names, if it is complete (a convenience: `list` is the truth).
    public static func latest(runDirectory: URL) -> URL? {
        let checkpoints = checkpointsDirectory(runDirectory)
        guard let text = try? String(contentsOf: checkpoints.appendingPathComponent(latestName), encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard step(ofDirectoryName: name) != nil else { return nil }
        let directory = checkpoints.appendingPathComponent(name, isDirectory: true)
        return FileManager.default.fileExists(atPath: directory.appendingPathComponent(manifestName).path) ? directory : nil
    }

    /// The one way a command turns a user's path into a checkpoint directory, so every command
    /// that takes a checkpoint accepts the same three spellings:
    /// - a checkpoint directory (`RUN/checkpoints/step-NNNNNNNNN`, holding `manifest.json`);
    /// - `RUN/checkpoints/latest`, the file naming the newest committed checkpoint;
    /// - a run directory (or its `checkpoints/` folder): its newest complete checkpoint.
    /// - Throws: `CheckpointError(.missing)` naming the path when it does not exist, is not a
    ///   checkpoint, or is a run without a complete checkpoint.
    public static func resolve(_ path: String) throws -> URL {
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw CheckpointError(.missing, file: path, problem: "does not exist", fix: acceptedPaths)
        }
        if !isDirectory.boolValue {
            // `latest` holds the name of a sibling step directory.
            let checkpoints = url.deletingLastPathComponent()
            guard url.lastPathComponent == latestName,
                  let text = try? String(contentsOf: url, encoding: .utf8),
                  step(ofDirectoryName: text.trimmingCharacters(in: .whitespacesAndNewlines)) != nil else {
                throw CheckpointError(.missing, file: path, problem: "is a file, not a checkpoint", fix: acceptedPaths)
            }
            let directory = checkpoints.appendingPathComponent(text.trimmingCharacters(in: .whitespacesAndNewlines), isDirectory: true)
            guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(manifestName).path) else {
                throw CheckpointError(.missing, file: path, problem: "names \(directory.lastPathComponent), which is not a complete checkpoint",
                                      fix: "give the run directory instead: its newest complete checkpoint is used")
            }
            return directory
        }
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(manifestName).path) { return url }
        let run = url.lastPathComponent == "checkpoints" ? url.deletingLastPathComponent() : url
        if FileManager.default.fileExists(atPath: checkpointsDirectory(run).path) {
            guard let newest = list(runDirectory: run).first else {
                throw CheckpointError(.missing, file: checkpointsDirectory(run).path, problem: "holds no complete checkpoint",
                                      fix: "train the run until its first checkpoint (checkpoint.every_steps), or give another run")
            }
            return newest
        }
        if step(ofDirectoryName: url.lastPathComponent) != nil {
            throw CheckpointError(.missing, file: path, problem: "has no \(manifestName): it is not a complete checkpoint (a save that did not finish)",
                                  fix: "give the run directory instead: its newest complete checkpoint is used")
        }
        throw CheckpointError(.missing, file: path, problem: "is neither a checkpoint nor a run directory", fix: acceptedPaths)
    }

    static let acceptedPaths = "give a run directory, a checkpoint directory (RUN/checkpoints/step-NNNNNNNNN) or RUN/checkpoints/latest"

    /// Reads and parses `manifest.json`; an unknown MAJOR format version is an error naming the
    /// file and both versions.
    public static func manifest(at checkpoint: URL) throws -> CheckpointManifest {
        let path = checkpoint.appendingPathComponent(manifestName).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw CheckpointError(.missing, file: path, problem: "no manifest: \(checkpoint.lastPathComponent) is not a complete checkpoint",
                                  fix: "give a checkpoint directory that holds \(manifestName), or the run directory (its newest complete checkpoint)")
        }
        return try CheckpointManifest.decode(try FileIO.read(path), file: path)
    }

    // MARK: - Retention

    /// Rank 0 only. Keeps the newest `keepLast` (at least 1) complete checkpoints and, when
    /// `keepEvery` > 0, every one whose step is a multiple of it; deletes the other complete
    /// ones (manifest first, so a half-deleted directory is never a checkpoint). Also deletes
    /// directories without a manifest whose step is below the newest complete one, and stray
    /// `.tmp` files. Never deletes the newest complete checkpoint.
    public static func prune(runDirectory: URL, keepLast: Int, keepEvery: Int) throws {
        let checkpoints = checkpointsDirectory(runDirectory)
        let complete = list(runDirectory: runDirectory)
        guard let newest = complete.first, let newestStep = step(ofDirectoryName: newest.lastPathComponent) else { return }
        let kept = Set(complete.enumerated().filter { index, directory in
            let step = step(ofDirectoryName: directory.lastPathComponent) ?? 0
            return index < max(keepLast, 1) || (keepEvery > 0 && step % keepEvery == 0)
        }.map(\.element.lastPathComponent))

        for name in (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? [] {
            let path = checkpoints.appendingPathComponent(name).path
            if name.hasSuffix(".tmp") {
                unlink(path)
                continue
            }
            guard let step = step(ofDirectoryName: name), !kept.contains(name) else { continue }
            let manifestPath = checkpoints.appendingPathComponent(name).appendingPathComponent(manifestName).path
            let isComplete = FileManager.default.fileExists(atPath: manifestPath)
            guard isComplete || step < newestStep else { continue }  // a newer partial one may be in progress
            if isComplete {
                guard unlink(manifestPath) == 0 else { throw FileIO.error("unlink", manifestPath) }
                try FileIO.syncDirectory(path)
            }
            do {
                try FileManager.default.removeItem(atPath: path)
            } catch {
                throw CheckpointError(.io, file: path, problem: "cannot delete: \(error.localizedDescription)",
                                      fix: "check permissions; it is no longer a checkpoint and may be deleted by hand")
            }
        }
        for name in kept {
            let directory = checkpoints.appendingPathComponent(name)
            for file in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where file.hasSuffix(".tmp") {
                unlink(directory.appendingPathComponent(file).path)
            }
        }
        try FileIO.syncDirectory(checkpoints.path)
        if latest(runDirectory: runDirectory) == nil {
            try FileIO.writeAtomically(Data((newest.lastPathComponent + "\n").utf8), to: checkpoints.appendingPathComponent(latestName).path)
        }
    }
}
