import Bench
import ArgumentParser
import Data
import Distributed
import Foundation

/// `contrast prepare`: turn a source data set into the sharded format of docs/data-format.md.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a sharded data set (docs/data-format.md) from Fashion-MNIST, .npy arrays, a folder of images, text tables, webdataset tar shards, WordNet or a FreeDict dictionary.",
        subcommands: [PrepareFashionMNIST.self, PrepareNPY.self, PrepareImages.self, PrepareText.self, PrepareWebDataset.self,
                       PrepareWordNet.self, PrepareFreeDict.self])
}

/// Prints what was written and how its size compares with the source files.
private func report(_ summary: PrepareSummary, source: String) {
    let ratio = Double(summary.preparedBytes) / Double(max(1, summary.sourceBytes))
    say("\(summary.directory): \(summary.sampleCount) samples in \(summary.shardCount) shards, "
        + "\(summary.preparedBytes) bytes (\(String(format: "%.3f", ratio))x the \(summary.sourceBytes) bytes of \(source))")
    for note in summary.notes { say("note: \(note)") }
}

/// Reads every shard back (checksums included) and prints the read throughput.
private func verify(_ directory: String) throws {
    let start = Date()
    let dataset = try ShardedDataset(directory: directory)
    var samples = 0, decodedBytes = 0
    for index in 0..<dataset.shardCount {
        let block = try dataset.readShard(index)
        samples += block.count
        decodedBytes += block.decodedBytes
    }
    let seconds = Date().timeIntervalSince(start)
    let decoded = Double(decodedBytes)
    say(String(format: "verified %@: %d samples in %.3f s, %.0f samples/s, %.1f MB/s of shard files, %.1f MB/s decoded",
               directory, samples, seconds, Double(samples) / seconds, Double(dataset.manifest.totalShardBytes) / seconds / 1e6,
               decoded / seconds / 1e6))
}

/// How to cut the data set into shard files: a count (the default) or a size, not both.
struct ShardOptions: ParsableArguments {
    /// The trainer's default data.virtual_shards, so prepared shards are its virtual shards.
    static let defaultShardCount = 64

    @Option(help: ArgumentHelp("Shard files of near-equal size; shard s holds samples [s N / S, (s+1) N / S). Training takes the "
                               + "same number of samples from each file, so its global batch (data.batch_per_rank x ranks) must be a "
                               + "multiple of S. (default: \(defaultShardCount), unless --shard-size is given)"))
    var shards: Int?
    @Option(help: "Samples per shard file instead of a shard count; the last shard may be smaller.")
    var shardSize: Int?

    func validate() throws {
        if shards != nil && shardSize != nil {
            throw ValidationError("--shards and --shard-size both cut the data set into shards; give one of them")
        }
        if let shards, shards <= 0 { throw ValidationError("--shards must be positive, got \(shards)") }
        if let shardSize, shardSize <= 0 { throw ValidationError("--shard-size must be positive, got \(shardSize)") }
    }

    var layout: ShardLayout { shardSize.map { .size($0) } ?? .count(shards ?? Self.defaultShardCount) }
}

extension PairSpec.Kind: ExpressibleByArgument {}

