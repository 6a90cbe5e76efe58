import Tensor
import Evaluation
import NN
import RunFiles
import Config
import Data
import Text
import Foundation

/// The data one rank trains and evaluates on, resolved from the config: its samples, the
/// sampler that orders them, how batches are made, and (on the evaluating rank) the test split.
///
/// `fashion-mnist` is cut into `data.virtual_shards` virtual shards; every rank decompresses
/// the IDX files up to the end of its shards and keeps only those (about 1/P of the samples).
/// A `prepared` data set's shard files are the shards:
/// rank r of P opens the manifest and only the shard files its slots of the global batch fall
/// in (`Sampler.shards(rank:worldSize:)`), checks them, and holds their samples in memory,
/// or with `data.hold: disk` in unnamed files in `data.spill_dir` (`SampleFile`), or with
/// `data.hold: stream` not at all: it checks the files' sizes and streams them every epoch
/// (`StreamedBatches`); `train` then holds no rows, only the shapes and the run's extent.
public final class TrainingData {
    /// This rank's samples: the union of its shards.
    public let train: SampleRows
    /// The test split, on ranks that evaluate (`loadTest`); nil when the data set has none.
    public let test: SampleRows?
    public let sampler: Sampler
    public let maker: BatchMaker
    public let rank: Int
    public let worldSize: Int
    /// The shards this rank read and trains on.
    public let shards: Range<Int>
    /// Samples this rank embeds for the kNN memory: the shards whose first slot is in this
    /// rank's part of the batch. Disjoint across ranks, together all samples, each held by its rank.
    public var evaluated: Range<Int> {
        let local = sampler.globalBatchSize / worldSize
        let owned = (0..<sampler.virtualShards).filter { $0 * sampler.perShard / local == rank }
        guard let first = owned.first, let last = owned.last else { return train.held.lowerBound..<train.held.lowerBound }
        return sampler.shardRange(first).lowerBound..<sampler.shardRange(last).upperBound
    }
    /// One line for the run log: what was read and how batches are made.
    public let summary: String
    /// `data.hold: stream`: the training split, whose shards are streamed, not held in `train`.
    public let streamed: ShardedDataset?
    /// A text set's samples, tokenized; `train` then holds no rows, only the BERT row's shape
    /// (3 x model.bert.max_length floats) and the run's extent.
    public let texts: TextSamples?
    /// `data.hold: stream` of a text set: how the streams tokenize each sample (`texts` is then
    /// empty, its layout only).
    public let textReader: TextSampleReader?
    /// A text set's test split as a retrieval task, on ranks that evaluate (`loadTest`).
    public let textRetrieval: TextRetrieval?
    /// Whether the run evaluates retrieval on a text set's test split: the same on every rank
    /// (only ranks that evaluate hold `textRetrieval`, but every rank must enter the evaluation's
    /// collectives together).
    public let retrievesText: Bool

    /// What a views batch holds besides the two views (a text set's hard negatives, exact pair ids):
    /// the objective's layout must be the maker's.
    public var viewsLayout: ViewsLayout {
        guard let text = maker as? TextBatches else { return ViewsLayout() }
        return ViewsLayout(hardNegatives: text.hardNegatives, exactIds: text.ids == .exact, keys: text.carriesKeys)
    }

    /// What the model takes, recorded with its parameters (weights.bin, checkpoints).
    public var modelInputs: ModelInputs { ModelInputs(train) }

    /// [height, width] when the features are grey-scale images, else nil.
    public var imageShape: [Int]? { train.isImage ? train.featureShape : nil }

