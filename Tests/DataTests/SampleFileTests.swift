import Foundation
import Testing
@testable import Data

/// `data.hold: disk`: samples kept in unnamed files give exactly what the same samples in
/// memory give, to every reader, and the files leave nothing behind.
@Suite struct SampleFileTests {
    /// The rows of samples 100 ..< 100 + n of a data set of n + 150, in memory and on disk.
    static func rows(directory: String, n: Int, featureShape: [Int], float: Bool, pairWidth: Int = 0,
                     labels: Bool = true) throws -> (memory: SampleRows, disk: SampleRows) {
        let width = featureShape.reduce(1, *)
        let bytes = (0..<(n * width)).map { (i: Int) -> UInt8 in UInt8((i * 37 + i / 7) % 256) }
        let floats = (0..<(n * width)).map { (i: Int) -> Float in Float(i % 113) * 0.25 - 9 }
        let pairs: [Float]? = pairWidth == 0 ? nil : (0..<(n * pairWidth)).map { (i: Int) -> Float in Float(i % 71) * -0.5 }
        let labelValues = labels ? (0..<n).map { Int64($0 % 10) } : nil
        let features: FeatureValues = float ? .float32(floats) : .uint8(bytes)
        let memory = SampleRows(held: 100..<(100 + n), totalCount: 100 + n + 50, featureShape: featureShape, features: features,
                                labels: labelValues, pairShape: pairs == nil ? nil : [pairWidth], pairs: pairs)
        let featureFile = try SampleFile.Writer(directory: directory, rowBytes: width * (float ? 4 : 1))
        if float { try featureFile.append(floats) } else { try featureFile.append(bytes) }
        let pairFile = try pairs.map { values in
            let writer = try SampleFile.Writer(directory: directory, rowBytes: pairWidth * 4)
            try writer.append(values)
            return writer
        }
        let disk = SampleRows(held: 100..<(100 + n), totalCount: 100 + n + 50, featureShape: featureShape,
                              features: float ? .float32([]) : .uint8([]), labels: labelValues,
                              pairShape: pairs == nil ? nil : [pairWidth],
                              disk: SampleRows.Disk(features: featureFile.finish(), pairs: pairFile?.finish()))
        return (memory, disk)
    }

    /// A batch from both: the same floats, bit for bit.
    static func batch(_ maker: BatchMaker, samples: [Int], epoch: Int) -> [UInt32] {
        var out = [Float](repeating: .nan, count: maker.floatsPerBatch)
        out.withUnsafeMutableBufferPointer { maker.makeBatch(samples: samples, epoch: epoch, into: $0.baseAddress!) }
        return out.map(\.bitPattern)
    }

    /// Bit-for-bit equality, reported as one line when it fails.
    static func sameBits(_ a: [Float], _ b: [Float]) -> Bool { a.map(\.bitPattern) == b.map(\.bitPattern) }

