import CZlib
import Foundation

/// Reader for IDX files (LeCun's MNIST format), plain or gzip-compressed.
///
/// Layout: a big-endian UInt32 magic `0x0000_TT_NN` (TT = element type, 0x08 = uint8;
/// NN = number of dimensions), NN big-endian UInt32 dimensions, then the elements row-major.
/// Files are read through zlib's gzread, which passes uncompressed files through unchanged,
/// so `x.gz` and `x` both work. Every zlib failure becomes a `DataError` here, in one place.
public enum IDX {
    /// uint8, three dimensions (count x height x width): images.
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// uint8, one dimension (count): labels.
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// The contents of an IDX file of uint8 elements.
    public struct Contents: Sendable {
        /// Dimensions as declared in the header (the first is the full sample count even when
        /// fewer samples were read).
        public let dimensions: [Int]
        /// The samples `firstSample ..< firstSample + samplesRead`, row-major.
        public let bytes: [UInt8]
        /// Index in the file of the first sample read.
        public let firstSample: Int
        /// Samples actually read.
        public let samplesRead: Int
    }

    /// The dimensions an IDX file's header declares, reading nothing past the header.
    public static func dimensions(path: String, magic: UInt32) throws -> [Int] {
        // zlib's default 8 KiB buffers: a 1 MiB one would inflate megabytes to read 16 bytes.
        let file = try open(path, buffer: nil)
        defer { gzclose(file) }
        return try readHeader(file, path: path, magic: magic)
    }

    /// Reads a uint8 IDX file whose magic must be `magic`.
    /// - Parameters:
    ///   - path: the file, `.gz` or plain.
    ///   - magic: `imagesMagic` or `labelsMagic`; the number of dimensions comes from its low byte.
    ///   - limit: the file counts as its first `limit` samples; 0: all of them.
    ///   - samples: the samples to keep (within the first `limit`); nil keeps all. Those before
    ///     are decompressed and dropped through a buffer of 1 MiB (or of the chunked read's
    ///     chunk), those after are not read: a rank
    ///     holds only its shards of a compressed file that cannot be read from the middle.
    ///   - section: what the elements are, for error messages ("pixel data", "label data").
    public static func read(path: String, magic: UInt32, limit: Int = 0, samples: Range<Int>? = nil,
                            section: String = "data") throws -> Contents {
        var bytes: [UInt8] = []
        let (dimensions, wanted) = try scan(path: path, magic: magic, limit: limit, samples: samples, section: section,
                                            chunkBytes: 1 << 20, expecting: { bytes.reserveCapacity(min($0, 1 << 26)) },
                                            { chunk in bytes.append(contentsOf: chunk) })
        return Contents(dimensions: dimensions, bytes: bytes, firstSample: wanted.lowerBound, samplesRead: wanted.count)
    }