    public init(config: TrainingConfig, rank: Int, worldSize: Int, loadTest: Bool) throws {
        let d = config.data
        let path = d.path.replacingOccurrences(of: "{rank}", with: String(rank))
        let globalBatch = d.batchPerRank * worldSize
        let seed = UInt64(config.seed)
        var notes: [String] = []
        let spill = d.hold == .disk ? Self.spillDirectory(d) : nil
        let shuffleBuffer = d.hold == .stream ? d.shuffleBuffer : 0
        var streamed: ShardedDataset? = nil
        var texts: TextSamples? = nil
        var textReader: TextSampleReader? = nil
        var textRetrieval: TextRetrieval? = nil
        var retrievesText = false
        switch d.dataset {
        case .fashionMNIST:
            if config.model.pairEncoder == .bert && config.loss.usesPairTower {
                throw ConfigError(key: "model.pair_encoder", problem: "config key 'model.pair_encoder' is bert, which embeds each image's "
                                  + "caption, but data.dataset fashion-mnist has none",
                                  hint: "prepare one with captions (contrast prepare fashion-mnist --captions OUT) and use data.dataset: prepared")
            }
            // The headers first: the sampler decides which samples this rank keeps.
            let count = try FashionMNIST.sampleCount(directory: path, split: .train, limit: d.trainLimit)
            sampler = try Sampler(sampleCount: count, globalBatchSize: globalBatch, virtualShards: d.virtualShards, seed: seed)
            shards = try sampler.shards(rank: rank, worldSize: worldSize)
            train = try FashionMNIST.rows(directory: path, split: .train, limit: d.trainLimit,
                                          held: sampler.samples(rank: rank, worldSize: worldSize), spillDirectory: spill)
            if loadTest {
                let count = try FashionMNIST.sampleCount(directory: path, split: .test, limit: d.testLimit)
                test = try FashionMNIST.rows(directory: path, split: .test, limit: d.testLimit, held: 0..<count, spillDirectory: spill)
            } else {
                test = nil
            }
            notes.append("Fashion-MNIST from \(path): \(count) train images in \(d.virtualShards) shards "
                         + "(\(shards.lowerBound)..<\(shards.upperBound) on this rank, \(train.count) samples)")
        case .prepared:
            let (trainPath, testPath) = ShardedDataset.splits(of: path)
            // The manifest first: the shard ranges decide which files this rank may open.
            let manifest = try ShardedDataset.readManifest(directory: trainPath)
            // A text set's samples are BERT rows of 3T floats, made from its tokens. Encoded
            // images (--store jpeg) are the uint8 [C, S, S] samples they decode to.
            let tokenizer = manifest.isTextSet ? try Self.textTokenizer(config, path: trainPath, fields: manifest.fields ?? []) : nil
            let features = tokenizer != nil ? FieldLayout(dtype: .float32, shape: [3 * config.model.bert.maxLength])
                : try manifest.requireInputs(path: trainPath)
            if manifest.encodedImages != nil && d.hold == .disk {
                throw ConfigError(key: "data.hold", problem: "config key 'data.hold' is disk, but the data set \(trainPath) keeps its images "
                                  + "encoded (--store jpeg), which are held in memory or streamed; use data.hold: memory or stream, "
                                  + "or prepare it with --store pixels")
            }
            // data.train_limit keeps the first N samples: the shards are cut at N, and a shard
            // that starts past N is no shard of this run (its file is never opened). Every rank
            // reads the same manifest and limit, so every rank cuts the same shards.
            let count = d.trainLimit > 0 ? min(d.trainLimit, manifest.sampleCount) : manifest.sampleCount
            let ranges = manifest.shards[ShardedDataset.shards(of: manifest, holdingFirst: count)].map {
                $0.firstSample ..< min($0.firstSample + $0.sampleCount, count)
            }
            // The whole set's batch errors name its shard files and `prepare --shards`; a limited
            // set's name the shards the limit keeps and data.train_limit.
            sampler = count < manifest.sampleCount
                ? try Self.limitedPreparedSampler(ranges: ranges, globalBatch: globalBatch, seed: seed, trainPath: trainPath,
                                                  shuffleBuffer: shuffleBuffer)
                : try Sampler(preparedShards: ranges, directory: trainPath, batchPerRank: d.batchPerRank, worldSize: worldSize, seed: seed,
                              shuffleBuffer: shuffleBuffer)
            shards = try sampler.shards(rank: rank, worldSize: worldSize)
            let dataset = try ShardedDataset(directory: trainPath, checking: shards)
            // model.pair_encoder bert: the captions, tokenized, are the pairs.
            let captions = config.model.pairEncoder == .bert && config.loss.usesPairTower ? try CaptionTokens(config: config) : nil
            if captions != nil && d.hold != .memory {
                throw ConfigError(key: "data.hold", problem: "config key 'data.hold' is \(d.hold.rawValue), but model.pair_encoder bert "
                                  + "keeps the caption token rows in memory", hint: "use data.hold: memory")
            }
            if let tokenizer, d.hold == .stream {
                // Nothing read now: the texts are tokenized as the streams read them (`StreamedTextBatches`).
                let reader = TextSampleReader(dataset, tokenizer: tokenizer, tokens: config.model.bert.maxLength, overlong: d.overlong,
                                              negatives: Self.usesNegatives(config))
                let first = ranges[shards.lowerBound].lowerBound
                streamed = dataset
                textReader = reader
                texts = TextSamples(held: first..<first, samples: [], layout: reader)
                train = SampleRows(held: first..<first, totalCount: count, featureShape: features.sampleShape, features: .float32([]))
            } else if let tokenizer {
                let read = try TextSamples(dataset, shards: shards, limit: count, tokenizer: tokenizer, tokens: config.model.bert.maxLength,
                                           overlong: d.overlong, negatives: Self.usesNegatives(config))
                texts = read
                train = SampleRows(held: read.held.lowerBound..<read.held.lowerBound, totalCount: count, featureShape: features.sampleShape,
                                   features: .float32([]))
            } else if d.hold == .stream {
                streamed = dataset
                train = Self.streamedRows(manifest, features: features, first: ranges[shards.lowerBound].lowerBound, total: count)
            } else {
                let rows = try SampleRows.read(dataset, shards: shards, limit: count, spillDirectory: spill)
                train = try captions?.attach(to: rows, dataset: dataset, shards: shards) ?? rows
            }
            var testNote = ""
            retrievesText = tokenizer != nil && testPath != nil
            if loadTest, let testPath, let tokenizer {
                // data.test_limit: the first N test pairs. Overlong test texts are cut as in training.
                let testSet = try ShardedDataset(directory: testPath, checking: nil)
                let testShards = ShardedDataset.shards(of: testSet.manifest, holdingFirst: d.testLimit)
                let read = try TextSamples(testSet, shards: testShards, limit: d.testLimit, tokenizer: tokenizer,
                                           tokens: config.model.bert.maxLength, overlong: .truncate)
                let retrieval = TextRetrieval(read)
                textRetrieval = retrieval
                testNote = "; test: \(retrieval.queryCount) texts against \(retrieval.documentCount) distinct positives (retrieval)"
                test = nil
            } else if loadTest, let testPath, tokenizer == nil {
                // data.test_limit: the first N test samples, as `contrast eval` reads them.
                let testShards = ShardedDataset.shards(of: try ShardedDataset.readManifest(directory: testPath), holdingFirst: d.testLimit)
                let testSet = try ShardedDataset(directory: testPath, checking: testShards)
                let rows = try SampleRows.read(testSet, shards: testShards, limit: d.testLimit, spillDirectory: spill)
                test = try captions?.attach(to: rows, dataset: testSet, shards: testShards) ?? rows
                testNote = test!.count < testSet.manifest.sampleCount
                    ? "; test: the first \(test!.count) of \(testSet.manifest.sampleCount) samples (data.test_limit)"
                    : "; test: \(test!.count) samples"
            } else {
                test = nil
            }
            let first = count < manifest.sampleCount ? "the first \(count) of \(manifest.sampleCount) samples (data.train_limit) in "
                + "\(ranges.count) of its \(manifest.shards.count) shards" : "\(manifest.sampleCount) samples, \(manifest.shards.count) shards"
            let onRank = streamed != nil ? "\(ranges[shards].map(\.count).reduce(0, +)) samples streamed" + (texts != nil ? ", tokenized as read" : "")
                : texts.map { "\($0.held.count) samples" } ?? "\(train.count) samples"
            notes.append("prepared data set \(trainPath): \(first) (\(shards.lowerBound)..<\(shards.upperBound) on this rank, \(onRank))"
                         + testNote)
            if let texts { notes += Self.describe(texts, config: config, streamed: streamed != nil) }
        }
        if let test {
            guard test.featureShape == train.featureShape else {
                throw RunDirectory.Failure(description: "the test split's features are \(test.featureShape), the training split's \(train.featureShape); "
                                       + "prepare both splits from the same data")
            }
        }
        try Self.checkLabels(train, split: "training", path: path)
        if let test { try Self.checkLabels(test, split: "test", path: path) }
        // Checked here, before the run directory exists, so the corrected run starts cleanly.
        try config.validateModel(imageShape: train.isImage ? train.featureShape : nil,
                                 features: "\(train.features.dtype) \(train.featureShape)", featureWidth: train.featureShape.reduce(1, *))
        self.rank = rank
        self.worldSize = worldSize
        self.streamed = streamed
        self.texts = texts
        self.textReader = textReader
        self.textRetrieval = textRetrieval
        self.retrievesText = retrievesText
        maker = try texts.map { try Self.textMaker(config: config, texts: $0) } ?? Self.maker(config: config, rows: train, seed: seed)
        if streamed != nil, let texts {
            let slots = min(d.shuffleBuffer, sampler.usedPerShard)
            notes.append("texts streamed from the \(shards.count) shard file(s) in order every epoch through shuffle buffers of "
                         + "\(slots) samples each (data.hold: stream, data.shuffle_buffer \(d.shuffleBuffer)), tokenized as they enter "
                         + "a buffer: at most \(shards.count * slots) tokenized samples of \(texts.tokens) tokens or fewer on this rank")
        } else if let streamed {
            let m = streamed.manifest, features = try m.requireInputs(path: streamed.directory)
            // Encoded images: a slot holds one file's bytes, about the data frame's share per sample.
            let imageBytes = m.encodedImages == nil ? features.elementsPerSample * features.dtype.size
                : m.shards.reduce(0) { $0 + $1.bytes } / max(1, m.sampleCount)
            let sampleBytes = imageBytes + (m.labels == nil ? 0 : 8) + (m.pairs?.elementsPerSample ?? 0) * 4
            let slots = min(d.shuffleBuffer, sampler.usedPerShard)
            notes.append("samples streamed from the \(shards.count) shard file(s) in order every epoch through shuffle buffers of "
                         + "\(slots) samples each (data.hold: stream, data.shuffle_buffer \(d.shuffleBuffer)): "
                         + String(format: "%.1f MB", Double(shards.count * slots * sampleBytes) / 1e6) + " of buffers on this rank")
        }
        if let spill {
            notes.append("samples kept on disk in unnamed files in \(spill) (data.hold: disk)"
                         + (SampleFile.isInMemory(directory: spill) ? "; warning: \(spill) is a tmpfs, the files live in memory "
                            + "there and save none; point data.spill_dir at a local disk" : ""))
        }
        notes.append("batches: \(Self.describe(maker))")
        summary = notes.joined(separator: "; ")
    }

