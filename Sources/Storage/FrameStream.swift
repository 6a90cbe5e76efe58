import CZstd
import Foundation

/// Reads one zstd frame of a file a few bytes at a time, without holding the frame or its
/// content: the compressed bytes come in with `pread` one zstd input block at a time and are
/// decompressed through zstd's streaming API into a bounded window. Memory: zstd's decoder
/// (its window, at most the frame's content size and 2 MiB for frames written at level 3) plus
/// one input and one output block (about 128 KiB each), whatever the frame's size.
///
/// The checks are those of `FrameDecoder`, made as the bytes arrive: the magic number, the
/// content-checksum flag and the declared content size from the header; the content checksum
/// (XXH64) by zstd when the frame ends (`finish`), and that the frame ends exactly at its
/// extent. With `checksumming` the stream also keeps the crc32 of the compressed bytes it read,
/// so a reader of a whole file can check the file's crc32 without a second pass.
public final class FrameStream {
    public let path: String
    /// Bytes of content the frame must decode to.
    public let contentBytes: Int
    private let descriptor: Int32
    private let start: Int
    private let bytes: Int
    private let context: OpaquePointer
    private let input: UnsafeMutableRawPointer
    private let inputCapacity: Int
    private let output: UnsafeMutableRawPointer
    private let outputCapacity: Int
    private var inputBuffer: ZSTD_inBuffer
    private var pending: Range<Int> = 0..<0      // decoded bytes in `output` not yet handed out
    private var compressedRead = 0
    private var decoded = 0
    private var ended = false
    private var headerChecked = false
    /// crc32 of the compressed bytes read so far (with `checksumming`).
    public private(set) var crc: UInt32 = 0
    private let checksumming: Bool

    /// The frame at [offset, offset + bytes) of the open file `descriptor` (not closed here).
    public init(descriptor: Int32, path: String, offset: Int, bytes: Int, contentBytes: Int, checksumming: Bool) throws(StorageError) {
        guard let context = ZSTD_createDCtx() else {
            throw StorageError(.zstd, call: "ZSTD_createDCtx", path: path, reason: "out of memory")
        }
        self.context = context
        self.descriptor = descriptor
        self.path = path
        self.start = offset
        self.bytes = bytes
        self.contentBytes = contentBytes
        self.checksumming = checksumming
        inputCapacity = ZSTD_DStreamInSize()
        outputCapacity = ZSTD_DStreamOutSize()
        input = .allocate(byteCount: inputCapacity, alignment: 16)
        output = .allocate(byteCount: outputCapacity, alignment: 16)
        inputBuffer = ZSTD_inBuffer(src: UnsafeRawPointer(input), size: 0, pos: 0)
    }

    deinit {
        ZSTD_freeDCtx(context)
        input.deallocate()
        output.deallocate()
    }

    private func corrupt(_ reason: String) -> StorageError { StorageError(.corrupt, call: "stream", path: path, reason: reason) }