    @Test func rowsReadBackAsWrittenAndTheFileHasNoName() throws {
        try withTemporaryDirectory { directory in
            let writer = try SampleFile.Writer(directory: directory, rowBytes: 5)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
            let values = (0..<35).map { UInt8($0 * 3) }
            // A row may span appends (images larger than a chunk of the IDX reader).
            try writer.append(Array(values[0..<13]))
            try writer.append(Array(values[13...]))
            let file = writer.finish()
            #expect(file.rows == 7 && file.rowBytes == 5)
            var row = [UInt8](repeating: 0, count: 5)
            for index in [6, 0, 3] {
                row.withUnsafeMutableBytes { file.read(row: index, into: $0.baseAddress!) }
                #expect(row == Array(values[(index * 5)..<(index * 5 + 5)]))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        }
    }

    @Test func aDirectoryThatCannotHoldThemIsOneClearError() throws {
        let missing = "/nonexistent-\(UUID().uuidString)"
        let error = #expect(throws: DataError.self) { try SampleFile.Writer(directory: missing, rowBytes: 4) }
        let text = error?.description ?? ""
        #expect(text.contains(missing) && text.contains("data.spill_dir") && text.contains("data.hold: memory"), "\(text)")
        #expect(!text.contains("\n"))
    }

    /// A tmpfs (files that are memory) is told from a disk, by the mount holding the path.
    @Test func memoryFileSystemsAreRecognised() throws {
        let mounts = try String(contentsOfFile: "/proc/mounts", encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
        if mounts.contains(where: { $0.count > 2 && $0[1] == "/dev/shm" && $0[2] == "tmpfs" }) {
            #expect(SampleFile.isInMemory(directory: "/dev/shm"))
        }
        #expect(!SampleFile.isInMemory(directory: "/proc"))
        #expect(!SampleFile.isInMemory(directory: "/nonexistent-\(UUID().uuidString)"))
    }

    /// Image views, feature views (bytes and floats), no views, SupCon's labels, CLIP's pairs:
    /// every batch maker gives the same bits from disk as from memory.
    @Test func everyBatchMakerGivesTheSameBatchFromDisk() throws {
        try withTemporaryDirectory { directory in
            let samples = [163, 100, 131, 104, 150, 119]
            let images = try Self.rows(directory: directory, n: 64, featureShape: [28, 28], float: false)
            let viewMaker = ViewMaker(height: 28, width: 28)
            for epoch in [0, 3] {
                let twoViews = { (rows: SampleRows) in
                    TwoViewBatches(rows: rows, augmentation: .image(viewMaker), seed: 5, samplesPerBatch: samples.count,
                                   labels: LabelSubset(fraction: 0.5, seed: 5))
                }
                let same = Self.batch(twoViews(images.memory), samples: samples, epoch: epoch)
                    == Self.batch(twoViews(images.disk), samples: samples, epoch: epoch)
                #expect(same)
            }
            for float in [false, true] {
                let features = try Self.rows(directory: directory, n: 64, featureShape: [37], float: float, pairWidth: 9)
                let featureMaker = FeatureViewMaker(width: 37, settings: FeatureViewSettings(dropout: 0.2, mask: 0.1, noise: 0.3, scale: 0.5...2))
                for augmentation in [Augmentation.features(featureMaker), .none] {
                    let two = { (rows: SampleRows) in TwoViewBatches(rows: rows, augmentation: augmentation, seed: 2, samplesPerBatch: samples.count) }
                    let sameTwo = Self.batch(two(features.memory), samples: samples, epoch: 1) == Self.batch(two(features.disk), samples: samples, epoch: 1)
                    #expect(sameTwo)
                    let pair = { (rows: SampleRows) in PairBatches(rows: rows, augmentation: augmentation, seed: 2, samplesPerBatch: samples.count) }
                    let samePair = Self.batch(pair(features.memory), samples: samples, epoch: 1) == Self.batch(pair(features.disk), samples: samples, epoch: 1)
                    #expect(samePair)
                }
            }
            let imagePairs = try Self.rows(directory: directory, n: 64, featureShape: [28, 28], float: false, pairWidth: 16)
            let pair = { (rows: SampleRows) in PairBatches(rows: rows, augmentation: .image(viewMaker), seed: 4, samplesPerBatch: samples.count) }
            let same = Self.batch(pair(imagePairs.memory), samples: samples, epoch: 2) == Self.batch(pair(imagePairs.disk), samples: samples, epoch: 2)
            #expect(same)
        }
    }

    /// Evaluation's pass over all held rows reads them in runs of `diskChunk`: over 5,000
    /// samples (two runs and a part), in order and shuffled, the inputs and pairs are the same.
    @Test func inputsAndPairsOfManySamplesMatchAcrossRuns() throws {
        try withTemporaryDirectory { directory in
            let n = 5000
            #expect(n > SampleRows.diskChunk)
            for float in [false, true] {
                let both = try Self.rows(directory: directory, n: n, featureShape: [3], float: float, pairWidth: 2, labels: false)
                var order = Array(both.memory.held)
                var generator = SystemRandomNumberGenerator()
                for samples in [order, { order.shuffle(using: &generator); return order }()] {
                    var a = [Float](repeating: .nan, count: n * 3), b = a
                    a.withUnsafeMutableBufferPointer { both.memory.writeInputs(samples, into: $0.baseAddress!) }
                    b.withUnsafeMutableBufferPointer { both.disk.writeInputs(samples, into: $0.baseAddress!) }
                    #expect(Self.sameBits(a, b))
                    var c = [Float](repeating: .nan, count: n * 2), d = c
                    c.withUnsafeMutableBufferPointer { both.memory.writePairs(samples, into: $0.baseAddress!) }
                    d.withUnsafeMutableBufferPointer { both.disk.writePairs(samples, into: $0.baseAddress!) }
                    #expect(Self.sameBits(c, d))
                }
                // A range, as evaluation passes it.
                var e = [Float](repeating: .nan, count: 10 * 3), f = e
                e.withUnsafeMutableBufferPointer { both.memory.writeInputs(4100..<4110, into: $0.baseAddress!) }
                f.withUnsafeMutableBufferPointer { both.disk.writeInputs(4100..<4110, into: $0.baseAddress!) }
                #expect(Self.sameBits(e, f))
            }
        }
    }

    /// A prefix of the rows (evaluation's `data.test_limit`) holds the first samples, from
    /// memory and from the same files on disk alike.
    @Test func prefixHoldsTheFirstRows() throws {
        try withTemporaryDirectory { directory in
            let both = try Self.rows(directory: directory, n: 40, featureShape: [5], float: true, pairWidth: 3)
            for rows in [both.memory, both.disk] {
                #expect(rows.prefix(0) === rows && rows.prefix(40) === rows)
            }
            let (a, b) = (both.memory.prefix(9), both.disk.prefix(9))
            #expect(a.held == 100..<109 && b.held == 100..<109 && a.labels == Array(both.memory.labels!.prefix(9)) && b.labels == a.labels)
            var x = [Float](repeating: .nan, count: 9 * 5), y = x, u = [Float](repeating: .nan, count: 9 * 3), v = u
            x.withUnsafeMutableBufferPointer { a.writeInputs(a.held, into: $0.baseAddress!) }
            y.withUnsafeMutableBufferPointer { b.writeInputs(b.held, into: $0.baseAddress!) }
            u.withUnsafeMutableBufferPointer { a.writePairs(a.held, into: $0.baseAddress!) }
            v.withUnsafeMutableBufferPointer { b.writePairs(b.held, into: $0.baseAddress!) }
            #expect(Self.sameBits(x, y) && Self.sameBits(u, v))
            #expect(!x.contains { $0.isNaN } && !u.contains { $0.isNaN })
        }
    }

    /// The loaders write the same rows to disk as they hold in memory: a prepared data set read
    /// one shard at a time (features, labels, pairs) and an IDX split through 4 MiB chunks.
    @Test func loadersSpillTheRowsTheyWouldHold() throws {
        try withTemporaryDirectory { directory in
            let n = 300, width = 12
            let features = (0..<(n * width)).map { UInt8($0 % 251) }
            let pairs = (0..<(n * 4)).map { Float($0) * 0.5 }
            let folder = directory + "/set"
            _ = try ShardedDatasetWriter.write(SampleBlock(count: n, features: .uint8(features), labels: (0..<n).map { Int64($0 % 7) }, pairs: pairs),
                                               featureShape: [3, 4], pairShape: [4], to: folder, shardSize: 64)
            let dataset = try ShardedDataset(directory: folder)
            let memory = try SampleRows.read(dataset, shards: 1..<4)
            let disk = try SampleRows.read(dataset, shards: 1..<4, spillDirectory: directory)
            #expect(disk.disk != nil && disk.features.elementCount == 0 && disk.pairs == nil && disk.hasPairs)
            #expect(disk.held == memory.held && disk.labels == memory.labels && disk.featureShape == memory.featureShape)
            var a = [Float](repeating: 0, count: memory.count * width), b = a
            a.withUnsafeMutableBufferPointer { memory.writeInputs(memory.held, into: $0.baseAddress!) }
            b.withUnsafeMutableBufferPointer { disk.writeInputs(disk.held, into: $0.baseAddress!) }
            #expect(Self.sameBits(a, b))
            var c = [Float](repeating: 0, count: memory.count * 4), d = c
            c.withUnsafeMutableBufferPointer { memory.writePairs(memory.held, into: $0.baseAddress!) }
            d.withUnsafeMutableBufferPointer { disk.writePairs(disk.held, into: $0.baseAddress!) }
            #expect(Self.sameBits(c, d))

            // 9,000 images of 28x28 (7 MB): the held range crosses two 4 MiB chunks.
            let count = 9000
            let pixels = (0..<(count * 784)).map { UInt8(($0 / 784 + $0 % 784) % 256) }
            try IDX.write(path: directory + "/train-images-idx3-ubyte.gz", magic: IDX.imagesMagic, dimensions: [count, 28, 28], bytes: pixels)
            try IDX.write(path: directory + "/train-labels-idx1-ubyte.gz", magic: IDX.labelsMagic, dimensions: [count],
                          bytes: (0..<count).map { UInt8($0 % 10) })
            let held = 1234..<8765
            let inMemory = try FashionMNIST.rows(directory: directory, split: .train, held: held)
            let onDisk = try FashionMNIST.rows(directory: directory, split: .train, held: held, spillDirectory: directory)
            #expect(onDisk.disk?.features.rows == held.count && onDisk.labels == inMemory.labels && onDisk.featureShape == [28, 28])
            let samples = [1234, 8764, 5000, 4242]
            var e = [Float](repeating: 0, count: samples.count * 784), f = e
            e.withUnsafeMutableBufferPointer { inMemory.writeInputs(samples, into: $0.baseAddress!) }
            f.withUnsafeMutableBufferPointer { onDisk.writeInputs(samples, into: $0.baseAddress!) }
            #expect(Self.sameBits(e, f))
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: directory))
                    == ["set", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"])
        }
    }
}