struct PrepareFashionMNIST: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fashion-mnist",
        abstract: "Fashion-MNIST from Debian's IDX files into OUT/train and OUT/test.")
    @Option(help: "Output folder: new or empty (see --overwrite); gets train/ and test/.") var out: String
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions
    @Option(help: "Folder of the IDX .gz files.") var path: String = FashionMNIST.defaultDirectory
    @Option(help: ArgumentHelp("Prepare only the first N samples of each split (0: all), for a small, quick data set; "
                               + "data.train_limit and data.test_limit cut a larger one at training time instead.")) var limit: Int = 0
    @Option(help: ArgumentHelp("Also write a float32 pair vector per image for two-tower training: 'projection', a fixed random "
                               + "projection of a differently augmented copy (docs/data-format.md, \"Pairs\")."))
    var pairs: PairSpec.Kind?
    @Option(help: "Width of the pair vectors. (default: 64)") var pairWidth: Int?
    @Option(help: "Seed of the pair projection and augmentation. (default: 0)") var pairSeed: UInt64?
    @Flag(help: ArgumentHelp("Also write a caption per image (field caption: its class name and attributes read off its "
                             + "pixels, e.g. \"a photo of a dark patterned coat.\"), for image-text training (docs/data-format.md)."))
    var captions = false

    func validate() throws {
        if pairs == nil && (pairWidth != nil || pairSeed != nil) {
            throw ValidationError("--pair-width and --pair-seed describe pairs; add --pairs projection")
        }
        if let pairWidth, pairWidth <= 0 { throw ValidationError("--pair-width must be positive, got \(pairWidth)") }
    }

    func run() throws {
        try reportingErrors {
            let spec = pairs.map { PairSpec(kind: $0, width: pairWidth ?? 64, seed: pairSeed ?? 0) }
            for summary in try DatasetPreparation.fashionMNIST(source: path, out: out, layout: shardOptions.layout,
                                                               limit: limit, pairs: spec, captions: captions, overwrite: overwrite) {
                report(summary, source: "the raw IDX .gz files")
                try verify(summary.directory)
            }
        }
    }
}

struct PrepareNPY: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "npy",
        abstract: "NumPy .npy arrays (samples first, C order; u1, <f4, <f8, <i8) into OUT, or OUT/train and OUT/test.",
        discussion: """
        Float features and pairs must be finite: the first NaN or infinity is an error naming its row and column.

        A run evaluates on a test split: give --test-fraction F to hold out a random F of the samples (OUT/train, \
        OUT/test, and OUT/test-rows.npy with their row numbers), or --test-features (with --test-labels and \
        --test-pairs when you give --labels and --pairs) for a test split of your own. Without either, OUT is \
        one data set: a run on it trains, and says it skipped its kNN evaluation.
        """)
    @Option(help: "Features: uint8 stays uint8, float32/float64/int64 become float32.") var features: String
    @Option(help: "Labels: one integer per sample (int64 or uint8).") var labels: String?
    @Option(help: "Second modality for pairs, converted to float32.") var pairs: String?
    @Option(help: ArgumentHelp("Hold out this fraction of the samples as the test split, drawn at random with --split-seed (not "
                               + "the last rows, so data sorted by class gives a test split of every class); rows keep their order "
                               + "within each split. E.g. 0.2."))
    var testFraction: Double?
    @Option(help: "Seed of the --test-fraction draw: the same seed and files give the same split on any machine. (default: 0)")
    var splitSeed: UInt64?
    @Option(help: "Your own test split's features instead of --test-fraction: the same dtype and sample shape as --features.")
    var testFeatures: String?
    @Option(help: "The test split's labels (needed, and only allowed, with --labels).") var testLabels: String?
    @Option(help: "The test split's pairs (needed, and only allowed, with --pairs).") var testPairs: String?
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions

    func validate() throws {
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw ValidationError("--test-fraction must be between 0 and 1 (the share of samples held out for testing, e.g. 0.2), got \(testFraction)")
        }
        if testFraction != nil && testFeatures != nil {
            throw ValidationError("--test-fraction and --test-features both make the test split; give one of them")
        }
        if splitSeed != nil && testFraction == nil { throw ValidationError("--split-seed is the seed of --test-fraction; add --test-fraction F") }
        if testFeatures == nil && (testLabels != nil || testPairs != nil) {
            throw ValidationError("--test-labels and --test-pairs belong to a test split of your own; add --test-features")
        }
        if testFeatures != nil {
            if (labels == nil) != (testLabels == nil) {
                throw ValidationError(labels == nil ? "--test-labels needs --labels (the training split's labels)"
                                                    : "--labels needs --test-labels with --test-features: the test split needs labels for the kNN evaluation")
            }
            if (pairs == nil) != (testPairs == nil) {
                throw ValidationError(pairs == nil ? "--test-pairs needs --pairs (the training split's pairs)"
                                                   : "--pairs needs --test-pairs with --test-features: both splits need the same modalities")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            let test: TestSplit? = testFraction.map { .fraction($0, seed: splitSeed ?? 0) }
                ?? testFeatures.map { .files(features: $0, labels: testLabels, pairs: testPairs) }
            let summaries = try DatasetPreparation.npy(features: features, labels: labels, pairs: pairs, test: test, out: out,
                                                       layout: shardOptions.layout, overwrite: overwrite)
            for summary in summaries {
                report(summary, source: testFraction == nil ? "the .npy files" : "its share of the .npy files")
                try verify(summary.directory)
            }
            if testFraction != nil {
                say("note: the test split is \(summaries[1].sampleCount) rows drawn with --split-seed \(splitSeed ?? 0); "
                    + "\(out)/\(DatasetPreparation.testRowsFileName) lists their row numbers in \(features)")
            }
            if test == nil {
                say("note: no test split: a run on \(out) trains, but skips its kNN evaluation; "
                    + "add --test-fraction 0.2 (or --test-features) to hold some samples out for testing")
            }
        }
    }
}

