import Foundation
import Testing
import Storage
import TestSupport
@testable import Data

/// The Python with the `webdataset` package: $CONTRAST_VERIFY_PYTHON (launch/test.sh exports
/// it), else .venv-verify at the repository root (tools/verify-requirements.txt pins it).
private let verifyPython: String = {
    if let path = ProcessInfo.processInfo.environment["CONTRAST_VERIFY_PYTHON"], !path.isEmpty { return path }
    return repositoryRoot.appendingPathComponent(".venv-verify/bin/python").path
}()

/// Why the webdataset-written tars cannot be made here, or nil when they can.
private let webdatasetUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython) else {
        return "\(verifyPython) does not exist (launch/test.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    guard let outcome = try? runProcess(URL(fileURLWithPath: verifyPython), ["-c", "import webdataset"]), outcome.status == 0 else {
        return "\(verifyPython) cannot import webdataset"
    }
    return nil
}()

/// launch/test.sh counts this marker: printed when a Python-verified test runs, and in its skip reason.
private let marker = "python-verify"

/// One sample a test writes: key, image bytes and extension, caption, label.
private struct Sample: Codable, Equatable {
    var key: String
    var ext: String
    var image: [UInt8]
    var caption: String
    var label: Int
}

private func samples(_ count: Int, prefix: String = "") -> [Sample] {
    (0..<count).map { index in
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + (0..<(index * 37 % 200)).map { UInt8(truncatingIfNeeded: $0 * 7 + index) }
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, UInt8(index)]
        return Sample(key: prefix + String(format: "%06d", index), ext: index % 3 == 2 ? "png" : "jpg", image: index % 3 == 2 ? png : jpeg,
                      caption: "caption \(index): a ünïcödé \"photo\"", label: index % 4)
    }
}

/// What the prepared data set holds, in order.
private func readBack(_ directory: String) throws -> (keys: [String], images: [[UInt8]], captions: [String], labels: [Int64]) {
    let dataset = try ShardedDataset(directory: directory)
    var keys: [String] = [], images: [[UInt8]] = [], captions: [String] = [], labels: [Int64] = []
    for index in 0..<dataset.shardCount {
        let block = try dataset.readShard(index)
        for sample in 0..<block.count {
            keys.append(block.text("key", sample)!)
            images.append(Array(block.bytes("image", sample)!))
            captions.append(block.text("caption", sample) ?? "")
        }
        labels += block.labels ?? []
    }
    return (keys, images, captions, labels)
}

/// Writes `shards` tars with Python's tarfile in `format` (GNU, PAX or USTAR), samples in order.
private func writeTarfile(_ shards: [[Sample]], folder: String, format: String, python: String = "/usr/bin/python3") throws {
    let json = String(decoding: try JSONEncoder().encode(shards), as: UTF8.self)
    try runPython("""
        import io, json, sys, tarfile
        shards = json.loads(sys.argv[2])
        for n, samples in enumerate(shards):
            with tarfile.open(f"{sys.argv[1]}/shard-{n:06d}.tar", "w", format=getattr(tarfile, sys.argv[3] + "_FORMAT")) as tar:
                for s in samples:
                    for ext, data in [(s["ext"], bytes(s["image"])), ("txt", s["caption"].encode()), ("cls", str(s["label"]).encode())]:
                        info = tarfile.TarInfo(f"{s['key']}.{ext}"); info.size = len(data); info.mtime = 1700000000
                        tar.addfile(info, io.BytesIO(data))
        """, [folder, json, format], python: python)
}

@Suite(.serialized) struct WebDatasetTests {
    @Test func braceExpansionAsWebdatasetDoesIt() throws {
        #expect(try BraceExpansion.expand("d/shard-{000000..000002}.tar") == ["d/shard-000000.tar", "d/shard-000001.tar", "d/shard-000002.tar"])
        #expect(try BraceExpansion.expand("s{8..11}") == ["s8", "s9", "s10", "s11"])
        #expect(try BraceExpansion.expand("s{3..1}") == ["s3", "s2", "s1"])
        #expect(try BraceExpansion.expand("s{09..10}") == ["s09", "s10"])
        #expect(try BraceExpansion.expand("{a,b}-{0..1}") == ["a-0", "a-1", "b-0", "b-1"])
        #expect(try BraceExpansion.expand("{x,{y,z}1}") == ["x", "y1", "z1"])
        #expect(try BraceExpansion.expand("plain{x}.tar") == ["plain{x}.tar"])
        #expect(throws: DataError.self) { try BraceExpansion.expand("open{1..2") }
        #expect(throws: DataError.self) { try BraceExpansion.expand("{0..9999999}") }
    }

