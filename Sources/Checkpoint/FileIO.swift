import Foundation
import Storage

/// Checkpoint's side of Storage: the file calls of the commit protocol, whose failures come
/// back as `CheckpointError`s with the kind callers react to (`.diskFull`, `.missing`, `.io`,
/// `.corrupt`) and a fix in checkpoint terms. Storage names the call, the file and errno's text.
enum FileIO {
    /// Tests set this to make writes fail with ENOSPC once a file would exceed this many bytes.
    @TaskLocal static var simulatedCapacity: Int?

    /// A failed POSIX call of Checkpoint's own (unlink, pread, ...), as a checkpoint error.
    static func error(_ call: String, _ path: String, _ code: Int32 = errno) -> CheckpointError {
        CheckpointError(StorageError.system(call, path, errno: code))
    }

    /// Runs `body`, turning Storage's errors into checkpoint errors; other errors (a test's
    /// simulated crash) pass through as they are.
    static func mapping<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as StorageError { throw CheckpointError(error) }
    }

    /// fsync on a directory makes the renames inside it durable.
    static func syncDirectory(_ path: String) throws {
        try mapping { try AtomicFile.syncDirectory(path) }
    }

    static func makeDirectory(_ path: String) throws {
        do {
            try Directory.create(path)
        } catch {
            // errno's words (a full disk, a read-only file system), not Foundation's "error 512".
            throw CheckpointError(error.isDiskFull ? .diskFull : .io, file: error.path, problem: "cannot create the directory: \(error.reason)",
                                  fix: error.isDiskFull ? "free space on that file system" : "check the run directory's permissions")
        }
    }

    /// Writes `data` to `path` atomically (`AtomicFile`); `afterTemporary` is a crash point.
    static func writeAtomically(_ data: Data, to path: String, afterTemporary: () throws -> Void = {}) throws {
        try mapping {
            try data.withUnsafeBytes {
                try AtomicFile.write($0, toPath: path, capacity: simulatedCapacity, beforeRename: afterTemporary)
            }
        }
    }

    /// A shard's writer (`path.tmp`, renamed by `commit`).
    static func writer(path: String) throws -> AtomicFileWriter {
        try mapping { try AtomicFileWriter(path: path, capacity: simulatedCapacity) }
    }

    /// Reads a whole (small) file.
    static func read(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw error("open", path, access(path, R_OK) == 0 ? EIO : errno)
        }
        return data
    }
}

extension CheckpointError {
    /// Storage's error in checkpoint terms. A damaged frame is `.corrupt` in `file` with the
    /// frame described by `what`.
    init(_ error: StorageError, file: String? = nil, what: String? = nil) {
        switch error.kind {
        case .system(let code):
            let call = "\(error.call) (\((error.path as NSString).lastPathComponent))"
            if error.isDiskFull {
                self.init(.diskFull, file: error.path, problem: "\(call) failed: \(error.reason) (errno \(code))",
                          fix: "free space on that file system (or lower checkpoint.keep_last, or write checkpoints elsewhere) and checkpoint again")
            } else if code == ENOENT {
                self.init(.missing, file: error.path, problem: "\(call) failed: \(error.reason)",
                          fix: "check the path; a checkpoint directory must hold every file its manifest names")
            } else {
                self.init(.io, file: error.path, problem: "\(call) failed: \(error.reason) (errno \(code))",
                          fix: "check the path's permissions and file system")
            }
        case .zstd:
            self.init(.io, file: error.path, problem: "zstd \(error.call) failed: \(error.reason)",
                      fix: "check checkpoint.level (zstd accepts 1...\(FrameEncoder.maxLevel))")
        case .corrupt:
            self = .corrupt(file ?? error.path, what.map { "\($0): \(error.reason)" } ?? error.reason)
        }
    }
}

extension FrameDecoder {
    /// Decodes one frame of `count` floats; a damaged frame is `.corrupt` naming `file` and `what`.
    func decode(_ frame: UnsafeRawBufferPointer, transform: FrameTransform, count: Int,
                into destination: UnsafeMutablePointer<Float>, file: String, what: String) throws {
        do { try decode(frame, transform: transform, count: count, into: destination) } catch {
            throw CheckpointError(error, file: file, what: what)
        }
    }

    /// Checks one frame of `count` floats through a fixed window (`FrameDecoder.check`).
    func check(_ frame: UnsafeRawBufferPointer, count: Int, file: String, what: String) throws {
        do { try check(frame, bytes: count * MemoryLayout<Float>.size) } catch {
            throw CheckpointError(error, file: file, what: what)
        }
    }
}
