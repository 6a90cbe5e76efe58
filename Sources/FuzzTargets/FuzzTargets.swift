import Checkpoint
import CZlib
import Data
import Config
import Foundation
import Training

/// A reader of untrusted bytes that the coverage-guided fuzzer drives (launch/fuzz.sh), and that
/// the regression tests replay files through (Tests/FuzzTests). docs/reliability.md, "Fuzzing".
///
/// Each target feeds one input to contrast's public reading API as a user's file would reach it.
/// The contract every target checks: an input is read, or rejected with one of contrast's own
/// errors (`DataError`, `CheckpointError`, `ConfigError`, which name the file and the fix); it
/// never traps, overflows, or allocates beyond what the input can hold.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `manifest.json` of a checkpoint alone: parse and validate (`CheckpointStore.verify` up to the
    /// first shard file, which is absent).
    case checkpointManifest = "checkpoint-manifest"
    /// A checkpoint directory (a `FuzzContainer`: manifest.json, then shard files):
    /// `CheckpointStore.load(_:only:)` of every buffer, then `CheckpointStore.verify`.
    case checkpoint
    /// `dataset.json` of a prepared data set alone (`ShardedDataset.readManifest`).
    case datasetManifest = "dataset-manifest"
    /// A prepared data set (a `FuzzContainer`: dataset.json, then shard files): open, read every shard.
    case dataset
    /// As `dataset`, but the manifest's shard sizes and crc32s are first made to match the files,
    /// so that mutations reach the frame decoding behind the checksum.
    case datasetFrames = "dataset-frames"
    /// A .npy file (`NPYArray(bytes:path:)` and its value conversions).
    case npy
    /// An IDX file, plain or gzip (`IDX.dimensions` as images, then as labels; `IDX.read` of the second half, then of all).
    case idx
    /// A safetensors file (`Safetensors.readHeader`, then every F32 tensor's values).
    case safetensors
    /// A YAML config, then NUL-separated `--set` overrides (`ConfigLoader.load(file:overrides:)`);
    /// a config that loads must load back from its own `yaml()` to an equal config.
    case config
    /// A PNG file (`ImageDecoding.decode`: libpng behind the C shim), then fitted to 8 x 8 in both modes.
    case png
    /// A JPEG file: its EXIF orientation (`EXIFOrientation.of(jpeg:)`, parsed by contrast), then
    /// `ImageDecoding.decode` (libjpeg behind the C shim, the orientation applied), fitted to 8 x 8.
    case jpeg
    /// A webdataset tar shard (`TarArchive.members`, webdataset's grouping, each sample's image,
    /// caption and label as `prepare webdataset` reads them), captions from .txt and from a
    /// .json field.
    case tar
    /// As `datasetFrames`, read the way `data.hold: stream` reads it: every shard through
    /// `ShardStream` a sample at a time (features, labels, pairs and encoded images, whose
    /// variable-length offsets and data frames are decoded in step), then `finish`.
    case datasetStream = "dataset-stream"
    /// A text table (`TextTable.read`): the first byte picks the format (CSV, TSV, JSONL), whether
    /// the first row is a header, and the columns (1-3 texts, a score, a label); the rest is the file.
    case text
}

/// What a target made of one input.
public enum FuzzOutcome {
    /// The reader accepted the input.
    case accepted
    /// The reader threw.
    case rejected(any Error)

    /// Whether a rejection is one of contrast's own errors, which tell the user what to fix.
    public var isClear: Bool {
        switch self {
        case .accepted: return true
        case .rejected(let error):
            return error is DataError || error is CheckpointError || error is ConfigError || error is ImageDecodingError
        }
    }
}

/// Several files in one fuzz input: each a little-endian UInt32 length, then that many bytes
/// (the last file takes what is left when the length runs past the end). At most `maximumFiles`.
public enum FuzzContainer {
    public static let maximumFiles = 8

    public static func split(_ bytes: [UInt8]) -> [[UInt8]] {
        var files: [[UInt8]] = []
        var index = 0
        while index < bytes.count, files.count < maximumFiles {
            var length = 0
            for byte in 0..<4 where index + byte < bytes.count { length |= Int(bytes[index + byte]) << (8 * byte) }
            index = min(index + 4, bytes.count)
            let end = index + min(length, bytes.count - index)
            files.append(Array(bytes[index..<end]))
            index = end
        }
        return files
    }