    /// The sampler over the shards of a prepared data set cut at data.train_limit. Its errors
    /// name the shards the limit keeps and what to change: the batch or the limit (the whole
    /// set's errors, from `Sampler(preparedShards:)`, name `contrast prepare --shards`).
    static func limitedPreparedSampler(ranges: [Range<Int>], globalBatch: Int, seed: UInt64, trainPath: String,
                                       shuffleBuffer: Int = 0) throws -> Sampler {
        do {
            return try Sampler(shardRanges: ranges, globalBatchSize: globalBatch, seed: seed, shuffleBuffer: shuffleBuffer)
        } catch let error as DataError {
            let shards = "the \(ranges.count) shard(s) that hold the first \(ranges.last!.upperBound) samples (data.train_limit)"
            switch error {
            case .batchNotMultipleOfShards:
                throw ConfigError(key: "data.batch_per_rank", problem: "global batch \(globalBatch) (data.batch_per_rank x ranks) cannot take "
                                  + "an equal share from each of \(shards) of the prepared data set \(trainPath); choose data.batch_per_rank "
                                  + "so that the global batch is a multiple of \(ranges.count), or change data.train_limit")
            case .epochTooShort(_, _, let perShard):
                throw ConfigError(key: "data.batch_per_rank", problem: "the smallest of \(shards) of the prepared data set \(trainPath) holds "
                                  + "\(ranges.map(\.count).min()!) samples, fewer than the \(perShard) each batch takes from every shard; "
                                  + "lower data.batch_per_rank or raise data.train_limit")
            default: throw error
            }
        }
    }

