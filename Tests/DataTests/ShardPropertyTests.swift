import Foundation
import Tensor
import Testing
@testable import Data

/// Seeded random properties of the sharded data-set format: whatever the writer writes reads
/// back equal, and a damaged file is always a thrown `DataError`, never a trap or wrong samples.
@Suite struct ShardPropertyTests {
    /// A random data set: 1...40 samples, a 1-3 dimensional feature shape, uint8 or float32
    /// features (any bit pattern, NaNs included; absent in a quarter of the sets when named
    /// fields are present), optional labels, optional pairs, and 0-3 named fields (format 1.1):
    /// variable-length utf8 or bytes values of 0-20 bytes (empty ones included), float32 scalars,
    /// int64 [2].
    static func randomSet(_ random: inout RandomStream) -> (block: SampleBlock, shape: [Int]?, pairShape: [Int]?, fields: [NamedField]) {
        let count = 1 + random.nextInt(below: 40)
        let shape = (0..<(1 + random.nextInt(below: 3))).map { _ in 1 + random.nextInt(below: 5) }
        let elements = count * shape.reduce(1, *)
        let features: FeatureValues = random.nextInt(below: 2) == 0
            ? .uint8((0..<elements).map { _ in UInt8(truncatingIfNeeded: random.nextUInt32()) })
            : .float32((0..<elements).map { _ in Float(bitPattern: random.nextUInt32()) })
        let labels = random.nextInt(below: 2) == 0 ? nil
            : (0..<count).map { _ in Int64(bitPattern: UInt64(random.nextUInt32()) << 32 | UInt64(random.nextUInt32())) }
        let pairShape = random.nextInt(below: 3) == 0 ? [1 + random.nextInt(below: 4)] : nil
        let pairs = pairShape.map { shape in (0..<(count * shape[0])).map { _ in Float(bitPattern: random.nextUInt32()) } }
        var fields: [NamedField] = [], values: [String: FieldValues] = [:]
        for index in 0..<random.nextInt(below: 4) {
            let name = "field_\(index)"
            switch random.nextInt(below: 4) {
            case 0, 1:
                fields.append(NamedField(name: name, dtype: random.nextInt(below: 2) == 0 ? .utf8 : .bytes))
                values[name] = .variable(VariableValues((0..<count).map { _ in
                    (0..<random.nextInt(below: 21)).map { _ in UInt8(truncatingIfNeeded: random.nextUInt32()) }
                }))
            case 2:
                fields.append(NamedField(name: name, dtype: .float32, shape: []))
                values[name] = .float32((0..<count).map { _ in Float(bitPattern: random.nextUInt32()) })
            default:
                fields.append(NamedField(name: name, dtype: .int64, shape: [2]))
                values[name] = .int64((0..<(2 * count)).map { _ in Int64(random.nextUInt32()) - (1 << 31) })
            }
        }
        let withFeatures = fields.isEmpty || random.nextInt(below: 4) != 0
        return (SampleBlock(count: count, features: withFeatures ? features : nil, labels: labels, pairs: pairs, fields: values),
                withFeatures ? shape : nil, pairShape, fields)
    }