extension DecodedImage.Fit: ExpressibleByArgument {}

struct PrepareImages: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images",
        abstract: "A folder of JPEG and PNG files into uint8 [C, S, S] samples in OUT, or OUT/train and OUT/test.",
        discussion: """
        Layout: one subfolder per class (labels 0, 1, ... in the byte order of the folder names, which the \
        manifest's classes table keeps), or a flat folder, unlabelled or labelled by --labels FILE.csv (rows \
        filename,label, an optional header row filename,label; integer labels are used as they are, names are \
        numbered in byte order). Files are taken in the byte order of their paths; files and folders whose names \
        start with '.' are ignored.

        Each image: decoded (JPEG: EXIF orientation applied; PNG: 1 to 16 bits, gray, RGB, palette, 16-bit samples' high byte; alpha \
        dropped, not composited, as PIL's convert("RGB")), converted to --channels (1: PIL's "L" luma, \
        (19595 R + 38470 G + 7471 B + 32768) >> 16), resized with PIL's BILINEAR filter (antialiased when \
        reducing) so its shorter side is S and the centre S x S cropped (--fit pad: the longer side S, centred \
        on black), stored channel-major (CHW).

        --store jpeg keeps each file's bytes as they are in the field image instead, with the size, channels and \
        fit recorded in the manifest: training decodes them on the fly (in the prefetch threads) to the same \
        samples. Every file is still decoded here once, so a file that does not decode is skipped (or stops \
        --strict) now, not in training.

        A file that is not a readable JPEG or PNG is skipped and counted, the first \(ImagePreparation.namedSkips) \
        named; --strict stops at the first. The output is the same bytes for any --threads and any number of \
        ranks: under `mpirun -np P` each rank decodes a contiguous block of the sorted file list to learn which \
        files decode, then the ranks take the shards in turn (shard k on rank k mod P), decode their files again \
        and send them compressed to rank 0, which writes each shard as it comes: memory is a few shards per \
        rank, not the data set, so a folder many times the memory prepares.
        """)
    @Argument(help: "Folder of images: class subfolders, or a flat folder.") var directory: String
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @Option(help: "S: every sample is S x S pixels.") var size: Int
    @Option(help: "3 (RGB) or 1 (gray: PIL's \"L\" luma).") var channels: Int = 3
    @Option(help: "crop: shorter side to S, centre S x S; pad: longer side to S, centred on black (0).")
    var fit: DecodedImage.Fit = .crop
    @Option(help: "pixels: decoded uint8 [C, S, S] features; jpeg: each file's bytes as they are (field image), decoded when training.")
    var store: ImageStore = .pixels
    @Option(help: "CSV of filename,label for a flat folder (filenames relative to DIR).") var labels: String?
    @Option(help: ArgumentHelp("Hold out this fraction of the decoded images as the test split, drawn at random with --split-seed "
                               + "(as prepare npy draws rows); each split keeps file order. E.g. 0.2."))
    var testFraction: Double?
    @Option(help: "Seed of the --test-fraction draw. (default: 0)") var splitSeed: UInt64?
    @Option(help: "A test folder laid out like DIR (its class subfolders among DIR's; or flat, with --test-labels).")
    var testDir: String?
    @Option(help: "The --test-dir folder's labels CSV (needed, and only allowed, with --labels).") var testLabels: String?
    @Flag(help: "Stop at the first file that is not a readable JPEG or PNG, naming it, instead of skipping it.") var strict = false
    @Option(help: "Decoding threads per process. (default: the number of cores)") var threads: Int?
    @OptionGroup var shardOptions: ShardOptions

    func validate() throws {
        if size <= 0 { throw ValidationError("--size must be positive (the side of the square samples, e.g. 32), got \(size)") }
        if channels != 1 && channels != 3 { throw ValidationError("--channels must be 3 (RGB) or 1 (gray), got \(channels)") }
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive, got \(threads)") }
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw ValidationError("--test-fraction must be between 0 and 1 (the share of images held out for testing, e.g. 0.2), got \(testFraction)")
        }
        if testFraction != nil && testDir != nil { throw ValidationError("--test-fraction and --test-dir both make the test split; give one of them") }
        if splitSeed != nil && testFraction == nil { throw ValidationError("--split-seed is the seed of --test-fraction; add --test-fraction F") }
        if testLabels != nil && testDir == nil { throw ValidationError("--test-labels labels the --test-dir folder; add --test-dir") }
    }

    func run() throws {
        let test: ImageTestSplit? = testFraction.map { .fraction($0, seed: splitSeed ?? 0) } ?? testDir.map { .directory($0, labels: testLabels) }
        let options = ImagePreparationOptions(size: size, channels: channels, fit: fit, store: store, labels: labels, test: test, strict: strict,
                                              threads: threads ?? ProcessInfo.processInfo.activeProcessorCount,
                                              layout: shardOptions.layout, overwrite: overwrite)
        try runOnRanks { communicator in
            let start = Date()
            // Finding the files and reading the shares are the same on every rank: an error there is
            // one line from rank 0 (`agreeing`), not an abort.
            let preparation = try communicator.agreeing { try ImagePreparation(directory: directory, out: out, options: options) }
            let share = preparation.decodeShare(rank: communicator.rank, ranks: communicator.size)
            let gathered = try gather(share, communicator: communicator)
            let outcome = try communicator.agreeing { try preparation.outcome(gathered: gathered, ranks: communicator.size) }
            let seconds = Date().timeIntervalSince(start)
            if communicator.rank == 0 {
                let files = preparation.files.count, threads = max(1, min(options.threads, preparation.shareRange(rank: 0, ranks: communicator.size).count))
                say(String(format: "decoded %d files in %.3f s on %d rank(s) x %d thread(s): %.0f images/s, %.1f images/s per thread",
                           files, seconds, communicator.size, threads, Double(files) / seconds,
                           Double(files) / seconds / Double(communicator.size * threads)))
            }
            // Every rank encodes its turn of the shards; rank 0 writes them. An error in a shard is
            // thrown on every rank alike: one line from rank 0.
            let summaries: [PrepareSummary]
            do {
                summaries = try preparation.write(outcome, rank: communicator.rank, ranks: communicator.size) { message in
                    try exchange(message, communicator: communicator)
                }
            } catch let error as ImagePreparation.ShardFailed where communicator.size > 1 {
                throw SameOnEveryRank(error)
            }
            if communicator.rank == 0 {
                for summary in summaries {
                    report(summary, source: "the image files")
                    try verify(summary.directory)
                }
                if test == nil {
                    say("note: no test split: a run on \(out) trains, but skips its kNN evaluation; "
                        + "add --test-fraction 0.2 (or --test-dir) to hold some images out for testing")
                }
            }
            // The other ranks end after rank 0 has written (or aborted the job).
            try communicator.barrier()
        }
    }

    /// Every rank's message (of any length), in rank order, on every rank.
    private func exchange(_ message: [UInt8], communicator: Communicator) throws -> [[UInt8]] {
        guard communicator.size > 1 else { return [message] }
        var length = UInt64(message.count).littleEndian
        var lengths = [UInt64](repeating: 0, count: communicator.size)
        try lengths.withUnsafeMutableBytes { try communicator.allGatherBytes(&length, bytes: 8, into: $0.baseAddress!) }
        let counts = lengths.map { Int(UInt64(littleEndian: $0)) }, longest = max(1, counts.max() ?? 1)
        let gathered = try gather(message + [UInt8](repeating: 0, count: longest - message.count), communicator: communicator)
        return counts.enumerated().map { rank, count in Array(gathered[rank * longest ..< rank * longest + count]) }
    }

    /// Every rank's share, in rank order, on every rank: in pieces, as MPI counts bytes in 32 bits.
    private func gather(_ share: [UInt8], communicator: Communicator) throws -> [UInt8] {
        let ranks = communicator.size, bytes = share.count
        guard ranks > 1 else { return share }
        var gathered = [UInt8](repeating: 0, count: bytes * ranks)
        let piece = max(1, (1 << 30) / ranks)
        var received = [UInt8](repeating: 0, count: min(piece, bytes) * ranks)
        for offset in stride(from: 0, to: bytes, by: piece) {
            let count = min(piece, bytes - offset)
            try share.withUnsafeBytes { send in
                try received.withUnsafeMutableBytes { try communicator.allGatherBytes(send.baseAddress! + offset, bytes: count, into: $0.baseAddress!) }
            }
            for rank in 0..<ranks {
                gathered.replaceSubrange(rank * bytes + offset ..< rank * bytes + offset + count,
                                         with: received[rank * count ..< (rank + 1) * count])
            }
        }
        return gathered
    }
}

