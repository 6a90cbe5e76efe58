import Foundation

/// Whole-file writes that a crash cannot leave half done: the bytes go to `path.tmp`, which is
/// fsynced and then renamed over `path`, and the directory is fsynced so that the rename lasts.
/// A reader sees the old file or the whole new one, never a part. Checkpoints, data-set shards,
/// the run's config, weights and reports are all written this way.
public enum AtomicFile {
    /// Writes `data` to `url`. On failure (a full disk, say) the temporary file is removed and
    /// `url` is untouched.
    public static func write(_ data: Data, to url: URL) throws {
        try data.withUnsafeBytes { try write($0, toPath: url.path) }
    }

    /// Writes `bytes` to `path` through `path.tmp`; on failure removes the temporary file.
    /// - Parameters:
    ///   - syncingDirectory: false when the caller writes several files into one directory and
    ///     fsyncs it once after the last (`syncDirectory`).
    ///   - capacity: a test's full disk: writes fail with ENOSPC past this many bytes.
    ///   - beforeRename: runs once the temporary file is durable, before the rename (a test's
    ///     crash point); an error from it abandons the write like any other.
    public static func write(_ bytes: UnsafeRawBufferPointer, toPath path: String, syncingDirectory: Bool = true,
                             capacity: Int? = nil, beforeRename: () throws -> Void = {}) throws {
        let writer = try AtomicFileWriter(path: path, capacity: capacity)
        do {
            try writer.write(bytes)
            try writer.synchronize()
            try beforeRename()
            try writer.commit(syncingDirectory: syncingDirectory)
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// fsync on a directory makes the renames inside it durable.
    public static func syncDirectory(_ path: String) throws(StorageError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .system("open", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .system("fsync", path) }
    }
}

/// One file written through `path.tmp` in pieces: the bytes go out with a running crc32 (of
/// what was written, for a manifest); `synchronize` then `commit` put it in place, `abandon`
/// removes the temporary file. Checkpoint shards stream their frames through one.
public final class AtomicFileWriter {
    public let path: String
    public let temporaryPath: String
    /// Bytes written so far (the offset of the next write).
    public private(set) var bytesWritten = 0
    /// crc32 of the bytes written so far.
    public private(set) var crc: UInt32 = 0
    private let capacity: Int?
    private var descriptor: Int32

    /// Creates (or truncates) `path.tmp`. `capacity`: a test's full disk, as in `AtomicFile.write`.
    public init(path: String, capacity: Int? = nil) throws(StorageError) {
        self.path = path
        self.capacity = capacity
        temporaryPath = path + ".tmp"
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .system("open", temporaryPath) }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Appends `bytes`, retrying short writes and EINTR.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StorageError) {
        guard var next = bytes.baseAddress, bytes.count > 0 else { return }
        var left = bytes.count
        while left > 0 {
            var chunk = left
            if let capacity {
                chunk = min(chunk, capacity - bytesWritten)
                if chunk <= 0 { throw .system("write", temporaryPath, errno: ENOSPC) }
            }
            let written = Glibc.write(descriptor, next, chunk)
            if written < 0 {
                if errno == EINTR { continue }
                throw .system("write", temporaryPath)
            }
            // write(2) returns 0 for a non-empty buffer only when nothing more fits.
            if written == 0 { throw .system("write", temporaryPath, errno: ENOSPC) }
            next += written
            left -= written
            bytesWritten += written
        }
        crc = CRC32.checksum(bytes, continuing: crc)
    }

    /// fsync and close the temporary file (its data is durable, its name not yet).
    public func synchronize() throws(StorageError) {
        guard fsync(descriptor) == 0 else { throw .system("fsync", temporaryPath) }
        let result = close(descriptor)
        descriptor = -1
        // close can report a deferred write error (NFS, some quotas).
        guard result == 0 else { throw .system("close", temporaryPath) }
    }

    /// Renames into place and (unless the caller does it later) fsyncs the directory. Call
    /// after `synchronize`.
    public func commit(syncingDirectory: Bool = true) throws(StorageError) {
        guard rename(temporaryPath, path) == 0 else {
            throw .system("rename to \((path as NSString).lastPathComponent)", temporaryPath)
        }
        if syncingDirectory { try AtomicFile.syncDirectory((path as NSString).deletingLastPathComponent) }
    }

    /// Closes and removes the temporary file (best effort: the error that led here is what matters).
    public func abandon() {
        if descriptor >= 0 { close(descriptor); descriptor = -1 }
        unlink(temporaryPath)
    }
}
