import Foundation
import Storage

/// One shard file of a prepared data set read sample by sample in file order, holding none of
/// it (`data.hold: stream`): each field's frame is decompressed incrementally (`FrameStream`)
/// as samples are asked for.
///
/// A field's frame holds that field for all the shard's samples, so each field has its own
/// cursor into the file. A `shuffle4+zstd` field (float32 features, pairs) stores byte k of
/// every element in plane k (docs/data-format.md), so a sample's bytes lie in four places of the
/// frame's content: four cursors read the four planes in step, cursor k having first decoded and
/// dropped k planes. That decodes such a frame 1 + 2 + 3 + 4 = 10 plane-lengths in place of 4
/// (2.5x the work of `readShard`) for memory that does not grow with the shard; uint8 features
/// and labels are read once.
///
/// Checks: each frame's header as it starts; `finish()` reads every frame to its end, so zstd
/// checks its content checksum, and checks the crc32 of the whole file from the crc32 the
/// cursors kept of the compressed bytes they read (no second pass). Errors are
/// `DataError.shardInvalid` naming the file and the shard.
///
/// Encoded images (a `--store jpeg` set, no features): the `image` field's two frames are read
/// in step by `VariableCursor`, its offsets frame 8 bytes a sample and its data frame the
/// sample's `offsets[i+1] - offsets[i]` bytes, handed to the caller as one array per sample (a
/// buffer slot); they are decoded later, where the batch is made (the prefetch thread).
///
/// A text set (named fields alone: text, positive, negative, group, score) has no features: each
/// named field has its own cursor, a `utf8`/`bytes` field a `VariableCursor`, a fixed-size one a
/// `FieldCursor`, and `readSample(named:)` hands the caller each field's stored bytes (the text's
/// UTF-8, a little-endian int64 or float32), in `namedFields` order.
public final class ShardStream {
    public let path: String
    public let shard: Int
    /// Samples in the file.
    public let sampleCount: Int
    /// Samples read or skipped so far.
    public private(set) var position = 0
    private let descriptor: Int32
    private let entry: ShardManifest.Shard
    private let features: FieldCursor?
    private let images: VariableCursor?
    private let labels: FieldCursor?
    private let pairs: FieldCursor?
    /// A text set's named fields, in the manifest's order (empty for other sets).
    public let namedFields: [NamedField]
    private let namedCursors: [NamedCursor]

    private enum NamedCursor {
        case variable(VariableCursor)
        case fixed(FieldCursor)
    }

