import Foundation
import Storage
import Tensor

/// Feature values of a run of samples, row-major: count x elementsPerSample.
public enum FeatureValues: Equatable, Sendable {
    case uint8([UInt8])
    case float32([Float])

    public var dtype: ElementType { if case .uint8 = self { return .uint8 } else { return .float32 } }
    public var elementCount: Int {
        switch self {
        case .uint8(let values): return values.count
        case .float32(let values): return values.count
        }
    }
}

/// Variable-length values of a run of samples (a `utf8` or `bytes` field): value i is
/// `bytes[offsets[i] ..< offsets[i + 1]]`, as a shard stores them (docs/data-format.md).
public struct VariableValues: Equatable, Sendable {
    /// count + 1 non-decreasing offsets into `bytes`, the first 0, the last `bytes.count`.
    public private(set) var offsets: [Int]
    public private(set) var bytes: [UInt8]

    /// No values.
    public init() {
        offsets = [0]
        bytes = []
    }

    /// Each element one value.
    public init(_ values: [[UInt8]]) {
        self.init()
        for value in values { append(value) }
    }

    /// Each string one value, as UTF-8.
    public init(strings: [String]) {
        self.init()
        for string in strings { append(Array(string.utf8)) }
    }

    /// Takes offsets and bytes as they are; the reader has checked them.
    init(offsets: [Int], bytes: [UInt8]) {
        self.offsets = offsets
        self.bytes = bytes
    }

    public var count: Int { offsets.count - 1 }

    public mutating func append(_ value: some Collection<UInt8>) {
        bytes += value
        offsets.append(bytes.count)
    }

    /// The bytes of value `index`.
    public subscript(index: Int) -> ArraySlice<UInt8> { bytes[offsets[index] ..< offsets[index + 1]] }

    /// Value `index` as text. `contrast prepare text` stores valid UTF-8 only; a malformed
    /// sequence (a set written by other tools) reads as U+FFFD.
    public func string(_ index: Int) -> String { String(decoding: self[index], as: UTF8.self) }

    /// Values `range`, their offsets rebased to 0.
    public func slice(_ range: Range<Int>) -> VariableValues {
        let start = offsets[range.lowerBound]
        return VariableValues(offsets: offsets[range.lowerBound ... range.upperBound].map { $0 - start },
                              bytes: Array(bytes[start ..< offsets[range.upperBound]]))
    }
}

/// The values of one named field for a run of samples: fixed-size numbers (count x elements
/// per sample, row-major) or variable-length values.
public enum FieldValues: Equatable, Sendable {
    case uint8([UInt8])
    case float32([Float])
    case int64([Int64])
    case variable(VariableValues)

    /// The number of values (elements for a fixed-size field, samples for a variable one).
    var valueCount: Int {
        switch self {
        case .uint8(let values): return values.count
        case .float32(let values): return values.count
        case .int64(let values): return values.count
        case .variable(let values): return values.count
        }
    }
}

/// A run of `count` samples: features, optional labels (one each), optional pairs (second
/// modality), and named fields (format 1.1: text, captions, encoded images, scores).
public struct SampleBlock: Equatable, Sendable {
    public var count: Int
    /// Absent only in a data set without features (a text set); `ShardManifest.requireFeatures`
    /// turns that into a clear error before anything reads them.
    public var features: FeatureValues?
    public var labels: [Int64]?
    /// count x pair elements, row-major.
    public var pairs: [Float]?
    /// Named fields by name, as the manifest's `fields` declares them.
    public var fields: [String: FieldValues]

    public init(count: Int, features: FeatureValues?, labels: [Int64]? = nil, pairs: [Float]? = nil,
                fields: [String: FieldValues] = [:]) {
        self.count = count
        self.features = features
        self.labels = labels
        self.pairs = pairs
        self.fields = fields
    }

    /// Bytes the block's values take decoded (offsets of variable-length fields included).
    public var decodedBytes: Int {
        var total = (labels?.count ?? 0) * 8 + (pairs?.count ?? 0) * 4
        switch features {
        case .uint8(let values): total += values.count
        case .float32(let values): total += values.count * 4
        case nil: break
        }
        for values in fields.values {
            switch values {
            case .uint8(let values): total += values.count
            case .float32(let values): total += values.count * 4
            case .int64(let values): total += values.count * 8
            case .variable(let values): total += values.offsets.count * 8 + values.bytes.count
            }
        }
        return total
    }

