import Foundation

/// Places in `CheckpointStore.save` where a crash test can kill the process.
///
/// `CONTRAST_CHECKPOINT_CRASH_AT=POINT[@rank=R][@step=S]` makes the process `_exit(9)` at
/// POINT (only on rank R and at step S when given). Read once per process; unset it costs one
/// comparison per point. Points, in the order `save` reaches them:
///
///     mid-shard-tmp          rank's temporary shard file half written (first frame only)
///     after-shard-tmp        temporary shard written and fsynced, not renamed
///     after-shard-rename     shard renamed to its final name, directory fsynced
///     before-manifest        every rank reported success; rank 0 about to write the manifest
///     after-manifest-tmp     (rank 0) manifest.json.tmp written and fsynced, not renamed
///     after-manifest-rename  (rank 0) manifest.json in place: the checkpoint exists
///     before-latest          (rank 0) about to replace `latest`
///     after-latest           (rank 0) `latest` replaced and fsynced
public enum CrashPoint: String, CaseIterable, Sendable {
    case midShardTmp = "mid-shard-tmp"
    case afterShardTmp = "after-shard-tmp"
    case afterShardRename = "after-shard-rename"
    case beforeManifest = "before-manifest"
    case afterManifestTmp = "after-manifest-tmp"
    case afterManifestRename = "after-manifest-rename"
    case beforeLatest = "before-latest"
    case afterLatest = "after-latest"

    /// The environment variable read once per process.
    public static let environmentVariable = "CONTRAST_CHECKPOINT_CRASH_AT"

    /// A parsed `POINT[@rank=R][@step=S]`.
    struct Trigger: Sendable, Equatable {
        var point: CrashPoint
        var rank: Int?
        var step: Int?

        init(point: CrashPoint, rank: Int? = nil, step: Int? = nil) {
            self.point = point
            self.rank = rank
            self.step = step
        }

        init?(_ text: String) {
            let parts = text.split(separator: "@").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let first = parts.first, let point = CrashPoint(rawValue: first) else { return nil }
            self.point = point
            for part in parts.dropFirst() {
                let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2, let value = Int(pair[1]) else { return nil }
                switch pair[0] {
                case "rank": rank = value
                case "step": step = value
                default: return nil
                }
            }
        }

        func matches(_ point: CrashPoint, rank: Int, step: Int) -> Bool {
            point == self.point && (self.rank ?? rank) == rank && (self.step ?? step) == step
        }
    }

    /// The trigger from the environment. A value that does not parse stops the process at its
    /// first checkpoint with a message, rather than silently testing nothing.
    static let configured: Trigger?? = {
        guard let value = ProcessInfo.processInfo.environment[environmentVariable], !value.isEmpty else { return nil }
        return .some(Trigger(value))
    }()

    /// Tests in one process use this instead of the environment: the point throws
    /// `CheckpointError(.simulatedCrash)` instead of exiting, leaving files as a crash would.
    @TaskLocal static var simulated: Trigger?

    /// Exits (environment) or throws (simulated) when `point` is the configured one.
    static func reach(_ point: CrashPoint, rank: Int, step: Int) throws {
        if let configured {
            guard let trigger = configured else {
                let values = allCases.map(\.rawValue).joined(separator: ", ")
                FileHandle.standardError.write(Data("\(environmentVariable) must be POINT[@rank=R][@step=S] with POINT one of \(values)\n".utf8))
                _exit(2)
            }
            if trigger.matches(point, rank: rank, step: step) {
                FileHandle.standardError.write(Data("rank \(rank): \(environmentVariable)=\(point.rawValue): exiting with status 9\n".utf8))
                _exit(9)
            }
        }
        if let simulated, simulated.matches(point, rank: rank, step: step) {
            throw CheckpointError(.simulatedCrash, file: "", problem: "simulated crash at \(point.rawValue)", fix: "test only")
        }
    }
}