    /// Opens shard `index` of `dataset` and checks its size against the manifest.
    public init(_ dataset: ShardedDataset, shard index: Int) throws {
        precondition(index >= 0 && index < dataset.shardCount, "ShardStream: shard \(index) out of range 0..<\(dataset.shardCount)")
        let entry = dataset.manifest.shards[index]
        let path = dataset.shardPath(index)
        self.path = path
        shard = index
        sampleCount = entry.sampleCount
        self.entry = entry
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw DataError.shardInvalid(path: path, shard: index, problem: "cannot be opened (\(String(cString: strerror(errno))))")
        }
        self.descriptor = descriptor
        var status = stat()
        guard fstat(descriptor, &status) == 0, Int(status.st_size) == entry.bytes else {
            let size = Int(status.st_size)
            close(descriptor)
            throw DataError.shardInvalid(path: path, shard: index, problem: "is \(size) bytes, the manifest says \(entry.bytes) (truncated or replaced)")
        }
        let manifest = dataset.manifest
        func cursor(_ section: String, rowBytes: Int) throws -> FieldCursor? {
            guard let frame = entry.frames.first(where: { $0.section == section }) else { return nil }
            do {
                return try FieldCursor(descriptor: descriptor, path: path, frame: frame, rowBytes: rowBytes, samples: entry.sampleCount)
            } catch {
                throw DataError.shardInvalid(path: path, shard: index, problem: "\(section) frame at byte \(frame.offset): \(error.reason)")
            }
        }
        do {
            if manifest.isTextSet {
                let named = manifest.fields ?? []
                var cursors: [NamedCursor] = []
                for field in named {
                    if field.dtype.isVariableLength {
                        let offsets = entry.frames.first { $0.section == field.name && $0.part == .offsets }!
                        let data = entry.frames.first { $0.section == field.name && $0.part == .data }!
                        do {
                            cursors.append(.variable(try VariableCursor(descriptor: descriptor, path: path, offsets: offsets, data: data,
                                                                        samples: entry.sampleCount)))
                        } catch {
                            throw DataError.shardInvalid(path: path, shard: index, problem: "\(field.name) frames at byte \(offsets.offset): \(error.reason)")
                        }
                    } else {
                        let type = field.dtype == .uint8 ? 1 : field.dtype == .int64 ? 8 : 4
                        cursors.append(.fixed(try cursor(field.name, rowBytes: field.elementsPerSample * type)!))
                    }
                }
                namedFields = named
                namedCursors = cursors
                self.features = nil
                self.images = nil
                self.labels = nil
                self.pairs = nil
                return
            }
            namedFields = []
            namedCursors = []
            let layout = try manifest.requireInputs(path: dataset.directory)
            if manifest.features != nil {
                features = try cursor("features", rowBytes: layout.elementsPerSample * layout.dtype.size)!
                images = nil
            } else {
                let name = ShardManifest.encodedImageField
                let offsets = entry.frames.first { $0.section == name && $0.part == .offsets }!
                let data = entry.frames.first { $0.section == name && $0.part == .data }!
                do {
                    images = try VariableCursor(descriptor: descriptor, path: path, offsets: offsets, data: data, samples: entry.sampleCount)
                } catch {
                    throw DataError.shardInvalid(path: path, shard: index, problem: "\(name) frames at byte \(offsets.offset): \(error.reason)")
                }
                features = nil
            }
            let labels = manifest.labels == nil ? nil : try cursor("labels", rowBytes: 8)
            let pairs = try manifest.pairs.flatMap { try cursor("pairs", rowBytes: $0.elementsPerSample * 4) }
            (self.labels, self.pairs) = (labels, pairs)
        } catch {
            close(descriptor)
            throw error
        }
    }

    deinit { close(descriptor) }

    private func fail(_ field: FieldCursor, _ error: StorageError) -> DataError {
        .shardInvalid(path: path, shard: shard, problem: "\(field.frame.section) frame at byte \(field.frame.offset): \(error.reason)")
    }

    /// Reads the next sample's fields into the given rows (features and pairs as stored, the
    /// label as a native Int64, an encoded image's bytes as one array); a nil target skips that
    /// field. All nil: the sample is passed over.
    public func readSample(features featureRow: UnsafeMutableRawPointer?, label: UnsafeMutablePointer<Int64>?,
                           pairs pairRow: UnsafeMutableRawPointer?, image: UnsafeMutablePointer<[UInt8]>? = nil,
                           named: UnsafeMutablePointer<[UInt8]>? = nil) throws {
        precondition(position < sampleCount, "ShardStream: all \(sampleCount) samples of \(path) were read")
        for (index, cursor) in namedCursors.enumerated() {
            switch cursor {
            case .variable(let values):
                do { try values.read(into: named.map { $0 + index }) } catch {
                    throw DataError.shardInvalid(path: path, shard: shard, problem: "\(namedFields[index].name) frames: \(error.reason)")
                }
            case .fixed(let field):
                guard let named else { do { try field.read(into: nil) } catch { throw fail(field, error) }; continue }
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, field.rowBytes), alignment: 16)
                defer { buffer.deallocate() }
                do { try field.read(into: buffer) } catch { throw fail(field, error) }
                named[index] = Array(UnsafeRawBufferPointer(start: buffer, count: field.rowBytes))
            }
        }
        if let features { do { try features.read(into: featureRow) } catch { throw fail(features, error) } }
        if let images {
            do { try images.read(into: image) } catch {
                throw DataError.shardInvalid(path: path, shard: shard, problem: "\(ShardManifest.encodedImageField) frames: \(error.reason)")
            }
        }
        if let labels {
            do {
                try labels.read(into: label.map(UnsafeMutableRawPointer.init))
            } catch { throw fail(labels, error) }
            if let label { label.pointee = Int64(littleEndian: label.pointee) }
        }
        if let pairs { do { try pairs.read(into: pairRow) } catch { throw fail(pairs, error) } }
        position += 1
    }

    /// Passes over the next sample (decoding it: zstd cannot seek).
    public func skipSample() throws { try readSample(features: nil, label: nil, pairs: nil) }

    /// Reads the rest of every frame and checks their content checksums, then the crc32 of the
    /// whole file. Call once the samples needed are read: a shard is checked whole every epoch.
    public func finish() throws {
        var crcs: [(offset: Int, bytes: Int, crc: UInt32)] = []
        for field in [features, labels, pairs].compactMap({ $0 }) {
            do { crcs.append((field.frame.offset, field.frame.bytes, try field.finish())) } catch { throw fail(field, error) }
        }
        if let images {
            do { crcs += try images.finish() } catch {
                throw DataError.shardInvalid(path: path, shard: shard, problem: "\(ShardManifest.encodedImageField) frames: \(error.reason)")
            }
        }
        for (index, cursor) in namedCursors.enumerated() {
            switch cursor {
            case .variable(let values):
                do { crcs += try values.finish() } catch {
                    throw DataError.shardInvalid(path: path, shard: shard, problem: "\(namedFields[index].name) frames: \(error.reason)")
                }
            case .fixed(let field):
                do { crcs.append((field.frame.offset, field.frame.bytes, try field.finish())) } catch { throw fail(field, error) }
            }
        }
        position = sampleCount
        crcs.sort { $0.offset < $1.offset }
        var crc: UInt32 = 0, covered = 0, tiled = true
        for frame in crcs {
            tiled = tiled && frame.offset == covered
            covered = frame.offset + frame.bytes
        }
        tiled = tiled && covered == entry.bytes
        if tiled {
            for frame in crcs { crc = CRC32.combine(crc, frame.crc, secondLength: frame.bytes) }
        } else {
            // Frames with gaps or overlaps (not written by `contrast prepare`): the file once more.
            crc = try wholeFileCRC()
        }
        let hex = CRC32.prefixedHex(crc)
        guard hex == entry.crc32 else {
            throw DataError.shardInvalid(path: path, shard: shard, problem: "crc32 is \(hex), the manifest says \(entry.crc32) (the file is corrupt)")
        }
    }

    private func wholeFileCRC() throws -> UInt32 {
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var crc: UInt32 = 0, offset = 0
        while offset < entry.bytes {
            let r = pread(descriptor, buffer, min(chunk, entry.bytes - offset), off_t(offset))
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw DataError.shardInvalid(path: path, shard: shard, problem: "cannot be read at byte \(offset)") }
            crc = CRC32.checksum(UnsafeRawBufferPointer(start: buffer, count: r), continuing: crc)
            offset += r
        }
        return crc
    }
}