    /// Sample `index`'s value of the `utf8` or `bytes` field `field`, nil when the block has no
    /// such variable-length field.
    public func bytes(_ field: String, _ index: Int) -> ArraySlice<UInt8>? {
        guard case .variable(let values) = fields[field] else { return nil }
        return values[index]
    }

    /// Sample `index`'s text in the `utf8` field `field` (e.g. "text", "caption"), nil when the
    /// block has no such field.
    public func text(_ field: String, _ index: Int) -> String? {
        guard case .variable(let values) = fields[field] else { return nil }
        return values.string(index)
    }
}

/// How `ShardedDatasetWriter` cuts N samples into shard files.
public enum ShardLayout: Sendable, Equatable {
    /// Shards of this many samples; the last one is smaller when it does not divide N.
    case size(Int)
    /// This many shards of near-equal size: shard s holds [floor(s N / S), floor((s+1) N / S)),
    /// the virtual shards of `Sampler.shardRange`, so with data.virtual_shards = S every
    /// virtual shard is one file.
    case count(Int)

    /// The sample ranges of the shards of N samples, in order.
    /// - Throws: `DataError.tooManyShards` when a shard count exceeds N (a shard would be empty).
    public func ranges(sampleCount: Int) throws -> [Range<Int>] {
        switch self {
        case .size(let size):
            precondition(size > 0, "ShardLayout: shard size \(size) must be positive")
            return stride(from: 0, to: sampleCount, by: size).map { $0 ..< min($0 + size, sampleCount) }
        case .count(let count):
            precondition(count > 0, "ShardLayout: shard count \(count) must be positive")
            guard count <= sampleCount else { throw DataError.tooManyShards(shards: count, sampleCount: sampleCount) }
            return (0..<count).map { s in s * sampleCount / count ..< (s + 1) * sampleCount / count }
        }
    }
}

/// Writes a sharded data set (docs/data-format.md) from samples held in memory.
public enum ShardedDatasetWriter {
    /// Shard file name for index `index`: shard-00000.bin, ...
    public static func shardFileName(_ index: Int) -> String {
        let digits = String(index)
        return "shard-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits + ".bin"
    }

    /// `write(_:featureShape:pairShape:to:layout:level:)` with shards of `shardSize` samples.
    @discardableResult
    public static func write(_ samples: SampleBlock, featureShape: [Int]?, pairShape: [Int]? = nil,
                             to directory: String, shardSize: Int, level: Int32 = 3) throws -> ShardManifest {
        try write(samples, featureShape: featureShape, pairShape: pairShape, to: directory, layout: .size(shardSize), level: level)
    }

