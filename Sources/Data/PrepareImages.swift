import Dispatch
import Foundation
import Storage

/// Where `contrast prepare images` gets its test split from.
public enum ImageTestSplit: Sendable, Equatable {
    /// Hold out round(F x N) of the decoded images at random under `seed`, exactly as
    /// `TestSplit.fraction` draws rows of .npy arrays (`DatasetPreparation.testRows`).
    case fraction(Double, seed: UInt64)
    /// A second folder laid out like the training one: class subfolders (named as in the
    /// training folder; a subset will do), or a flat folder with its own labels CSV (`labels`).
    case directory(String, labels: String?)
}

/// What `contrast prepare images` does with a folder of JPEG and PNG files.
public struct ImagePreparationOptions: Sendable {
    /// S: samples are S x S.
    public var size: Int
    /// 3 (RGB) or 1 (gray, PIL's "L" luma).
    public var channels: Int
    /// Crop the centre, or pad to a square.
    public var fit: DecodedImage.Fit
    /// Decoded features (`pixels`), or each file's bytes with the decoded size recorded (`jpeg`).
    public var store: ImageStore
    /// A CSV of filename,label for a flat folder.
    public var labels: String?
    public var test: ImageTestSplit?
    /// Stop at the first file that does not decode instead of skipping it.
    public var strict: Bool
    /// Decoding threads of this process.
    public var threads: Int
    public var layout: ShardLayout
    public var overwrite: Bool

    public init(size: Int, channels: Int = 3, fit: DecodedImage.Fit = .crop, store: ImageStore = .pixels, labels: String? = nil,
                test: ImageTestSplit? = nil,
                strict: Bool = false, threads: Int = ProcessInfo.processInfo.activeProcessorCount, layout: ShardLayout,
                overwrite: Bool = false) {
        precondition(size > 0 && (channels == 1 || channels == 3) && threads > 0, "ImagePreparationOptions: bad size, channels or threads")
        self.size = size
        self.channels = channels
        self.fit = fit
        self.store = store
        self.labels = labels
        self.test = test
        self.strict = strict
        self.threads = threads
        self.layout = layout
        self.overwrite = overwrite
    }
}

/// `contrast prepare images`, in phases so that ranks can share the decoding and no process
/// holds more than a few shards of samples:
/// 1. `init` finds the files and their labels (every rank alike; no file is decoded);
/// 2. `decodeShare(rank:ranks:)` decodes rank r's contiguous block of the file list on
///    `options.threads` threads and keeps, per file, whether it decoded and its size (9 bytes);
/// 3. the ranks' shares are gathered, in rank order, into one buffer (`gathered`);
/// 4. `outcome(gathered:ranks:)` keeps what decoded, in file order, and applies --strict and the
///    test split (every rank alike, so an error is the same on every rank): which file is which
///    sample of which shard is now known;
/// 5. `write(_:rank:ranks:exchange:)`: the ranks take the shards in turn (shard k on rank
///    k mod P), decode their files again and encode them (`encodeShard`), and rank 0 writes
///    each shard as it arrives, then the manifests.
/// A file is decoded twice (once to learn whether it decodes, which fixes every later sample's
/// place; once to write it), so memory is a few shards, not the data set. A sample's bytes are a
/// pure function of its file, so the output is the same for any thread or rank count.
/// `DatasetPreparation.images` runs all five in one process.
public struct ImagePreparation: Sendable {
    /// One image file and its label.
    public struct Source: Sendable, Equatable {
        /// The path as given: the folder argument joined with the file's relative path.
        public var path: String
        public var label: Int64?
    }

    public let directory: String
    public let out: String
    public let options: ImagePreparationOptions
    /// The training images, sorted by the bytes of their paths.
    public let train: [Source]
    /// The test images of `ImageTestSplit.directory`, likewise sorted; else empty.
    public let test: [Source]
    /// Class names by label (class folders, or a labels CSV with names), or nil.
    public let classes: [String]?

    /// Every file to decode: `train` then `test`.
    public var files: [Source] { train + test }
    /// C x S x S.
    public var sampleBytes: Int { options.channels * options.size * options.size }
    /// A slot: status (1: decoded, 0: not), the file's size (UInt64 little-endian).
    var slotBytes: Int { 9 }

