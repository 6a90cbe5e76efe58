import Foundation

/// Rows of a fixed byte width kept in a temporary file instead of in memory (`data.hold: disk`):
/// the samples of a rank whose shards do not fit, or need not sit, in its memory.
///
/// The file is created in `directory` and unlinked at once, so it has no name: nothing is left
/// behind when the process ends, however it ends (a kill included), and the space is returned
/// then. The kernel's page cache keeps the rows that are read often; they are not the process's
/// resident memory, and the kernel drops them under pressure instead of the process failing.
///
/// Built by `SampleFile.Writer` (appends, one thread), then read-only: `read(row:into:)` is
/// `pread`, so the training loop and the batch producer read concurrently without locks.
public final class SampleFile: Sendable {
    /// Bytes of one row.
    public let rowBytes: Int
    /// Rows in the file.
    public let rows: Int
    /// Where the file was made (for messages; the file itself has no name).
    public let directory: String
    private let descriptor: Int32

    private init(descriptor: Int32, rowBytes: Int, rows: Int, directory: String) {
        self.descriptor = descriptor
        self.rowBytes = rowBytes
        self.rows = rows
        self.directory = directory
    }

    deinit { close(descriptor) }

    /// Appends rows to a new unnamed file; `finish()` makes the `SampleFile`.
    public final class Writer {
        public let rowBytes: Int
        public let directory: String
        private var descriptor: Int32
        private var written = 0

        /// Creates the file in `directory`. Throws `DataError.spillFailed` when it cannot.
        public init(directory: String, rowBytes: Int) throws {
            precondition(rowBytes > 0, "SampleFile.Writer: rows of \(rowBytes) bytes")
            self.rowBytes = rowBytes
            self.directory = directory
            var template = Array((directory + "/contrast-samples-XXXXXX").utf8CString)
            let made = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard made >= 0 else { throw DataError.spillFailed(directory: directory, reason: "cannot create a file: \(Self.errnoText())") }
            descriptor = made
            // Unnamed from here on: a crash or kill cannot leave the file behind.
            let name = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            guard unlink(name) == 0 else {
                let reason = Self.errnoText()
                close(made)
                throw DataError.spillFailed(directory: directory, reason: "cannot unlink \(name): \(reason)")
            }
        }

        deinit { if descriptor >= 0 { close(descriptor) } }

        /// Appends bytes of rows; a row may span calls (`finish` checks that the rows are whole).
        public func append(_ bytes: UnsafeRawBufferPointer) throws {
            precondition(descriptor >= 0, "SampleFile.Writer: append after finish")
            var done = 0
            while done < bytes.count {
                let result = write(descriptor, bytes.baseAddress! + done, bytes.count - done)
                if result < 0 {
                    if errno == EINTR { continue }
                    throw DataError.spillFailed(directory: directory, reason: "writing \(written + done) bytes of samples: \(Self.errnoText())")
                }
                done += result
            }
            written += bytes.count
        }

        public func append<Element>(_ values: [Element]) throws {
            try values.withUnsafeBytes { try append($0) }
        }

        /// The file, read-only from here on.
        public func finish() -> SampleFile {
            precondition(descriptor >= 0, "SampleFile.Writer: finished twice")
            precondition(written % rowBytes == 0, "SampleFile.Writer: \(written) bytes are not whole rows of \(rowBytes)")
            let file = SampleFile(descriptor: descriptor, rowBytes: rowBytes, rows: written / rowBytes, directory: directory)
            descriptor = -1
            return file
        }

        static func errnoText() -> String { String(cString: strerror(errno)) }
    }

    /// Whether `directory` is on a file system that lives in memory (tmpfs, ramfs): files there
    /// are memory the kernel cannot drop, so keeping samples there saves none. From the mount
    /// holding it in /proc/self/mountinfo; false when that cannot be read.
    public static func isInMemory(directory: String) -> Bool {
        guard let resolved = realpath(directory, nil) else { return false }
        let path = String(cString: resolved)
        free(resolved)
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        var best: (mountPoint: String, type: String)?
        for line in table.split(separator: "\n") {
            // "36 35 98:0 /root /mount/point options ... - fstype source options"
            let halves = line.components(separatedBy: " - ")
            let fields = halves[0].split(separator: " "), after = halves.count > 1 ? halves[1].split(separator: " ") : []
            guard fields.count >= 5, let type = after.first else { continue }
            let mountPoint = String(fields[4]).replacingOccurrences(of: "\\040", with: " ")
            let inside = path == mountPoint || mountPoint == "/" || path.hasPrefix(mountPoint + "/")
            if inside, mountPoint.count >= (best?.mountPoint.count ?? -1) { best = (mountPoint, String(type)) }
        }
        return best.map { $0.type == "tmpfs" || $0.type == "ramfs" } ?? false
    }

    /// Copies row `row` to `target` (`rowBytes` bytes).
    ///
    /// A read that fails (an I/O error of the disk under `directory`) ends the process with one
    /// line on standard error and exit status 74 (EX_IOERR): the batch producer has no caller to
    /// throw to, and under mpirun the launcher then ends the other ranks.
    @inline(__always)
    public func read(row: Int, into target: UnsafeMutableRawPointer) {
        precondition(row >= 0 && row < rows, "SampleFile.read: row \(row) outside 0..<\(rows)")
        var done = 0
        while done < rowBytes {
            let result = pread(descriptor, target + done, rowBytes - done, off_t(row * rowBytes + done))
            if result > 0 {
                done += result
            } else if result < 0 && errno == EINTR {
                continue
            } else {
                let reason = result == 0 ? "the file ended early" : Writer.errnoText()
                FileHandle.standardError.write(Data(("contrast: error: reading row \(row) of the samples kept on disk in \(directory) "
                    + "(data.hold: disk) failed: \(reason); check that disk, or set data.hold: memory\n").utf8))
                exit(74)
            }
        }
    }
}
