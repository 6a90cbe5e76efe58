import CZstd
import Foundation
import Storage
import Testing

/// The StorageError `body` throws, or nil (recording an issue for any other error).
func storageError(_ body: () throws -> Void) -> StorageError? {
    do { try body() } catch let error as StorageError { return error } catch {
        Issue.record("expected a StorageError, got \(error)")
    }
    return nil
}

/// Bytes that compress somewhat, like trained weights do: a Philox-free hash of the index.
private func sampleFloats(_ count: Int) -> [Float] {
    (0..<count).map { Float(Int32(truncatingIfNeeded: $0 &* 2_654_435_761) >> 12) * 1e-6 }
}

/// Decodes with plain ZSTD_decompress, the oracle the codec's own decoder is checked against.
private func zstdDecompress(_ frame: [UInt8], bytes: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: max(bytes, 1))
    let size = out.withUnsafeMutableBytes { o in frame.withUnsafeBytes { ZSTD_decompress(o.baseAddress, bytes, $0.baseAddress, frame.count) } }
    return ZSTD_isError(size) == 0 && size == bytes ? Array(out.prefix(bytes)) : nil
}

@Suite struct FrameCodecTests {
    @Test(arguments: [0, 1, 5, 100_000])
    func bytesRoundTrip(count: Int) throws {
        let source = (0..<count).map { UInt8(truncatingIfNeeded: $0 / 7) }
        let encoder = try FrameEncoder(level: 3)
        let frame = try source.withUnsafeBytes { [UInt8](try encoder.encode($0)) }
        // The content size and checksum flags are set: a reader learns the size from the header.
        #expect(frame.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, frame.count) } == UInt64(count))
        #expect(frame[4] & 0x04 != 0)
        #expect(zstdDecompress(frame, bytes: count) == source)

        let decoder = try FrameDecoder()
        var back = [UInt8](repeating: 0xEE, count: count)
        try frame.withUnsafeBytes { f in try back.withUnsafeMutableBytes { try decoder.decode(f, into: $0) } }
        #expect(back == source)
        try frame.withUnsafeBytes { try decoder.check($0, bytes: count) }
    }

    /// A shuffled frame holds the byte planes of the reference shuffle; a plain one the raw
    /// little-endian bytes; both decode to the same floats bit for bit.
    @Test(arguments: FrameTransform.allCases)
    func floatsRoundTrip(transform: FrameTransform) throws {
        let count = 10_007
        let source = sampleFloats(count)
        let encoder = try FrameEncoder(level: 3)
        let frame = try source.withUnsafeBufferPointer { [UInt8](try encoder.encode($0.baseAddress!, count: count, transform: transform)) }
        var expected = [UInt8](repeating: 0, count: count * 4)
        if transform == .shuffleZstd {
            source.withUnsafeBufferPointer { ByteShuffle.shuffleReference($0.baseAddress!, count: count, into: &expected) }
        } else {
            expected = source.withUnsafeBytes { Array($0) }
        }
        #expect(zstdDecompress(frame, bytes: count * 4) == expected)

        let decoder = try FrameDecoder()
        var back = [Float](repeating: .nan, count: count)
        try frame.withUnsafeBytes { f in try back.withUnsafeMutableBufferPointer { try decoder.decode(f, transform: transform, count: count, into: $0.baseAddress!) } }
        #expect(back.map(\.bitPattern) == source.map(\.bitPattern))
    }

    /// One encoder reused for many frames (as the data-set writer now does) writes the same
    /// bytes as a fresh encoder per frame (as it did): the format does not change.
    @Test func reusedEncoderWritesWhatFreshOnesWrite() throws {
        let reused = try FrameEncoder(level: 3)
        for count in [100_000, 3, 1, 40_000, 100_000] {
            let source = sampleFloats(count)
            for transform in FrameTransform.allCases {
                let fresh = try FrameEncoder(level: 3)
                let a = try source.withUnsafeBufferPointer { [UInt8](try reused.encode($0.baseAddress!, count: count, transform: transform)) }
                let b = try source.withUnsafeBufferPointer { [UInt8](try fresh.encode($0.baseAddress!, count: count, transform: transform)) }
                #expect(a == b, "\(count) floats, \(transform)")
            }
        }
    }