    /// The content size a frame's header declares (for a frame whose size the manifest does not
    /// give, as a variable-length field's data frame): read from its first bytes, checked as
    /// `checkHeader` checks them, and refused above 32 KiB per compressed byte (more than zstd
    /// can expand), so a damaged header cannot make a reader expect an absurd size.
    public static func declaredContentSize(descriptor: Int32, path: String, offset: Int, bytes: Int) throws(StorageError) -> Int {
        func corrupt(_ reason: String) -> StorageError { StorageError(.corrupt, call: "stream", path: path, reason: reason) }
        var head = [UInt8](repeating: 0, count: min(18, max(0, bytes)))
        var got = 0
        while got < head.count {
            let r = head.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + got, $0.count - got, off_t(offset + got)) }
            if r < 0 && errno == EINTR { continue }
            guard r >= 0 else { throw StorageError.system("pread", path) }
            guard r > 0 else { throw corrupt("the file ends at byte \(offset + got), inside the frame (truncated)") }
            got += r
        }
        guard head.count >= 6, head.withUnsafeBytes({ $0.loadUnaligned(as: UInt32.self) }) == UInt32(0xFD2F_B528).littleEndian else {
            throw corrupt("no zstd frame magic number at its byte offset")
        }
        let size = head.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard size < UInt64(Int.max), Int(size) <= bytes * 32_768 else {
            throw corrupt("the zstd frame declares no usable content size")
        }
        return Int(size)
    }

    /// Decoded bytes read so far (handed out or discarded).
    public var position: Int { decoded - pending.count }

    /// The next `count` content bytes into `target`, or skipped when `target` is nil.
    public func read(_ count: Int, into target: UnsafeMutableRawPointer?) throws(StorageError) {
        guard position + count <= contentBytes else {
            throw corrupt("read past the frame's \(contentBytes) bytes of content")
        }
        var done = 0
        while done < count {
            if pending.isEmpty { try decodeMore() }
            let n = min(count - done, pending.count)
            target.map { ($0 + done).copyMemory(from: output + pending.lowerBound, byteCount: n) }
            pending = (pending.lowerBound + n)..<pending.upperBound
            done += n
        }
    }

    /// Reads to the frame's end, so zstd checks its content checksum, and checks the frame's
    /// extent and content size. Returns the crc32 of the frame's compressed bytes (checksumming streams).
    @discardableResult
    public func finish() throws(StorageError) -> UInt32 {
        while !ended {
            pending = 0..<0
            try decodeMore()
        }
        guard decoded == contentBytes else { throw corrupt("decoded \(decoded) bytes, expected \(contentBytes)") }
        return crc
    }

    /// Decodes the next run of content into `output`.
    private func decodeMore() throws(StorageError) {
        guard !ended else { throw corrupt("the zstd frame ended after \(decoded) of \(contentBytes) bytes") }
        while true {
            if inputBuffer.pos == inputBuffer.size && compressedRead < bytes {
                let n = min(inputCapacity, bytes - compressedRead)
                var got = 0
                while got < n {
                    let r = pread(descriptor, input + got, n - got, off_t(start + compressedRead + got))
                    if r < 0 && errno == EINTR { continue }
                    guard r >= 0 else { throw StorageError.system("pread", path) }
                    guard r > 0 else { throw corrupt("the file ends at byte \(start + compressedRead + got), inside the frame (truncated)") }
                    got += r
                }
                if checksumming { crc = CRC32.checksum(UnsafeRawBufferPointer(start: input, count: n), continuing: crc) }
                if !headerChecked { try checkHeader(UnsafeRawBufferPointer(start: input, count: n)) }
                compressedRead += n
                inputBuffer = ZSTD_inBuffer(src: UnsafeRawPointer(input), size: n, pos: 0)
            }
            var out = ZSTD_outBuffer(dst: output, size: outputCapacity, pos: 0)
            let left = ZSTD_decompressStream(context, &out, &inputBuffer)
            if ZSTD_isError(left) != 0 { throw corrupt("zstd: " + String(cString: ZSTD_getErrorName(left))) }
            decoded += out.pos
            guard decoded <= contentBytes else { throw corrupt("the frame decodes to more than \(contentBytes) bytes") }
            pending = 0..<out.pos
            if left == 0 {
                // The frame ended and zstd checked its content checksum; nothing may follow it.
                guard inputBuffer.pos == inputBuffer.size && compressedRead == bytes else {
                    throw corrupt("the bytes are not exactly one zstd frame")
                }
                ended = true
                return
            }
            if out.pos > 0 { return }
            if inputBuffer.pos == inputBuffer.size && compressedRead == bytes { throw corrupt("the zstd frame ends early") }
        }
    }

    /// The magic number, content-checksum flag and declared content size, as `FrameDecoder` checks them.
    private func checkHeader(_ head: UnsafeRawBufferPointer) throws(StorageError) {
        headerChecked = true
        guard head.count >= 6 else { throw corrupt("\(bytes) bytes is too short for a zstd frame") }
        guard head.loadUnaligned(as: UInt32.self) == UInt32(0xFD2F_B528).littleEndian else {
            throw corrupt("no zstd frame magic number at its byte offset")
        }
        guard head.load(fromByteOffset: 4, as: UInt8.self) & 0x04 != 0 else { throw corrupt("the zstd frame has no content checksum") }
        let contentSize = ZSTD_getFrameContentSize(head.baseAddress, head.count)
        guard contentSize == UInt64(contentBytes) else {
            throw corrupt("the frame holds \(contentSize) bytes, the manifest says \(contentBytes)")
        }
    }
}