/// One field's frame read a row at a time: one cursor, or four for a byte-plane-shuffled frame.
final class FieldCursor {
    let frame: ShardManifest.Frame
    let rowBytes: Int
    /// Cursor k reads plane k; the last one reads the whole frame and keeps its crc32.
    private let planes: [FrameStream]
    private let scratch: UnsafeMutableRawPointer

    init(descriptor: Int32, path: String, frame: ShardManifest.Frame, rowBytes: Int, samples: Int) throws(StorageError) {
        self.frame = frame
        self.rowBytes = rowBytes
        let content = rowBytes * samples
        if frame.encoding == .shuffleZstd {
            var planes: [FrameStream] = []
            let plane = content / 4
            for k in 0..<4 {
                let stream = try FrameStream(descriptor: descriptor, path: path, offset: frame.offset, bytes: frame.bytes,
                                             contentBytes: content, checksumming: k == 3)
                try stream.read(k * plane, into: nil)
                planes.append(stream)
            }
            self.planes = planes
        } else {
            planes = [try FrameStream(descriptor: descriptor, path: path, offset: frame.offset, bytes: frame.bytes,
                                      contentBytes: content, checksumming: true)]
        }
        scratch = .allocate(byteCount: max(rowBytes, 1), alignment: 16)
    }

    deinit { scratch.deallocate() }