    /// Writes `samples` into `directory` as shards cut by `layout` and then `dataset.json`.
    /// Each file goes through a temporary file, fsync and rename; a manifest already there is
    /// removed first and written last, so a folder with a manifest always holds the shards that
    /// manifest names.
    /// - Parameters:
    ///   - featureShape: shape of one sample's features, e.g. [28, 28]; nil when `samples` has
    ///     none (a set of named fields alone, such as text).
    ///   - pairShape: shape of one sample's pair; required when `samples.pairs` is present.
    ///   - fields: the named fields, in the order they are written; `samples.fields` holds
    ///     exactly their values.
    ///   - layout: shards of a given size, or a given number of near-equal shards.
    ///   - level: zstd compression level.
    ///   - classes: the class names by label, written as the manifest's optional `classes`.
    /// - Throws: `DataError.tooManyShards` before writing anything when the layout asks for more
    ///   shards than samples.
    @discardableResult
    public static func write(_ samples: SampleBlock, featureShape: [Int]?, pairShape: [Int]? = nil, fields: [NamedField] = [],
                             to directory: String, layout: ShardLayout, level: Int32 = 3,
                             classes: [String]? = nil) throws -> ShardManifest {
        let ranges = try layout.ranges(sampleCount: samples.count)
        precondition((samples.features == nil) == (featureShape == nil), "ShardedDatasetWriter: features and featureShape go together")
        let features = samples.features.map { values -> FieldLayout in
            let layout = FieldLayout(dtype: values.dtype, shape: featureShape ?? [])
            precondition(values.elementCount == samples.count * layout.elementsPerSample,
                         "ShardedDatasetWriter: \(values.elementCount) feature values are not \(samples.count) x \(featureShape ?? [])")
            return layout
        }
        let labels = samples.labels.map { values -> FieldLayout in
            precondition(values.count == samples.count, "ShardedDatasetWriter: \(values.count) labels for \(samples.count) samples")
            return FieldLayout(dtype: .int64, shape: [])
        }
        let pairs = samples.pairs.map { values -> FieldLayout in
            let layout = FieldLayout(dtype: .float32, shape: pairShape ?? [])
            precondition(pairShape != nil && values.count == samples.count * layout.elementsPerSample,
                         "ShardedDatasetWriter: \(values.count) pair values are not \(samples.count) x \(pairShape ?? [])")
            return layout
        }
        precondition(Set(fields.map(\.name)) == Set(samples.fields.keys) && fields.count == samples.fields.count,
                     "ShardedDatasetWriter: fields \(fields.map(\.name)) declared, values for \(samples.fields.keys.sorted())")
        for field in fields {
            let values = samples.fields[field.name]!
            let matches = switch (field.dtype, values) {
            case (.uint8, .uint8), (.float32, .float32), (.int64, .int64), (.utf8, .variable), (.bytes, .variable): true
            default: false
            }
            let expected = field.dtype.isVariableLength ? samples.count : samples.count * field.elementsPerSample
            precondition(matches && values.valueCount == expected, "ShardedDatasetWriter: field \(field.name) values do not match \(field)")
        }

        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DataError.writeFailed(path: directory, reason: "cannot create the folder")
        }
        let manifestPath = directory + "/" + ShardManifest.fileName
        do {
            if FileManager.default.fileExists(atPath: manifestPath) {
                guard unlink(manifestPath) == 0 else { throw StorageError.system("unlink", manifestPath) }
                try AtomicFile.syncDirectory(directory)
            }

            let encoder = try FrameEncoder(level: level)
            var shards: [ShardManifest.Shard] = []
            for range in ranges {
                let file = shardFileName(shards.count)
                let (bytes, frames) = try encodeShard(samples, range: range, features: features, pairs: pairs, fields: fields, encoder: encoder)
                // One fsync of the folder after the last shard, not one per shard.
                try bytes.withUnsafeBytes { try AtomicFile.write($0, toPath: directory + "/" + file, syncingDirectory: false) }
                let crc = bytes.withUnsafeBytes { CRC32.prefixedHex(CRC32.checksum($0)) }
                shards.append(.init(file: file, firstSample: range.lowerBound, sampleCount: range.count, bytes: bytes.count, crc32: crc, frames: frames))
            }
            try AtomicFile.syncDirectory(directory)

            let manifest = ShardManifest(format: ShardManifest.formatName, version: ShardManifest.currentVersion,
                                         sampleCount: samples.count, features: features, labels: labels, pairs: pairs, shards: shards,
                                         classes: labels == nil ? nil : classes, fields: fields.isEmpty ? nil : fields)
            let json: Foundation.Data
            do { json = try ShardManifest.encoder().encode(manifest) } catch {
                throw DataError.writeFailed(path: manifestPath, reason: "JSON encoding failed: \(error)")
            }
            try ([UInt8](json) + [0x0A]).withUnsafeBytes { try AtomicFile.write($0, toPath: manifestPath) }
            return manifest
        } catch let error as StorageError {
            throw DataError(writing: error)
        }
    }

    /// One shard's bytes and frames: samples `range` of `samples` (a shard is encoded alone, so
    /// the bytes are the same whichever block holds the samples, and whichever process encodes them).
    static func encodeShard(_ samples: SampleBlock, range: Range<Int>, features: FieldLayout?, pairs: FieldLayout?, fields: [NamedField],
                            encoder: FrameEncoder) throws -> (bytes: [UInt8], frames: [ShardManifest.Frame]) {
        let first = range.lowerBound, count = range.count
        var bytes: [UInt8] = []
        var frames: [ShardManifest.Frame] = []
        func append(_ section: String, _ encoding: SectionEncoding, _ frame: UnsafeRawBufferPointer,
                    part: ShardManifest.Part? = nil) {
            frames.append(.init(section: section, part: part, offset: bytes.count, bytes: frame.count, encoding: encoding))
            bytes += frame
        }
        func littleEndian(_ values: some Collection<Int64>) throws -> UnsafeRawBufferPointer {
            try values.map { $0.littleEndian }.withUnsafeBytes { try encoder.encode($0) }
        }
        // Float32 sections are byte-shuffled (they compress far better), the others not.
        func shuffled(_ values: ArraySlice<Float>) throws -> UnsafeRawBufferPointer {
            try values.withUnsafeBufferPointer {
                guard let base = $0.baseAddress else { return try encoder.encode(UnsafeRawBufferPointer($0)) }
                return try encoder.encode(base, count: $0.count, transform: .shuffleZstd)
            }
        }
        if let features {
            let featureRange = first * features.elementsPerSample ..< (first + count) * features.elementsPerSample
            switch samples.features {
            case .uint8(let values):
                append("features", .zstd, try values[featureRange].withUnsafeBytes { try encoder.encode($0) })
            case .float32(let values):
                append("features", .shuffleZstd, try shuffled(values[featureRange]))
            case nil: break
            }
        }
        if let values = samples.labels {
            append("labels", .zstd, try littleEndian(values[first ..< first + count]))
        }
        if let values = samples.pairs, let pairs {
            let range = first * pairs.elementsPerSample ..< (first + count) * pairs.elementsPerSample
            append("pairs", .shuffleZstd, try shuffled(values[range]))
        }
        for field in fields {
            let range = first * field.elementsPerSample ..< (first + count) * field.elementsPerSample
            switch samples.fields[field.name]! {
            case .uint8(let values): append(field.name, .zstd, try values[range].withUnsafeBytes { try encoder.encode($0) })
            case .float32(let values): append(field.name, .shuffleZstd, try shuffled(values[range]))
            case .int64(let values): append(field.name, .zstd, try littleEndian(values[range]))
            case .variable(let values):
                // Offsets relative to this shard's data, so a shard reads alone.
                let start = values.offsets[first]
                append(field.name, .zstd, try littleEndian(values.offsets[first ... first + count].map { Int64($0 - start) }),
                       part: .offsets)
                append(field.name, .zstd, try values.bytes[start ..< values.offsets[first + count]].withUnsafeBytes { try encoder.encode($0) },
                       part: .data)
            }
        }
        return (bytes, frames)
    }
}

