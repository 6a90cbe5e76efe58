import CZlib
import CZstd
import Foundation

/// Low-level pieces of the shard format: zstd frames, byte shuffling, crc32 and atomic writes.
/// Every zstd and POSIX failure becomes a `DataError` here.
///
/// The byte shuffle is Tensor's `ByteShuffle`, shared with checkpoints. (The zstd frame and
/// atomic-write helpers repeat a few lines of Checkpoint's FileIO/FrameCodec, which work on
/// Float buffers and throw CheckpointError; a shared storage layer below both is the next step.)
enum ShardIO {
    /// zstd frame magic number, little-endian (RFC 8878, 3.1.1).
    static let zstdMagic: UInt32 = 0xFD2F_B528

    /// One zstd frame of `bytes` with its content size and content checksum.
    static func compress(_ bytes: UnsafeRawBufferPointer, level: Int32) throws -> [UInt8] {
        guard let context = ZSTD_createCCtx() else { throw zstdError("ZSTD_createCCtx", "out of memory") }
        defer { ZSTD_freeCCtx(context) }
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level), "ZSTD_c_compressionLevel=\(level)")
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1), "ZSTD_c_checksumFlag")
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 1), "ZSTD_c_contentSizeFlag")
        let bound = ZSTD_compressBound(bytes.count)
        var output = [UInt8](repeating: 0, count: bound)
        let size = output.withUnsafeMutableBytes { out in
            ZSTD_compress2(context, out.baseAddress!, bound, bytes.baseAddress ?? UnsafeRawPointer(out.baseAddress!), bytes.count)
        }
        try check(size, "ZSTD_compress2")
        output.removeLast(bound - size)
        return output
    }

    /// Decodes `frame`, which must be exactly one zstd frame with a content checksum holding
    /// `expectedBytes` bytes, into `destination`. Returns a problem description, or nil when good.
    static func decompress(_ frame: UnsafeRawBufferPointer, expectedBytes: Int,
                           into destination: UnsafeMutableRawBufferPointer) -> String? {
        guard let base = frame.baseAddress, frame.count >= 6 else { return "\(frame.count) bytes is too short for a zstd frame" }
        guard base.loadUnaligned(as: UInt32.self) == zstdMagic.littleEndian else { return "no zstd frame magic number" }
        // Frame header descriptor bit 2: Content_Checksum_flag (RFC 8878, 3.1.1.1.1).
        guard base.load(fromByteOffset: 4, as: UInt8.self) & 0x04 != 0 else { return "the zstd frame has no content checksum" }
        let frameSize = ZSTD_findFrameCompressedSize(base, frame.count)
        guard ZSTD_isError(frameSize) == 0, frameSize == frame.count else { return "the bytes are not exactly one zstd frame" }
        let contentSize = ZSTD_getFrameContentSize(base, frame.count)
        guard contentSize == UInt64(expectedBytes) else { return "the frame holds \(contentSize) bytes, the manifest says \(expectedBytes)" }
        guard let context = ZSTD_createDCtx() else { return "ZSTD_createDCtx failed (out of memory)" }
        defer { ZSTD_freeDCtx(context) }
        var scratch: UInt8 = 0
        let size = withUnsafeMutableBytes(of: &scratch) { fallback in
            ZSTD_decompressDCtx(context, destination.baseAddress ?? fallback.baseAddress!, expectedBytes, base, frame.count)
        }
        if ZSTD_isError(size) != 0 { return "zstd: \(String(cString: ZSTD_getErrorName(size)))" }
        guard size == expectedBytes else { return "decoded \(size) bytes, expected \(expectedBytes)" }
        return nil
    }

    private static func check(_ code: Int, _ call: String) throws {
        if ZSTD_isError(code) != 0 { throw zstdError(call, String(cString: ZSTD_getErrorName(code))) }
    }

    private static func zstdError(_ call: String, _ reason: String) -> DataError {
        DataError.writeFailed(path: "(zstd)", reason: "\(call) failed: \(reason)")
    }

    /// crc32 of zlib (IEEE 802.3 polynomial; Python's zlib.crc32), as "0x%08x".
    static func crc32Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        let crc = bytes.isEmpty ? 0 : CZlib.crc32_z(0, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        let digits = String(crc, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    /// Writes `bytes` to `path` through `path.tmp`: write, fsync, rename. The caller fsyncs the
    /// folder once after its last rename.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw posixError("open", temporary) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                let error = posixError("write", temporary)
                close(descriptor)
                throw error
            }
            written += result
        }
        guard fsync(descriptor) == 0 else { let error = posixError("fsync", temporary); close(descriptor); throw error }
        guard close(descriptor) == 0 else { throw posixError("close", temporary) }
        guard rename(temporary, path) == 0 else { throw posixError("rename", path) }
    }

    /// fsync on a folder, so that the renames in it are durable.
    static func syncDirectory(_ path: String) throws {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw posixError("open", path) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw posixError("fsync", path) }
    }

    static func posixError(_ call: String, _ path: String) -> DataError {
        DataError.writeFailed(path: path, reason: "\(call): \(String(cString: strerror(errno)))")
    }
}