    /// `data.hold: stream`'s `train`: no rows, the data set's shapes, whether it has labels and
    /// pairs (empty arrays), and its extent (`totalCount`; `held` empty at the rank's first sample).
    static func streamedRows(_ manifest: ShardManifest, features: FieldLayout, first: Int, total: Int) -> SampleRows {
        SampleRows(held: first..<first, totalCount: total, featureShape: features.sampleShape,
                   features: features.dtype == .uint8 ? .uint8([]) : .float32([]),
                   labels: manifest.labels == nil ? nil : [], pairShape: manifest.pairs?.shape, pairs: manifest.pairs == nil ? nil : [],
                   encoded: manifest.encodedImages?.decode.map { SampleRows.Encoded(images: VariableValues(), decode: $0) })
    }

    /// This rank's batches from `start` on, made in order by the loop or the prefetch thread.
    public func batches(start: SamplerPosition) throws -> BatchSequence {
        if let streamed, let textReader, let text = maker as? TextBatches {
            return try StreamedTextBatches(dataset: streamed, sampler: sampler, maker: text, reader: textReader, rank: rank,
                                           worldSize: worldSize, start: start)
        }
        if let streamed {
            return try StreamedBatches(dataset: streamed, sampler: sampler, maker: maker, rank: rank, worldSize: worldSize, start: start)
        }
        return try SampledBatches(maker: maker, sampler: sampler, rank: rank, worldSize: worldSize, start: start)
    }

