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

/// The type of a named field (format 1.1): a fixed-size numeric array, or a variable-length
/// value (`utf8` text, `bytes` such as an encoded JPEG) stored as offsets plus data.
public enum FieldType: String, Codable, Sendable {
    case uint8, float32, int64, utf8, bytes

    /// The element type of a fixed-size field; nil for the variable-length `utf8` and `bytes`.
    public var element: ElementType? {
        switch self {
        case .uint8: return .uint8
        case .float32: return .float32
        case .int64: return .int64
        case .utf8, .bytes: return nil
        }
    }

    public var isVariableLength: Bool { element == nil }
}

/// How the encoded images of a `bytes` field become a model input: every value decodes with
/// `ImageDecoding.sample(bytes, size:, channels:, fit:)` into uint8 [channels, size, size] (CHW),
/// the samples `prepare images --store pixels` would have stored. Recorded by `--store jpeg`
/// when a size is given, as the field's `decode` key (readers of 1.x that do not know it ignore it).
public struct ImageDecodeSpec: Codable, Equatable, Sendable {
    public var size: Int
    public var channels: Int
    public var fit: DecodedImage.Fit

    public init(size: Int, channels: Int, fit: DecodedImage.Fit) {
        self.size = size
        self.channels = channels
        self.fit = fit
    }

    /// uint8 [C, S, S], as a features layout.
    public var layout: FieldLayout { FieldLayout(dtype: .uint8, shape: [channels, size, size]) }

    /// The sample a value decodes to (throws `ImageDecodingError` for one that does not decode).
    public func sample(_ bytes: [UInt8]) throws -> [UInt8] {
        try ImageDecoding.sample(bytes, size: size, channels: channels, fit: fit)
    }
}

/// A named field of every sample beyond features, labels and pairs (format 1.1), e.g. `text`,
/// `positive`, `negative` (utf8), `score` (float32 []), `caption` (utf8), `image` (bytes).
public struct NamedField: Codable, Equatable, Sendable {
    public var name: String
    public var dtype: FieldType
    /// The shape of one sample's value for a fixed-size field ([] a scalar); absent (nil) for
    /// `utf8` and `bytes`, whose values each have their own length.
    public var shape: [Int]?
    /// For a `bytes` field of encoded images: what they decode to for training (`ImageDecodeSpec`).
    public var decode: ImageDecodeSpec? = nil

    public init(name: String, dtype: FieldType, shape: [Int]? = nil, decode: ImageDecodeSpec? = nil) {
        precondition(dtype.isVariableLength == (shape == nil), "NamedField \(name): \(dtype) \(dtype.isVariableLength ? "takes no" : "needs a") shape")
        precondition(decode == nil || dtype == .bytes, "NamedField \(name): only a bytes field decodes to images")
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.decode = decode
    }

    /// Elements of one sample's value (fixed-size fields).
    public var elementsPerSample: Int { (shape ?? []).reduce(1, *) }
}

/// `dataset.json`: everything a reader needs to validate and read a sharded data set.
/// See docs/data-format.md.
public struct ShardManifest: Codable, Equatable, Sendable {
    public static let fileName = "dataset.json"
    public static let formatName = "contrast-shards"
    public static let currentVersion = "1.1"
    /// Names a named field may not take: the fields that have their own keys.
    public static let reservedNames: Set<String> = ["features", "labels", "pairs"]

    /// Which part of a variable-length field a frame holds: the count + 1 little-endian int64
    /// offsets, or the values' bytes back to back.
    public enum Part: String, Codable, Sendable { case offsets, data }

    /// One zstd frame inside a shard file.
    public struct Frame: Codable, Equatable, Sendable {
        /// The field: "features", "labels", "pairs", or a named field's name.
        public var section: String
        /// For a variable-length field, which of its two frames; absent for the others.
        public var part: Part? = nil
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
    /// The model's input; absent in a data set of named fields alone (a text set, format 1.1).
    public var features: FieldLayout?
    /// Present when every sample has an int64 label (shape []).
    public var labels: FieldLayout?
    /// Present for paired data: the second modality, float32.
    public var pairs: FieldLayout?
    public var shards: [Shard]
    /// Optional, with labels: the name of each class, by label (`classes[3]` names label 3), for
    /// reports and plots. Absent in manifests written before it existed; readers that do not know
    /// it ignore it.
    public var classes: [String]? = nil
    /// Named fields beyond features, labels and pairs (format 1.1); absent when there are none.
    public var fields: [NamedField]? = nil

    /// The named field `name`, if the data set has it.
    public func field(_ name: String) -> NamedField? { fields?.first { $0.name == name } }

    /// The field of encoded images that decode to the model's input (`image` with a `decode`
    /// key, as `--store jpeg` writes it), in a data set without features; else nil.
    public var encodedImages: NamedField? {
        guard features == nil, let field = field(Self.encodedImageField), field.dtype == .bytes, field.decode != nil else { return nil }
        return field
    }

    /// The name of the field `--store jpeg` keeps encoded images in.
    public static let encodedImageField = "image"

    /// The features, or an error saying what the data set holds instead: for readers that need
    /// stored features (`requireInputs` also takes encoded images).
    public func requireFeatures(path: String) throws -> FieldLayout {
        if let features { return features }
        throw DataError.noFeatures(path: path, fields: fields ?? [])
    }

    /// A text set (`contrast prepare text|wordnet|freedict`): a utf8 `text` field, no features
    /// and no encoded images; training tokenizes it (model.encoder: bert, data.vocab).
    public var isTextSet: Bool { features == nil && encodedImages == nil && field("text")?.dtype == .utf8 }

