import Foundation
import Testing
@testable import Data

/// Writes a small Fashion-MNIST-like split: `count` images of 3x2 and `labelCount` labels.
private func writeSplit(directory: String, prefix: String = "train", count: Int, labelCount: Int? = nil) throws {
    let images = (0..<(count * 6)).map { UInt8($0 % 256) }
    let labels = (0..<(labelCount ?? count)).map { UInt8($0 % 10) }
    try IDX.write(path: "\(directory)/\(prefix)-images-idx3-ubyte.gz", magic: IDX.imagesMagic, dimensions: [count, 3, 2], bytes: images)
    try IDX.write(path: "\(directory)/\(prefix)-labels-idx1-ubyte.gz", magic: IDX.labelsMagic, dimensions: [labels.count], bytes: labels)
}

@Suite struct IDXTests {
    @Test func roundTripCompressedAndPlain() throws {
        try withTemporaryDirectory { directory in
            let bytes: [UInt8] = (0..<24).map { UInt8($0 * 7 % 256) }
            for compressed in [true, false] {
                let path = "\(directory)/x-\(compressed)"
                try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [4, 3, 2], bytes: bytes, compressed: compressed)
                let contents = try IDX.read(path: path, magic: IDX.imagesMagic)
                #expect(contents.dimensions == [4, 3, 2])
                #expect(contents.bytes == bytes)
                let limited = try IDX.read(path: path, magic: IDX.imagesMagic, limit: 2)
                #expect(limited.samplesRead == 2 && limited.bytes == Array(bytes[0..<12]))
            }
        }
    }

    @Test func loadSmallSplit() throws {
        try withTemporaryDirectory { directory in
            try writeSplit(directory: directory, count: 5)
            let dataset = try FashionMNIST.load(directory: directory, split: .train)
            #expect(dataset.count == 5 && dataset.height == 3 && dataset.width == 2 && dataset.pixelsPerImage == 6)
            #expect(dataset.labels == [0, 1, 2, 3, 4])
            var out = [Float](repeating: -1, count: 12)
            dataset.writePixels(samples: [2, 0], into: &out)
            let expected: [Float] = [12, 13, 14, 15, 16, 17, 0, 1, 2, 3, 4, 5].map { $0 / 255 }
            #expect(out == expected)
        }
    }

    @Test func missingFile() throws {
        let path = "/nonexistent-\(UUID().uuidString)/train-images-idx3-ubyte.gz"
        let error = #expect(throws: DataError.self) { try IDX.read(path: path, magic: IDX.imagesMagic) }
        #expect(error == .fileNotFound(path: path))
        #expect(error?.description.contains(path) == true && error?.description.contains("data.path") == true)
    }

    @Test func wrongMagic() throws {
        try withTemporaryDirectory { directory in
            try writeSplit(directory: directory, count: 2)
            let path = "\(directory)/train-labels-idx1-ubyte.gz"
            let error = #expect(throws: DataError.self) { try IDX.read(path: path, magic: IDX.imagesMagic) }
            #expect(error == .wrongMagic(path: path, expected: 0x803, got: 0x801))
            #expect(error?.description.contains("0x00000801") == true && error?.description.contains("0x00000803") == true)
        }
    }

    @Test func truncatedPixels() throws {
        try withTemporaryDirectory { directory in
            // The header claims 4 images of 3x2 (24 bytes); 10 follow.
            let path = "\(directory)/short.gz"
            try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [4, 3, 2], bytes: Array(repeating: 1, count: 10))
            let error = #expect(throws: DataError.self) { try IDX.read(path: path, magic: IDX.imagesMagic, section: "pixel data") }
            #expect(error == .truncated(path: path, section: "pixel data", expectedBytes: 24, gotBytes: 10))
            #expect(error?.description.contains("expected 24 bytes of pixel data, got 10") == true)
            // An empty file is truncated in its header.
            let empty = "\(directory)/empty"
            #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
            #expect(throws: DataError.truncated(path: empty, section: "header", expectedBytes: 16, gotBytes: 0)) {
                try IDX.read(path: empty, magic: IDX.imagesMagic)
            }
        }
    }

    @Test func corruptGzipStream() throws {
        try withTemporaryDirectory { directory in
            let path = "\(directory)/corrupt.gz"
            let bytes = (0..<6000).map { UInt8(($0 * 7919) % 251) }
            try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [1000, 3, 2], bytes: bytes)
            var file = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            // Damage the deflate data (after the 10-byte gzip header), keep the length.
            for i in 12..<min(file.count - 8, 40) { file[i] ^= 0x5A }
            try Data(file).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: DataError.self) { try IDX.read(path: path, magic: IDX.imagesMagic) }
            guard case .corruptStream(let errorPath, _)? = error else {
                Issue.record("expected corruptStream, got \(String(describing: error))"); return
            }
            #expect(errorPath == path)
            // A gzip file cut in half: zlib reports the unexpected end.
            try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [1000, 3, 2], bytes: bytes)
            let whole = try Data(contentsOf: URL(fileURLWithPath: path))
            try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: path))
            #expect(throws: DataError.self) { try IDX.read(path: path, magic: IDX.imagesMagic) }
        }
    }

    /// A rank keeps only its samples: the range is read exactly, in both formats, with a limit,
    /// and the samples before it are skipped through a buffer smaller than them.
    @Test func readsOnlyTheSamplesAsked() throws {
        try withTemporaryDirectory { directory in
            // 300,000 samples of 6 bytes: the skip runs through the 1 MiB buffer more than once.
            let count = 300_000
            let bytes = (0..<(count * 6)).map { (i: Int) -> UInt8 in UInt8(truncatingIfNeeded: i * 31 + i / 7) }
            for compressed in [true, false] {
                let path = "\(directory)/x-\(compressed)"
                try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [count, 3, 2], bytes: bytes, compressed: compressed)
                #expect(try IDX.dimensions(path: path, magic: IDX.imagesMagic) == [count, 3, 2])
                for range in [0..<3, 200_000..<250_001, 299_990..<300_000, 7..<7] {
                    let part = try IDX.read(path: path, magic: IDX.imagesMagic, samples: range)
                    #expect(part.firstSample == range.lowerBound && part.samplesRead == range.count)
                    #expect(part.bytes == Array(bytes[range.lowerBound * 6 ..< range.upperBound * 6]))
                }
                let limited = try IDX.read(path: path, magic: IDX.imagesMagic, limit: 10, samples: 4..<10)
                #expect(limited.bytes == Array(bytes[24..<60]))
                // Past what the file (here its first 10 samples) holds: too short for the range.
                #expect(throws: DataError.truncated(path: path, section: "data", expectedBytes: 66, gotBytes: 60)) {
                    try IDX.read(path: path, magic: IDX.imagesMagic, limit: 10, samples: 4..<11)
                }
            }
            // A file cut short inside the skipped samples or inside the kept ones: both truncated,
            // counting the bytes up to the range's end.
            let short = "\(directory)/short.gz"
            try IDX.write(path: short, magic: IDX.imagesMagic, dimensions: [10, 3, 2], bytes: Array(bytes[0..<20]))
            #expect(throws: DataError.truncated(path: short, section: "pixel data", expectedBytes: 60, gotBytes: 20)) {
                try IDX.read(path: short, magic: IDX.imagesMagic, samples: 8..<10, section: "pixel data")
            }
            #expect(throws: DataError.truncated(path: short, section: "pixel data", expectedBytes: 30, gotBytes: 20)) {
                try IDX.read(path: short, magic: IDX.imagesMagic, samples: 2..<5, section: "pixel data")
            }
        }
    }

    /// The chunked read hands over exactly the bytes the whole read returns, in chunks of whole
    /// samples no larger than asked (one sample's part when the chunk is smaller), and a file
    /// cut short inside the kept samples is the same error, after only whole chunks.
    @Test func chunkedReadGivesTheSameBytesInWholeSamples() throws {
        try withTemporaryDirectory { directory in
            let count = 5000
            let bytes = (0..<(count * 6)).map { (i: Int) -> UInt8 in UInt8(truncatingIfNeeded: i * 13 + i / 5) }
            let path = "\(directory)/x.gz"
            try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [count, 3, 2], bytes: bytes)
            for chunkBytes in [1, 5, 6, 7, 1000, 1 << 20] {
                for range in [0..<count, 17..<4001, 4999..<5000] {
                    var got: [UInt8] = [], sizes: [Int] = []
                    let (dimensions, samples) = try IDX.read(path: path, magic: IDX.imagesMagic, samples: range, chunkBytes: chunkBytes) {
                        got.append(contentsOf: $0); sizes.append($0.count)
                    }
                    #expect(dimensions == [count, 3, 2] && samples == range)
                    #expect(got == Array(bytes[range.lowerBound * 6 ..< range.upperBound * 6]))
                    let whole = chunkBytes >= 6 ? chunkBytes / 6 * 6 : chunkBytes
                    #expect(sizes.dropLast().allSatisfy { $0 == whole } && (sizes.last ?? 0) <= whole)
                }
            }
            let short = "\(directory)/short.gz"
            try IDX.write(path: short, magic: IDX.imagesMagic, dimensions: [10, 3, 2], bytes: Array(bytes[0..<40]))
            var handed = 0
            #expect(throws: DataError.truncated(path: short, section: "pixel data", expectedBytes: 48, gotBytes: 40)) {
                try IDX.read(path: short, magic: IDX.imagesMagic, samples: 2..<8, section: "pixel data", chunkBytes: 12) { handed += $0.count }
            }
            #expect(handed == 24)
        }
    }

    @Test func rowsHoldOnlyTheirRange() throws {
        try withTemporaryDirectory { directory in
            try writeSplit(directory: directory, count: 9)
            #expect(try FashionMNIST.sampleCount(directory: directory, split: .train) == 9)
            #expect(try FashionMNIST.sampleCount(directory: directory, split: .train, limit: 4) == 4)
            let whole = SampleRows(try FashionMNIST.load(directory: directory, split: .train))
            let part = try FashionMNIST.rows(directory: directory, split: .train, limit: 7, held: 3..<6)
            #expect(part.held == 3..<6 && part.totalCount == 7 && part.featureShape == [3, 2] && part.isImage)
            #expect(part.labels == [3, 4, 5])
            var fromPart = [Float](repeating: -1, count: 12), fromWhole = [Float](repeating: -2, count: 12)
            part.writeInputs([5, 3], into: &fromPart)
            whole.writeInputs([5, 3], into: &fromWhole)
            #expect(fromPart == fromWhole)
            // A header of no samples is refused here, before a sampler is made of it.
            let empty = directory + "/empty"
            try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
            try writeSplit(directory: empty, count: 0)
            #expect(throws: DataError.noSamples(path: empty + "/train-images-idx3-ubyte.gz")) {
                try FashionMNIST.sampleCount(directory: empty, split: .train)
            }
            try writeSplit(directory: directory, prefix: "t10k", count: 5, labelCount: 4)
            #expect(throws: DataError.countMismatch(imagesPath: directory + "/t10k-images-idx3-ubyte.gz", images: 5,
                                                    labelsPath: directory + "/t10k-labels-idx1-ubyte.gz", labels: 4)) {
                try FashionMNIST.sampleCount(directory: directory, split: .test)
            }
        }
    }

    @Test func countMismatch() throws {
        try withTemporaryDirectory { directory in
            try writeSplit(directory: directory, count: 5, labelCount: 4)
            let error = #expect(throws: DataError.self) { try FashionMNIST.load(directory: directory, split: .train) }
            guard case .countMismatch(_, 5, _, 4)? = error else {
                Issue.record("expected countMismatch 5 vs 4, got \(String(describing: error))"); return
            }
        }
    }

    @Test func descriptionsAreOneLine() {
        let errors: [DataError] = [
            .fileNotFound(path: "/x"), .cannotOpen(path: "/x", reason: "r"), .writeFailed(path: "/x", reason: "r"),
            .wrongMagic(path: "/x", expected: 1, got: 2), .truncated(path: "/x", section: "s", expectedBytes: 1, gotBytes: 0),
            .countMismatch(imagesPath: "/a", images: 1, labelsPath: "/b", labels: 2), .corruptStream(path: "/x", detail: "d"),
            .batchNotMultipleOfShards(globalBatchSize: 3, virtualShards: 2), .batchNotMultipleOfRanks(globalBatchSize: 3, worldSize: 2),
            .epochTooShort(sampleCount: 1, virtualShards: 1, perShard: 2), .noSamples(path: "/x"),
            .preparedBatchNotMultipleOfShards(directory: "/x", shards: 4, batchPerRank: 3, worldSize: 1),
            .preparedEpochTooShort(directory: "/x", sampleCount: 8, shards: 4, smallestShard: 2, batchPerRank: 16, worldSize: 1),
            .testSplitEmpty(fraction: 0.01, sampleCount: 10, testCount: 0),
        ]
        for error in errors { #expect(!error.description.contains("\n") && !error.description.isEmpty) }
    }
}

/// The real data set, where installed (Debian's dataset-fashion-mnist).
@Suite(.enabled(if: FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory + "/t10k-labels-idx1-ubyte.gz")))
struct FashionMNISTTests {
    @Test func trainSplit() throws {
        let train = try FashionMNIST.load(split: .train)
        #expect(train.count == 60_000 && train.height == 28 && train.width == 28)
        #expect(train.images.count == 60_000 * 784 && train.labels.count == 60_000)
        #expect(train.labels[0] == 9 && train.labels[1] == 0)
        #expect(train.labels.allSatisfy { $0 < 10 })
        // Balanced: 6,000 images per class.
        var perClass = [Int](repeating: 0, count: 10)
        for label in train.labels { perClass[Int(label)] += 1 }
        #expect(perClass == [Int](repeating: 6_000, count: 10))
    }

    @Test func testSplitAndLimit() throws {
        let test = try FashionMNIST.load(split: .test)
        #expect(test.count == 10_000 && test.labels[0] == 9 && test.labels[1] == 2)
        let first = try FashionMNIST.load(split: .test, limit: 100)
        #expect(first.count == 100 && first.images == Array(test.images[0..<(100 * 784)]))
        #expect(first.labels == Array(test.labels[0..<100]))
    }
}