    /// `check` streams through a 1 MiB window: a frame of several MiB passes without a buffer
    /// of its size.
    @Test func checkStreamsAFrameLargerThanItsWindow() throws {
        let source = sampleFloats(1 << 20)  // 4 MiB of content
        let encoder = try FrameEncoder(level: 1)
        let frame = try source.withUnsafeBufferPointer { [UInt8](try encoder.encode($0.baseAddress!, count: $0.count, transform: .shuffleZstd)) }
        try frame.withUnsafeBytes { try FrameDecoder().check($0, bytes: 4 << 20) }
    }

    private func frame(_ count: Int = 5_000) throws -> [UInt8] {
        let encoder = try FrameEncoder(level: 3)
        return try sampleFloats(count).withUnsafeBufferPointer { [UInt8](try encoder.encode($0.baseAddress!, count: count, transform: .zstd)) }
    }

    /// The reason of a `.corrupt` error from decoding `frame` as `bytes` bytes, with both
    /// `decode` and `check`, which must agree that it is corrupt.
    private func problems(_ frame: [UInt8], bytes: Int = 20_000) throws -> (decode: String?, check: String?) {
        let decoder = try FrameDecoder()
        var out = [UInt8](repeating: 0, count: bytes)
        let decode = storageError { try frame.withUnsafeBytes { f in try out.withUnsafeMutableBytes { try decoder.decode(f, into: $0) } } }
        let check = storageError { try frame.withUnsafeBytes { try decoder.check($0, bytes: bytes) } }
        #expect(decode?.kind == .corrupt && check?.kind == .corrupt)
        return (decode?.reason, check?.reason)
    }

    @Test func truncatedFrameIsCorrupt() throws {
        let whole = try frame()
        for cut in [0, 5] {
            let reasons = try problems(Array(whole.prefix(cut)))
            #expect(reasons.decode == "\(cut) bytes is too short for a zstd frame" && reasons.check == reasons.decode)
        }
        for cut in [6, whole.count / 2, whole.count - 1] {
            let reasons = try problems(Array(whole.prefix(cut)))
            #expect(reasons.decode == "the bytes are not exactly one zstd frame" && reasons.check == reasons.decode, "cut at \(cut)")
        }
    }

    /// A flipped byte in the compressed data or in the stored checksum: zstd's own checks
    /// (block structure, content checksum) catch it, in both decode and check.
    @Test func garbledFrameIsCorrupt() throws {
        let whole = try frame()
        for position in [whole.count / 2, whole.count - 1] {
            var garbled = whole
            garbled[position] ^= 0x5A
            let reasons = try problems(garbled)
            #expect(reasons.decode?.hasPrefix("zstd: ") == true, "byte \(position): \(reasons.decode ?? "no error")")
            #expect(reasons.check?.hasPrefix("zstd: ") == true, "byte \(position): \(reasons.check ?? "no error")")
        }
        var checksum = whole
        checksum[whole.count - 1] ^= 0x01
        #expect(try problems(checksum).decode == "zstd: Restored data doesn't match checksum")
    }

    @Test func headerProblemsAreNamed() throws {
        let whole = try frame()
        var magic = whole
        magic[0] ^= 0xFF
        #expect(try problems(magic).decode == "no zstd frame magic number at its byte offset")
        #expect(try problems(whole, bytes: 20_004).decode == "the frame holds 20000 bytes, the manifest says 20004")
        #expect(try problems(whole + whole).decode == "the bytes are not exactly one zstd frame")

        // A frame from plain ZSTD_compress carries no content checksum: rejected, as its
        // content could not be checked.
        let source = sampleFloats(5_000)
        var plain = [UInt8](repeating: 0, count: ZSTD_compressBound(20_000))
        let size = plain.withUnsafeMutableBytes { o in source.withUnsafeBytes { ZSTD_compress(o.baseAddress, o.count, $0.baseAddress, 20_000, 3) } }
        #expect(ZSTD_isError(size) == 0)
        #expect(try problems(Array(plain.prefix(size))).decode == "the zstd frame has no content checksum")
    }
}