extension TextFormat: ExpressibleByArgument {}

/// A test split by fraction or by a second file, as `prepare npy` has them.
struct HeldOutOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Hold out this fraction of the samples as the test split (OUT/train, OUT/test), drawn at random "
                               + "with --split-seed as `prepare npy` draws it; samples keep their order within each split. E.g. 0.2."))
    var testFraction: Double?
    @Option(help: "Seed of the --test-fraction draw. (default: 0)") var splitSeed: UInt64?

    func validate(testFile: String?) throws {
        if let testFraction, !(testFraction > 0 && testFraction < 1) {
            throw ValidationError("--test-fraction must be between 0 and 1 (the share of samples held out for testing, e.g. 0.2), got \(testFraction)")
        }
        if testFraction != nil && testFile != nil { throw ValidationError("--test-fraction and --test-file both make the test split; give one of them") }
        if splitSeed != nil && testFraction == nil { throw ValidationError("--split-seed is the seed of --test-fraction; add --test-fraction F") }
    }

    func split(testFile: String?) -> HeldOutSplit? {
        testFraction.map { .fraction($0, seed: splitSeed ?? 0) } ?? testFile.map { .file($0) }
    }
}

struct PrepareText: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "text",
        abstract: "A JSONL, TSV or CSV file of sentences, pairs or triplets into OUT (UTF-8, NFC-normalised).",
        discussion: """
        One text column gives single sentences (field text), two give pairs (text, positive), three triplets \
        (text, positive, negative: a hard negative). --score-column adds a float32 score (STS-style evaluation), \
        --label-column labels: integers as written, or names numbered in sorted order (the manifest's classes).

        Columns are named (JSONL keys; a CSV or TSV first row with --header) or 1-based positions (a CSV or TSV \
        without a header; by default every column that is not the score or label, in order). CSV follows RFC 4180 \
        (quoted cells may hold commas, newlines and "" for a quote); TSV is split at tabs with no quoting.

        A row with the wrong number of columns, invalid UTF-8, an empty text, a score that is not a finite number, \
        or broken quoting is skipped and counted, the first few named (FILE:LINE); --strict stops at the first. \
        A text set trains the text encoder: contrast train with model.encoder bert and data.vocab (docs/text.md).
        """)
    @Argument(help: "The text table: .jsonl/.ndjson, .tsv or .csv (or say --format).") var file: String
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @Option(help: "The file's format, when its extension does not say it: jsonl, tsv or csv.") var format: TextFormat?
    @Option(help: ArgumentHelp("The 1-3 text columns, comma-separated: names (e.g. anchor,positive,negative) or 1-based positions "
                               + "(e.g. 1,2). Required for JSONL and --header."))
    var columns: String?
    @Option(help: "The score column (a float per row), by name or position.") var scoreColumn: String?
    @Option(help: "The label column (an integer or a class name per row), by name or position.") var labelColumn: String?
    @Flag(help: "The CSV or TSV file's first row names its columns.") var header = false
    @Flag(help: "Stop at the first bad row, naming it, instead of skipping and counting bad rows.") var strict = false
    @Option(help: "A test split of your own: a second file of the same format and columns.") var testFile: String?
    @OptionGroup var heldOut: HeldOutOptions
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions

    var resolvedFormat: TextFormat? { format ?? TextFormat(path: file) }

    func validate() throws {
        guard let format = resolvedFormat else {
            throw ValidationError("cannot tell the format of \(file) from its extension; add --format jsonl, tsv or csv")
        }
        if format == .jsonl && header { throw ValidationError("--header is for CSV and TSV files; JSONL rows name their columns by key") }
        if (format == .jsonl || header) && columns == nil {
            throw ValidationError("name the text columns with --columns (e.g. --columns anchor,positive): "
                                  + (header ? "the header" : "a JSONL row") + " may hold other columns too")
        }
        if let columns {
            let count = columns.split(separator: ",", omittingEmptySubsequences: false).count
            guard (1...3).contains(count) else {
                throw ValidationError("--columns takes 1 to 3 text columns (sentences; anchor, positive; anchor, positive, negative), got \(count)")
            }
        }
        try heldOut.validate(testFile: testFile)
    }

    func run() throws {
        try reportingErrors {
            let format = resolvedFormat!
            let score = scoreColumn.map(TextColumn.init), label = labelColumn.map(TextColumn.init)
            let texts: [TextColumn]
            if let columns {
                texts = columns.split(separator: ",", omittingEmptySubsequences: false).map { TextColumn(String($0).trimmingCharacters(in: .whitespaces)) }
            } else {
                texts = try Self.defaultColumns(file, format: format, excluding: [score, label].compactMap { $0 })
            }
            let summaries = try DatasetPreparation.text(path: file, format: format, columns: TextColumns(texts: texts, score: score, label: label),
                                                        header: header, strict: strict, test: heldOut.split(testFile: testFile), out: out,
                                                        layout: shardOptions.layout, overwrite: overwrite)
            for summary in summaries {
                report(summary, source: summaries.count == 1 || testFile != nil ? "the text file" : "its share of the text file")
                try verify(summary.directory)
            }
        }
    }

    /// A headerless CSV or TSV file's text columns: every column of its first row but the score
    /// and label columns, in order (1 to 3 of them).
    static func defaultColumns(_ file: String, format: TextFormat, excluding: [TextColumn]) throws -> [TextColumn] {
        guard let contents = FileManager.default.contents(atPath: file) else { throw DataError.fileNotFound(path: file) }
        let width = try TextTable.firstRowWidth([UInt8](contents), format: format)
        let texts = (1...max(1, width)).map { TextColumn.position($0) }.filter { !excluding.contains($0) }
        guard (1...3).contains(texts.count) else {
            throw DataError.textInvalid(path: file, problem: "its first row has \(width) columns, \(texts.count) of them text; "
                                        + "choose 1 to 3 with --columns (e.g. --columns 1,2)")
        }
        return texts
    }
}