/// One shard file, encoded and not yet written: what `ShardedDatasetWriter.encode` makes and
/// `ShardSink` writes, so shards can be encoded wherever their samples are (on any thread or
/// rank) and written in order by one writer.
public struct EncodedShard: Sendable, Equatable, Codable {
    public var bytes: [UInt8]
    public var frames: [ShardManifest.Frame]
    public var sampleCount: Int
}

extension ShardedDatasetWriter {
    /// `samples` encoded as one shard, the bytes `write` gives the same samples as one of its
    /// shards (each shard is encoded alone).
    public static func encode(_ samples: SampleBlock, featureShape: [Int]?, fields: [NamedField] = [], level: Int32 = 3) throws -> EncodedShard {
        precondition((samples.features == nil) == (featureShape == nil) && samples.pairs == nil,
                     "ShardedDatasetWriter.encode: features and featureShape go together; pairs are not streamed")
        let features = samples.features.map { FieldLayout(dtype: $0.dtype, shape: featureShape ?? []) }
        if let features, let values = samples.features {
            precondition(values.elementCount == samples.count * features.elementsPerSample, "ShardedDatasetWriter.encode: feature count")
        }
        precondition(samples.labels.map { $0.count == samples.count } ?? true, "ShardedDatasetWriter.encode: label count")
        precondition(Set(fields.map(\.name)) == Set(samples.fields.keys) && fields.count == samples.fields.count,
                     "ShardedDatasetWriter.encode: fields \(fields.map(\.name)) declared, values for \(samples.fields.keys.sorted())")
        do {
            let (bytes, frames) = try encodeShard(samples, range: 0 ..< samples.count, features: features, pairs: nil, fields: fields,
                                                  encoder: try FrameEncoder(level: level))
            return EncodedShard(bytes: bytes, frames: frames, sampleCount: samples.count)
        } catch let error as StorageError {
            throw DataError(writing: error)
        }
    }
}

