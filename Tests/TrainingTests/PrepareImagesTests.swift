import Foundation
import Testing
import TestSupport
@testable import Data

/// `contrast prepare images` end to end through the binary: Fashion-MNIST as PNG files trains bit
/// for bit like the IDX files, the output is the same bytes at any rank and thread count, and bad
/// input is one line and nothing written.
@Suite(.serialized, .enabled(if: pillowUnavailable == nil, "\(pillowUnavailable ?? "")"))
struct PrepareImagesTests {
    /// Fashion-MNIST's first 2,048 training and 512 test images as gray PNGs (PIL), in IDX order.
    static let fashionPNGs = imageFixtures("fmnist", ["2048", "512", FashionMNIST.defaultDirectory], label: "fmnist-png")
    /// PNGs and JPEGs of every kind, sorted into three class folders, with a file that is not an image
    /// and a JPEG cut short (libjpeg's default handler would print a warning for it).
    static let mixedFolder: String = {
        let fixtures = imageFixtures("decode", label: "mixed")
        let root = temporaryDirectory("mixed-classes").path
        let names = try! FileManager.default.contentsOfDirectory(atPath: fixtures).filter { !$0.hasSuffix(".npy") && !$0.contains("cmyk") }.sorted()
        for (index, name) in names.enumerated() {
            let folder = root + "/" + ["ant", "bee", "cow"][index % 3]
            try! FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try! FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: folder + "/" + name)
        }
        try! Data("not an image".utf8).write(to: URL(fileURLWithPath: root + "/bee/notes.txt"))
        let jpeg = try! Data(contentsOf: URL(fileURLWithPath: fixtures + "/jpeg-rgb420.jpg"))
        try! jpeg.prefix(jpeg.count / 2).write(to: URL(fileURLWithPath: root + "/cow/zz-truncated.jpg"))
        return root
    }()

    func prepare(_ arguments: [String], ranks: Int = 1) throws -> ProcessOutcome {
        try runContrast(ranks: ranks, ["prepare", "images"] + arguments, timeout: 600)
    }

    /// Every file of a folder, by name.
    func contents(_ folder: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for name in try FileManager.default.subpathsOfDirectory(atPath: folder) {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isDirectory)
            if !isDirectory.boolValue { result[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)) }
        }
        return result
    }

    /// The PNGs with their labels CSV, --channels 1 --size 28, cut like `prepare fashion-mnist
    /// --shard-size 256`: the shard files are byte for byte those of the IDX path (same pixels, same
    /// labels, same order), the features [1, 28, 28], and 6 steps of training give the same weights.
    @Test func fashionMNISTAsPNGFilesTrainsBitForBitLikeTheIDXFiles() throws {
        let root = temporaryDirectory("fmnist-images").path
        let images = root + "/images", idx = root + "/idx"
        let prepared = try prepare([Self.fashionPNGs + "/train", "--labels", Self.fashionPNGs + "/train.csv",
                                    "--test-dir", Self.fashionPNGs + "/test", "--test-labels", Self.fashionPNGs + "/test.csv",
                                    "--channels", "1", "--size", "28", "--shard-size", "256", "--out", images])
        #expect(prepared.status == 0, "\(prepared.error)")
        #expect(prepared.output.contains("\(images)/train: 2048 samples in 8 shards"), "\(prepared.output)")
        let reference = try runProcess(contrastExecutable, ["prepare", "fashion-mnist", "--out", idx, "--shard-size", "256", "--limit", "2048"])
        #expect(reference.status == 0, "\(reference.error)")
        let fromImages = try contents(images + "/train"), fromIDX = try contents(idx + "/train")
        #expect(fromImages.keys.filter { $0.hasPrefix("shard-") }.count == 8)
        for (name, bytes) in fromIDX where name.hasPrefix("shard-") { #expect(fromImages[name] == bytes, "\(name) differs") }
        let manifest = try ShardedDataset.readManifest(directory: images + "/train")
        #expect(manifest.features == FieldLayout(dtype: .uint8, shape: [1, 28, 28]))
        #expect(manifest.classes == nil, "integer labels from a CSV carry no class names")
        #expect(try ShardedDataset.readManifest(directory: images + "/test").sampleCount == 512)

        func train(_ dataset: String, _ path: String) throws -> String {
            let run = temporaryDirectory("fmnist-images-run").appendingPathComponent("run").path
            let overrides = ["run_dir=\(run)", "data.dataset=\(dataset)", "data.path=\(path)", "data.batch_per_rank=64", "train.max_steps=6",
                             "communication.precision=fp32", "eval.knn_every_epochs=0"] + (dataset == "prepared" ? ["data.train_limit=0"] : [])
            let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml"] + overrides.flatMap { ["--set", $0] })
            #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
            return run
        }
        let a = try train("prepared", images), b = try train("fashion-mnist", FashionMNIST.defaultDirectory)
        let weightsA = try Data(contentsOf: URL(fileURLWithPath: a + "/weights.bin"))
        #expect(weightsA == (try Data(contentsOf: URL(fileURLWithPath: b + "/weights.bin"))))
    }

    /// The same data set, byte for byte (shards and manifest), from 1 rank x 2 threads, 1 x 1,
    /// 2 ranks x 1 thread and 3 ranks x 2 threads; the two bad files are skipped, counted and named,
    /// and nothing is printed on standard error.
    @Test func outputIsTheSameBytesForAnyRankAndThreadCount() throws {
        var outputs: [[String: Data]] = []
        for (ranks, threads) in [(1, 2), (1, 1), (2, 1), (3, 2)] {
            let out = temporaryDirectory("images-ranks").path + "/set"
            let outcome = try prepare([Self.mixedFolder, "--out", out, "--size", "24", "--shards", "4", "--threads", "\(threads)",
                                       "--test-fraction", "0.25"], ranks: ranks)
            #expect(outcome.status == 0, "P=\(ranks) T=\(threads): \(outcome.error)")
            #expect(outcome.output.contains("skipped 2 of 18 files that are not readable JPEG or PNG images: \(Self.mixedFolder)/bee/notes.txt "
                                            + "(not a JPEG or PNG file (its first bytes are neither signature)); \(Self.mixedFolder)/cow/zz-truncated.jpg "
                                            + "(JPEG: Premature end of JPEG file)"), "\(outcome.output)")
            if ranks == 1 { #expect(outcome.error.isEmpty, "the decoders print nothing: \(outcome.error)") }
            outputs.append(try contents(out))
        }
        #expect(outputs[0].keys.sorted() == ["test/dataset.json", "test/shard-00000.bin", "test/shard-00001.bin", "test/shard-00002.bin",
                                             "test/shard-00003.bin", "train/dataset.json", "train/shard-00000.bin", "train/shard-00001.bin",
                                             "train/shard-00002.bin", "train/shard-00003.bin"])
        for output in outputs.dropFirst() { #expect(output == outputs[0]) }
    }

    /// Class folders: labels in sorted folder-name order, the names in the manifest, features [3, S, S].
    @Test func classFoldersGiveLabelsAndTheClassTable() throws {
        let out = temporaryDirectory("images-classes").path + "/set"
        let outcome = try prepare([Self.mixedFolder, "--out", out, "--size", "16", "--shards", "1"])
        #expect(outcome.status == 0, "\(outcome.error)")
        let dataset = try ShardedDataset(directory: out)
        #expect(dataset.manifest.classes == ["ant", "bee", "cow"])
        #expect(dataset.manifest.features?.shape == [3, 16, 16])
        let block = try dataset.readShard(0)
        #expect(block.labels == [Int64](repeating: 0, count: 6) + [Int64](repeating: 1, count: 5) + [Int64](repeating: 2, count: 5))
        // The first sample is ant/'s first file in byte order, decoded and fitted as the library does.
        let first = try FileManager.default.contentsOfDirectory(atPath: Self.mixedFolder + "/ant").sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }[0]
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.mixedFolder + "/ant/" + first)))
        let expected = try ImageDecoding.decode(bytes).converted(channels: 3).fitted(size: 16).planar
        #expect(try ImageDecoding.sample(bytes, size: 16, channels: 3) == expected)
        guard case .uint8(let features) = block.features else { Issue.record("features are not uint8"); return }
        #expect(Array(features.prefix(3 * 16 * 16)) == expected)
    }

    /// --test-dir with class folders takes the training folder's labels (a subset of its classes will do);
    /// a class the training folder lacks is one line naming the folder.
    @Test func testDirTakesTheTrainingClasses() throws {
        let root = temporaryDirectory("images-testdir").path, fm = FileManager.default
        for (folder, file) in [("bee", "png-rgb.png"), ("cow", "jpeg-gray.jpg")] {
            try fm.createDirectory(atPath: root + "/test/" + folder, withIntermediateDirectories: true)
            let source = try fm.subpathsOfDirectory(atPath: Self.mixedFolder).first { $0.hasSuffix("/" + file) }!
            try fm.copyItem(atPath: Self.mixedFolder + "/" + source, toPath: root + "/test/" + folder + "/" + file)
        }
        let outcome = try prepare([Self.mixedFolder, "--test-dir", root + "/test", "--out", root + "/set", "--size", "8", "--shards", "2"])
        #expect(outcome.status == 0, "\(outcome.error)")
        let test = try ShardedDataset(directory: root + "/set/test")
        #expect(test.manifest.classes == ["ant", "bee", "cow"])
        #expect(try (0..<test.shardCount).flatMap { try test.readShard($0).labels ?? [] } == [1, 2])
        try fm.createDirectory(atPath: root + "/test/dog", withIntermediateDirectories: true)
        try fm.copyItem(atPath: root + "/test/bee/png-rgb.png", toPath: root + "/test/dog/a.png")
        let refused = try prepare([Self.mixedFolder, "--test-dir", root + "/test", "--out", root + "/other", "--size", "8"])
        #expect(refused.status == 1)
        #expect(refused.error == "contrast: error: \(root)/test/dog: is a class the training folder does not have; rename or remove it\n")
        #expect(!fm.fileExists(atPath: root + "/other"))
    }

    /// --strict stops at the first bad file (in path order), naming it, on rank 0 only (mpirun adds its
    /// own lines about the exit status after it); nothing is written.
    @Test func strictStopsAtTheFirstBadFile() throws {
        let out = temporaryDirectory("images-strict").path + "/set"
        let outcome = try prepare([Self.mixedFolder, "--out", out, "--size", "16", "--strict"], ranks: 2)
        #expect(outcome.status != 0)
        let lines = outcome.error.split(separator: "\n").map(String.init)
        #expect(lines.first == "contrast: error: \(Self.mixedFolder)/bee/notes.txt: not a JPEG or PNG file (its first bytes are neither "
                + "signature); remove or repair the file, or drop --strict to skip such files", "\(outcome.error)")
        #expect(lines.filter { $0.hasPrefix("contrast: error:") }.count == 1, "one rank reports it: \(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// Each bad input: one line naming the folder or file and the fix, exit 1, and no output folder
    /// (nor a temporary sibling) left behind.
    @Test func badInputIsOneLineAndWritesNothing() throws {
        let root = temporaryDirectory("images-bad").path
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/hollow/full", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/hollow/none", withIntermediateDirectories: true)
        try fm.copyItem(atPath: Self.mixedFolder + "/ant/png-rgb.png", toPath: root + "/hollow/full/a.png")
        try fm.createDirectory(atPath: root + "/junk", withIntermediateDirectories: true)
        try Data("a".utf8).write(to: URL(fileURLWithPath: root + "/junk/a.jpg"))
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0]).write(to: URL(fileURLWithPath: root + "/junk/b.png"))
        try fm.createDirectory(atPath: root + "/flat", withIntermediateDirectories: true)
        try fm.copyItem(atPath: Self.mixedFolder + "/ant/png-rgb.png", toPath: root + "/flat/a.png")
        try Data("filename,label\na.png,1,extra\n".utf8).write(to: URL(fileURLWithPath: root + "/ragged.csv"))
        try Data("a.png,1\nmissing.png,0\n".utf8).write(to: URL(fileURLWithPath: root + "/missing.csv"))
        try fm.createDirectory(atPath: root + "/taken", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: root + "/taken/dataset.json"))

        let cases: [(arguments: [String], message: String)] = [
            ([root + "/nowhere"], "\(root)/nowhere: no such folder; give the folder that holds the images (or their class subfolders)"),
            ([root + "/ragged.csv"], "\(root)/ragged.csv: is a file, not a folder; give the folder that holds the images"),
            ([root + "/empty"], "\(root)/empty: holds no files; put the images in it (one subfolder per class, or a flat folder)"),
            ([root + "/hollow"], "\(root)/hollow/none: class folder holds no files; add its images or remove the folder"),
            ([root + "/junk"], "\(root)/junk: none of its 2 files decodes as a JPEG or PNG (the first, \(root)/junk/a.jpg: not a JPEG or PNG "
             + "file (its first bytes are neither signature)); point contrast prepare images at a folder of JPEG or PNG files"),
            ([root + "/flat", "--labels", root + "/ragged.csv"],
             "\(root)/ragged.csv: row 2 is not two fields, filename,label (quote a field that holds a comma); fix the row"),
            ([root + "/flat", "--labels", root + "/missing.csv"],
             "\(root)/missing.csv: row 2: \(root)/flat/missing.png is not a file; fix the name (relative to \(root)/flat) or drop the row"),
        ]
        for (arguments, message) in cases {
            let out = root + "/out"
            let outcome = try prepare(arguments + ["--out", out, "--size", "8", "--shards", "1"])
            #expect(outcome.status == 1)
            #expect(outcome.error == "contrast: error: \(message)\n")
            #expect(!fm.fileExists(atPath: out))
        }
        let taken = try prepare([root + "/flat", "--out", root + "/taken", "--size", "8", "--shards", "1"])
        #expect(taken.status == 1)
        #expect(taken.error.contains("the output folder \(root)/taken is not empty"), "\(taken.error)")
        #expect(try fm.contentsOfDirectory(atPath: root + "/taken") == ["dataset.json"], "the old folder is untouched")
        let replaced = try prepare([root + "/flat", "--out", root + "/taken", "--size", "8", "--shards", "1", "--overwrite"])
        #expect(replaced.status == 0, "\(replaced.error)")
        #expect(try ShardedDataset(directory: root + "/taken").sampleCount == 1)
        #expect(try fm.contentsOfDirectory(atPath: root).filter { $0.hasPrefix(".") }.isEmpty, "no temporary sibling is left")
    }

    /// A [3, S, S] set trains (smoke.yaml's mlp, on RGB views), and the cnn encoder, which reads one
    /// channel, refuses it in one line before the run directory exists.
    @Test func rgbSetTrainsAndTheCNNRefusesItBeforeTheRun() throws {
        let out = temporaryDirectory("images-rgb").path + "/set"
        let prepared = try prepare([Self.mixedFolder, "--out", out, "--size", "8", "--shards", "2", "--test-fraction", "0.25"])
        #expect(prepared.status == 0, "\(prepared.error)")
        func train(_ extra: [String]) throws -> (ProcessOutcome, String) {
            let run = temporaryDirectory("images-rgb-run").appendingPathComponent("run").path
            let overrides = ["run_dir=\(run)", "data.dataset=prepared", "data.path=\(out)", "data.batch_per_rank=6", "train.max_steps=2",
                             "data.train_limit=0", "data.test_limit=0", "data.virtual_shards=2", "eval.knn_every_epochs=0"] + extra
            return (try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml"] + overrides.flatMap { ["--set", $0] }), run)
        }
        let (trained, _) = try train([])
        #expect(trained.status == 0, "\(trained.error.suffix(1500))")
        let (refused, run) = try train(["model.encoder=cnn"])
        #expect(refused.status == 1)
        #expect(refused.error.split(separator: "\n").count == 1 && refused.error.contains("model.encoder"), "\(refused.error)")
        #expect(refused.error.contains("3 channels") && refused.error.contains("resnet or vit"),
                "the message names the data's channels and the fix: \(refused.error)")
        #expect(!FileManager.default.fileExists(atPath: run))
    }

    /// Every sample's uint8 features, or its `image` bytes, and labels, in order.
    func readAll(_ directory: String) throws -> (features: [UInt8], images: [[UInt8]], labels: [Int64], manifest: ShardManifest) {
        let dataset = try ShardedDataset(directory: directory)
        var features: [UInt8] = [], images: [[UInt8]] = [], labels: [Int64] = []
        for shard in 0..<dataset.shardCount {
            let block = try dataset.readShard(shard)
            if case .uint8(let values) = block.features { features += values }
            for sample in 0..<block.count { if let bytes = block.bytes("image", sample) { images.append(Array(bytes)) } }
            labels += block.labels ?? []
        }
        return (features, images, labels, dataset.manifest)
    }

    /// --store jpeg keeps each file's bytes (the files that decode, in path order), records size,
    /// channels and fit in the field's `decode` key, and skips the same bad files as pixels does;
    /// decoding the kept bytes with that record gives exactly the pixels set's features.
    @Test func storeJPEGKeepsTheFilesAndRecordsHowTheyDecode() throws {
        let root = temporaryDirectory("images-store").path
        let pixels = try prepare([Self.mixedFolder, "--out", root + "/pixels", "--size", "12", "--fit", "pad", "--shards", "2"])
        let jpeg = try prepare([Self.mixedFolder, "--out", root + "/jpeg", "--size", "12", "--fit", "pad", "--shards", "2", "--store", "jpeg"])
        #expect(pixels.status == 0 && jpeg.status == 0, "\(pixels.error) \(jpeg.error)")
        #expect(jpeg.output.contains("skipped 2 of 18 files"), "\(jpeg.output)")
        let a = try readAll(root + "/pixels"), b = try readAll(root + "/jpeg")
        #expect(b.manifest.features == nil && a.manifest.features == FieldLayout(dtype: .uint8, shape: [3, 12, 12]))
        let field = try #require(b.manifest.field("image"))
        #expect(field.dtype == .bytes && field.decode == ImageDecodeSpec(size: 12, channels: 3, fit: .pad))
        #expect(try b.manifest.requireInputs(path: root + "/jpeg") == FieldLayout(dtype: .uint8, shape: [3, 12, 12]))
        #expect(b.labels == a.labels && b.manifest.classes == a.manifest.classes && b.images.count == 16)
        let kept = try FileManager.default.subpathsOfDirectory(atPath: Self.mixedFolder).sorted()
            .filter { !$0.hasSuffix("notes.txt") && !$0.hasSuffix("zz-truncated.jpg") && $0.contains(".") }
        #expect(b.images == (try kept.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.mixedFolder + "/" + $0))) }))
        #expect(try b.images.flatMap { try field.decode!.sample($0) } == a.features)
        #expect(String(decoding: try Data(contentsOf: URL(fileURLWithPath: root + "/jpeg/dataset.json")), as: UTF8.self)
            .contains("\"decode\" : {\n"), "the manifest carries the decode record")
    }

    /// prepare webdataset --store pixels decodes as prepare images does (the same files in the same
    /// order give the same features and labels); an image that does not decode is a counted bad
    /// sample (with --store jpeg --size too), --strict stops at it; pixels without --size is refused.
    @Test func webDatasetStorePixelsDecodesAsPrepareImagesDoes() throws {
        let root = temporaryDirectory("wds-pixels").path
        let script = """
            import io, os, sys, tarfile
            root = sys.argv[1]
            names = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
            classes = sorted(os.listdir(root))
            with tarfile.open(sys.argv[2], "w") as tar:
                for i, name in enumerate(names):
                    data = open(os.path.join(root, name), "rb").read()
                    ext = "png" if data[:4] == b"\\x89PNG" else "jpg"
                    for e, d in [(ext, data), ("cls", str(classes.index(name.split("/")[0])).encode())]:
                        info = tarfile.TarInfo(f"{i:04d}.{e}"); info.size = len(d); tar.addfile(info, io.BytesIO(d))
            """
        let made = try runProcess(URL(fileURLWithPath: "/usr/bin/python3"), ["-c", script, Self.mixedFolder, root + "/all.tar"])
        try #require(made.status == 0, "\(made.error)")
        let images = try prepare([Self.mixedFolder, "--out", root + "/images", "--size", "10", "--shards", "1"])
        #expect(images.status == 0, "\(images.error)")
        func webdataset(_ arguments: [String]) throws -> ProcessOutcome {
            try runContrast(ranks: 1, ["prepare", "webdataset", root + "/all.tar", "--shards", "1"] + arguments)
        }
        let pixels = try webdataset(["--out", root + "/pixels", "--store", "pixels", "--size", "10"])
        #expect(pixels.status == 0, "\(pixels.error)")
        #expect(pixels.output.contains("2 bad samples skipped"), "\(pixels.output)")
        #expect(pixels.output.contains("all.tar: 0017.jpg does not decode (JPEG: Premature end of JPEG file)"), "\(pixels.output)")
        let a = try readAll(root + "/images"), b = try readAll(root + "/pixels")
        #expect(b.manifest.features == FieldLayout(dtype: .uint8, shape: [3, 10, 10]) && b.manifest.field("image") == nil)
        #expect(b.features == a.features && b.labels == a.labels)

        let jpeg = try webdataset(["--out", root + "/jpeg", "--store", "jpeg", "--size", "10", "--fit", "pad", "--channels", "1"])
        #expect(jpeg.status == 0 && jpeg.output.contains("2 bad samples skipped"), "\(jpeg.output) \(jpeg.error)")
        let c = try readAll(root + "/jpeg")
        #expect(c.manifest.field("image")?.decode == ImageDecodeSpec(size: 10, channels: 1, fit: .pad) && c.images.count == 16)
        let strict = try webdataset(["--out", root + "/strict", "--store", "pixels", "--size", "10", "--strict"])
        #expect(strict.status != 0 && !FileManager.default.fileExists(atPath: root + "/strict"), "\(strict.output)")
        // Kept encoded without --size: readable, not trainable; training says how to fix it, before the run exists.
        #expect(try webdataset(["--out", root + "/bare"]).status == 0)
        let run = temporaryDirectory("wds-bare-run").appendingPathComponent("run").path
        let refused = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "data.dataset=prepared",
                                                 "--set", "data.path=\(root)/bare"])
        #expect(refused.status != 0 && refused.error.contains("holds encoded images (fields image, key) without the size to decode them to; "
                                                              + "re-prepare it with --size S"), "\(refused.error)")
        #expect(!FileManager.default.fileExists(atPath: run))
        let noSize = try webdataset(["--out", root + "/nosize", "--store", "pixels"])
        #expect(noSize.status != 0 && noSize.error.contains("--store pixels decodes every image to S x S: add --size S"), "\(noSize.error)")
    }

    /// Memory is a few shards, not the data set: N small PNGs that decode to 4 x LIMIT of samples
    /// prepare under `ulimit -d LIMIT` (RLIMIT_DATA, as StreamingTrainingTests uses and for the same
    /// reasons: it counts the heap and anonymous mmaps that held samples would take, and not the
    /// address space the libraries reserve). What stays is the file list and a record per file
    /// (tens of bytes a file). The limit bites: the same files as one shard (--shards 1, the whole
    /// data set in one shard's buffer, as the prepare before streaming held it: N x (9 + C S S)
    /// gathered bytes, then the split's copy) stop at it. 3,400 8 x 8 PNGs (about 1 MB) decode to
    /// 3 x 160 x 160 samples, 261 MB: 4 x 64 MB.
    @Test func prepareWritesADataSetFourTimesTheMemoryLimit() throws {
        let limitMB = 64, size = 160, count = 3_400
        let sampleBytes = 3 * size * size
        #expect(count * sampleBytes >= 4 * limitMB * 1_000_000, "the data set is 4x the limit")
        let root = temporaryDirectory("prepare-big").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let script = """
            import sys, numpy as np
            from PIL import Image
            rng = np.random.default_rng(0)
            for i in range(int(sys.argv[2])):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(f"{sys.argv[1]}/{i:05d}.png")
            """
        try FileManager.default.createDirectory(atPath: root + "/images", withIntermediateDirectories: true)
        let made = try runProcess(verifyPython, ["-c", script, root + "/images", "\(count)"])
        try #require(made.status == 0, "\(made.error)")
        let sources = try FileManager.default.contentsOfDirectory(atPath: root + "/images").reduce(0) {
            $0 + ((try FileManager.default.attributesOfItem(atPath: root + "/images/" + $1)[.size] as? Int) ?? 0)
        }
        #expect(sources < limitMB * 1_000_000 / 8, "the PNGs are small: \(sources) bytes")
        func limited(_ out: String, shards: Int) throws -> ProcessOutcome {
            try runContrastUnderDataLimit(["prepare", "images", root + "/images", "--out", out, "--size", "\(size)",
                                           "--shards", "\(shards)", "--threads", "2"], limitMB: limitMB)
        }
        let prepared = try limited(root + "/set", shards: 64)
        #expect(prepared.status == 0, "\(prepared.error.suffix(1500))")
        let dataset = try ShardedDataset(directory: root + "/set")
        #expect(dataset.manifest.sampleCount == count && dataset.manifest.features == FieldLayout(dtype: .uint8, shape: [3, size, size]))
        // The last shard reads back as the last files decode.
        let last = try dataset.readShard(dataset.shardCount - 1)
        guard case .uint8(let features) = last.features else { Issue.record("features are not uint8"); return }
        #expect(features.count == last.count * sampleBytes)
        var expected = ImagePreparationOptions(size: size, layout: .count(64))
        expected.threads = 1
        let digits = String(count - 1), file = root + "/images/" + String(repeating: "0", count: 5 - digits.count) + digits + ".png"
        let sample = try ImagePreparation.sample(from: [UInt8](try Data(contentsOf: URL(fileURLWithPath: file))), options: expected)
        #expect(Array(features.suffix(sampleBytes)) == sample)
        let whole = try limited(root + "/whole", shards: 1)
        #expect(whole.status != 0, "one shard of \(count * sampleBytes / 1_000_000) MB fits in \(limitMB) MB: the limit does not bite")
        #expect(!FileManager.default.fileExists(atPath: root + "/whole"))
    }
}