    /// The representations and labels (as kNN classes) of the samples this rank evaluates
    /// (`evaluated`) when they are streamed: the shards read one at a time, in order, each checked
    /// and embedded, so evaluation holds one shard's samples, not the rank's. nil representations
    /// when the data set has no labels usable as classes.
    public func streamedRepresentations(model: ContrastiveModel, progress: EvaluationProgress?) throws -> (Tensor?, [UInt8]?) {
        guard let streamed else { preconditionFailure("streamedRepresentations: the samples are not streamed") }
        let evaluated = self.evaluated
        guard streamed.manifest.labels != nil else { return (nil, nil) }
        let out = Tensor(zeros: [evaluated.count, model.representationWidth])
        var labels: [UInt8] = []
        labels.reserveCapacity(evaluated.count)
        var shard = (0..<sampler.virtualShards).first { sampler.shardRange($0).lowerBound == evaluated.lowerBound } ?? sampler.virtualShards
        while shard < sampler.virtualShards && sampler.shardRange(shard).lowerBound < evaluated.upperBound {
            let rows = try SampleRows.read(streamed, shards: shard..<(shard + 1), limit: train.totalCount)
            guard let classes = Evaluation.classes(rows.labels) else { return (nil, nil) }
            let part = Evaluation.representations(model: model, rows: rows, progress: progress, what: "training samples of shard \(shard)")
            (out.data + labels.count * model.representationWidth).update(from: part.data, count: part.count)
            labels += classes
            shard += 1
        }
        precondition(labels.count == evaluated.count, "streamedRepresentations: the shards read are not the evaluated samples")
        return (out, labels)
    }

