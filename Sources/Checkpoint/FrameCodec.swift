import CZstd
import Foundation
import Tensor

/// How a frame's Float32 elements became bytes: optional byte-plane shuffle, then one zstd
/// frame with its content size and content checksum.
public enum FrameTransform: String, Sendable, CaseIterable {
    case shuffleZstd = "shuffle4+zstd"
    case zstd = "zstd"
}

/// Makes `buffer` hold at least `bytes` (its contents are not kept): the scratch of the shuffles.
private func grow(_ buffer: inout UnsafeMutablePointer<UInt8>, capacity: inout Int, to bytes: Int) {
    guard capacity < bytes else { return }
    buffer.deallocate()
    buffer = .allocate(capacity: bytes)
    capacity = bytes
}

/// Compresses runs of floats into zstd frames with one reused context (per save).
final class FrameEncoder {
    let transform: FrameTransform
    private let context: OpaquePointer
    private var shuffled: UnsafeMutablePointer<UInt8>
    private var shuffledCapacity = 0
    private var output: UnsafeMutableRawPointer
    private var outputCapacity = 0

    init(level: Int32, shuffle: Bool) throws {
        transform = shuffle ? .shuffleZstd : .zstd
        guard let context = ZSTD_createCCtx() else {
            throw CheckpointError(.io, file: "", problem: "ZSTD_createCCtx failed", fix: "out of memory?")
        }
        self.context = context
        shuffled = .allocate(capacity: 0)
        output = .allocate(byteCount: 0, alignment: 16)
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level), "ZSTD_c_compressionLevel=\(level)")
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1), "ZSTD_c_checksumFlag")
        try Self.check(ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 1), "ZSTD_c_contentSizeFlag")
    }

    deinit {
        ZSTD_freeCCtx(context)
        shuffled.deallocate()
        output.deallocate()
    }

    static func check(_ code: Int, _ call: String) throws {
        if ZSTD_isError(code) != 0 {
            throw CheckpointError(.io, file: "", problem: "zstd \(call) failed: \(String(cString: ZSTD_getErrorName(code)))",
                                  fix: "check checkpoint.level (zstd accepts 1...\(ZSTD_maxCLevel()))")
        }
    }

    /// One frame holding `count` floats; the bytes stay valid until the next call.
    func encode(_ source: UnsafePointer<Float>, count: Int) throws -> UnsafeRawBufferPointer {
        let bytes = count * MemoryLayout<Float>.size
        var input = UnsafeRawPointer(source)
        if transform == .shuffleZstd {
            grow(&shuffled, capacity: &shuffledCapacity, to: bytes)
            ByteShuffle.shuffle(source, count: count, into: shuffled)
            input = UnsafeRawPointer(shuffled)
        }
        let bound = ZSTD_compressBound(bytes)
        if outputCapacity < bound {
            output.deallocate()
            output = .allocate(byteCount: bound, alignment: 16)
            outputCapacity = bound
        }
        let size = ZSTD_compress2(context, output, bound, input, bytes)
        try Self.check(size, "ZSTD_compress2")
        return UnsafeRawBufferPointer(start: output, count: size)
    }
}

/// Decodes frames written by `FrameEncoder`, checking everything a frame can tell.
final class FrameDecoder {
    private let context: OpaquePointer
    private var scratch: UnsafeMutablePointer<UInt8>
    private var scratchCapacity = 0

    /// `check`'s output window, made by its first call and kept.
    private static let windowSize = 1 << 20
    private var window: UnsafeMutableRawPointer?

    init() {
        context = ZSTD_createDCtx()
        scratch = .allocate(capacity: 0)
    }

    deinit {
        ZSTD_freeDCtx(context)
        scratch.deallocate()
        window?.deallocate()
    }