    /// How many files the first skipped ones named in the summary are.
    public static let namedSkips = 5

    /// Finds the files of `directory` (and of a test folder) and their labels, and checks `out`.
    /// - Throws: `DataError.imagesInvalid` naming the folder, file or CSV row at fault;
    ///   `DataError.outputNotEmpty`.
    public init(directory: String, out: String, options: ImagePreparationOptions) throws {
        self.directory = directory
        self.out = out
        self.options = options
        try DatasetPreparation.checkOutput(out, overwrite: options.overwrite)
        let found = try ImageFolderScan(directory: directory, labels: options.labels, classes: nil)
        train = found.sources
        classes = found.classes
        if case .directory(let testDirectory, let testLabels) = options.test {
            if (options.labels == nil) != (testLabels == nil) {
                throw DataError.imagesInvalid(path: testDirectory, problem: options.labels == nil
                    ? "--test-labels needs --labels: give the training folder's labels CSV too"
                    : "the training folder is labelled by --labels; give the test folder's CSV with --test-labels")
            }
            let testFound = try ImageFolderScan(directory: testDirectory, labels: testLabels, classes: found)
            if found.isClassFolders != testFound.isClassFolders {
                throw DataError.imagesInvalid(path: testDirectory, problem: found.isClassFolders
                    ? "the training folder has class subfolders and this one none; lay out the test folder the same way"
                    : "this folder has class subfolders and the training folder none; lay out both folders the same way")
            }
            test = testFound.sources
        } else {
            test = []
        }
    }

    /// Rank r's files: the contiguous block [r ceil(N / P), (r + 1) ceil(N / P)) of `files`.
    public func shareRange(rank: Int, ranks: Int) -> Range<Int> {
        let count = files.count, per = (count + ranks - 1) / ranks
        return min(count, rank * per) ..< min(count, (rank + 1) * per)
    }

    /// Bytes of every rank's share (the same for each, the last padded): ceil(N / P) slots.
    public func shareBytes(ranks: Int) -> Int { (files.count + ranks - 1) / ranks * slotBytes }

    /// Decodes rank `rank`'s block of files (of `ranks`) on `options.threads` threads: file i
    /// of the block goes to slot i, whichever thread decodes it. The pixels are dropped, and not
    /// converted or fitted (which cannot fail): the second pass makes the samples.
    public func decodeShare(rank: Int, ranks: Int) -> [UInt8] {
        let range = shareRange(rank: rank, ranks: ranks), all = files
        var share = [UInt8](repeating: 0, count: shareBytes(ranks: ranks))
        let threads = max(1, min(options.threads, range.count))
        let slotBytes = slotBytes
        share.withUnsafeMutableBytes { buffer in
            let base = SendablePointer(address: buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for index in stride(from: range.lowerBound + thread, to: range.upperBound, by: threads) {
                    let slot = base.address + (index - range.lowerBound) * slotBytes
                    guard let bytes = try? Self.readFile(all[index].path) else { continue }
                    withUnsafeBytes(of: UInt64(bytes.count).littleEndian) {
                        UnsafeMutableRawBufferPointer(start: slot + 1, count: 8).copyMemory(from: $0)
                    }
                    // Only decoding can fail (converting and fitting cannot): the first pass skips them.
                    guard (try? ImageDecoding.decode(bytes)) != nil else { continue }
                    slot.storeBytes(of: 1, as: UInt8.self)
                }
            }
        }
        return share
    }