    /// Where `data.hold: disk` keeps the sample files: `data.spill_dir`, else $TMPDIR, else /tmp.
    static func spillDirectory(_ d: DataSection) -> String {
        if !d.spillDir.isEmpty { return d.spillDir }
        if let temporary = ProcessInfo.processInfo.environment["TMPDIR"], !temporary.isEmpty { return temporary }
        return "/tmp"
    }

    /// The batch maker of the config's loss and augmentation for these samples.
    static func maker(config: TrainingConfig, rows: SampleRows, seed: UInt64) throws -> BatchMaker {
        let b = config.data.batchPerRank
        let clip = config.loss.usesPairTower
        var augment = config.data.augment
        if augment == .auto { augment = clip ? .none : rows.isImage ? .image : .features }
        func fail(_ problem: String) -> ConfigError { ConfigError(key: "data.augment", problem: problem) }
        let augmentation: Augmentation
        switch augment {
        case .image:
            guard rows.isImage else {
                throw fail("config key 'data.augment' is image, but the features are \(rows.features.dtype) \(rows.featureShape), "
                           + "not uint8 [height, width] or [channels, height, width] images; use features")
            }
            augmentation = .image(try viewMaker(config.views, imageShape: rows.featureShape))
        case .features:
            let f = config.featureViews
            augmentation = .features(FeatureViewMaker(width: rows.featureWidth, settings: FeatureViewSettings(
                dropout: f.dropout, mask: f.mask, noise: f.noise, scale: f.scale[0]...f.scale[1])))
        case .none, .auto:
            guard clip else {
                throw fail("config key 'data.augment' is none, but loss.kind ntxent needs two different views of each sample; "
                           + "use auto, image or features")
            }
            augmentation = .none
        }
        if clip {
            guard rows.hasPairs else {
                let key = config.loss.kind == .clip ? "loss.kind" : "loss.sides"
                let value = config.loss.kind == .clip ? "clip" : "pairs"
                throw ConfigError(key: key, problem: "config key '\(key)' is \(value), but the data set has no pairs; "
                                  + "prepare one with pairs (contrast prepare npy --pairs, or fashion-mnist --pairs projection)")
            }
            return PairBatches(rows: rows, augmentation: augmentation, seed: seed, samplesPerBatch: b)
        }
        if config.loss.maskDuplicates {
            guard rows.labels != nil else {
                throw ConfigError(key: "loss.mask_duplicates", problem: "config key 'loss.mask_duplicates' is true, but the training data "
                                  + "has no labels to serve as pair ids; prepare it with labels (contrast prepare npy --labels) or set it false")
            }
            return TwoViewBatches(rows: rows, augmentation: augmentation, seed: seed, samplesPerBatch: b,
                                  labels: LabelSubset(fraction: 1, seed: seed))
        }
        if config.loss.kind == .supcon {
            guard rows.labels != nil else {
                throw ConfigError(key: "loss.kind", problem: "config key 'loss.kind' is supcon, but the training data has no labels; "
                                  + "prepare it with labels (contrast prepare npy --labels) or use ntxent")
            }
            return TwoViewBatches(rows: rows, augmentation: augmentation, seed: seed, samplesPerBatch: b,
                                  labels: LabelSubset(fraction: config.data.labeledFraction, seed: seed))
        }
        return TwoViewBatches(rows: rows, augmentation: augmentation, seed: seed, samplesPerBatch: b)
    }