    /// Decodes one frame of `count` floats into `destination`. `file` names the shard in errors.
    func decode(_ frame: UnsafeRawBufferPointer, transform: FrameTransform, count: Int,
                into destination: UnsafeMutablePointer<Float>, file: String, what: String) throws {
        let bytes = count * MemoryLayout<Float>.size
        let base = try checkHeader(frame, bytes: bytes, file: file, what: what)
        var target = UnsafeMutableRawPointer(destination)
        if transform == .shuffleZstd {
            grow(&scratch, capacity: &scratchCapacity, to: bytes)
            target = UnsafeMutableRawPointer(scratch)
        }
        let size = ZSTD_decompressDCtx(context, target, bytes, base, frame.count)
        if ZSTD_isError(size) != 0 {
            throw CheckpointError.corrupt(file, "\(what): zstd: \(String(cString: ZSTD_getErrorName(size)))")
        }
        guard size == bytes else {
            throw CheckpointError.corrupt(file, "\(what): decoded \(size) bytes, expected \(bytes)")
        }
        if transform == .shuffleZstd { ByteShuffle.unshuffle(scratch, count: count, into: destination) }
    }

    /// Checks that one frame decodes to `count` floats and passes its content checksum, without
    /// holding its content: it streams through a fixed 1 MiB window, so a manifest that declares
    /// a huge frame costs no memory (`contrast checkpoint verify` reads untrusted files).
    func check(_ frame: UnsafeRawBufferPointer, count: Int, file: String, what: String) throws {
        let bytes = count * MemoryLayout<Float>.size
        let base = try checkHeader(frame, bytes: bytes, file: file, what: what)
        let window = self.window ?? UnsafeMutableRawPointer.allocate(byteCount: Self.windowSize, alignment: 16)
        self.window = window
        ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        var input = ZSTD_inBuffer(src: base, size: frame.count, pos: 0)
        var decoded = 0
        while true {
            var output = ZSTD_outBuffer(dst: window, size: Self.windowSize, pos: 0)
            let left = ZSTD_decompressStream(context, &output, &input)
            if ZSTD_isError(left) != 0 {
                throw CheckpointError.corrupt(file, "\(what): zstd: \(String(cString: ZSTD_getErrorName(left)))")
            }
            decoded += output.pos
            guard decoded <= bytes else { throw CheckpointError.corrupt(file, "\(what): decodes to more than \(bytes) bytes") }
            if left == 0 { break }                                   // the frame ended, its checksum matched
            if output.pos == 0 && input.pos == input.size {
                throw CheckpointError.corrupt(file, "\(what): the zstd frame ends early")
            }
        }
        guard decoded == bytes, input.pos == input.size else {
            throw CheckpointError.corrupt(file, "\(what): decoded \(decoded) bytes, expected \(bytes)")
        }
    }

    /// The frame's magic number, content-checksum flag, exact extent and declared content size.
    private func checkHeader(_ frame: UnsafeRawBufferPointer, bytes: Int, file: String, what: String) throws -> UnsafeRawPointer {
        guard let base = frame.baseAddress, frame.count >= 6 else {
            throw CheckpointError.corrupt(file, "\(what): \(frame.count) bytes is too short for a zstd frame")
        }
        // Frame header descriptor: bit 2 is Content_Checksum_flag (RFC 8878, 3.1.1.1.1). We
        // require it so that every frame's content is checked, not only the file's bytes.
        guard base.loadUnaligned(as: UInt32.self) == UInt32(0xFD2F_B528).littleEndian else {
            throw CheckpointError.corrupt(file, "\(what): no zstd frame magic number at its byte offset")
        }
        guard base.load(fromByteOffset: 4, as: UInt8.self) & 0x04 != 0 else {
            throw CheckpointError.corrupt(file, "\(what): the zstd frame has no content checksum")
        }
        let frameSize = ZSTD_findFrameCompressedSize(base, frame.count)
        guard ZSTD_isError(frameSize) == 0, frameSize == frame.count else {
            throw CheckpointError.corrupt(file, "\(what): the bytes are not exactly one zstd frame")
        }
        let contentSize = ZSTD_getFrameContentSize(base, frame.count)
        guard contentSize == UInt64(bytes) else {
            throw CheckpointError.corrupt(file, "\(what): the frame holds \(contentSize) bytes, the manifest says \(bytes)")
        }
        return base
    }
}