/// Writes a sharded data set one shard at a time, in order (`append`), then its manifest
/// (`finish`): the files `ShardedDatasetWriter.write` writes for the same samples, without
/// holding more than the shard at hand.
public final class ShardSink {
    public let directory: String
    private var shards: [ShardManifest.Shard] = []
    private var sampleCount = 0

    /// Creates `directory` (it must hold no manifest: the sink writes into a new folder).
    public init(directory: String) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DataError.writeFailed(path: directory, reason: "cannot create the folder")
        }
    }

    /// Writes the next shard file.
    public func append(_ shard: EncodedShard) throws {
        let file = ShardedDatasetWriter.shardFileName(shards.count)
        do {
            // One fsync of the folder after the last shard, not one per shard.
            try shard.bytes.withUnsafeBytes { try AtomicFile.write($0, toPath: directory + "/" + file, syncingDirectory: false) }
        } catch let error as StorageError {
            throw DataError(writing: error)
        }
        let crc = shard.bytes.withUnsafeBytes { CRC32.prefixedHex(CRC32.checksum($0)) }
        shards.append(.init(file: file, firstSample: sampleCount, sampleCount: shard.sampleCount, bytes: shard.bytes.count, crc32: crc,
                            frames: shard.frames))
        sampleCount += shard.sampleCount
    }

    /// Writes the manifest of the shards appended: features of `featureShape` (uint8, the only
    /// kind streamed), labels when `labels`, and the named fields.
    @discardableResult
    public func finish(featureShape: [Int]?, labels: Bool, fields: [NamedField] = [], classes: [String]? = nil) throws -> ShardManifest {
        let manifestPath = directory + "/" + ShardManifest.fileName
        do {
            try AtomicFile.syncDirectory(directory)
            let manifest = ShardManifest(format: ShardManifest.formatName, version: ShardManifest.currentVersion,
                                         sampleCount: sampleCount, features: featureShape.map { FieldLayout(dtype: .uint8, shape: $0) },
                                         labels: labels ? FieldLayout(dtype: .int64, shape: []) : nil, pairs: nil, shards: shards,
                                         classes: labels ? classes : nil, fields: fields.isEmpty ? nil : fields)
            let json: Foundation.Data
            do { json = try ShardManifest.encoder().encode(manifest) } catch {
                throw DataError.writeFailed(path: manifestPath, reason: "JSON encoding failed: \(error)")
            }
            try ([UInt8](json) + [0x0A]).withUnsafeBytes { try AtomicFile.write($0, toPath: manifestPath) }
            return manifest
        } catch let error as StorageError {
            throw DataError(writing: error)
        }
    }
}

/// A sharded data set on disk, opened and validated: reads one shard at a time.
///
/// Opening checks the manifest and that every shard file exists with the size the manifest
/// gives, so a broken data set stops `contrast train` before the first step; reading a shard
/// checks its crc32 and each zstd frame's content checksum.
public final class ShardedDataset: Sendable {
    public let directory: String
    public let manifest: ShardManifest

    public var sampleCount: Int { manifest.sampleCount }
    public var shardCount: Int { manifest.shards.count }

    /// Opens `directory`/dataset.json and checks it against the shard files: all of them, or
    /// only `checking` (a rank checks the shards it will read, and opens no other file).
    public init(directory: String, checking: Range<Int>? = nil) throws {
        let manifest = try Self.readManifest(directory: directory)
        for index in checking ?? 0..<manifest.shards.count {
            precondition(index >= 0 && index < manifest.shards.count, "ShardedDataset: shard \(index) out of range 0..<\(manifest.shards.count)")
            let shard = manifest.shards[index]
            let path = directory + "/" + shard.file
            var status = stat()
            guard stat(path, &status) == 0 else {
                throw DataError.shardInvalid(path: path, shard: index, problem: "missing (\(String(cString: strerror(errno))))")
            }
            guard Int(status.st_size) == shard.bytes else {
                throw DataError.shardInvalid(path: path, shard: index,
                                             problem: "is \(status.st_size) bytes, the manifest says \(shard.bytes) (truncated or replaced)")
            }
        }
        self.directory = directory
        self.manifest = manifest
    }