    /// The image view maker of the `views` section for uint8 [H, W] or [C, H, W] images (C = 1 or 3).
    /// - Throws: `ConfigError` naming `views.blur_kernel` when the kernel is too large for the images.
    public static func viewMaker(_ v: ViewsSection, imageShape: [Int]) throws -> ViewMaker {
        let (channels, height, width) = imageShape.count == 3 ? (imageShape[0], imageShape[1], imageShape[2]) : (1, imageShape[0], imageShape[1])
        let settings = ViewSettings(
            cropArea: v.cropArea[0]...v.cropArea[1], aspectRatio: v.aspectRatio[0]...v.aspectRatio[1],
            flipProbability: v.flip, jitterStrength: v.jitter, saturation: v.saturation, hue: v.hue,
            jitterProbability: v.jitterProbability, jitterOrder: v.jitterOrder == .random ? .random : .fixed,
            grayscaleProbability: v.grayscaleProbability, blurProbability: v.blurProbability, blurKernel: v.blurKernel,
            blurSigma: v.blurSigma[0]...v.blurSigma[1], solarizeProbability: v.solarizeProbability,
            solarizeThreshold: v.solarizeThreshold, noiseSigma: v.noise)
        // The blur reflects at the borders, which needs half the kernel below each side (torchvision's rule too).
        let kernel = v.blurKernel > 0 ? v.blurKernel : ViewMaker.blurKernel(side: min(height, width))
        if v.blurProbability > 0 && kernel / 2 >= min(height, width) {
            throw ConfigError(key: "views.blur_kernel", problem: "config key 'views.blur_kernel' is \(kernel), too large for "
                              + "\(height) x \(width) images (half the kernel must be below the shorter side)",
                              hint: "use at most \(2 * min(height, width) - 1), or 0 for 10 % of the side")
        }
        return ViewMaker(channels: channels, height: height, width: width, settings: settings)
    }

    /// The tokenizer of a text set's training: the model is BERT and data.vocab names its
    /// vocabulary; anything else stops the run before its directory exists, naming the key.
    static func textTokenizer(_ config: TrainingConfig, path: String, fields: [NamedField]) throws -> WordPieceTokenizer {
        let d = config.data, names = fields.map(\.name).joined(separator: ", ")
        guard config.model.encoder == .bert else {
            throw ConfigError(key: "model.encoder", problem: "the data set \(path) holds text (fields \(names)), which trains the text "
                              + "encoder, but config key 'model.encoder' is \(config.model.encoder.rawValue)",
                              hint: "set model.encoder: bert and data.vocab: a vocab.txt (contrast vocab --size 8000 ...; docs/text.md)")
        }
        guard !d.vocab.isEmpty else {
            throw ConfigError(key: "data.vocab", problem: "the data set \(path) holds text (fields \(names)), but config key 'data.vocab' "
                              + "is empty: the tokenizer needs a vocabulary", hint: "learn one with contrast vocab --size 8000 --out vocab.txt "
                              + "FILE... and set data.vocab to it (docs/text.md)")
        }
        guard d.hold != .disk else {
            throw ConfigError(key: "data.hold", problem: "config key 'data.hold' is disk, but the data set \(path) holds text, whose "
                              + "token rows are held in memory (a few bytes a token) or streamed, not kept in spill files",
                              hint: "use data.hold: stream for a text set larger than memory (docs/text.md), or memory")
        }
        let kind = config.loss.kind
        guard !config.loss.usesPairTower else {
            throw ConfigError(key: kind == .clip ? "loss.kind" : "loss.sides",
                              problem: "the data set \(path) holds text pairs, which go through the one text encoder as the two views, but "
                              + (kind == .clip ? "config key 'loss.kind' is clip (two towers)" : "config key 'loss.sides' is pairs (two towers)"),
                              hint: "use loss.kind pairs or siglip with loss.sides: views, or ntxent")
        }
        do {
            return try WordPieceTokenizer(vocabularyFile: d.vocab, options: TokenizerOptions(lowercase: d.lowercase))
        } catch let error as TextError {
            throw ConfigError(key: "data.vocab", problem: "config key 'data.vocab': \(error)")
        }
    }

    /// The batches of a text set: anchors and positives (or the text twice), and the hard negatives
    /// when they were read, through the one encoder.
    static func textMaker(config: TrainingConfig, texts: TextSamples) throws -> BatchMaker {
        TextBatches(texts: texts, samplesPerBatch: config.data.batchPerRank,
                    ids: config.loss.maskDuplicates ? .exact : config.loss.kind == .supcon ? .labels : .none)
    }