    /// The same patterns expand as the braceexpand package (webdataset's) expands them.
    static let patterns = ["s{09..10}", "s{1..010}", "s{-0..2}", "s{-01..1}", "s{3..1}", "{x}", "{a,b}-{0..1}", "{x,{y,z}1}",
                           "{1..7..3}", "{7..1..-2}", "{a..e..2}", "{c..a}", "a{,b}c", "{0..0}", "{00..2}", "x{1,2}{}", "{a}{b,c}",
                           "{0..-2}", "d/shard-{000000..000011}.tar", "{1..2}{a,b}{3..4}", "{a..B}", "{1..a}", "{..}", "{1...3}"]

    @Test(.enabled(if: webdatasetUnavailable == nil, "\(marker): skipped: \(webdatasetUnavailable ?? "")"))
    func braceExpansionMatchesBraceexpand() throws {
        print("\(marker): ran brace expansion against braceexpand")
        let folder = temporaryDirectory("braces").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let out = folder + "/expanded.json"
        try runPython("""
            import json, sys
            from braceexpand import braceexpand
            json.dump([list(braceexpand(p)) for p in json.loads(sys.argv[1])], open(sys.argv[2], "w"))
            """, [String(decoding: try JSONEncoder().encode(Self.patterns), as: UTF8.self), out], python: verifyPython)
        let expected = try JSONDecoder().decode([[String]].self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: out)))
        for (pattern, names) in zip(Self.patterns, expected) {
            #expect(try BraceExpansion.expand(pattern) == names, "\(pattern)")
        }
    }

    @Test func keysAndExtensionsAsWebdatasetSplitsThem() {
        #expect(WebDataset.keyAndExtension("dir/a.b/000001.seg.PNG")! == ("dir/a.b/000001", "seg.png"))
        #expect(WebDataset.keyAndExtension("k.jpg")! == ("k", "jpg"))
        #expect(WebDataset.keyAndExtension("dir/.hidden") == nil && WebDataset.keyAndExtension("noext") == nil)
    }

    /// Tars written by Python's tarfile in each of its formats (GNU long names and PAX headers
    /// come from a key longer than ustar's 100 bytes and a non-ASCII one) read back equal.
    @Test(arguments: ["GNU", "PAX", "USTAR"])
    func tarfileShardsRoundTrip(format: String) throws {
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var shards = [samples(5), samples(4, prefix: "b/")]
        if format != "USTAR" {
            shards[1][1].key = "deep/" + String(repeating: "long-", count: 30) + "key"
            shards[1][2].key = "ключ-ü"
        }
        try writeTarfile(shards, folder: folder, format: format)
        let outcome = try runContrast(ranks: 1, ["prepare", "webdataset", folder + "/shard-{000000..000001}.tar", "--out", folder + "/set",
                                                 "--shard-size", "4"])
        try #require(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.contains("set: 9 samples in 3 shards"), "\(outcome.output)")
        let all = shards.flatMap { $0 }
        let read = try readBack(folder + "/set")
        #expect(read.keys == all.map(\.key))
        #expect(read.images == all.map(\.image))
        #expect(read.captions == all.map(\.caption))
        #expect(read.labels == all.map { Int64($0.label) })
    }

    /// Tars written by the `webdataset` package's TarWriter read back equal, captions from .txt
    /// and, with --caption-field, from .json.
    @Test(.enabled(if: webdatasetUnavailable == nil, "\(marker): skipped: \(webdatasetUnavailable ?? "")"))
    func webdatasetTarWriterShardsRoundTrip() throws {
        print("\(marker): ran webdataset TarWriter round trip")
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let shards = [samples(6), samples(3, prefix: "z")]
        let json = String(decoding: try JSONEncoder().encode(shards), as: UTF8.self)
        try runPython("""
            import json, sys, webdataset as wds
            for n, samples in enumerate(json.loads(sys.argv[2])):
                with wds.TarWriter(f"{sys.argv[1]}/wds-{n}.tar") as sink:
                    for s in samples:
                        sink.write({"__key__": s["key"], s["ext"]: bytes(s["image"]), "txt": s["caption"], "cls": s["label"],
                                    "json": {"caption": s["caption"].upper(), "id": 1}})
            """, [folder, json], python: verifyPython)
        let all = shards.flatMap { $0 }
        let plain = try runContrast(ranks: 1, ["prepare", "webdataset", folder + "/wds-{0..1}.tar", "--out", folder + "/set", "--shards", "3"])
        try #require(plain.status == 0, "\(plain.error)")
        let read = try readBack(folder + "/set")
        #expect(read.keys == all.map(\.key) && read.images == all.map(\.image))
        #expect(read.captions == all.map(\.caption) && read.labels == all.map { Int64($0.label) })
        let fromJSON = try runContrast(ranks: 1, ["prepare", "webdataset", folder + "/wds-{0,1}.tar", "--out", folder + "/json",
                                                  "--shards", "3", "--caption-field", "caption"])
        try #require(fromJSON.status == 0, "\(fromJSON.error)")
        #expect(try readBack(folder + "/json").captions == all.map { $0.caption.uppercased() })
    }

    /// A tar that ends mid-member stops the command naming the shard; nothing is written.
    @Test func truncatedTarIsOneClearError() throws {
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try writeTarfile([samples(3)], folder: folder, format: "GNU")
        let path = folder + "/shard-000000.tar"
        let bytes = try #require(FileManager.default.contents(atPath: path))
        // Sample 0 takes 6 blocks (3 headers, 3 padded contents); sample 1's image header is block 7.
        try bytes.prefix(512 * 7 + 20).write(to: URL(fileURLWithPath: path))
        let outcome = try runContrast(ranks: 1, ["prepare", "webdataset", path, "--out", folder + "/set"])
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("webdataset shard \(path): the archive ends inside member 000001.jpg: it needs 41 bytes, 20 are left "
                                       + "(it ends mid-member) (byte 3072); the tar file is damaged or truncated"), "\(outcome.error)")
        #expect(outcome.error.split(separator: "\n").count == 1, "\(outcome.error)")
        try bytes.prefix(512 * 6 + 100).write(to: URL(fileURLWithPath: path))
        let header = try runContrast(ranks: 1, ["prepare", "webdataset", path, "--out", folder + "/set"])
        #expect(header.status != 0 && header.error.contains("the archive ends inside a header (100 of 512 bytes) (byte 3072)"), "\(header.error)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/set"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["shard-000000.tar"])
    }

    /// A sample without an image, a key seen again after other keys, a non-numeric .cls: each is
    /// skipped and counted, the first few named; --strict stops at the first, naming it.
    @Test func badSamplesAreCountedOrStopWithStrict() throws {
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try runPython("""
            import io, sys, tarfile
            members = [("a.jpg", b"\\xff\\xd8\\xffA"), ("a.txt", b"first"), ("b.txt", b"caption alone"),
                       ("c.jpg", b"\\xff\\xd8\\xffC"), ("c.txt", b"third"), ("a.txt", b"a again"), ("a.jpg", b"\\xff\\xd8\\xffA"),
                       ("d.jpg", b"\\xff\\xd8\\xffD"), ("d.txt", b"fourth"), ("d.cls", b"seven"),
                       ("e.png", b"\\x89PNG\\r\\n\\x1a\\nE"), ("e.txt", b"fifth")]
            with tarfile.open(sys.argv[1], "w") as tar:
                for name, data in members:
                    info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))
            """, [folder + "/bad.tar"])
        let outcome = try runContrast(ranks: 1, ["prepare", "webdataset", folder + "/bad.tar", "--out", folder + "/set", "--shards", "1"])
        try #require(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.contains("3 bad samples skipped"), "\(outcome.output)")
        #expect(outcome.output.contains("bad.tar: key b has no image (.jpg, .jpeg or .png), only b.txt"))
        #expect(outcome.output.contains("bad.tar: key a appears again after other keys (member a.txt)"))
        #expect(outcome.output.contains("bad.tar: d.cls holds \"seven\", not an integer class label"))
        let read = try readBack(folder + "/set")
        #expect(read.keys == ["a", "c", "e"] && read.captions == ["first", "third", "fifth"] && read.labels.isEmpty)

        let strict = try runContrast(ranks: 1, ["prepare", "webdataset", folder + "/bad.tar", "--out", folder + "/strict", "--strict"])
        #expect(strict.status != 0 && !FileManager.default.fileExists(atPath: folder + "/strict"))
        #expect(strict.error.contains("bad.tar: key b has no image (.jpg, .jpeg or .png), only b.txt (--strict stops at the first bad sample)"),
                "\(strict.error)")
        let missing = try runContrast(ranks: 1, ["prepare", "webdataset", folder + "/bad-{0..1}.tar", "--out", folder + "/none"])
        #expect(missing.status != 0 && missing.error.contains("webdataset shard \(folder)/bad-0.tar: not found"), "\(missing.error)")
    }

    /// --test-fraction splits the samples as prepare npy does, keeping every field with its sample.
    @Test func testFractionKeepsFieldsTogether() throws {
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let all = samples(10)
        try writeTarfile([all], folder: folder, format: "PAX")
        let summaries = try DatasetPreparation.webDataset(pattern: folder + "/shard-000000.tar", testFraction: (0.3, 5), out: folder + "/set",
                                                          layout: .count(2))
        #expect(summaries.map(\.sampleCount) == [7, 3])
        let rows = try DatasetPreparation.testRows(sampleCount: 10, fraction: 0.3, seed: 5)
        let test = try readBack(folder + "/set/test"), train = try readBack(folder + "/set/train")
        #expect(test.keys == rows.map { all[$0].key } && test.images == rows.map { all[$0].image })
        #expect(test.captions == rows.map { all[$0].caption } && test.labels == rows.map { Int64(all[$0].label) })
        #expect(train.keys == all.map(\.key).filter { !test.keys.contains($0) })
    }

    /// The second pass makes exactly the samples the first kept, from the same bytes: a shard
    /// that changed between the passes (one byte of an image) stops it, naming the shard.
    @Test func aShardThatChangesBetweenThePassesStops() throws {
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try writeTarfile([samples(3)], folder: folder, format: "GNU")
        let path = folder + "/shard-000000.tar"
        var bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
        var scan = WebDatasetScan()
        try bytes.withUnsafeBytes { try scan.read($0, shard: path, captionField: nil, strict: false) }
        try scan.requireSameFields(strict: false)
        var made: [WebDatasetSample] = []
        try bytes.withUnsafeBytes { try scan.samples($0, shard: 0, captionField: nil, store: .jpeg) { made.append($0) } }
        #expect(made.map(\.key) == ["000000", "000001", "000002"] && made.map(\.image) == samples(3).map(\.image))
        #expect(scan.count == 3 && scan.hasCaptions && scan.hasLabels)
        bytes[512 + 3] ^= 1   // sample 0's image (FF D8 FF E0): its content starts at byte 512
        let changed = bytes, read = scan
        let error = #expect(throws: DataError.self) {
            try changed.withUnsafeBytes { try read.samples($0, shard: 0, captionField: nil, store: .jpeg) { _ in } }
        }
        let message = error.map { "\($0)" } ?? ""
        #expect(message.contains("\(path): changed while preparing (read again, its bytes differ)"), "\(message)")
    }

    /// The CRC-32 of every file of a prepared data set, by path.
    private func checksums(_ folder: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try FileManager.default.subpathsOfDirectory(atPath: folder) {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isDirectory)
            guard !isDirectory.boolValue else { continue }
            let bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)))
            result[name] = bytes.withUnsafeBytes { CRC32.prefixedHex(CRC32.checksum($0)) }
        }
        return result
    }

    /// The two-pass writer writes the bytes the writer that held every sample wrote: the files of
    /// two prepares of one fixture (one set with a part shard; train/test with --test-fraction),
    /// by checksum, as the previous binary (main at b07fd86) wrote them from the same tars.
    @Test func preparedFilesAreTheBytesTheInMemoryWriterWrote() throws {
        let folder = temporaryDirectory("webdataset").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try writeTarfile([samples(7), samples(5, prefix: "b/")], folder: folder, format: "PAX")
        let pattern = folder + "/shard-{000000..000001}.tar"
        let one = try runContrast(ranks: 1, ["prepare", "webdataset", pattern, "--out", folder + "/one", "--shard-size", "5"])
        try #require(one.status == 0, "\(one.error)")
        let split = try runContrast(ranks: 1, ["prepare", "webdataset", pattern, "--out", folder + "/split", "--shards", "2",
                                               "--test-fraction", "0.25", "--split-seed", "3"])
        try #require(split.status == 0, "\(split.error)")
        let oneFiles = try checksums(folder + "/one"), splitFiles = try checksums(folder + "/split")
        #expect(oneFiles == Self.inMemoryWriterOne, "\(oneFiles)")
        #expect(splitFiles == Self.inMemoryWriterSplit, "\(splitFiles)")
    }

    /// The previous binary's files for the fixture above (/work/main at b07fd86, the same tars).
    static let inMemoryWriterOne = ["dataset.json": "0xcf9b24af", "shard-00000.bin": "0xd46b62be", "shard-00001.bin": "0x3f863316",
                                    "shard-00002.bin": "0x7be74c4f"]
    static let inMemoryWriterSplit = ["test/dataset.json": "0xebeb15cd", "test/shard-00000.bin": "0x471fb3f8",
                                      "test/shard-00001.bin": "0xc06cff79", "train/dataset.json": "0x8f3b24ed",
                                      "train/shard-00000.bin": "0x37cb1a8b", "train/shard-00001.bin": "0x1dbf1078"]

    /// Memory is a few shards, not the data set: 1,100 samples of 256 KiB images (288 MB, in
    /// four tars) prepare under `ulimit -d 64 MB` (RLIMIT_DATA, as PrepareImagesTests' memory test
    /// uses it and for the same reasons: it counts the heap and anonymous maps held samples would
    /// take, not the tars, which are mapped read-only from their files, nor the address space the
    /// libraries reserve). The limit bites: the same tars as one shard (--shards 1: the whole set
    /// in one shard's buffer, as the writer before the two passes held it) stop at it. The
    /// images are random bytes behind a JPEG signature and the set has no --size (so no decoding):
    /// what is measured is what the prepare holds, and the test takes seconds; --store pixels
    /// holds its decoded samples the same way, one output shard at a time.
    @Test func prepareWritesADataSetFourTimesTheMemoryLimit() throws {
        let limitMB = 64, count = 1_100, imageBytes = 256 * 1024
        #expect(count * imageBytes >= 4 * limitMB * 1_000_000, "the data set is 4x the limit")
        let root = temporaryDirectory("webdataset-big").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try runPython("""
            import io, random, sys, tarfile
            rng = random.Random(0)
            count, size, tars = int(sys.argv[2]), int(sys.argv[3]), 4
            for t in range(tars):
                with tarfile.open(f"{sys.argv[1]}/big-{t}.tar", "w") as tar:
                    for i in range(t * count // tars, (t + 1) * count // tars):
                        image = b"\\xff\\xd8\\xff" + rng.randbytes(size - 3)
                        for ext, data in [("jpg", image), ("txt", f"caption {i}".encode()), ("cls", str(i % 10).encode())]:
                            info = tarfile.TarInfo(f"{i:05d}.{ext}"); info.size = len(data); tar.addfile(info, io.BytesIO(data))
            open(f"{sys.argv[1]}/last.jpg", "wb").write(image)
            """, [root, "\(count)", "\(imageBytes)"])
        func limited(_ out: String, shards: Int) throws -> ProcessOutcome {
            try runContrastUnderDataLimit(["prepare", "webdataset", root + "/big-{0..3}.tar", "--out", out, "--shards", "\(shards)"], limitMB: limitMB)
        }
        let prepared = try limited(root + "/set", shards: 64)
        #expect(prepared.status == 0, "\(prepared.error.suffix(1500))")
        let dataset = try ShardedDataset(directory: root + "/set")
        #expect(dataset.manifest.sampleCount == count && dataset.manifest.field("image") != nil && dataset.shardCount == 64)
        // The last sample reads back as the last tar holds it.
        let last = try dataset.readShard(dataset.shardCount - 1)
        let expected = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: root + "/last.jpg")))
        #expect(last.bytes("image", last.count - 1).map { Array($0) } == expected)
        #expect(last.text("key", last.count - 1) == String(format: "%05d", count - 1) && last.labels?.last == Int64((count - 1) % 10))
        #expect(last.text("caption", last.count - 1) == "caption \(count - 1)")
        let whole = try limited(root + "/whole", shards: 1)
        #expect(whole.status != 0, "one shard of \(count * imageBytes / 1_000_000) MB fits in \(limitMB) MB: the limit does not bite")
        #expect(!FileManager.default.fileExists(atPath: root + "/whole"))
    }
}
