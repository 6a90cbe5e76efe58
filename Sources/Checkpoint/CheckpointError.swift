/// A checkpoint problem in one line: the file, the problem, the fix.
///
/// `kind` lets a caller choose a reaction (auto-resume falls back to an earlier checkpoint on
/// `.corrupt`, `.missing` and `.unsupportedVersion`; it stops on `.mismatch`).
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// A system call failed (open, write, fsync, rename, ...).
        case io
        /// A write failed with ENOSPC or EDQUOT.
        case diskFull
        /// A file is present but its size, checksum, frames or JSON are wrong.
        case corrupt
        /// A file the manifest names (or the manifest itself) is absent.
        case missing
        /// The manifest's MAJOR format version is not one this build reads.
        case unsupportedVersion
        /// The caller's buffers do not match the checkpoint (names, counts).
        case mismatch
        /// Another rank failed its part of a collective save.
        case rankFailed
        /// A crash point was reached under a test's simulated crash (see `CrashPoint`).
        case simulatedCrash
    }

    public var kind: Kind
    /// The file or directory concerned.
    public var file: String
    /// What is wrong.
    public var problem: String
    /// What to do about it.
    public var fix: String

    public init(_ kind: Kind, file: String, problem: String, fix: String) {
        self.kind = kind
        self.file = file
        self.problem = problem
        self.fix = fix
    }

    public var description: String { "\(file): \(problem); \(fix)" }
}

extension CheckpointError {
    static func corrupt(_ file: String, _ problem: String) -> CheckpointError {
        CheckpointError(.corrupt, file: file, problem: problem,
                        fix: "the checkpoint is damaged: resume from an earlier one (contrast checkpoint verify lists the bad file)")
    }
}