extension ImageStore: ExpressibleByArgument {}

struct PrepareWebDataset: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "webdataset",
        abstract: "webdataset tar shards (image + caption and/or class) into OUT.",
        discussion: """
        PATTERN names the shards with webdataset's brace expansion: 'data/shard-{000000..000099}.tar' (quote it \
        so the shell leaves the braces alone; a bound with a leading zero pads to its width) or {a,b} lists. \
        Members are grouped into samples as webdataset groups them: consecutive members with the same key (the \
        path up to the first dot of the file name); the extension (lower-cased) says what a member is: .jpg, \
        .jpeg or .png the image, .cls the class label (an integer), .txt the caption (or a field of .json with \
        --caption-field). Samples keep tar order, then shard order.

        --store jpeg keeps each image's encoded bytes (JPEG or PNG as they are) in the field image, beside the \
        fields key and caption and the labels; with --size S the size, channels and fit are recorded so training \
        decodes them on the fly (each image is decoded once here: one that does not decode is a bad sample). \
        --store pixels --size S decodes them here into uint8 [C, S, S] features (as prepare images does: PIL's \
        BILINEAR resize, centre crop or pad). A sample without an image, a key that comes back after other keys, \
        two members of one key with the same extension, a .cls that is not an integer or a caption that is not \
        UTF-8 is skipped and counted, the first few named; --strict stops at the first. A shard that is missing \
        or ends mid-member stops the command, naming it.

        The shards are read twice: first to check every sample (a byte a sample kept), which settles the \
        shard boundaries, the test split and the skips; then to write each output shard as it fills. Memory \
        is a shard or two, not the data set, so shards many times the memory prepare.
        """)
    @Argument(help: "The shards: a path with {000000..000099} ranges or {a,b} lists.") var pattern: String
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @Option(help: "How to store each image: jpeg (the encoded bytes as they are, JPEG or PNG) or pixels (decoded, needs --size).")
    var store: ImageStore = .jpeg
    @Option(help: "S: images decode to S x S (needed by --store pixels; with jpeg, recorded so the set trains).") var size: Int?
    @Option(help: "3 (RGB) or 1 (gray: PIL's \"L\" luma); with --size. (default: 3)") var channels: Int?
    @Option(help: "crop: shorter side to S, centre S x S; pad: longer side to S, centred on black; with --size. (default: crop)")
    var fit: DecodedImage.Fit?
    @Option(help: "Take the caption from this field of each sample's .json member instead of its .txt.") var captionField: String?
    @Flag(help: "Stop at the first bad sample, naming it, instead of skipping and counting bad samples.") var strict = false
    @OptionGroup var heldOut: HeldOutOptions
    @Flag(help: "Replace the data set in a non-empty --out folder (everything in it); the old one stays until the new one is complete.")
    var overwrite = false
    @OptionGroup var shardOptions: ShardOptions

    func validate() throws {
        try heldOut.validate(testFile: nil)
        if store == .pixels && size == nil { throw ValidationError("--store pixels decodes every image to S x S: add --size S (e.g. --size 64)") }
        if let size, size <= 0 { throw ValidationError("--size must be positive (the side of the square samples, e.g. 32), got \(size)") }
        if let channels, channels != 1 && channels != 3 { throw ValidationError("--channels must be 3 (RGB) or 1 (gray), got \(channels)") }
        if size == nil && (channels != nil || fit != nil) { throw ValidationError("--channels and --fit say how images decode to --size S: add --size") }
    }

    func run() throws {
        try reportingErrors {
            let decode = size.map { ImageDecodeSpec(size: $0, channels: channels ?? 3, fit: fit ?? .crop) }
            let summaries = try DatasetPreparation.webDataset(pattern: pattern, captionField: captionField, store: store, decode: decode,
                                                              strict: strict,
                                                              testFraction: heldOut.testFraction.map { ($0, heldOut.splitSeed ?? 0) },
                                                              out: out, layout: shardOptions.layout, overwrite: overwrite)
            for summary in summaries {
                report(summary, source: summaries.count == 1 ? "the tar shards" : "its share of the tar shards")
                try verify(summary.directory)
            }
        }
    }
}