    static func folder() throws -> String {
        let path = NSTemporaryDirectory() + "contrast-shard-property-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// All shards concatenated into one block (features compared by bit pattern through `bits`).
    static func readAll(_ dataset: ShardedDataset) throws -> SampleBlock {
        var features: FeatureValues?
        var labels: [Int64]?, pairs: [Float]?
        var fields: [String: FieldValues] = [:]
        for index in 0..<dataset.shardCount {
            let block = try dataset.readShard(index)
            for (name, more) in block.fields {
                switch (fields[name], more) {
                case (nil, _): fields[name] = more
                case (.float32(let a), .float32(let b)): fields[name] = .float32(a + b)
                case (.int64(let a), .int64(let b)): fields[name] = .int64(a + b)
                case (.variable(var a), .variable(let b)):
                    for value in 0..<b.count { a.append(b[value]) }
                    fields[name] = .variable(a)
                default: Issue.record("shard \(index) changes the type of field \(name)")
                }
            }
            switch (features, block.features) {
            case (nil, _): features = block.features
            case (_, nil): Issue.record("shard \(index) has no features")
            case (.uint8(let a), .uint8(let b)): features = .uint8(a + b)
            case (.float32(let a), .float32(let b)): features = .float32(a + b)
            default: Issue.record("shard \(index) changes the feature type")
            }
            if let more = block.labels { labels = (labels ?? []) + more }
            if let more = block.pairs { pairs = (pairs ?? []) + more }
        }
        return SampleBlock(count: dataset.sampleCount, features: features, labels: labels, pairs: pairs, fields: fields)
    }

    /// Equality by bit pattern (NaN payloads included).
    static func bits(_ block: SampleBlock) -> [UInt64] {
        var out = [UInt64(block.count)]
        switch block.features {
        case .uint8(let values): out += [0] + values.map { UInt64($0) }
        case .float32(let values): out += [1] + values.map { UInt64($0.bitPattern) }
        case nil: out += [2]
        }
        for name in block.fields.keys.sorted() {
            out += [UInt64(name.count)] + name.utf8.map { UInt64($0) }
            switch block.fields[name]! {
            case .uint8(let values): out += [0] + values.map { UInt64($0) }
            case .float32(let values): out += [1] + values.map { UInt64($0.bitPattern) }
            case .int64(let values): out += [2] + values.map { UInt64(bitPattern: $0) }
            case .variable(let values): out += [3] + values.offsets.map { UInt64($0) } + values.bytes.map { UInt64($0) }
            }
        }
        out += [block.labels == nil ? 0 : 1] + (block.labels ?? []).map { UInt64(bitPattern: $0) }
        out += [block.pairs == nil ? 0 : 1] + (block.pairs ?? []).map { UInt64($0.bitPattern) }
        return out
    }

    @Test func writtenDataSetsReadBackEqual() throws {
        var random = RandomStream(seed: 20261123, stream: 1)
        for _ in 0..<25 {
            let (block, shape, pairShape, fields) = Self.randomSet(&random)
            let layout: ShardLayout = random.nextInt(below: 2) == 0 ? .size(1 + random.nextInt(below: block.count))
                                                                   : .count(1 + random.nextInt(below: min(block.count, 6)))
            let folder = try Self.folder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let written = try ShardedDatasetWriter.write(block, featureShape: shape, pairShape: pairShape, fields: fields, to: folder,
                                                         layout: layout, level: Int32(1 + random.nextInt(below: 5)))
            let dataset = try ShardedDataset(directory: folder)
            #expect(dataset.manifest == written)
            #expect(Self.bits(try Self.readAll(dataset)) == Self.bits(block), "layout \(layout), shape \(shape)")
        }
    }

    @Test func manifestEncodingRoundTrips() throws {
        var random = RandomStream(seed: 20261123, stream: 2)
        for _ in 0..<50 {
            let shards = (0..<(1 + random.nextInt(below: 4))).map { index in
                ShardManifest.Shard(file: ShardedDatasetWriter.shardFileName(index), firstSample: random.nextInt(below: 1 << 30),
                                    sampleCount: random.nextInt(below: 1 << 20), bytes: random.nextInt(below: 1 << 30),
                                    crc32: String(format: "0x%08x", random.nextUInt32()),
                                    frames: [.init(section: "features", offset: random.nextInt(below: 1 << 20),
                                                   bytes: random.nextInt(below: 1 << 20), encoding: .shuffleZstd)])
            }
            let manifest = ShardManifest(format: ShardManifest.formatName, version: "1.\(random.nextInt(below: 9))",
                                         sampleCount: random.nextInt(below: 1 << 30),
                                         features: FieldLayout(dtype: .float32, shape: [random.nextInt(below: 99), 3]),
                                         labels: random.nextInt(below: 2) == 0 ? nil : FieldLayout(dtype: .int64, shape: []),
                                         pairs: nil, shards: shards,
                                         fields: random.nextInt(below: 2) == 0 ? nil : [NamedField(name: "text", dtype: .utf8),
                                                                                       NamedField(name: "score", dtype: .float32, shape: [])])
            let decoded = try ShardManifest.decoder().decode(ShardManifest.self, from: try ShardManifest.encoder().encode(manifest))
            #expect(decoded == manifest)
        }
    }

    /// Truncating a shard file, or flipping any bit of it, is a thrown DataError (sizes, crc32,
    /// zstd checksums); flipping a bit of the manifest is a DataError or reads the same samples.
    @Test func damagedFilesThrowOrReadTheSameSamples() throws {
        var random = RandomStream(seed: 20261123, stream: 3)
        for _ in 0..<20 {
            let (block, shape, pairShape, fields) = Self.randomSet(&random)
            let folder = try Self.folder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let written = try ShardedDatasetWriter.write(block, featureShape: shape, pairShape: pairShape, fields: fields, to: folder,
                                                         layout: .count(min(block.count, 2)))
            let shardPath = folder + "/" + written.shards[0].file
            let manifestPath = folder + "/" + ShardManifest.fileName
            let shard = [UInt8](FileManager.default.contents(atPath: shardPath)!)
            let manifest = [UInt8](FileManager.default.contents(atPath: manifestPath)!)

            func outcome() -> Result<[UInt64], Error> { Result { Self.bits(try Self.readAll(try ShardedDataset(directory: folder))) } }
            func expectDataError(_ what: String) {
                if case .failure(let error) = outcome() { #expect(error is DataError, "\(what): \(error)") } else {
                    Issue.record("\(what) was read")
                }
            }

            let cut = random.nextInt(below: shard.count)
            try Foundation.Data(shard[..<cut]).write(to: URL(fileURLWithPath: shardPath))
            expectDataError("shard truncated to \(cut) of \(shard.count) bytes")

            var flipped = shard
            let bit = random.nextInt(below: shard.count * 8)
            flipped[bit / 8] ^= UInt8(1 << (bit % 8))
            try Foundation.Data(flipped).write(to: URL(fileURLWithPath: shardPath))
            expectDataError("shard bit \(bit) flipped")
            try Foundation.Data(shard).write(to: URL(fileURLWithPath: shardPath))

            for _ in 0..<8 {
                var damaged = manifest
                let bit = random.nextInt(below: manifest.count * 8)
                damaged[bit / 8] ^= UInt8(1 << (bit % 8))
                try Foundation.Data(damaged).write(to: URL(fileURLWithPath: manifestPath))
                switch outcome() {
                case .failure(let error): #expect(error is DataError, "manifest bit \(bit): \(error)")
                case .success(let samples): #expect(samples == Self.bits(block), "manifest bit \(bit) flipped reads other samples")
                }
            }
        }
    }
}