    /// The model's input: the features, or the layout encoded images decode to (uint8 [C, S, S]),
    /// or an error saying what the data set holds instead: a reader that needs the model's input
    /// (training, evaluation, embedding) asks for it here.
    public func requireInputs(path: String) throws -> FieldLayout {
        if let features { return features }
        if let decode = encodedImages?.decode { return decode.layout }
        throw DataError.noFeatures(path: path, fields: fields ?? [])
    }

    /// The frames (section, part) every shard must have, in the order the writer puts them.
    var wantedFrames: [FrameKey] {
        var keys: [FrameKey] = []
        if features != nil { keys.append(FrameKey("features")) }
        if labels != nil { keys.append(FrameKey("labels")) }
        if pairs != nil { keys.append(FrameKey("pairs")) }
        for field in fields ?? [] {
            if field.dtype.isVariableLength {
                keys += [FrameKey(field.name, .offsets), FrameKey(field.name, .data)]
            } else {
                keys.append(FrameKey(field.name))
            }
        }
        return keys
    }

    /// The element type a frame's section holds (nil for bytes of a variable-length field).
    func elementType(of frame: Frame) -> ElementType? {
        switch frame.section {
        case "features": return features?.dtype
        case "labels": return labels?.dtype
        case "pairs": return pairs?.dtype
        default:
            guard let field = field(frame.section) else { return nil }
            return field.dtype.isVariableLength ? (frame.part == .offsets ? .int64 : nil) : field.dtype.element
        }
    }

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
        if let features, features.dtype == .int64 || !features.shape.allSatisfy({ $0 > 0 }) {
            throw fail("features must be uint8 or float32 with a positive shape, got \(features.dtype) \(features.shape)")
        }
        var names = Set<String>()
        for field in fields ?? [] {
            let valid = field.name.first.map { $0.isASCII && $0.isLowercase } == true
                && field.name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }
            guard valid, !Self.reservedNames.contains(field.name), names.insert(field.name).inserted else {
                throw fail("field name \"\(field.name)\" must be lower-case ASCII letters, digits and '_', start with a letter, "
                           + "be unique and not one of features, labels, pairs")
            }
            if let decode = field.decode {
                guard field.dtype == .bytes, decode.size > 0, decode.size <= 1 << 14, decode.channels == 1 || decode.channels == 3 else {
                    throw fail("field \(field.name)'s decode (size \(decode.size), channels \(decode.channels)) needs a bytes field, "
                               + "a size of 1 to 16384 and 1 or 3 channels")
                }
            }
            if field.dtype.isVariableLength {
                guard field.shape == nil else { throw fail("field \(field.name) is \(field.dtype.rawValue), whose values vary in length: it takes no shape") }
            } else {
                guard let shape = field.shape, shape.allSatisfy({ $0 > 0 }) else {
                    throw fail("field \(field.name) is \(field.dtype.rawValue) and needs a shape of positive sizes ([] for a scalar), got \(field.shape.map { "\($0)" } ?? "none")")
                }
            }
        }
        guard features != nil || !names.isEmpty else { throw fail("the data set declares neither features nor named fields") }
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
            let wanted = wantedFrames
            guard Set(shard.frames.map(FrameKey.init)) == Set(wanted), shard.frames.count == wanted.count else {
                throw fail("shard \(index) (\(shard.file)) has frames \(shard.frames.map { FrameKey($0).description }), "
                           + "expected \(wanted.map(\.description))")
            }
            // Sizes from the manifest are untrusted: compare and multiply without overflowing.
            let fixedShapes = [features?.shape ?? [], pairs?.shape ?? []] + (fields ?? []).map { $0.shape ?? [2] }
            guard fixedShapes.allSatisfy({ checkedProduct([shard.sampleCount] + $0, times: 8) != nil }),
                  next.addingReportingOverflow(shard.sampleCount).overflow == false else {
                throw fail("shard \(index) (\(shard.file)) declares \(shard.sampleCount) samples: their size overflows")
            }
            // The writer shuffles only float32 sections; the reader unshuffles 4-byte elements.
            for frame in shard.frames where frame.encoding == .shuffleZstd {
                let dtype = elementType(of: frame)
                guard dtype == .float32 else {
                    throw fail("shard \(index) (\(shard.file)): the \(FrameKey(frame)) frame is shuffle4+zstd, "
                               + "but the section holds \(dtype?.rawValue ?? "nothing"); only float32 sections are shuffled")
                }
            }
            for frame in shard.frames where frame.offset < 0 || frame.bytes <= 0 || shard.bytes < 0 || frame.bytes > shard.bytes - frame.offset {
                throw fail("shard \(index) (\(shard.file)): \(FrameKey(frame)) frame at \(frame.offset)+\(frame.bytes) "
                           + "lies outside the file's \(shard.bytes) bytes")
            }
            next += shard.sampleCount
        }
        guard next == sampleCount else { throw fail("shards hold \(next) samples, the manifest says \(sampleCount)") }
    }
}

/// A frame's identity within a shard: its section and, for a variable-length field, its part.
struct FrameKey: Hashable, CustomStringConvertible {
    var section: String
    var part: ShardManifest.Part?

    init(_ section: String, _ part: ShardManifest.Part? = nil) {
        self.section = section
        self.part = part
    }

    init(_ frame: ShardManifest.Frame) { self.init(frame.section, frame.part) }

    /// "text.offsets", "features".
    var description: String { part.map { section + "." + $0.rawValue } ?? section }
}
