import Foundation

/// A failed storage operation: which call, on which file, and why (STYLE.md habit 9: every
/// POSIX and zstd failure becomes this error at the place that made the call).
///
/// Checkpoint and Data translate it into their own errors at their boundary (a checkpoint's
/// `.diskFull` with its fix, a data set's `writeFailed`); other callers show it as it is.
public struct StorageError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// A POSIX call failed with this errno.
        case system(errno: Int32)
        /// zstd refused a setting, or could not make a context (out of memory).
        case zstd
        /// The bytes are not what they claim to be: a damaged or wrong-sized zstd frame.
        case corrupt
    }

    public var kind: Kind
    /// The call that failed ("open", "fsync", "rename to latest", "ZSTD_compress2"); for
    /// `.corrupt`, the operation ("decode", "check").
    public var call: String
    /// The file concerned; empty for a frame in memory.
    public var path: String
    /// errno's text, zstd's error name, or what is wrong with the bytes.
    public var reason: String

    public init(_ kind: Kind, call: String, path: String, reason: String) {
        self.kind = kind
        self.call = call
        self.path = path
        self.reason = reason
    }

    /// The chokepoint for POSIX failures: `call` on `path` failed with `code` (errno by default,
    /// read when the caller makes this error, right after the failing call).
    public static func system(_ call: String, _ path: String, errno code: Int32 = errno) -> StorageError {
        StorageError(.system(errno: code), call: call, path: path, reason: String(cString: strerror(code)))
    }

    /// ENOSPC, EDQUOT or EFBIG: the file system (or the quota, or the file size limit) is full.
    public var isDiskFull: Bool {
        guard case .system(let code) = kind else { return false }
        return code == ENOSPC || code == EDQUOT || code == EFBIG
    }

    public var description: String {
        switch kind {
        case .system(let code):
            let fix = isDiskFull ? "free space on that file system"
                : code == ENOENT ? "check the path" : "check the path's permissions and file system"
            return "\(path): \(call) failed: \(reason) (errno \(code)); \(fix)"
        case .zstd:
            return "zstd \(call) failed: \(reason)"
        case .corrupt:
            return path.isEmpty ? reason : "\(path): \(reason)"
        }
    }
}
