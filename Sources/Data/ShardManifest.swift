import Foundation

/// The element type of one field of a sample.
public enum ElementType: String, Codable, Sendable {
    case uint8, float32, int64
    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8: return 1
        case .float32: return 4
        case .int64: return 8
        }
    }
}

/// How a section's bytes became one zstd frame.
public enum SectionEncoding: String, Codable, Sendable {
    /// The little-endian bytes, zstd-compressed.
    case zstd = "zstd"
    /// Byte planes of 4-byte elements (`shuffle4`), then zstd.
    case shuffleZstd = "shuffle4+zstd"
}

/// One field of every sample: element type and per-sample shape (row-major, little-endian).
public struct FieldLayout: Codable, Equatable, Sendable {
    public var dtype: ElementType
    /// Shape of one sample, e.g. [28, 28]; [] for a scalar (labels).
    public var shape: [Int]

    public init(dtype: ElementType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
    }

    public var elementsPerSample: Int { shape.reduce(1, *) }

    /// The shape readers work with: uint8 [1, H, W] (one channel, CHW, as `contrast prepare
    /// images --channels 1` writes it) is the grey image [H, W], the same bytes, so it trains,
    /// embeds and exports exactly as a Fashion-MNIST-style [H, W] set does; other shapes as stored.
    public var sampleShape: [Int] {
        dtype == .uint8 && shape.count == 3 && shape[0] == 1 ? Array(shape.dropFirst()) : shape
    }
    public var bytesPerSample: Int { elementsPerSample * dtype.size }
}

/// `dataset.json`: everything a reader needs to validate and read a sharded data set.
/// See docs/data-format.md.
public struct ShardManifest: Codable, Equatable, Sendable {
    public static let fileName = "dataset.json"
    public static let formatName = "contrast-shards"
    public static let currentVersion = "1.0"

    /// Which field a frame holds.
    public enum Section: String, Codable, Sendable { case features, labels, pairs }

    /// One zstd frame inside a shard file.
    public struct Frame: Codable, Equatable, Sendable {
        public var section: Section
        /// Byte offset of the frame in the shard file.
        public var offset: Int
        /// Compressed size in bytes.
        public var bytes: Int
        public var encoding: SectionEncoding
    }

    /// One shard file: samples firstSample ..< firstSample + sampleCount.
    public struct Shard: Codable, Equatable, Sendable {
        public var file: String
        public var firstSample: Int
        public var sampleCount: Int
        /// Size of the whole file in bytes.
        public var bytes: Int
        /// zlib crc32 of the whole file, "0x%08x".
        public var crc32: String
        public var frames: [Frame]
    }

    public var format: String
    public var version: String
    public var sampleCount: Int
    public var features: FieldLayout
    /// Present when every sample has an int64 label (shape []).
    public var labels: FieldLayout?
    /// Present for paired data: the second modality, float32.
    public var pairs: FieldLayout?
    public var shards: [Shard]
    /// Optional, with labels: the name of each class, by label (`classes[3]` names label 3), for
    /// reports and plots. Absent in manifests written before it existed; readers that do not know
    /// it ignore it.
    public var classes: [String]? = nil

    /// Bytes of all shard files.
    public var totalShardBytes: Int { shards.reduce(0) { $0 + $1.bytes } }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }

    /// Checks what the manifest says about itself (not the files): format, major version,
    /// layouts, and shards that cover 0 ..< sampleCount in order with the frames they need.
    func validate(path: String) throws {
        func fail(_ problem: String) -> DataError { .manifestInvalid(path: path, problem: problem) }
        guard format == Self.formatName else { throw fail("format is \"\(format)\", expected \"\(Self.formatName)\"") }
        guard version.split(separator: ".").first == "1" else {
            throw fail("format version \(version) is not supported (this build reads 1.x)")
        }
        guard features.dtype != .int64, features.shape.allSatisfy({ $0 > 0 }) else {
            throw fail("features must be uint8 or float32 with a positive shape, got \(features.dtype) \(features.shape)")
        }
        if let labels, labels.dtype != .int64 || !labels.shape.isEmpty { throw fail("labels must be int64 scalars") }
        if let classes, labels == nil || classes.isEmpty { throw fail("classes (\(classes.count) names) needs a non-empty list and labels") }
        if let pairs, pairs.dtype != .float32 || !pairs.shape.allSatisfy({ $0 > 0 }) {
            throw fail("pairs must be float32 with a positive shape, got \(pairs.dtype) \(pairs.shape)")
        }
        guard !shards.isEmpty else { throw fail("the data set holds no samples") }
        var next = 0
        for (index, shard) in shards.enumerated() {
            guard shard.firstSample == next, shard.sampleCount > 0 else {
                throw fail("shard \(index) (\(shard.file)) starts at sample \(shard.firstSample) with \(shard.sampleCount) samples; "
                           + "expected a non-empty shard starting at \(next)")
            }
            guard !shard.file.contains("/") else { throw fail("shard \(index) file name \(shard.file) must not contain '/'") }
            let wanted: [Section] = [.features] + (labels == nil ? [] : [.labels]) + (pairs == nil ? [] : [.pairs])
            guard Set(shard.frames.map(\.section)) == Set(wanted), shard.frames.count == wanted.count else {
                throw fail("shard \(index) (\(shard.file)) has frames \(shard.frames.map(\.section.rawValue)), expected \(wanted.map(\.rawValue))")
            }
            // Sizes from the manifest are untrusted: compare and multiply without overflowing.
            guard checkedProduct([shard.sampleCount] + features.shape, times: 4) != nil,
                  checkedProduct([shard.sampleCount] + (pairs?.shape ?? []), times: 8) != nil,
                  next.addingReportingOverflow(shard.sampleCount).overflow == false else {
                throw fail("shard \(index) (\(shard.file)) declares \(shard.sampleCount) samples of shape \(features.shape): its size overflows")
            }
            // The writer shuffles only float32 sections; the reader unshuffles 4-byte elements.
            for frame in shard.frames where frame.encoding == .shuffleZstd {
                let dtype: ElementType? = switch frame.section {
                case .features: features.dtype
                case .labels: labels?.dtype
                case .pairs: pairs?.dtype
                }
                guard dtype == .float32 else {
                    throw fail("shard \(index) (\(shard.file)): the \(frame.section.rawValue) frame is shuffle4+zstd, "
                               + "but the section holds \(dtype?.rawValue ?? "nothing"); only float32 sections are shuffled")
                }
            }
            for frame in shard.frames where frame.offset < 0 || frame.bytes <= 0 || shard.bytes < 0 || frame.bytes > shard.bytes - frame.offset {
                throw fail("shard \(index) (\(shard.file)): \(frame.section.rawValue) frame at \(frame.offset)+\(frame.bytes) "
                           + "lies outside the file's \(shard.bytes) bytes")
            }
            next += shard.sampleCount
        }
        guard next == sampleCount else { throw fail("shards hold \(next) samples, the manifest says \(sampleCount)") }
    }
}