    /// `read`, handing the wanted samples' bytes to `body` in order, in chunks of at most
    /// `chunkBytes` (whole samples, but for a chunk under one sample's size), through one
    /// buffer: a reader that keeps them elsewhere (`data.hold: disk`) never holds more.
    /// Returns the header's dimensions and the samples read.
    public static func read(path: String, magic: UInt32, limit: Int = 0, samples: Range<Int>? = nil, section: String = "data",
                            chunkBytes: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> (dimensions: [Int], samples: Range<Int>) {
        try scan(path: path, magic: magic, limit: limit, samples: samples, section: section, chunkBytes: chunkBytes, expecting: { _ in }, body)
    }

    /// `read` with chunks; `expecting` learns the bytes the wanted samples take, once the header
    /// is checked (a capacity to reserve, capped by the caller: the header is not trusted yet).
    private static func scan(path: String, magic: UInt32, limit: Int, samples: Range<Int>?, section: String, chunkBytes: Int,
                             expecting: (Int) -> Void, _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> (dimensions: [Int], samples: Range<Int>) {
        precondition(limit >= 0, "IDX.read: limit \(limit) must be >= 0")
        precondition(chunkBytes > 0, "IDX.read: chunks of \(chunkBytes) bytes")
        // 1 MiB of zlib input buffer: the default 8 KiB costs many small reads on a 26 MB file.
        let file = try open(path, buffer: 1 << 20)
        defer { gzclose(file) }
        let dimensions = try readHeader(file, path: path, magic: magic)
        let available = limit == 0 ? dimensions[0] : min(limit, dimensions[0])
        let wanted = samples ?? 0..<available
        precondition(wanted.lowerBound >= 0, "IDX.read: samples \(wanted) start below 0")
        // The header is untrusted: its product may overflow, and its size is allocated only as
        // the data actually arrives (a header claiming terabytes on a short file is an error, not
        // an allocation).
        var rowBytes = 1
        for d in dimensions.dropFirst() {
            let (product, overflow) = rowBytes.multipliedReportingOverflow(by: d)
            guard !overflow, product <= 1 << 40 else { throw tooLarge(path: path, dimensions: dimensions, section: section) }
            rowBytes = product
        }
        let (expected, overflow) = available.multipliedReportingOverflow(by: rowBytes)
        guard !overflow, expected <= 1 << 40 else { throw tooLarge(path: path, dimensions: dimensions, section: section) }
        // The range comes from this file's header, read before: a file that holds fewer samples
        // now (replaced in between) is too short for it.
        guard wanted.upperBound <= available else {
            let (needed, tooMany) = wanted.upperBound.multipliedReportingOverflow(by: rowBytes)
            throw DataError.truncated(path: path, section: section, expectedBytes: tooMany ? .max : needed, gotBytes: expected)
        }
        // Bytes of the samples before the wanted ones, then of the wanted ones.
        let skip = wanted.lowerBound * rowBytes, keep = wanted.count * rowBytes
        let chunk = rowBytes > 0 && chunkBytes >= rowBytes ? chunkBytes / rowBytes * rowBytes : chunkBytes
        expecting(keep)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(min(max(skip, keep), max(chunk, 1 << 20)), 1), alignment: 16)
        defer { buffer.deallocate() }
        var skipped = 0
        while skipped < skip {
            let want = min(buffer.count, skip - skipped)
            let read = try readFully(file, path: path, into: buffer, count: want)
            skipped += read
            if read < want { break }
        }
        var got = 0
        while skipped == skip, got < keep {
            let want = min(chunk, buffer.count, keep - got)
            let read = try readFully(file, path: path, into: buffer, count: want)
            // Only whole chunks reach the body: a file cut short is an error, not a partial read.
            guard read == want else { got += read; break }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<read]))
            got += read
        }
        guard skipped + got == skip + keep else {
            throw DataError.truncated(path: path, section: section, expectedBytes: skip + keep, gotBytes: skipped + got)
        }
        return (dimensions, wanted)
    }

    private static func open(_ path: String, buffer: UInt32?) throws -> gzFile {
        guard FileManager.default.fileExists(atPath: path) else { throw DataError.fileNotFound(path: path) }
        guard let file = gzopen(path, "rb") else {
            throw DataError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        if let buffer { gzbuffer(file, buffer) }
        return file
    }

    /// The magic (checked against `magic`) and the dimensions it announces.
    private static func readHeader(_ file: gzFile, path: String, magic: UInt32) throws -> [Int] {
        let dimensionCount = Int(magic & 0xFF)
        let headerSize = 4 * (1 + dimensionCount)
        var magicBytes = [UInt8](repeating: 0, count: 4)
        let magicRead = try readFully(file, path: path, into: &magicBytes, count: 4)
        guard magicRead == 4 else {
            throw DataError.truncated(path: path, section: "header", expectedBytes: headerSize, gotBytes: magicRead)
        }
        let gotMagic = bigEndianUInt32(magicBytes, at: 0)
        guard gotMagic == magic else { throw DataError.wrongMagic(path: path, expected: magic, got: gotMagic) }

        var dimensionBytes = [UInt8](repeating: 0, count: 4 * dimensionCount)
        let dimensionsRead = try readFully(file, path: path, into: &dimensionBytes, count: dimensionBytes.count)
        guard dimensionsRead == dimensionBytes.count else {
            throw DataError.truncated(path: path, section: "header", expectedBytes: headerSize, gotBytes: 4 + dimensionsRead)
        }
        return (0..<dimensionCount).map { Int(bigEndianUInt32(dimensionBytes, at: 4 * $0)) }
    }

    private static func tooLarge(path: String, dimensions: [Int], section: String) -> DataError {
        .corruptStream(path: path, detail: "the header declares dimensions \(dimensions), more than 1 TB of \(section); "
                       + "the file is not an IDX file of this data set")
    }

    /// Writes a uint8 IDX file: gzip-compressed, or plain when `compressed` is false. Tests and
    /// tools use it to make small data sets.
    public static func write(path: String, magic: UInt32, dimensions: [Int], bytes: [UInt8], compressed: Bool = true) throws {
        precondition(dimensions.count == Int(magic & 0xFF), "IDX.write: \(dimensions.count) dimensions for magic \(magic)")
        var data: [UInt8] = []
        for word in [magic] + dimensions.map({ UInt32($0) }) {
            data += [UInt8(word >> 24), UInt8(word >> 16 & 0xFF), UInt8(word >> 8 & 0xFF), UInt8(word & 0xFF)]
        }
        data += bytes
        // "T" asks zlib for a transparent (uncompressed) write.
        guard let file = gzopen(path, compressed ? "wb" : "wbT") else {
            throw DataError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        let written = data.withUnsafeBytes { gzwrite(file, $0.baseAddress!, UInt32($0.count)) }
        let closed = gzclose(file)
        guard written == Int32(data.count) && closed == Z_OK else {
            throw DataError.writeFailed(path: path, reason: "gzwrite/gzclose failed")
        }
    }

    /// Reads up to `count` bytes, looping because gzread returns at most what one call
    /// decompresses; returns how many were read before end of file.
    private static func readFully(_ file: gzFile, path: String, into buffer: inout [UInt8], count: Int) throws -> Int {
        try buffer.withUnsafeMutableBytes { try readFully(file, path: path, into: $0, count: count) }
    }

    private static func readFully(_ file: gzFile, path: String, into raw: UnsafeMutableRawBufferPointer, count: Int) throws -> Int {
        var total = 0
        do {
            while total < count {
                let chunk = UInt32(min(count - total, 1 << 30))
                let got = gzread(file, raw.baseAddress! + total, chunk)
                if got < 0 { throw corruptStream(file, path: path) }
                if got == 0 {
                    // A gzip stream cut short reports end of file and an error; a plain short file only end of file.
                    var code: Int32 = 0
                    _ = gzerror(file, &code)
                    if code != Z_OK && code != Z_STREAM_END { throw corruptStream(file, path: path) }
                    break
                }
                total += Int(got)
            }
        }
        return total
    }

    private static func corruptStream(_ file: gzFile, path: String) -> DataError {
        var code: Int32 = 0
        let message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown zlib error"
        return DataError.corruptStream(path: path, detail: "zlib: \(message)")
    }

    private static func bigEndianUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }
}
