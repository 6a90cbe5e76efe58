import CZlib
import Foundation

/// POSIX file calls for the commit protocol. Every failing call becomes a `CheckpointError`
/// here, naming the call, the file and errno's text (STYLE.md habit 9).
enum FileIO {
    /// Tests set this to make writes fail with ENOSPC once a file would exceed this many bytes.
    @TaskLocal static var simulatedCapacity: Int?

    static func error(_ call: String, _ path: String, _ code: Int32 = errno) -> CheckpointError {
        let text = String(cString: strerror(code))
        let call = "\(call) (\((path as NSString).lastPathComponent))"
        if code == ENOSPC || code == EDQUOT || code == EFBIG {
            return CheckpointError(.diskFull, file: path, problem: "\(call) failed: \(text) (errno \(code))",
                                   fix: "free space on that file system (or lower checkpoint.keep_last, or write checkpoints elsewhere) and checkpoint again")
        }
        if code == ENOENT {
            return CheckpointError(.missing, file: path, problem: "\(call) failed: \(text)",
                                   fix: "check the path; a checkpoint directory must hold every file its manifest names")
        }
        return CheckpointError(.io, file: path, problem: "\(call) failed: \(text) (errno \(code))",
                               fix: "check the path's permissions and file system")
    }

    /// fsync on a directory makes the renames inside it durable.
    static func syncDirectory(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw error("open", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw error("fsync", path) }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw error("rename to \((to as NSString).lastPathComponent)", from) }
    }

    static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, file: path, problem: "cannot create the directory: \(error.localizedDescription)",
                                  fix: "check the run directory's permissions and free space")
        }
    }

    /// Writes `data` to `path` atomically: `path.tmp`, fsync, rename, fsync the directory.
    /// On failure the temporary file is removed and `path` is untouched.
    static func writeAtomically(_ data: Data, to path: String, afterTemporary: () throws -> Void = {}) throws {
        let writer = try AtomicFileWriter(path: path)
        do {
            try data.withUnsafeBytes { try writer.write($0) }
            try writer.synchronize()
            try afterTemporary()
            try writer.commit()
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// Reads a whole (small) file.
    static func read(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw error("open", path, access(path, R_OK) == 0 ? EIO : errno)
        }
        return data
    }

    /// crc32 of zlib (the IEEE 802.3 polynomial, as Python's zlib.crc32), from `crc`.
    static func crc32(_ bytes: UnsafeRawBufferPointer, from crc: UInt = 0) -> UInt {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return CZlib.crc32_z(crc, base.assumingMemoryBound(to: UInt8.self), bytes.count)
    }

    static func hex(_ crc: UInt) -> String {
        let digits = String(crc, radix: 16)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}

/// One file written through `path.tmp`: bytes go out with a running crc32; `commit` fsyncs,
/// renames and fsyncs the directory; `abandon` removes the temporary file.
final class AtomicFileWriter {
    let path: String
    let temporaryPath: String
    private var descriptor: Int32
    private(set) var bytesWritten = 0
    private(set) var crc: UInt = 0

    init(path: String) throws {
        self.path = path
        temporaryPath = path + ".tmp"
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileIO.error("open", temporaryPath) }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var next = bytes.baseAddress, bytes.count > 0 else { return }
        var left = bytes.count
        while left > 0 {
            var chunk = left
            if let capacity = FileIO.simulatedCapacity {
                chunk = min(chunk, capacity - bytesWritten)
                if chunk <= 0 { throw FileIO.error("write", temporaryPath, ENOSPC) }
            }
            let written = Glibc.write(descriptor, next, chunk)
            if written < 0 {
                if errno == EINTR { continue }
                throw FileIO.error("write", temporaryPath)
            }
            if written == 0 { throw FileIO.error("write", temporaryPath, ENOSPC) }
            next += written
            left -= written
            bytesWritten += written
        }
        crc = FileIO.crc32(bytes, from: crc)
    }

    /// fsync and close the temporary file (its data is durable, its name not yet).
    func synchronize() throws {
        guard fsync(descriptor) == 0 else { throw FileIO.error("fsync", temporaryPath) }
        let result = close(descriptor)
        descriptor = -1
        // close can report a deferred write error (NFS, some quotas).
        guard result == 0 else { throw FileIO.error("close", temporaryPath) }
    }

    /// Rename into place and fsync the directory. Call after `synchronize`.
    func commit() throws {
        try FileIO.rename(temporaryPath, path)
        try FileIO.syncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// Close and remove the temporary file (best effort: the first error is what matters).
    func abandon() {
        if descriptor >= 0 { close(descriptor); descriptor = -1 }
        unlink(temporaryPath)
    }
}

/// Atomic whole-file writes for the rest of contrast (run config, final weights): the same
/// temporary-file, fsync, rename, fsync-directory protocol checkpoints commit with.
public enum AtomicFile {
    /// Writes `data` to `url`: a reader sees the old file or the whole new one, never a part.
    /// On failure (a full disk, say) the temporary file is removed and `url` is untouched.
    public static func write(_ data: Data, to url: URL) throws {
        try FileIO.writeAtomically(data, to: url.path)
    }
}