    /// Reads and validates `directory`/dataset.json alone.
    public static func readManifest(directory: String) throws -> ShardManifest {
        let manifestPath = directory + "/" + ShardManifest.fileName
        guard let json = FileManager.default.contents(atPath: manifestPath) else {
            throw DataError.manifestInvalid(path: manifestPath, problem: "missing or unreadable (is \(directory) a folder written by `contrast prepare`?)")
        }
        let manifest: ShardManifest
        do { manifest = try ShardManifest.decoder().decode(ShardManifest.self, from: json) } catch {
            throw DataError.manifestInvalid(path: manifestPath, problem: "not a valid manifest: \(Self.describe(error))")
        }
        try manifest.validate(path: manifestPath)
        return manifest
    }

    /// Path of shard `index`'s file.
    public func shardPath(_ index: Int) -> String { directory + "/" + manifest.shards[index].file }

    /// Reads and checks shard `index`: the file's size and crc32, then each frame.
    public func readShard(_ index: Int) throws -> SampleBlock {
        precondition(index >= 0 && index < shardCount, "readShard: shard \(index) out of range 0..<\(shardCount)")
        let shard = manifest.shards[index]
        let path = shardPath(index)
        func fail(_ problem: String) -> DataError { .shardInvalid(path: path, shard: index, problem: problem) }
        guard let contents = FileManager.default.contents(atPath: path) else { throw fail("missing or unreadable") }
        guard contents.count == shard.bytes else {
            throw fail("is \(contents.count) bytes, the manifest says \(shard.bytes) (truncated or replaced)")
        }
        return try contents.withUnsafeBytes { file -> SampleBlock in
            let crc = CRC32.prefixedHex(CRC32.checksum(file))
            guard crc == shard.crc32 else { throw fail("crc32 is \(crc), the manifest says \(shard.crc32) (the file is corrupt)") }
            let decoder: FrameDecoder
            do { decoder = try FrameDecoder() } catch { throw fail("\(error)") }
            var block = SampleBlock(count: shard.sampleCount, features: nil)
            func frameBytes(_ frame: ShardManifest.Frame) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: file[frame.offset ..< frame.offset + frame.bytes])
            }
            // Offsets come before their data, whatever order the manifest lists the frames in.
            var offsetsByField: [String: [Int]] = [:]
            for frame in shard.frames where frame.part != .data {
                let bytes = frameBytes(frame)
                switch frame.section {
                case "features":
                    guard let features = manifest.features else { continue }
                    let count = shard.sampleCount * features.elementsPerSample
                    if features.dtype == .uint8 {
                        var values = [UInt8](repeating: 0, count: count)
                        try decode(bytes, frame, into: &values, decoder, fail)
                        block.features = .uint8(values)
                    } else {
                        var values = [Float](repeating: 0, count: count)
                        try decode(bytes, frame, into: &values, decoder, fail)
                        block.features = .float32(values)
                    }
                case "labels":
                    var values = [Int64](repeating: 0, count: shard.sampleCount)
                    try decode(bytes, frame, into: &values, decoder, fail)
                    block.labels = values.map { Int64(littleEndian: $0) }
                case "pairs":
                    var values = [Float](repeating: 0, count: shard.sampleCount * (manifest.pairs?.elementsPerSample ?? 0))
                    try decode(bytes, frame, into: &values, decoder, fail)
                    block.pairs = values
                default:
                    // `ShardManifest.validate` admits only declared fields' frames.
                    guard let field = manifest.field(frame.section) else { continue }
                    let count = shard.sampleCount * field.elementsPerSample
                    switch field.dtype {
                    case .uint8:
                        var values = [UInt8](repeating: 0, count: count)
                        try decode(bytes, frame, into: &values, decoder, fail)
                        block.fields[field.name] = .uint8(values)
                    case .float32:
                        var values = [Float](repeating: 0, count: count)
                        try decode(bytes, frame, into: &values, decoder, fail)
                        block.fields[field.name] = .float32(values)
                    case .int64:
                        var values = [Int64](repeating: 0, count: count)
                        try decode(bytes, frame, into: &values, decoder, fail)
                        block.fields[field.name] = .int64(values.map { Int64(littleEndian: $0) })
                    case .utf8, .bytes:
                        var values = [Int64](repeating: 0, count: shard.sampleCount + 1)
                        try decode(bytes, frame, into: &values, decoder, fail)
                        offsetsByField[field.name] = try Self.checkedOffsets(values, field: field.name, fail)
                    }
                }
            }
            for frame in shard.frames where frame.part == .data {
                guard let offsets = offsetsByField[frame.section] else { continue }
                // The last offset sizes the allocation: no zstd frame expands a byte into more than
                // 32 KiB (a 128 KiB RLE block takes 4 bytes), so a larger claim is damage, not data.
                guard offsets.last! <= frame.bytes * 32_768 else {
                    throw fail("\(frame.section) offsets end at \(offsets.last!) bytes, more than its \(frame.bytes)-byte data frame can hold")
                }
                var values = [UInt8](repeating: 0, count: offsets.last!)
                try decode(frameBytes(frame), frame, into: &values, decoder, fail)
                block.fields[frame.section] = .variable(VariableValues(offsets: offsets, bytes: values))
            }
            return block
        }
    }

    /// Reads every shard, checking all checksums; returns the total sample count.
    @discardableResult
    public func verifyAll() throws -> Int {
        var total = 0
        for index in 0..<shardCount { total += try readShard(index).count }
        return total
    }

    /// A variable-length field's offsets as stored: 0 first, never decreasing.
    private static func checkedOffsets(_ stored: [Int64], field: String, _ fail: (String) -> DataError) throws -> [Int] {
        var previous: Int64 = 0
        for (index, value) in stored.enumerated() {
            let offset = Int64(littleEndian: value)
            guard index == 0 ? offset == 0 : offset >= previous else {
                throw fail("\(field) offset \(index) is \(offset) after \(previous); offsets start at 0 and never decrease")
            }
            previous = offset
        }
        return stored.map { Int(Int64(littleEndian: $0)) }
    }

    private func decode<Element>(_ frame: UnsafeRawBufferPointer, _ info: ShardManifest.Frame, into values: inout [Element],
                                 _ decoder: FrameDecoder, _ fail: (String) -> DataError) throws {
        do {
            try values.withUnsafeMutableBytes { target in
                // `ShardManifest.validate` lets only float32 sections be shuffled.
                if info.encoding == .shuffleZstd, let base = target.baseAddress {
                    try decoder.decode(frame, transform: .shuffleZstd, count: target.count / 4, into: base.assumingMemoryBound(to: Float.self))
                } else {
                    try decoder.decode(frame, into: target)
                }
            }
        } catch let error as StorageError {
            throw fail("\(FrameKey(info)) frame at byte \(info.offset): \(error.reason)")
        }
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "key '\(key.stringValue)' is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(context.debugDescription) at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        default: return "\(error)"
        }
    }
}