    /// The next row into `target` (nil: passed over).
    func read(into target: UnsafeMutableRawPointer?) throws(StorageError) {
        guard planes.count == 4 else { return try planes[0].read(rowBytes, into: target) }
        let elements = rowBytes / 4
        guard let target else {
            for plane in planes { try plane.read(elements, into: nil) }
            return
        }
        for (k, plane) in planes.enumerated() { try plane.read(elements, into: scratch + k * elements) }
        // Byte k of element i is byte i of plane k.
        let bytes = scratch.assumingMemoryBound(to: UInt8.self), out = target.assumingMemoryBound(to: UInt8.self)
        for i in 0..<elements {
            for k in 0..<4 { out[4 * i + k] = bytes[k * elements + i] }
        }
    }

    /// Reads the frame to its end (the last plane's cursor covers the whole frame); its crc32.
    func finish() throws(StorageError) -> UInt32 { try planes[planes.count - 1].finish() }
}

/// A variable-length field's two frames read a value at a time: the offsets frame (count + 1
/// little-endian int64, the first 0, never decreasing) and the data frame (the values back to
/// back), in step. The data frame's size is the last offset, which comes at the end: its
/// header's declared content size stands in until then, and `finish` checks the two agree.
final class VariableCursor {
    let offsetsFrame: ShardManifest.Frame
    let dataFrame: ShardManifest.Frame
    private let offsets: FrameStream
    private let data: FrameStream
    private var last = 0
    private let scratch = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
    private let samples: Int
    private var position = 0

    init(descriptor: Int32, path: String, offsets offsetsFrame: ShardManifest.Frame, data dataFrame: ShardManifest.Frame,
         samples: Int) throws(StorageError) {
        self.offsetsFrame = offsetsFrame
        self.dataFrame = dataFrame
        self.samples = samples
        offsets = try FrameStream(descriptor: descriptor, path: path, offset: offsetsFrame.offset, bytes: offsetsFrame.bytes,
                                  contentBytes: (samples + 1) * 8, checksumming: true)
        let dataBytes = try FrameStream.declaredContentSize(descriptor: descriptor, path: path, offset: dataFrame.offset, bytes: dataFrame.bytes)
        data = try FrameStream(descriptor: descriptor, path: path, offset: dataFrame.offset, bytes: dataFrame.bytes,
                               contentBytes: dataBytes, checksumming: true)
        guard try nextOffset() == 0 else { throw corrupt("the first offset is not 0") }
    }

    deinit { scratch.deallocate() }

    private func corrupt(_ reason: String) -> StorageError { StorageError(.corrupt, call: "stream", path: offsets.path, reason: reason) }

    private func nextOffset() throws(StorageError) -> Int {
        try offsets.read(8, into: scratch)
        return Int(Int64(littleEndian: scratch.loadUnaligned(as: Int64.self)))
    }

    /// The next value into `target` (nil: passed over).
    func read(into target: UnsafeMutablePointer<[UInt8]>?) throws(StorageError) {
        let next = try nextOffset()
        // Checked before anything is allocated: offsets never decrease and stay inside the data.
        guard next >= last, next <= data.contentBytes else {
            throw corrupt("offset \(next) after \(last) is outside the \(data.contentBytes) bytes of data")
        }
        let length = next - last
        last = next
        position += 1
        guard let target else { return try data.read(length, into: nil) }
        // A raw buffer, not the array's own bytes: withUnsafeMutableBytes cannot carry a typed throw.
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, length))
        defer { buffer.deallocate() }
        try data.read(length, into: buffer)
        target.pointee = Array(UnsafeBufferPointer(start: buffer, count: length))
    }

    /// Reads both frames to their ends (checksums) and checks the last offset is the data's
    /// size; each frame's (offset, bytes, crc32 of its compressed bytes).
    func finish() throws(StorageError) -> [(offset: Int, bytes: Int, crc: UInt32)] {
        while position < samples { try read(into: nil) }
        guard last == data.contentBytes else { throw corrupt("the last offset is \(last), the data holds \(data.contentBytes) bytes") }
        let offsetsCRC = try offsets.finish(), dataCRC = try data.finish()
        return [(offsetsFrame.offset, offsetsFrame.bytes, offsetsCRC), (dataFrame.offset, dataFrame.bytes, dataCRC)]
    }
}