    public static func join(_ files: [[UInt8]]) -> [UInt8] {
        var bytes: [UInt8] = []
        for file in files {
            withUnsafeBytes(of: UInt32(file.count).littleEndian) { bytes += $0 }
            bytes += file
        }
        return bytes
    }
}

/// A scratch folder for the files a target writes; one per thread of work (tests run in parallel).
public final class FuzzWorkspace {
    public let directory: String

    public init() throws {
        directory = NSTemporaryDirectory() + "contrast-fuzz-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Empties the folder.
    func clear() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            unlink(directory + "/" + name)
        }
    }

    func write(_ bytes: [UInt8], as name: String) {
        let written = FileManager.default.createFile(atPath: directory + "/" + name, contents: Foundation.Data(bytes))
        precondition(written, "fuzz workspace: cannot write \(directory)/\(name)")
    }
}

extension FuzzTarget {
    /// Largest buffer (elements) the checkpoint target allocates to load into: a trainer
    /// allocates its buffers from its own config, not from the manifest.
    static let largestLoadedBuffer = 1 << 22
    /// Largest image (pixels) the png and jpeg targets decode: a few bytes can claim a huge image,
    /// and decoding one takes seconds the fuzzer should spend on other inputs.
    static let largestDecodedImage = 1 << 20

    /// Feeds `bytes` to the target's reader in `workspace`.
    public func run(_ bytes: [UInt8], in workspace: FuzzWorkspace) -> FuzzOutcome {
        workspace.clear()
        do {
            switch self {
            case .checkpointManifest:
                workspace.write(bytes, as: CheckpointStore.manifestName)
                do {
                    try CheckpointStore.verify(URL(fileURLWithPath: workspace.directory))
                } catch let error as CheckpointError where error.kind == .missing && !error.file.hasSuffix(CheckpointStore.manifestName) {
                    // There are no shard files: reaching the first one means the manifest was read and validated.
                }
            case .checkpoint:
                try readCheckpoint(bytes, in: workspace)
            case .datasetManifest:
                workspace.write(bytes, as: ShardManifest.fileName)
                _ = try ShardedDataset.readManifest(directory: workspace.directory)
            case .dataset, .datasetFrames:
                try readDataset(bytes, in: workspace, matchingChecksums: self == .datasetFrames)
            case .datasetStream:
                try streamDataset(bytes, in: workspace)
            case .npy:
                let array = try NPYArray(bytes: bytes, path: "fuzz.npy")
                _ = array.float32Values()
                _ = array.int64Values()
                _ = array.uint8Values()
            case .idx:
                try readIDX(bytes, in: workspace)
            case .safetensors:
                let file = Foundation.Data(bytes)
                let header = try Safetensors.readHeader(file, path: "fuzz.safetensors")
                for entry in header.entries where entry.dtype == "F32" {
                    _ = Safetensors.float32Values(entry, of: file, header: header)
                }
            case .config:
                try loadConfig(bytes, in: workspace)
            case .png, .jpeg:
                if self == .jpeg { precondition((1...8).contains(EXIFOrientation.of(jpeg: bytes)), "orientation out of 1...8") }
                let image = try ImageDecoding.decode(bytes, maxPixels: Self.largestDecodedImage)
                for mode in [DecodedImage.Fit.crop, .pad] {
                    let fitted = image.converted(channels: 3).fitted(size: 8, mode: mode)
                    precondition(fitted.width == 8 && fitted.height == 8 && fitted.planar.count == 192, "fitted to \(fitted.width) x \(fitted.height)")
                }
            case .tar:
                try bytes.withUnsafeBytes { archive in
                    for captionField in [nil, "caption"] {
                        // Both passes of prepare webdataset: the second makes exactly the samples the first kept.
                        var scan = WebDatasetScan()
                        try scan.read(archive, shard: "fuzz.tar", captionField: captionField, strict: false)
                        try scan.requireSameFields(strict: false)
                        var made = 0
                        try scan.samples(archive, shard: 0, captionField: captionField, store: .jpeg) { _ in made += 1 }
                        precondition(made == scan.count, "the second pass made \(made) samples, the first kept \(scan.count)")
                    }
                }
            case .text:
                try readText(bytes)
            }
            return .accepted
        } catch {
            return .rejected(error)
        }
    }