extension ShardedDataset {
    /// For a prepared data set at `path`: path/train and path/test when `contrast prepare`
    /// wrote both splits, else path itself and no test split.
    public static func splits(of path: String) -> (train: String, test: String?) {
        let exists = { FileManager.default.fileExists(atPath: $0 + "/" + ShardManifest.fileName) }
        if exists(path + "/train") {
            return (path + "/train", exists(path + "/test") ? path + "/test" : nil)
        }
        return (path, nil)
    }

    /// The shards that hold the first `limit` samples (all shards when `limit` is 0): the
    /// files past them need not be opened. Shards are in sample order (the manifest checks it).
    public static func shards(of manifest: ShardManifest, holdingFirst limit: Int) -> Range<Int> {
        guard limit > 0 else { return 0..<manifest.shards.count }
        return 0..<manifest.shards.prefix { $0.firstSample < limit }.count
    }
}

extension ShardedDataset {
    /// Calls `body` with every text of every `utf8` field (text, positive, negative, caption...),
    /// shard by shard, sample by sample, fields in name order: what `contrast vocab` learns from.
    public func forEachText(_ body: (String) throws -> Void) throws {
        let names = (manifest.fields ?? []).filter { $0.dtype == .utf8 }.map(\.name).sorted()
        for shard in 0..<shardCount {
            let block = try readShard(shard)
            for index in 0..<block.count {
                for name in names { if let text = block.text(name, index) { try body(text) } }
            }
        }
    }
}
