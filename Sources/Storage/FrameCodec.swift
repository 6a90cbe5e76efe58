import CZstd
import Foundation

/// How a frame's bytes were made from the values: optionally the byte-plane shuffle of 4-byte
/// elements (`ByteShuffle`), then one zstd frame with its content size and content checksum.
/// The raw values are the names checkpoint and data-set manifests write.
public enum FrameTransform: String, Codable, Sendable, CaseIterable {
    case shuffleZstd = "shuffle4+zstd"
    case zstd = "zstd"
}

/// Makes `buffer` hold at least `bytes` (its contents are not kept): the codecs' scratch.
private func grow(_ buffer: inout UnsafeMutableRawPointer, capacity: inout Int, to bytes: Int) {
    guard capacity < bytes else { return }
    buffer.deallocate()
    buffer = .allocate(byteCount: bytes, alignment: 16)
    capacity = bytes
}

/// zstd's error name for a result code, or nil when the code is a size.
private func zstdError(_ code: Int) -> String? {
    ZSTD_isError(code) != 0 ? String(cString: ZSTD_getErrorName(code)) : nil
}

/// Compresses byte runs into zstd frames with one reused context and output buffer. Every
/// frame carries its content size (a reader allocates and checks against it) and a content
/// checksum (XXH64, checked by every decode), so a frame's content is checked, not only a file's bytes.
public final class FrameEncoder {
    /// The highest level zstd accepts (levels run 1 ... maxLevel).
    public static var maxLevel: Int32 { ZSTD_maxCLevel() }

    private let context: OpaquePointer
    private var shuffled = UnsafeMutableRawPointer.allocate(byteCount: 0, alignment: 16)
    private var shuffledCapacity = 0
    private var output = UnsafeMutableRawPointer.allocate(byteCount: 0, alignment: 16)
    private var outputCapacity = 0

    public init(level: Int32) throws(StorageError) {
        guard let context = ZSTD_createCCtx() else {
            throw StorageError(.zstd, call: "ZSTD_createCCtx", path: "", reason: "out of memory")
        }
        self.context = context
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level), "ZSTD_c_compressionLevel=\(level)")
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1), "ZSTD_c_checksumFlag")
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 1), "ZSTD_c_contentSizeFlag")
    }

    deinit {
        ZSTD_freeCCtx(context)
        shuffled.deallocate()
        output.deallocate()
    }

    private static func check(_ code: Int, _ call: String) throws(StorageError) {
        if let name = zstdError(code) { throw StorageError(.zstd, call: call, path: "", reason: name) }
    }

    /// One frame holding `bytes`. The frame lives in the encoder: it stays valid until the next
    /// call, and only while the encoder does.
    public func encode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> UnsafeRawBufferPointer {
        let bound = ZSTD_compressBound(bytes.count)
        grow(&output, capacity: &outputCapacity, to: bound)
        // An empty input may have no address; zstd reads none of it.
        let size = ZSTD_compress2(context, output, bound, bytes.baseAddress ?? UnsafeRawPointer(output), bytes.count)
        try Self.check(size, "ZSTD_compress2")
        return UnsafeRawBufferPointer(start: output, count: size)
    }

    /// One frame holding `count` floats, made by `transform`; valid until the next call.
    public func encode(_ source: UnsafePointer<Float>, count: Int, transform: FrameTransform) throws(StorageError) -> UnsafeRawBufferPointer {
        let bytes = count * MemoryLayout<Float>.size
        guard transform == .shuffleZstd else { return try encode(UnsafeRawBufferPointer(start: source, count: bytes)) }
        grow(&shuffled, capacity: &shuffledCapacity, to: bytes)
        ByteShuffle.shuffle(source, count: count, into: shuffled.assumingMemoryBound(to: UInt8.self))
        return try encode(UnsafeRawBufferPointer(start: shuffled, count: bytes))
    }
}

/// Decodes frames written by `FrameEncoder` (or any zstd with the same flags), checking all a
/// frame can tell: its magic number, that it carries a content checksum, that the bytes are
/// exactly one frame, its declared content size, and then its content checksum while decoding.
/// Failures are `.corrupt` errors whose reason the caller prefixes with the file and the frame.
public final class FrameDecoder {
    private let context: OpaquePointer
    private var scratch = UnsafeMutableRawPointer.allocate(byteCount: 0, alignment: 16)
    private var scratchCapacity = 0

    /// `check`'s output window, made by its first call and kept.
    private static let windowSize = 1 << 20
    private var window: UnsafeMutableRawPointer?

    public init() throws(StorageError) {
        guard let context = ZSTD_createDCtx() else {
            throw StorageError(.zstd, call: "ZSTD_createDCtx", path: "", reason: "out of memory")
        }
        self.context = context
    }