    private func readCheckpoint(_ bytes: [UInt8], in workspace: FuzzWorkspace) throws {
        let files = FuzzContainer.split(bytes)
        guard let manifest = files.first else { throw CheckpointError.emptyInput }
        workspace.write(manifest, as: CheckpointStore.manifestName)
        let shards = files.count - 1
        for (rank, file) in files.dropFirst().enumerated() { workspace.write(file, as: "shard-\(rank)-of-\(shards).bin") }
        let directory = URL(fileURLWithPath: workspace.directory)

        // Load every buffer the manifest lists (as `contrast export` loads the parameters), then verify.
        let listed = try CheckpointStore.manifest(at: directory).buffers
        var seen = Set<String>()
        let loadable = listed.filter { $0.count >= 0 && $0.count <= Self.largestLoadedBuffer && seen.insert($0.name).inserted }
        let storage = loadable.map { UnsafeMutablePointer<Float>.allocate(capacity: max($0.count, 1)) }
        defer { storage.forEach { $0.deallocate() } }
        let buffers = zip(loadable, storage).map { CheckpointBuffer(name: $0.name, pointer: $1, count: $0.count) }
        _ = try CheckpointStore.load(directory, only: buffers)
        try CheckpointStore.verify(directory)
    }

    private func readDataset(_ bytes: [UInt8], in workspace: FuzzWorkspace, matchingChecksums: Bool) throws {
        let files = FuzzContainer.split(bytes)
        guard var manifest = files.first else { throw DataError.manifestInvalid(path: workspace.directory, problem: "empty input") }
        let shards = Array(files.dropFirst())
        for (index, file) in shards.enumerated() { workspace.write(file, as: ShardedDatasetWriter.shardFileName(index)) }
        if matchingChecksums { manifest = Self.matchingChecksums(manifest, shards: shards) }
        workspace.write(manifest, as: ShardManifest.fileName)
        let dataset = try ShardedDataset(directory: workspace.directory)
        try dataset.verifyAll()
    }

    /// The largest row (bytes) the stream target reads a sample's features or pairs into: a
    /// trainer's rows come from a manifest it has checked against its config.
    static let largestStreamedRow = 1 << 20

    private func streamDataset(_ bytes: [UInt8], in workspace: FuzzWorkspace) throws {
        let files = FuzzContainer.split(bytes)
        guard let manifest = files.first else { throw DataError.manifestInvalid(path: workspace.directory, problem: "empty input") }
        let shards = Array(files.dropFirst())
        for (index, file) in shards.enumerated() { workspace.write(file, as: ShardedDatasetWriter.shardFileName(index)) }
        workspace.write(Self.matchingChecksums(manifest, shards: shards), as: ShardManifest.fileName)
        let dataset = try ShardedDataset(directory: workspace.directory)
        let encoded = dataset.manifest.encodedImages != nil
        let featureBytes = encoded ? 0 : (try dataset.manifest.requireInputs(path: workspace.directory)).bytesPerSample
        let pairBytes = (dataset.manifest.pairs?.elementsPerSample ?? 0) * 4
        guard featureBytes <= Self.largestStreamedRow && pairBytes <= Self.largestStreamedRow else { return }
        let features = UnsafeMutableRawPointer.allocate(byteCount: max(1, featureBytes), alignment: 16)
        let pairs = UnsafeMutableRawPointer.allocate(byteCount: max(1, pairBytes), alignment: 16)
        defer { features.deallocate(); pairs.deallocate() }
        var label: Int64 = 0, image: [UInt8] = []
        for shard in 0..<dataset.shardCount {
            let stream = try ShardStream(dataset, shard: shard)
            for sample in 0..<stream.sampleCount {
                // Every third sample passed over, as a rank skips the samples of other ranks.
                if sample % 3 == 2 { try stream.skipSample(); continue }
                if encoded {
                    try stream.readSample(features: nil, label: &label, pairs: pairBytes > 0 ? pairs : nil, image: &image)
                } else {
                    try stream.readSample(features: featureBytes > 0 ? features : nil, label: &label, pairs: pairBytes > 0 ? pairs : nil)
                }
            }
            try stream.finish()
        }
    }