    /// A file's bytes, or an error saying why they cannot be read.
    static func readFile(_ path: String) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ImageDecodingError("cannot open the file (\(String(cString: strerror(errno))))")
        }
        defer { try? handle.close() }
        do { return [UInt8](try handle.readToEnd() ?? Foundation.Data()) } catch {
            throw ImageDecodingError("cannot read the file (\(error.localizedDescription))")
        }
    }

    /// The prepared sample of a file's bytes: decoded, converted to `channels`, fitted to S x S, CHW.
    public static func sample(from bytes: [UInt8], options: ImagePreparationOptions) throws -> [UInt8] {
        try ImageDecoding.sample(bytes, size: options.size, channels: options.channels, fit: options.fit)
    }

    /// Why a file does not decode (read again: only for the few a summary or --strict names).
    public static func skipReason(_ path: String, options: ImagePreparationOptions) -> String {
        do {
            _ = try sample(from: try readFile(path), options: options)
            return "did not decode on another rank or thread, but does now (changed while preparing?)"
        } catch { return "\(error)" }
    }

    /// The samples of one split (which files, in sample order), and what was skipped.
    public struct Split: Sendable {
        /// Indices into `files` of the samples, in sample order.
        public var files: [Int]
        public var labels: [Int64]?
        public var count: Int { files.count }
        public var sourceBytes: Int
        /// Paths of the files that did not decode, in file order.
        public var skipped: [String]
    }

    /// What the gathered shares make: the training split and, with a test split, the test split.
    public struct Outcome: Sendable {
        public var train: Split
        public var test: Split?
        /// The notes of the summary (skipped files, named).
        public var notes: [String]
    }

    /// Sorts the gathered slots (`ranks` shares in rank order) into splits.
    /// - Throws: with `--strict`, `DataError.imagesInvalid` naming the first file (in file
    ///   order) that did not decode; `DataError.imagesInvalid` when no file decoded;
    ///   `DataError.testSplitEmpty` for a fraction that leaves a split empty;
    ///   `DataError.tooManyShards` when a split has fewer samples than `--shards`.
    public func outcome(gathered: [UInt8], ranks: Int) throws -> Outcome {
        precondition(gathered.count == shareBytes(ranks: ranks) * ranks, "outcome: \(gathered.count) gathered bytes, expected \(shareBytes(ranks: ranks) * ranks)")
        let perRank = (files.count + ranks - 1) / ranks, all = files
        func slotOffset(_ index: Int) -> Int { (index / perRank) * shareBytes(ranks: ranks) + (index % perRank) * slotBytes }
        func split(_ indices: Range<Int>) -> Split {
            var result = Split(files: [], labels: all.first?.label == nil ? nil : [], sourceBytes: 0, skipped: [])
            for index in indices {
                let offset = slotOffset(index)
                var size: UInt64 = 0
                withUnsafeMutableBytes(of: &size) { $0.copyBytes(from: gathered[(offset + 1) ..< (offset + 9)]) }
                result.sourceBytes += Int(UInt64(littleEndian: size))
                guard gathered[offset] == 1 else { result.skipped.append(all[index].path); continue }
                if let label = all[index].label { result.labels?.append(label) }
                result.files.append(index)
            }
            return result
        }
        var trainSplit = split(0 ..< train.count)
        var testSplit = test.isEmpty ? nil : split(train.count ..< files.count)
        let skipped = trainSplit.skipped + (testSplit?.skipped ?? [])
        if options.strict, let first = skipped.first {
            throw DataError.imagesInvalid(path: first, problem: "\(Self.skipReason(first, options: options)); "
                                          + "remove or repair the file, or drop --strict to skip such files")
        }
        guard trainSplit.count > 0 else {
            let reason = skipped.first.map { " (the first, \($0): \(Self.skipReason($0, options: options)))" } ?? ""
            throw DataError.imagesInvalid(path: directory, problem: "none of its \(train.count) files decodes as a JPEG or PNG\(reason); "
                                          + "point contrast prepare images at a folder of JPEG or PNG files")
        }
        if let testSplit, testSplit.count == 0, case .directory(let testDirectory, _) = options.test {
            throw DataError.imagesInvalid(path: testDirectory, problem: "none of its \(test.count) files decodes as a JPEG or PNG; "
                                          + "point --test-dir at a folder of JPEG or PNG files")
        }
        if case .fraction(let fraction, let seed) = options.test {
            let split = try DatasetPreparation.testSplit(sampleCount: trainSplit.count, fraction: fraction, seed: seed)
            let all = trainSplit
            func pick(_ rows: [Int]) -> Split {
                var result = Split(files: rows.map { all.files[$0] }, labels: all.labels.map { labels in rows.map { labels[$0] } },
                                   sourceBytes: 0, skipped: [])
                // The source bytes are shared out by sample count, as prepare npy's are.
                result.sourceBytes = Int((Double(all.sourceBytes) * Double(result.count) / Double(all.count)).rounded())
                return result
            }
            trainSplit = pick(split.train)
            testSplit = pick(split.test)
            trainSplit.skipped = all.skipped
        }
        var notes: [String] = []
        if !skipped.isEmpty {
            let named = skipped.prefix(Self.namedSkips).map { "\($0) (\(Self.skipReason($0, options: options)))" }
            notes.append("skipped \(skipped.count) of \(files.count) files that are not readable JPEG or PNG images"
                         + (skipped.count > named.count ? ", the first \(named.count): " : ": ") + named.joined(separator: "; "))
        }
        let outcome = Outcome(train: trainSplit, test: testSplit, notes: notes)
        _ = try shardTasks(outcome)
        return outcome
    }

    /// One shard file to write: in the training folder (`split` 0) or the test folder (1), the
    /// samples `samples` of that split.
    public struct ShardTask: Sendable, Equatable {
        public var split: Int
        public var samples: Range<Int>
    }

    /// Every shard of the data set, in the order they are written: the training folder's, then
    /// the test folder's (whose `--shards` is capped at its sample count, as prepare npy's).
    /// - Throws: `DataError.tooManyShards` when the training split has fewer samples than `--shards`.
    public func shardTasks(_ outcome: Outcome) throws -> [ShardTask] {
        var testLayout = options.layout
        if let test = outcome.test, case .count(let shards) = options.layout { testLayout = .count(min(shards, test.count)) }
        var tasks = try options.layout.ranges(sampleCount: outcome.train.count).map { ShardTask(split: 0, samples: $0) }
        if let test = outcome.test { tasks += try testLayout.ranges(sampleCount: test.count).map { ShardTask(split: 1, samples: $0) } }
        return tasks
    }

    /// What `--store jpeg` records: the size, channels and fit training decodes the files to.
    public var decodeSpec: ImageDecodeSpec { ImageDecodeSpec(size: options.size, channels: options.channels, fit: options.fit) }

    /// The fields of a `--store jpeg` set.
    var fields: [NamedField] {
        options.store == .jpeg ? [NamedField(name: ShardManifest.encodedImageField, dtype: .bytes, decode: decodeSpec)] : []
    }

    /// Shard `task` of `outcome`, encoded: its files decoded again on `options.threads` threads
    /// into uint8 [C, S, S] features (`pixels`), or read as they are into the field `image`
    /// (`jpeg`), with their labels.
    /// - Throws: `DataError.imagesInvalid` naming a file that decoded in `decodeShare` and no
    ///   longer does (or no longer reads).
    public func encodeShard(_ task: ShardTask, of outcome: Outcome) throws -> EncodedShard {
        let split = task.split == 0 ? outcome.train : outcome.test!
        let indices = Array(split.files[task.samples]), all = files, options = options, sampleBytes = sampleBytes
        let labels = split.labels.map { Array($0[task.samples]) }
        let threads = max(1, min(options.threads, indices.count))
        let block: SampleBlock
        switch options.store {
        case .pixels:
            var features = [UInt8](repeating: 0, count: indices.count * sampleBytes)
            var failed = [Bool](repeating: false, count: indices.count)
            features.withUnsafeMutableBytes { buffer in
                failed.withUnsafeMutableBufferPointer { flags in
                    let base = SendablePointer(address: buffer.baseAddress!)
                    let flagBase = SendablePointer(address: UnsafeMutableRawPointer(flags.baseAddress!))
                    DispatchQueue.concurrentPerform(iterations: threads) { thread in
                        for slot in stride(from: thread, to: indices.count, by: threads) {
                            if let sample = try? Self.sample(from: try Self.readFile(all[indices[slot]].path), options: options) {
                                sample.withUnsafeBytes { (base.address + slot * sampleBytes).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                            } else {
                                flagBase.address.storeBytes(of: true, toByteOffset: slot, as: Bool.self)
                            }
                        }
                    }
                }
            }
            if let slot = failed.firstIndex(of: true) {
                let path = all[indices[slot]].path
                throw DataError.imagesInvalid(path: path, problem: "decoded on the first pass but not now (\(Self.skipReason(path, options: options))); "
                                              + "keep the files unchanged while contrast prepare images runs")
            }
            block = SampleBlock(count: indices.count, features: .uint8(features), labels: labels)
        case .jpeg:
            var images = VariableValues()
            for index in indices {
                let path = all[index].path
                do { images.append(try Self.readFile(path)) } catch { throw DataError.imagesInvalid(path: path, problem: "\(error); check the file") }
            }
            block = SampleBlock(count: indices.count, features: nil, labels: labels, fields: [ShardManifest.encodedImageField: .variable(images)])
        }
        return try ShardedDatasetWriter.encode(block, featureShape: options.store == .pixels ? [options.channels, options.size, options.size] : nil,
                                               fields: fields)
    }

    /// Why another rank could not encode its shard (its error, as text): every rank throws it.
    public struct ShardFailed: Error, CustomStringConvertible {
        public var description: String
    }

    /// Writes the data set into `out` (through a temporary sibling, `DatasetPreparation.placing`):
    /// one folder, or train/ and test/ with a test split. Every one of `ranks` ranks calls this:
    /// in round j rank r encodes shard j P + r (`encodeShard`), `exchange` hands every rank the
    /// ranks' messages (an encoded shard or an error) in rank order, and rank 0 writes the round's
    /// shards in order. So a rank holds the shards of one round, never the data set, and an error
    /// on any rank is thrown on every rank (as `ShardFailed` where it came from another rank).
    /// - Returns: the summaries on rank 0, [] on the others.
    public func write(_ outcome: Outcome, rank: Int = 0, ranks: Int = 1,
                      exchange: ([UInt8]) throws -> [[UInt8]] = { [$0] }) throws -> [PrepareSummary] {
        let tasks = try shardTasks(outcome)
        func run(_ sink: (ShardTask, EncodedShard) throws -> Void) throws {
            for round in stride(from: 0, to: tasks.count, by: ranks) {
                var message: [UInt8] = []
                if round + rank < tasks.count {
                    do { message = Self.message(.success(try encodeShard(tasks[round + rank], of: outcome))) } catch {
                        if ranks == 1 { throw error }
                        message = Self.message(.failure(ShardFailed(description: "\(error)")))
                    }
                }
                let messages = try exchange(message)
                for (sender, bytes) in messages.enumerated() where round + sender < tasks.count {
                    let shard = try Self.shard(from: bytes)
                    try sink(tasks[round + sender], shard)
                }
            }
        }
        guard rank == 0 else {
            try run { _, _ in }
            return []
        }
        let shape = [options.channels, options.size, options.size]
        return try DatasetPreparation.placing(out) { staging in
            let folders = outcome.test == nil ? [(staging, out)] : [(staging + "/train", out + "/train"), (staging + "/test", out + "/test")]
            let sinks = try folders.map { try ShardSink(directory: $0.0) }
            try run { task, shard in try sinks[task.split].append(shard) }
            let splits = [outcome.train] + (outcome.test.map { [$0] } ?? [])
            return try splits.indices.map { index in
                let split = splits[index]
                let manifest = try sinks[index].finish(featureShape: options.store == .pixels ? shape : nil, labels: split.labels != nil,
                                                       fields: fields, classes: split.labels == nil ? nil : classes)
                return PrepareSummary(directory: folders[index].1, sampleCount: manifest.sampleCount, shardCount: manifest.shards.count,
                                      preparedBytes: manifest.totalShardBytes
                                          + (try DatasetPreparation.fileSize(folders[index].0 + "/" + ShardManifest.fileName)),
                                      sourceBytes: split.sourceBytes, notes: index == 0 ? outcome.notes : [])
            }
        }
    }

    /// A round's message: 1, the frames' JSON length (UInt64 LE), the frames' JSON, the sample
    /// count (UInt64 LE), the shard bytes; or 0 and an error's text.
    static func message(_ result: Result<EncodedShard, ShardFailed>) -> [UInt8] {
        switch result {
        case .failure(let failure): return [0] + Array(failure.description.utf8)
        case .success(let shard):
            let frames = (try? JSONEncoder().encode(shard.frames)).map { [UInt8]($0) } ?? []
            func word(_ value: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(value).littleEndian) { Array($0) } }
            return [1] + word(frames.count) + frames + word(shard.sampleCount) + shard.bytes
        }
    }

    /// The shard of a `message`, or its error thrown.
    static func shard(from message: [UInt8]) throws -> EncodedShard {
        func word(_ at: Int) -> Int {
            var value: UInt64 = 0
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: message[at ..< at + 8]) }
            return Int(UInt64(littleEndian: value))
        }
        guard message.first == 1, message.count >= 17 else {
            throw ShardFailed(description: String(decoding: message.dropFirst(), as: UTF8.self))
        }
        let framesEnd = 9 + word(1)
        let frames = try JSONDecoder().decode([ShardManifest.Frame].self, from: Foundation.Data(message[9 ..< framesEnd]))
        return EncodedShard(bytes: Array(message[(framesEnd + 8)...]), frames: frames, sampleCount: word(framesEnd))
    }
}