/// Reports and verifies each folder a prepare wrote: one set, or train/ and test/ (each "its share" of `source`).
private func reportSplits(_ summaries: [PrepareSummary], source: String) throws {
    for summary in summaries {
        report(summary, source: summaries.count == 1 ? source : "its share of " + source)
        try verify(summary.directory)
    }
}

/// The held-out split of `prepare wordnet` and `prepare freedict`: a fraction of the groups.
struct GroupSplitOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Hold out this fraction of the groups (synsets or headwords), all their pairs with them, as the test "
                               + "split (OUT/train, OUT/test), so no test query is seen in training; 0 writes one split."))
    var testFraction: Double = 0.1
    @Option(help: "Seed of the --test-fraction draw.") var splitSeed: UInt64 = 0

    func validate() throws {
        if !(testFraction >= 0 && testFraction < 1) {
            throw ValidationError("--test-fraction must be at least 0 and below 1 (the share of groups held out, e.g. 0.1), got \(testFraction)")
        }
    }

    var fraction: Double? { testFraction > 0 ? testFraction : nil }
}

/// Where `prepare wordnet` and `prepare freedict` write: the folder, the group-wise test split, the shards.
struct LexiconOutputOptions: ParsableArguments {
    @Option(help: "Output folder: new or empty (see --overwrite).") var out: String
    @OptionGroup var split: GroupSplitOptions
    @Flag(help: "Replace the data set in a non-empty --out folder; the old one stays until the new one is complete.") var overwrite = false
    @OptionGroup var shardOptions: ShardOptions
}