    /// The manifest with each shard's `bytes` and `crc32` set to those of the file of its index
    /// (unchanged when it does not decode).
    static func matchingChecksums(_ json: [UInt8], shards: [[UInt8]]) -> [UInt8] {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard var manifest = try? decoder.decode(ShardManifest.self, from: Foundation.Data(json)) else { return json }
        for index in manifest.shards.indices where index < shards.count {
            let file = shards[index]
            let crc = file.withUnsafeBufferPointer { file.isEmpty ? 0 : crc32_z(0, $0.baseAddress, file.count) }
            let digits = String(crc, radix: 16)
            manifest.shards[index].bytes = file.count
            manifest.shards[index].crc32 = "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return (try? encoder.encode(manifest)).map { [UInt8]($0) } ?? json
    }

    private func readIDX(_ bytes: [UInt8], in workspace: FuzzWorkspace) throws {
        workspace.write(bytes, as: "fuzz-idx")
        let path = workspace.directory + "/fuzz-idx"
        var magic = IDX.imagesMagic
        let dimensions: [Int]
        do {
            dimensions = try IDX.dimensions(path: path, magic: magic)
        } catch DataError.wrongMagic {
            magic = IDX.labelsMagic
            dimensions = try IDX.dimensions(path: path, magic: magic)
        }
        // As a rank of two reads it: the second half of the samples, the first half skipped.
        let count = dimensions[0]
        _ = try? IDX.read(path: path, magic: magic, samples: count / 2 ..< count, section: "data")
        _ = try IDX.read(path: path, magic: magic, section: "data")
    }

    /// The first byte: bits 0-1 the format (3 is CSV again), bit 2 a header, bits 3-4 the
    /// number of text columns less one (3 is 3), bit 5 a score column, bit 6 a label column.
    private func readText(_ bytes: [UInt8]) throws {
        let choice = bytes.first ?? 0
        let format: TextFormat = [.csv, .tsv, .jsonl, .csv][Int(choice & 3)]
        let header = choice & 4 != 0 && format != .jsonl
        let count = min(3, Int(choice >> 3 & 3) + 1)
        let named = format == .jsonl || header
        func column(_ index: Int, _ name: String) -> TextColumn { named ? .name(name) : .position(index) }
        let columns = TextColumns(texts: (0..<count).map { column($0 + 1, ["anchor", "positive", "negative"][$0]) },
                                  score: choice & 32 != 0 ? column(count + 1, "score") : nil,
                                  label: choice & 64 != 0 ? column(count + 2, "label") : nil)
        let rows = try TextTable.read(Array(bytes.dropFirst()), path: "fuzz.\(format.rawValue)", format: format, columns: columns, header: header)
        _ = DatasetPreparation.labelNumbering(rows.labels ?? [])
    }

    private func loadConfig(_ bytes: [UInt8], in workspace: FuzzWorkspace) throws {
        let parts = bytes.split(separator: 0, omittingEmptySubsequences: false)
        workspace.write(Array(parts[0]), as: "fuzz.yaml")
        let overrides = parts.dropFirst().map { String(decoding: $0, as: UTF8.self) }
        let config = try ConfigLoader.load(file: workspace.directory + "/fuzz.yaml", overrides: overrides)
        // The resolved config a run writes must load back to itself (resume and `contrast eval` rely on it).
        let again = try ConfigLoader.load(yaml: config.yaml(), source: "resolved config")
        precondition(again == config, "config does not survive its own yaml(): \(config.yaml())")
    }
}

private extension CheckpointError {
    static let emptyInput = CheckpointError(.missing, file: "(fuzz input)", problem: "empty input", fix: "none")
}

/// Every regular file under `path` (or `path` itself), sorted: a corpus folder.
public func fuzzInputFiles(_ path: String) -> [String] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
    guard isDirectory.boolValue else { return [path] }
    let names = (try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []
    return names.sorted().map { path + "/" + $0 }.filter {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: $0, isDirectory: &directory) && !directory.boolValue
    }
}