/// A raw pointer handed to the decoding threads, each writing its own slots.
private struct SendablePointer: @unchecked Sendable { let address: UnsafeMutableRawPointer }

extension DatasetPreparation {
    /// `contrast prepare images` in one process: every phase of `ImagePreparation`.
    public static func images(directory: String, out: String, options: ImagePreparationOptions) throws -> [PrepareSummary] {
        let preparation = try ImagePreparation(directory: directory, out: out, options: options)
        let share = preparation.decodeShare(rank: 0, ranks: 1)
        return try preparation.write(try preparation.outcome(gathered: share, ranks: 1))
    }
}

/// The image files of a folder and their labels: class subfolders (ImageFolder), a flat folder
/// with a labels CSV, or a flat folder without labels.
struct ImageFolderScan {
    var sources: [ImagePreparation.Source]
    var classes: [String]?
    var isClassFolders: Bool
    /// With a CSV: whether its labels are integers (else class names).
    var integerLabels: Bool

    /// - Parameter classes: the training folder's scan, when this is the test folder: its class
    ///   names give the labels.
    init(directory: String, labels: String?, classes training: ImageFolderScan?) throws {
        func fail(_ path: String, _ problem: String) -> DataError { .imagesInvalid(path: path, problem: problem) }
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw fail(directory, "no such folder; give the folder that holds the images (or their class subfolders)")
        }
        guard isDirectory.boolValue else { throw fail(directory, "is a file, not a folder; give the folder that holds the images") }
        func entries(_ folder: String) throws -> [String] {
            // opendir first: its errno says why (Foundation's error does not).
            guard let handle = opendir(folder) else {
                throw fail(folder, "cannot list the folder (\(String(cString: strerror(errno)))); check its permissions")
            }
            closedir(handle)
            do {
                return try manager.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }.sorted(by: Self.byteOrder)
            } catch {
                throw fail(folder, "cannot list the folder (\(error.localizedDescription)); check its permissions")
            }
        }
        func isFolder(_ path: String) -> Bool {
            var isDirectory: ObjCBool = false
            return manager.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        /// Every file under `folder`, recursively, as paths relative to `folder`, sorted by bytes.
        func files(under folder: String) throws -> [String] {
            var result: [String] = []
            for entry in try entries(folder) {
                let path = folder + "/" + entry
                if isFolder(path) { result += try files(under: path).map { entry + "/" + $0 } } else { result.append(entry) }
            }
            return result.sorted(by: Self.byteOrder)
        }
        let top = try entries(directory)
        let folders = top.filter { isFolder(directory + "/" + $0) }
        if let labels {
            let rows = try Self.readLabels(labels, directory: directory)
            let integers = training?.integerLabels ?? rows.allSatisfy { Int64($0.label).map { $0 >= 0 } ?? false }
            integerLabels = integers
            isClassFolders = false
            let names: [String]
            if integerLabels {
                names = []
                classes = nil
            } else {
                names = training?.classes ?? Array(Set(rows.map(\.label))).sorted(by: Self.byteOrder)
                classes = names
            }
            let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int64($0)) })
            sources = try rows.sorted { Self.byteOrder($0.file, $1.file) }.map { row in
                let label: Int64
                if integers {
                    guard let value = Int64(row.label), value >= 0 else {
                        throw fail(labels, "row \(row.row): label \"\(row.label)\" is not a non-negative integer like the training CSV's; "
                                   + "use the same kind of labels in both files")
                    }
                    label = value
                } else {
                    guard let value = index[row.label] else {
                        throw fail(labels, "row \(row.row): class \"\(row.label)\" is not one of the training CSV's classes; "
                                   + "fix the label or add the class to the training data")
                    }
                    label = value
                }
                return .init(path: directory + "/" + row.file, label: label)
            }
        } else if !folders.isEmpty {
            let loose = top.filter { !isFolder(directory + "/" + $0) }
            if let file = loose.first {
                throw fail(directory + "/" + file, "is a file beside class subfolders; move it into its class folder, or remove it")
            }
            isClassFolders = true
            integerLabels = false
            if let training {
                guard training.isClassFolders else {
                    throw fail(directory, "has class subfolders and the training folder none; lay out both folders the same way")
                }
                classes = training.classes
                if let extra = folders.first(where: { !(training.classes ?? []).contains($0) }) {
                    throw fail(directory + "/" + extra, "is a class the training folder does not have; rename or remove it")
                }
            } else {
                classes = folders
            }
            let index = Dictionary(uniqueKeysWithValues: (classes ?? []).enumerated().map { ($1, Int64($0)) })
            var found: [ImagePreparation.Source] = []
            for folder in folders {
                let inside = try files(under: directory + "/" + folder)
                if inside.isEmpty {
                    throw fail(directory + "/" + folder, "class folder holds no files; add its images or remove the folder")
                }
                found += inside.map { .init(path: directory + "/" + folder + "/" + $0, label: index[folder]!) }
            }
            sources = found
        } else {
            isClassFolders = false
            integerLabels = false
            classes = nil
            sources = top.map { .init(path: directory + "/" + $0, label: nil) }
        }
        // Sorted by the bytes of the paths: the order is the same on every machine and rank.
        sources.sort { Self.byteOrder($0.path, $1.path) }
        guard !sources.isEmpty else {
            throw fail(directory, "holds no files; put the images in it (one subfolder per class, or a flat folder)")
        }
    }

    static func byteOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// The rows of a labels CSV: filename,label (an optional header row filename,label first).
    static func readLabels(_ path: String, directory: String) throws -> [(file: String, label: String, row: Int)] {
        func fail(_ problem: String) -> DataError { .imagesInvalid(path: path, problem: problem) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw fail("cannot read the labels CSV; check the path and its permissions")
        }
        guard let text = String(validating: [UInt8](data), as: UTF8.self) else {
            throw fail("is not UTF-8 text; save it as UTF-8 (filename,label per line)")
        }
        var rows: [(file: String, label: String, row: Int)] = []
        var seen: [String: Int] = [:], first = true
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine[...]
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            let row = number + 1
            guard let fields = splitCSV(String(line)), fields.count == 2 else {
                throw fail("row \(row) is not two fields, filename,label (quote a field that holds a comma); fix the row")
            }
            defer { first = false }
            if first && fields[0].lowercased() == "filename" { continue }
            let file = fields[0], label = fields[1].trimmingCharacters(in: .whitespaces)
            guard !file.isEmpty, !label.isEmpty else { throw fail("row \(row) has an empty filename or label; fill it in or drop the row") }
            if let first = seen[file] { throw fail("row \(row) names \(file) again (first on row \(first)); keep one row per file") }
            seen[file] = row
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory + "/" + file, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw fail("row \(row): \(directory)/\(file) is not a file; fix the name (relative to \(directory)) or drop the row")
            }
            rows.append((file, label, row))
        }
        guard !rows.isEmpty else { throw fail("has no rows; list the images as filename,label, one per line") }
        return rows
    }

    /// Fields of one CSV line (RFC 4180 quoting), or nil for an unterminated quote.
    static func splitCSV(_ line: String) -> [String]? {
        var fields: [String] = [], field = "", quoted = false, index = line.startIndex, atStart = true
        while index < line.endIndex {
            let character = line[index]
            if quoted {
                if character == "\"" {
                    let next = line.index(after: index)
                    if next < line.endIndex && line[next] == "\"" { field.append("\""); index = next } else { quoted = false }
                } else { field.append(character) }
            } else if character == "\"" && atStart {
                quoted = true
            } else if character == "," {
                fields.append(field); field = ""; atStart = true; index = line.index(after: index); continue
            } else { field.append(character) }
            atStart = false
            index = line.index(after: index)
        }
        if quoted { return nil }
        fields.append(field)
        return fields
    }
}