    /// Whether a text set's `negative` field is read and trained: loss.hard_negatives, with the
    /// objective that takes hard negatives (loss.kind pairs, loss.sides views).
    static func usesNegatives(_ config: TrainingConfig) -> Bool {
        config.loss.hardNegatives && config.loss.kind == .pairs && config.loss.sides == .views
    }

    /// The run log's notes on a text set: fields and tokens, the texts truncated, the pair ids, the negatives.
    static func describe(_ texts: TextSamples, config: TrainingConfig, streamed: Bool = false) -> [String] {
        let count = texts.anchors.count + (texts.positives?.count ?? 0) + (texts.negatives?.count ?? 0)
        let ids = texts.fields.contains("group") ? "the group field" : "a hash of the positive's text"
        var notes = ["text: fields \(texts.fields.joined(separator: ", ")), up to \(texts.tokens) tokens a text (model.bert.max_length, "
                     + "data.lowercase \(config.data.lowercase))",
                     streamed ? (config.data.overlong == .error ? "a text longer than \(texts.tokens) tokens stops the run when it is read "
                                 + "(data.overlong: error; streamed, the texts are not all read before the run)"
                                 : "texts longer than \(texts.tokens) tokens are truncated as they are read (data.overlong: truncate)")
                     : "\(texts.truncated) of the \(count) texts on this rank longer than \(texts.tokens) tokens, truncated (data.overlong: truncate)",
                     "pair ids from \(ids)" + (config.loss.maskDuplicates ? ", carried exactly (64 bits)"
                        + (texts.idsAreGroups ? ", with the positives' text hashes (equal texts are masked too)" : "") : "")]
        if texts.negatives != nil {
            notes.append("hard negatives: each pair's negative through the encoder joins every anchor's candidates, in-batch and global "
                         + "(loss.hard_negatives)" + (config.loss.maskDuplicates ? "; a negative whose text is an anchor's positive is masked for it" : ""))
        } else if texts.fields.contains("negative") {
            let why = !config.loss.hardNegatives ? "loss.hard_negatives is false"
                : "only loss.kind pairs with loss.sides views trains hard negatives, this run's loss.kind is \(config.loss.kind.rawValue)"
                    + (config.loss.kind == .pairs ? " with loss.sides \(config.loss.sides.rawValue)" : "")
            notes.append("the negative field is not trained: \(why)")
        }
        return notes
    }

    public static func describe(_ maker: BatchMaker) -> String {
        func name(_ a: Augmentation) -> String {
            switch a {
            case .image(let maker):
                // The steps that can happen, by name only: the line must fit a terminal, the values are in config.yaml.
                let s = maker.settings
                let steps = [("crop", true), ("flip", s.flipProbability > 0), ("jitter", s.jitterProbability > 0),
                             ("grayscale", maker.channels == 3 && s.grayscaleProbability > 0), ("blur", s.blurProbability > 0),
                             ("solarize", s.solarizeProbability > 0), ("noise", s.noiseSigma > 0)]
                return "image views of \(maker.channels)x\(maker.height)x\(maker.width) images: "
                    + steps.filter(\.1).map(\.0).joined(separator: ", ")
            case .features(let maker):
                let s = maker.settings
                return "feature views (dropout \(s.dropout), mask \(s.mask), noise \(s.noise), scale \(s.scale))"
            case .none: return "no augmentation"
            }
        }
        switch maker {
        case let text as TextBatches:
            return text.texts.positives == nil ? "the text twice through two dropout masks (SimCSE)"
                : text.hardNegatives ? "text, positive and hard negative through the one encoder" : "text and positive through the one encoder"
        case let pairs as PairBatches: return "pairs (\(name(pairs.augmentation)) of the features, pairs as they are)"
        case let views as TwoViewBatches:
            return "two \(name(views.augmentation))" + (views.labels.map { String(format: " with labels (%.0f%% of samples labeled)", $0.fraction * 100) } ?? "")
        default: return "\(type(of: maker))"
        }
    }
}