struct PrepareWordNet: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wordnet",
        abstract: "WordNet's synsets as (definition, word) pairs: gloss-to-word retrieval (Debian: wordnet-base).",
        discussion: """
        Reads data.noun, data.verb, data.adj and data.adv (WordNet 3.0's database format, wndb(5WN)) from DIR. \
        Every word of a synset gives one pair: text is the synset's definition (its gloss up to the first quoted \
        example, which often holds the word itself), positive the word (underscores as spaces). Field group is the \
        synset: its words are each other's positives, so training masks them as negatives of each other and \
        retrieval counts any of them as a hit. The test split holds whole synsets.
        """)
    @Argument(help: "The WordNet database folder.") var directory = "/usr/share/wordnet"
    @OptionGroup var output: LexiconOutputOptions

    func run() throws {
        try reportingErrors {
            let summaries = try DatasetPreparation.wordNet(directory: directory, testFraction: output.split.fraction, seed: output.split.splitSeed,
                                                           out: output.out, layout: output.shardOptions.layout, overwrite: output.overwrite)
            try reportSplits(summaries, source: "the WordNet files")
        }
    }
}

struct PrepareFreeDict: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "freedict",
        abstract: "A FreeDict dictionary as (headword, translation) pairs: cross-lingual retrieval (Debian: dict-freedict-eng-deu).",
        discussion: """
        Reads a dictd dictionary: NAME.index and NAME.dict.dz (or NAME.dict) for --name NAME in DIR. Every entry \
        gives one pair: text is the headword (English for eng-deu), positive the entry's translation line \
        (German), its annotations (<fem>, [geh.], {...}) removed. Field group is the headword: its entries are \
        each other's positives. The test split holds whole headwords.
        """)
    @Argument(help: "The folder of the dictd files.") var directory = "/usr/share/dictd"
    @Option(help: "The dictionary's name (its files are NAME.index and NAME.dict.dz).") var name = "freedict-eng-deu"
    @OptionGroup var output: LexiconOutputOptions

    func run() throws {
        try reportingErrors {
            let base = directory + "/" + name
            let dictionary = FileManager.default.fileExists(atPath: base + ".dict.dz") ? base + ".dict.dz" : base + ".dict"
            let summaries = try DatasetPreparation.freeDict(index: base + ".index", dictionary: dictionary, testFraction: output.split.fraction,
                                                            seed: output.split.splitSeed, out: output.out, layout: output.shardOptions.layout,
                                                            overwrite: output.overwrite)
            try reportSplits(summaries, source: "the dictionary files")
        }
    }
}