    deinit {
        ZSTD_freeDCtx(context)
        scratch.deallocate()
        window?.deallocate()
    }

    private func corrupt(_ call: String, _ reason: String) -> StorageError {
        StorageError(.corrupt, call: call, path: "", reason: reason)
    }

    /// Decodes `frame` into `destination`, whose size is the content size the frame must have.
    public func decode(_ frame: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws(StorageError) {
        let bytes = destination.count
        let base = try checkHeader(frame, bytes: bytes)
        // An empty destination may have no address; zstd writes none of it.
        let target = destination.baseAddress ?? scratch
        let size = ZSTD_decompressDCtx(context, target, bytes, base, frame.count)
        if let name = zstdError(size) { throw corrupt("decode", "zstd: \(name)") }
        guard size == bytes else { throw corrupt("decode", "decoded \(size) bytes, expected \(bytes)") }
    }

    /// Decodes one frame of `count` floats made by `transform` into `destination`.
    public func decode(_ frame: UnsafeRawBufferPointer, transform: FrameTransform, count: Int,
                       into destination: UnsafeMutablePointer<Float>) throws(StorageError) {
        let bytes = count * MemoryLayout<Float>.size
        guard transform == .shuffleZstd else {
            return try decode(frame, into: UnsafeMutableRawBufferPointer(start: destination, count: bytes))
        }
        grow(&scratch, capacity: &scratchCapacity, to: bytes)
        try decode(frame, into: UnsafeMutableRawBufferPointer(start: scratch, count: bytes))
        ByteShuffle.unshuffle(scratch.assumingMemoryBound(to: UInt8.self), count: count, into: destination)
    }

    /// Checks that one frame decodes to `bytes` bytes and passes its content checksum, without
    /// holding its content: it streams through a fixed 1 MiB window, so a manifest that declares
    /// a huge frame costs no memory (`contrast checkpoint verify` reads untrusted files).
    public func check(_ frame: UnsafeRawBufferPointer, bytes: Int) throws(StorageError) {
        let base = try checkHeader(frame, bytes: bytes)
        let window = self.window ?? UnsafeMutableRawPointer.allocate(byteCount: Self.windowSize, alignment: 16)
        self.window = window
        ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        var input = ZSTD_inBuffer(src: base, size: frame.count, pos: 0)
        var decoded = 0
        while true {
            var output = ZSTD_outBuffer(dst: window, size: Self.windowSize, pos: 0)
            let left = ZSTD_decompressStream(context, &output, &input)
            if let name = zstdError(left) { throw corrupt("check", "zstd: \(name)") }
            decoded += output.pos
            guard decoded <= bytes else { throw corrupt("check", "decodes to more than \(bytes) bytes") }
            if left == 0 { break }                                   // the frame ended, its checksum matched
            if output.pos == 0 && input.pos == input.size { throw corrupt("check", "the zstd frame ends early") }
        }
        guard decoded == bytes, input.pos == input.size else {
            throw corrupt("check", "decoded \(decoded) bytes, expected \(bytes)")
        }
    }

    /// The frame's magic number, content-checksum flag, exact extent and declared content size.
    private func checkHeader(_ frame: UnsafeRawBufferPointer, bytes: Int) throws(StorageError) -> UnsafeRawPointer {
        guard let base = frame.baseAddress, frame.count >= 6 else {
            throw corrupt("decode", "\(frame.count) bytes is too short for a zstd frame")
        }
        // RFC 8878, 3.1.1: the magic number 0xFD2FB528, little-endian.
        guard base.loadUnaligned(as: UInt32.self) == UInt32(0xFD2F_B528).littleEndian else {
            throw corrupt("decode", "no zstd frame magic number at its byte offset")
        }
        // Frame header descriptor: bit 2 is Content_Checksum_flag (RFC 8878, 3.1.1.1.1). We
        // require it so that every frame's content is checked, not only the file's bytes.
        guard base.load(fromByteOffset: 4, as: UInt8.self) & 0x04 != 0 else {
            throw corrupt("decode", "the zstd frame has no content checksum")
        }
        let frameSize = ZSTD_findFrameCompressedSize(base, frame.count)
        guard ZSTD_isError(frameSize) == 0, frameSize == frame.count else {
            throw corrupt("decode", "the bytes are not exactly one zstd frame")
        }
        let contentSize = ZSTD_getFrameContentSize(base, frame.count)
        guard contentSize == UInt64(bytes) else {
            throw corrupt("decode", "the frame holds \(contentSize) bytes, the manifest says \(bytes)")
        }
        return base
    }
}
