// The one configuration type of a training run. Every field has a default; `TrainingConfig()` is the
// benchmark workload fmnist-simclr-mlp (shared/benchmarks/fmnist-simclr-mlp.md). YAML keys are snake_case
// and nest by section, so `--set optimizer.lr=3e-4` reads like the file. Loading, merging and error
// messages live in ConfigLoader.swift; range checks in ConfigValidation.swift; docs/config.md documents
// every key (a test keeps it complete).

/// Everything a training run needs to know, as one nested document.
public struct TrainingConfig: Codable, Sendable, Equatable {
    /// Directory everything the run writes goes to (logs, metrics, checkpoints, resolved config).
    public var runDirectory: String = "runs/fmnist-simclr"
    /// Seed of all randomness: initialisation, sample order, augmentation.
    public var seed: Int = 0
    /// Data set, batch size and sharding.
    public var data: DataSection = DataSection()
    /// Augmentation that makes the two views of every sample.
    public var views: ViewsSection = ViewsSection()
    /// Augmentation of non-image features (data.augment features).
    public var featureViews: FeatureViewsSection = FeatureViewsSection()
    /// Encoder and projection head.
    public var model: ModelSection = ModelSection()
    /// Contrastive objective.
    public var loss: LossSection = LossSection()
    /// Optimizer, learning-rate schedule and gradient clipping.
    public var optimizer: OptimizerSection = OptimizerSection()
    /// Length of the run and logging cadence.
    public var train: TrainSection = TrainSection()
    /// Representation-quality monitors.
    public var eval: EvalSection = EvalSection()
    /// Health warnings, embedding geometry, progress output and TensorBoard files.
    public var monitor: MonitorSection = MonitorSection()
    /// Gradient exchange between ranks.
    public var communication: CommunicationSection = CommunicationSection()
    /// When checkpoints are written and how many are kept.
    public var checkpoint: CheckpointSection = CheckpointSection()
    /// `auto` (continue from the newest complete checkpoint in run_dir, if any), `never` (start
    /// fresh; run_dir must be empty), or the path of a checkpoint directory to start from.
    public var resume: String = "auto"
    /// On resume, whether config changes that alter what the run trains (its model, data, seed,
    /// objective; `ResumeChanges`) are refused (`refuse`) or let through (`allow`). Other changes
    /// (lr, epochs, logging, checkpoints) are always accepted, and every change is logged.
    public var resumeConfigChanges: ResumeConfigChanges = .refuse
    /// Fine-tuning: a pretrained run or checkpoint directory whose encoder parameters start this run
    /// ("" = none; parameters only, a fresh optimizer state; a resumed run ignores it). docs/fine-tuning.md.
    public var initFrom: String = ""
    /// init_from: also copy the projection head (false: a fresh head).
    public var initHead: Bool = false
    /// What does not train: none, or the encoder (no gradients, no all-reduce, no updates).
    public var freeze: FreezeKind = .none

    enum CodingKeys: String, CodingKey {
        case runDirectory = "run_dir"
        case seed, data, views, model, loss, optimizer, train, eval, monitor, communication, checkpoint, resume
        case resumeConfigChanges = "resume_config_changes"
        case featureViews = "feature_views"
        case initFrom = "init_from"
        case initHead = "init_head"
        case freeze
    }

    public init() {}
}

/// What a resume does with config changes that alter what the run trains (resume_config_changes).
public enum ResumeConfigChanges: String, Codable, Sendable, CaseIterable {
    /// Stop before anything is written, naming the keys.
    case refuse
    /// Resume anyway (a change of parameter shapes still fails when the checkpoint is loaded).
    case allow
    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Which parameters a fine-tune keeps fixed.
public enum FreezeKind: String, Codable, Sendable, CaseIterable {
    /// Everything trains.
    case none
    /// The first tower's encoder is fixed: only the adapter, the head (and a pair tower) train.
    case encoder
    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Which data set to train on.
public enum DatasetKind: String, Codable, Sendable, CaseIterable {
    /// Fashion-MNIST in IDX format (Debian package dataset-fashion-mnist); each rank keeps only its shards' samples.
    case fashionMNIST = "fashion-mnist"
    /// A sharded data set written by `contrast prepare` (docs/data-format.md); each rank reads only its shards.
    case prepared

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Where a rank keeps the samples of its shards while it trains.
public enum HoldKind: String, Codable, Sendable, CaseIterable {
    /// In memory, read before the first step.
    case memory
    /// In unnamed temporary files in `data.spill_dir`, read a batch at a time (the page cache
    /// keeps the hot ones): for data sets larger than a rank's memory.
    case disk
    /// Not held: a prepared data set's shard files are read in order every epoch through a
    /// bounded shuffle buffer of `data.shuffle_buffer` samples per shard (docs/data-format.md).
    case stream

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// What training does with a text longer than model.bert.max_length tokens.
public enum OverlongTextKind: String, Codable, Sendable, CaseIterable {
    /// Cut to max_length ([SEP] kept last) and count it in the run log.
    case truncate
    /// Stop before the run starts, naming the data set, the sample and the fix.
    case error

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// How the views of a sample are made.
public enum AugmentKind: String, Codable, Sendable, CaseIterable {
    /// image views for uint8 [H, W] images, feature views for other features; none for loss.kind clip and loss.sides pairs.
    case auto
    /// Crops, flips, jitter and noise of the `views` section (uint8 [H, W] images only).
    case image
    /// Dropout, masking, noise and scaling of the `feature_views` section.
    case features
    /// The samples as they are (loss.kind clip or loss.sides pairs only: the two views are the two modalities).
    case none

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Data set, batch size and sharding.
public struct DataSection: Codable, Sendable, Equatable {
    /// Which data set to read.
    public var dataset: DatasetKind = .fashionMNIST
    /// Directory holding the data set's files. For `prepared`: the folder `contrast prepare`
    /// wrote, with train/ and test/ inside, or a data-set folder itself (then no test split).
    public var path: String = "/usr/share/datasets/fashion-mnist"
    /// Samples per rank per step; the global batch is this times the number of ranks.
    public var batchPerRank: Int = 256
    /// Fixed number of virtual shards an in-memory data set is cut into (a prepared data set's shards are its files).
    public var virtualShards: Int = 64
    /// Use only the first this many training samples (0 = all); for small test runs.
    public var trainLimit: Int = 0
    /// Use only the first this many test samples in evaluation (0 = all).
    public var testLimit: Int = 0
    /// Batches a background thread makes views for ahead of the step (0 = make them in the training loop).
    public var prefetch: Int = 2
    /// How the views of a sample are made.
    public var augment: AugmentKind = .auto
    /// loss.kind supcon: fraction of the training samples whose labels are used (a fixed subset by seed); the rest count as unlabeled.
    public var labeledFraction: Float = 1
    /// Where the rank keeps its samples: memory, or files on disk.
    public var hold: HoldKind = .memory
    /// `hold: disk`: the directory of the unnamed sample files; empty = $TMPDIR, else /tmp.
    public var spillDir: String = ""
    /// `hold: stream`: samples each shard's shuffle buffer holds (M). Smaller: less memory, a less random order.
    public var shuffleBuffer: Int = 1024
    /// A WordPiece vocabulary, one token a line (BERT's vocab.txt): the text encoder's vocabulary (model.bert.vocab_size
    /// 0 counts its lines), copied into a Hugging Face export.
    public var vocab: String = ""
    /// Text sets: lower-case (and strip accents) before WordPiece, as the vocabulary was learned (`contrast vocab --cased`: false).
    public var lowercase: Bool = true
    /// Text sets: a text of more than model.bert.max_length tokens is truncated and counted, or an error.
    public var overlong: OverlongTextKind = .truncate

    enum CodingKeys: String, CodingKey {
        case dataset, path, augment, hold, vocab, lowercase, overlong
        case spillDir = "spill_dir"
        case shuffleBuffer = "shuffle_buffer"
        case labeledFraction = "labeled_fraction"
        case batchPerRank = "batch_per_rank"
        case virtualShards = "virtual_shards"
        case trainLimit = "train_limit"
        case testLimit = "test_limit"
        case prefetch
    }

    public init() {}
}

/// Augmentation that makes the two views of every sample (applied in this order: crop, flip, jitter,
/// grayscale, blur, solarize, noise).
public struct ViewsSection: Codable, Sendable, Equatable {
    /// A recipe the keys below start from (none: their own defaults); a key given in a file or by `--set` overrides it.
    public var preset: ViewsPreset = .none
    /// Random resized crop: range [lo, hi] of the crop's area as a fraction of the image.
    public var cropArea: [Float] = [0.6, 1.0]
    /// Random resized crop: range [lo, hi] of the crop's aspect ratio (drawn log-uniformly).
    public var aspectRatio: [Float] = [0.75, 1.3333334]
    /// Probability of a horizontal flip.
    public var flip: Float = 0.5
    /// Colour jitter strength: brightness and contrast factors uniform in [1 - jitter, 1 + jitter].
    public var jitter: Float = 0.4
    /// Colour jitter: saturation factor uniform in [1 - saturation, 1 + saturation] (RGB images; 0 = off).
    public var saturation: Float = 0
    /// Colour jitter: hue shift uniform in [-hue, hue] turns (RGB images; 0 = off).
    public var hue: Float = 0
    /// Probability that colour jitter is applied.
    public var jitterProbability: Float = 0.8
    /// The order of jitter's steps: fixed (brightness, contrast, saturation, hue) or random per view.
    public var jitterOrder: ViewsJitterOrder = .fixed
    /// Probability that an RGB view is turned grey.
    public var grayscaleProbability: Float = 0
    /// Probability of a Gaussian blur.
    public var blurProbability: Float = 0
    /// Odd side of the blur kernel; 0 = 10 % of the image's shorter side, made odd, at least 3.
    public var blurKernel: Int = 0
    /// Range [lo, hi] of the blur's sigma in pixels, drawn uniformly.
    public var blurSigma: [Float] = [0.1, 2.0]
    /// Probability of solarizing (values >= solarize_threshold become 1 - value).
    public var solarizeProbability: Float = 0
    public var solarizeThreshold: Float = 0.5
    /// Standard deviation of additive Gaussian pixel noise (0 = none).
    public var noise: Float = 0.05

    enum CodingKeys: String, CodingKey {
        case preset
        case cropArea = "crop_area"
        case aspectRatio = "aspect_ratio"
        case flip, jitter, saturation, hue
        case jitterProbability = "jitter_p"
        case jitterOrder = "jitter_order"
        case grayscaleProbability = "grayscale_p"
        case blurProbability = "blur_p"
        case blurKernel = "blur_kernel"
        case blurSigma = "blur_sigma"
        case solarizeProbability = "solarize_p"
        case solarizeThreshold = "solarize_threshold"
        case noise
    }

    public init() {}

    /// The section with every key not named in `given` (keys below `views`, as written: `crop_area`)
    /// taken from the preset; unchanged for preset none.
    public func resolvingPreset(given: Set<String>) -> ViewsSection {
        guard let base = preset.section else { return self }
        var resolved = self
        func take<Value>(_ key: CodingKeys, _ path: WritableKeyPath<ViewsSection, Value>) {
            if !given.contains(key.rawValue) { resolved[keyPath: path] = base[keyPath: path] }
        }
        take(.cropArea, \.cropArea); take(.aspectRatio, \.aspectRatio); take(.flip, \.flip); take(.jitter, \.jitter)
        take(.saturation, \.saturation); take(.hue, \.hue); take(.jitterProbability, \.jitterProbability)
        take(.jitterOrder, \.jitterOrder); take(.grayscaleProbability, \.grayscaleProbability)
        take(.blurProbability, \.blurProbability); take(.blurKernel, \.blurKernel); take(.blurSigma, \.blurSigma)
        take(.solarizeProbability, \.solarizeProbability); take(.solarizeThreshold, \.solarizeThreshold); take(.noise, \.noise)
        return resolved
    }
}

/// A named augmentation recipe (`views.preset`).
public enum ViewsPreset: String, Codable, Sendable, CaseIterable {
    /// No preset: each key's own default (the Fashion-MNIST benchmark's grey views).
    case none
    /// SimCLR's ImageNet recipe (Chen et al. 2020, appendix A, colour strength s = 1): crop area
    /// [0.08, 1], flip 0.5, jitter 0.8 (brightness, contrast, saturation 0.8, hue 0.2, random order),
    /// grayscale 0.2, blur 0.5 with a kernel 10 % of the image side and sigma [0.1, 2], no solarize, no noise.
    case simclr

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }

    /// The preset's values of every key; nil for none.
    public var section: ViewsSection? {
        switch self {
        case .none: return nil
        case .simclr:
            var s = ViewsSection()
            s.preset = .simclr
            s.cropArea = [0.08, 1.0]; s.aspectRatio = [0.75, 1.3333334]; s.flip = 0.5
            s.jitter = 0.8; s.saturation = 0.8; s.hue = 0.2; s.jitterProbability = 0.8; s.jitterOrder = .random
            s.grayscaleProbability = 0.2; s.blurProbability = 0.5; s.blurKernel = 0; s.blurSigma = [0.1, 2.0]
            s.solarizeProbability = 0; s.solarizeThreshold = 0.5; s.noise = 0
            return s
        }
    }
}

/// The order of colour jitter's steps (`views.jitter_order`).
public enum ViewsJitterOrder: String, Codable, Sendable, CaseIterable {
    /// Brightness, contrast, saturation, hue.
    case fixed
    /// One of the 24 orders per view, uniformly (torchvision's ColorJitter).
    case random

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Augmentation of non-image features (`data.augment: features`), applied in this order:
/// scale, mask, dropout, noise.
public struct FeatureViewsSection: Codable, Sendable, Equatable {
    /// Range [lo, hi] of one multiplicative factor per view, drawn uniformly ([1, 1] = off).
    public var scale: [Float] = [0.8, 1.2]
    /// Fraction of the features zeroed as one contiguous span at a random start (0 = off).
    public var mask: Float = 0.0
    /// Probability that each feature is zeroed, independently (no rescaling; 0 = off).
    public var dropout: Float = 0.1
    /// Standard deviation of additive Gaussian noise (0 = off).
    public var noise: Float = 0.05

    public init() {}
}

/// Architecture of the encoder.
public enum EncoderKind: String, Codable, Sendable, CaseIterable {
    /// Multilayer perceptron on the flattened image.
    case mlp
    /// Small residual convolutional network (Conv2d, GroupNorm, ReLU, average pooling) on uint8 [H, W] images.
    case cnn
    /// Vision Transformer (patch embedding, pre-LN Transformer blocks, [CLS] or mean pooling) on uint8 [H, W] images.
    case vit
    /// ResNet-style network (`model.resnet`: stem, stages of basic or bottleneck blocks, GroupNorm) on uint8 [H, W] images.
    case resnet
    /// BERT text encoder (`model.bert`: embeddings, post-LN Transformer layers, mean or [CLS] pooling) on token ids (docs/text.md).
    case bert

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// The pair tower's encoder (`model.pair_encoder`).
public enum PairEncoderKind: String, Codable, Sendable, CaseIterable {
    /// An MLP of model.pair_hidden on the data set's float pair vectors.
    case mlp
    /// The BERT text encoder of `model.bert` on the data set's `caption` texts (image <-> text CLIP).
    case bert

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Non-linearity between Linear layers.
public enum ActivationKind: String, Codable, Sendable, CaseIterable {
    /// max(0, x).
    case relu
    /// x Φ(x) (Gaussian error linear unit).
    case gelu

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Encoder and projection head: input -> hidden... -> representation -> projection... -> L2-normalise.
public struct ModelSection: Codable, Sendable, Equatable {
    /// Architecture of the encoder.
    public var encoder: EncoderKind = .mlp
    /// Widths of the encoder's hidden layers.
    public var hidden: [Int] = [1024, 1024]
    /// Width of the representation h (the encoder's output, used for evaluation). encoder cnn: 0 means
    /// no Linear after pooling, h is the pooled maps themselves.
    public var representation: Int = 256
    /// Widths of the projection head's layers; the last is the embedding z the loss sees.
    public var projection: [Int] = [256, 128]
    /// Non-linearity between Linear layers.
    public var activation: ActivationKind = .relu
    /// Widths of the second tower's hidden layers (loss.kind clip, or loss.sides pairs: the encoder of the pairs).
    public var pairHidden: [Int] = [512]
    /// The second tower's encoder (loss.kind clip, or loss.sides pairs): an MLP on the pair vectors, or BERT
    /// (`model.bert`, `data.vocab`) on each sample's `caption`, tokenized to model.bert.max_length (docs/text.md).
    public var pairEncoder: PairEncoderKind = .mlp
    /// encoder cnn: channels of the residual stages (stride 2 between stages).
    public var channels: [Int] = [16, 32, 64]
    /// encoder cnn: the last stage is average-pooled over a pool_cells x pool_cells grid (1: global pool).
    public var poolCells: Int = 1
    /// encoder cnn: h is made of the pooled maps of this many last stages, concatenated (1: the last only).
    public var poolStages: Int = 1
    /// Bottleneck width of a residual adapter on h between encoder and head (0 = none).
    public var adapter: Int = 0
    /// loss.reconstruction_weight > 0: widths of the decoder's hidden layers, h -> hidden... -> input.
    public var decoder: [Int] = [256]
    /// encoder vit: the Vision Transformer's shape.
    public var vit: ViTSection = ViTSection()
    /// encoder resnet: the ResNet's shape (pooling: pool_cells and pool_stages).
    public var resnet: ResNetSection = ResNetSection()
    /// encoder bert: the text encoder's shape, length, pooling and dropout.
    public var bert: BertSection = BertSection()
    /// Dropout rate in training, in [0, 1) (0 = off): after each hidden layer of an mlp encoder; in every vit
    /// block on the attention's output, the MLP's hidden layer and its output. Masks are keyed by
    /// (seed, step, layer, sample), so runs stay reproducible at any rank count.
    public var dropout: Float = 0
    /// encoder vit: dropout rate of the attention probabilities in training, in [0, 1) (0 = off).
    public var attentionDropout: Float = 0
    /// Stochastic depth in training, in [0, 1) (0 = off): the rate of the last residual block (vit blocks,
    /// cnn stages), rising linearly from 0 at the first.
    public var dropPath: Float = 0

    enum CodingKeys: String, CodingKey {
        case encoder, hidden, representation, projection, activation, channels, adapter, decoder, vit, resnet, bert, dropout
        case dropPath = "drop_path"
        case attentionDropout = "attention_dropout"
        case pairHidden = "pair_hidden"
        case pairEncoder = "pair_encoder"
        case poolCells = "pool_cells"
        case poolStages = "pool_stages"
    }

    public init() {}
}

/// A named Vision Transformer shape (`model.vit.preset`).
public enum ViTPreset: String, Codable, Sendable, CaseIterable {
    /// No preset: every shape key of `model.vit` is given.
    case none
    /// For 28 x 28 images (Fashion-MNIST): patch 4 (49 patches), width 128, 6 blocks of 4 heads, MLP 4x.
    case vitSmall28 = "vit-small-28"
    /// ViT-Tiny (DeiT-Ti: width 192, 12 blocks of 3 heads, MLP 4x) with patch 4, for 32 x 32 images.
    case vitTiny = "vit-tiny"

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }

    /// (patch, dim, depth, heads, mlp_ratio); nil for `none`.
    public var shape: (patch: Int, dim: Int, depth: Int, heads: Int, mlpRatio: Int)? {
        switch self {
        case .none: nil
        case .vitSmall28: (4, 128, 6, 4, 4)
        case .vitTiny: (4, 192, 12, 3, 4)
        }
    }
}

/// How a Transformer summarises its tokens into h.
public enum TokenPoolKind: String, Codable, Sendable, CaseIterable {
    /// A learned [CLS] token is put before the patches; h is its final state.
    case cls
    /// The mean of the tokens' final states (no [CLS] token).
    case mean

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// `model.vit`: the Vision Transformer's shape, a preset with any of its keys overridden (0 = the preset's value).
public struct ViTSection: Codable, Sendable, Equatable {
    /// A named shape the other keys start from.
    public var preset: ViTPreset = .vitSmall28
    /// Side of the square patches (must divide the image's height and width); 0 = the preset's.
    public var patch: Int = 0
    /// Token width D; 0 = the preset's.
    public var dim: Int = 0
    /// Number of Transformer blocks; 0 = the preset's.
    public var depth: Int = 0
    /// Attention heads (must divide dim); 0 = the preset's.
    public var heads: Int = 0
    /// The MLP is mlp_ratio x dim wide; 0 = the preset's.
    public var mlpRatio: Int = 0
    /// [CLS] token or mean of the tokens.
    public var pool: TokenPoolKind = .cls
    /// Attention in query and key tiles of this many tokens with a streaming softmax (no T x T matrix kept); 0 = plain.
    public var attentionTile: Int = 0

    enum CodingKeys: String, CodingKey {
        case preset, patch, dim, depth, heads, pool
        case mlpRatio = "mlp_ratio"
        case attentionTile = "attention_tile"
    }

    public init() {}

    /// The shape in effect: each key that is not 0, else the preset's value (0 where neither gives one).
    public var resolved: (patch: Int, dim: Int, depth: Int, heads: Int, mlpRatio: Int) {
        let base = preset.shape ?? (0, 0, 0, 0, 0)
        func pick(_ own: Int, _ preset: Int) -> Int { own != 0 ? own : preset }
        return (pick(patch, base.patch), pick(dim, base.dim), pick(depth, base.depth), pick(heads, base.heads), pick(mlpRatio, base.mlpRatio))
    }
}

/// A named BERT shape (`model.bert.preset`): (layers, width, heads, ffn).
public enum BertPreset: String, Codable, Sendable, CaseIterable {
    /// No preset: every shape key of `model.bert` is given.
    case none
    /// 2 layers, width 128, 2 heads, MLP 512 (BERT-Tiny of Turc et al. 2019).
    case tiny
    /// 4 layers, width 256, 4 heads, MLP 1024 (BERT-Mini).
    case mini
    /// 4 layers, width 512, 8 heads, MLP 2048 (BERT-Small).
    case small

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }

    /// (layers, width, heads, ffn); nil for `none`.
    public var shape: (layers: Int, width: Int, heads: Int, ffn: Int)? {
        switch self {
        case .none: nil
        case .tiny: (2, 128, 2, 512)
        case .mini: (4, 256, 4, 1024)
        case .small: (4, 512, 8, 2048)
        }
    }
}

/// `model.bert`: the BERT text encoder, a preset with any of its shape keys overridden (0 = the preset's value).
public struct BertSection: Codable, Sendable, Equatable {
    /// A named shape the other keys start from.
    public var preset: BertPreset = .tiny
    /// Transformer layers; 0 = the preset's.
    public var layers: Int = 0
    /// Hidden width D; 0 = the preset's.
    public var width: Int = 0
    /// Attention heads (must divide width); 0 = the preset's.
    public var heads: Int = 0
    /// The MLP's (intermediate) width; 0 = the preset's.
    public var ffn: Int = 0
    /// Tokens a text is padded or truncated to, [CLS] and [SEP] included (at most max_position).
    public var maxLength: Int = 128
    /// Rows of the position table (BertModel's max_position_embeddings).
    public var maxPosition: Int = 512
    /// Rows of the word table; 0 = the lines of data.vocab.
    public var vocabSize: Int = 0
    /// mean: the mean of the real (unpadded) tokens' last states; cls: the [CLS] token's.
    public var pooling: TokenPoolKind = .mean
    /// BERT's hidden_dropout_prob in training, in [0, 1): after the embeddings and each layer's attention and MLP outputs.
    public var dropout: Float = 0.1
    /// BERT's attention_probs_dropout_prob in training, in [0, 1).
    public var attentionDropout: Float = 0.1
    /// Attention in query and key tiles of this many tokens with a streaming softmax; 0 = plain.
    public var attentionTile: Int = 0

    enum CodingKeys: String, CodingKey {
        case preset, layers, width, heads, ffn, pooling, dropout
        case maxLength = "max_length"
        case maxPosition = "max_position"
        case vocabSize = "vocab_size"
        case attentionDropout = "attention_dropout"
        case attentionTile = "attention_tile"
    }

    public init() {}

    /// The shape in effect: each key that is not 0, else the preset's value (0 where neither gives one).
    public var resolved: (layers: Int, width: Int, heads: Int, ffn: Int) {
        let base = preset.shape ?? (0, 0, 0, 0)
        func pick(_ own: Int, _ preset: Int) -> Int { own != 0 ? own : preset }
        return (pick(layers, base.layers), pick(width, base.width), pick(heads, base.heads), pick(ffn, base.ffn))
    }
}

/// A named ResNet shape (`model.resnet.preset`).
public enum ResNetPreset: String, Codable, Sendable, CaseIterable {
    /// No preset: `model.resnet.stages` is given.
    case none
    /// torchvision's ResNet-18 with GroupNorm: stages [[64, 2, 1], [128, 2, 2], [256, 2, 2], [512, 2, 2]], basic blocks, imagenet stem.
    case resnet18

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }

    /// The preset's [channels, blocks, stride] per stage (empty for none).
    public var stages: [[Int]] {
        switch self {
        case .none: []
        case .resnet18: [[64, 2, 1], [128, 2, 2], [256, 2, 2], [512, 2, 2]]
        }
    }
}

/// The residual block of a ResNet's stages.
public enum ResNetBlockKind: String, Codable, Sendable, CaseIterable {
    /// Two 3x3 convolutions (ResNet-18/34).
    case basic
    /// 1x1 down to the stage's channels, 3x3, 1x1 up to channels x model.resnet.expansion (ResNet-50 and deeper).
    case bottleneck

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// The layers of a ResNet before its first stage.
public enum ResNetStemKind: String, Codable, Sendable, CaseIterable {
    /// The preset's stem (imagenet for resnet18), small without a preset.
    case auto
    /// 3x3 convolution, stride 1: small images (28 x 28, 32 x 32) keep their size.
    case small
    /// torchvision's: 7x7 convolution stride 2, then 3x3 max pool stride 2 (a quarter of the size).
    case imagenet

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// `model.resnet`: the ResNet's shape, a preset with any of its keys overridden.
public struct ResNetSection: Codable, Sendable, Equatable {
    /// A named shape the other keys start from.
    public var preset: ResNetPreset = .none
    /// [channels, blocks, stride] per stage (the first block of a stage has the stride); empty = the preset's.
    public var stages: [[Int]] = []
    /// Basic or bottleneck blocks.
    public var block: ResNetBlockKind = .basic
    /// The stem; auto = the preset's (imagenet for resnet18), small without one.
    public var stem: ResNetStemKind = .auto
    /// block bottleneck: a stage's output is expansion x its channels wide.
    public var expansion: Int = 4

    public init() {}

    /// The stages in effect: the key's, else the preset's.
    public var resolvedStages: [[Int]] { stages.isEmpty ? preset.stages : stages }

    /// The stem in effect.
    public var resolvedStem: ResNetStemKind {
        stem != .auto ? stem : preset == .none ? .small : .imagenet
    }

    /// How much the stem and the strides shrink each side of the image.
    public var downsampling: Int {
        resolvedStages.reduce(resolvedStem == .imagenet ? 4 : 1) { $0 * ($1.count == 3 ? max($1[2], 1) : 1) }
    }
}

/// Contrastive objective.
public enum LossKind: String, Codable, Sendable, CaseIterable {
    /// NT-Xent (SimCLR): the other view is the positive, every other view of the global batch a negative.
    case ntxent
    /// Symmetric InfoNCE of two towers (CLIP): a sample's pair is its positive, every other pair of the global batch a negative.
    case clip
    /// Supervised contrastive (SupCon, L_out): the other view and every other view with the same label are positives.
    case supcon
    /// SigLIP's sigmoid loss (Zhai et al. 2023) over every pair of the global batch, computed in a ring of
    /// the ranks (local x local logits only); a learned bias beside the temperature.
    case siglip
    /// Multiple-negatives ranking of (anchor, positive) pairs against every positive of the global batch,
    /// one direction or symmetric, duplicates of the positive masked (sentence-transformers' MNRL).
    case pairs

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// How the softmax temperature evolves over the run.
public enum TemperatureMode: String, Codable, Sendable, CaseIterable {
    /// loss.temperature throughout.
    case fixed
    /// Cosine from loss.temperature at step 0 to loss.temperature_final at the end of the run.
    case cosine
    /// Learned, as in CLIP: theta = log(1 / tau) is a parameter of the model, initialised to
    /// log(1 / loss.temperature), never decayed, clamped to tau >= loss.temperature_min.
    case learnable

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Where SupCon's unlabeled samples get labels from.
public enum PseudoLabelMode: String, Codable, Sendable, CaseIterable {
    /// Unlabeled samples stay unlabeled: their only positive is their other view.
    case none
    /// A weighted kNN vote over the labeled views of the global batch, used above loss.pseudo_label_threshold.
    case knn

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Contrastive objective.
public struct LossSection: Codable, Sendable, Equatable {
    /// Which contrastive loss.
    public var kind: LossKind = .ntxent
    /// Softmax temperature tau of the similarity logits z_i · z_j / tau (the start value when scheduled or learned).
    public var temperature: Float = 0.2
    /// Fixed, cosine-scheduled or learnable temperature.
    public var temperatureMode: TemperatureMode = .fixed
    /// temperature_mode cosine: the temperature at the end of the run.
    public var temperatureFinal: Float = 0.1
    /// temperature_mode learnable: the smallest temperature (CLIP: 0.01, a logit scale of at most 100).
    public var temperatureMin: Float = 0.01
    /// Candidates per chunk of the logit matrix (0 = all at once). Bounds the logit memory of a
    /// rank to local anchors x chunk as the global batch grows (streaming log-sum-exp).
    public var logitChunk: Int = 0
    /// ntxent only: K keys of past steps kept as extra negatives, from a momentum encoder (MoCo); 0 = off.
    public var mocoQueue: Int = 0
    /// moco_queue > 0: m of the momentum encoder's update theta_k <- m theta_k + (1 - m) theta_q.
    public var mocoMomentum: Float = 0.99
    /// Concentration beta of hard-negative reweighting (Robinson et al. 2021; 0 = off); the start value when scheduled.
    public var hardNegativeBeta: Float = 0
    /// hard_negative_schedule linear or cosine: beta at the end of the run.
    public var hardNegativeBetaFinal: Float = 0
    /// Constant beta, or a curriculum from hard_negative_beta to hard_negative_beta_final.
    public var hardNegativeSchedule: HardNegativeSchedule = .constant
    /// Class prior tau+ of the debiased estimator (Chuang et al. 2020; 0 = off).
    public var debiasedTauPlus: Float = 0
    /// kind supcon: pseudo-labels for the unlabeled samples of each global batch (none or knn).
    public var pseudoLabels: PseudoLabelMode = .none
    /// pseudo_labels knn: the smallest share of the vote the winning class needs, in (0, 1].
    public var pseudoLabelThreshold: Float = 0.9
    /// pseudo_labels knn: labeled neighbours per view that vote.
    public var pseudoLabelK: Int = 10
    /// pseudo_labels knn: T of a neighbour's vote weight exp(cosine / T).
    public var pseudoLabelTemperature: Float = 0.1
    /// w of the hybrid objective L = L_contrastive + w MSE(decoder(h), x); 0 = no decoder.
    public var reconstructionWeight: Float = 0
    /// kind siglip and pairs: where the two sides of a pair come from (views: the two views of a sample
    /// through the encoder; pairs: the sample through the first tower and its pair through the second, as clip).
    public var sides: PairSides = .views
    /// kind siglip: the start value of the learned logit bias b (SigLIP: -10).
    public var siglipBias: Float = -10
    /// kind pairs: both directions (anchor -> positives and positive -> anchors), or anchor -> positives alone.
    public var symmetric: Bool = true
    /// kind pairs: a positive with the same pair id as an anchor's own positive is not its negative. The
    /// pair id of a sample is its label (a group id; the training data needs labels).
    public var maskDuplicates: Bool = false
    /// kind pairs, sides views: a text set's `negative` field (a hard negative per pair) joins every
    /// anchor's candidates, in-batch and global (sentence-transformers' MNRL with a third column);
    /// false ignores the field. Nothing changes for a set without it.
    public var hardNegatives: Bool = true

    enum CodingKeys: String, CodingKey {
        case kind, temperature
        case temperatureMode = "temperature_mode"
        case temperatureFinal = "temperature_final"
        case temperatureMin = "temperature_min"
        case logitChunk = "logit_chunk"
        case mocoQueue = "moco_queue"
        case mocoMomentum = "moco_momentum"
        case hardNegativeBeta = "hard_negative_beta"
        case hardNegativeBetaFinal = "hard_negative_beta_final"
        case hardNegativeSchedule = "hard_negative_schedule"
        case debiasedTauPlus = "debiased_tau_plus"
        case pseudoLabels = "pseudo_labels"
        case pseudoLabelThreshold = "pseudo_label_threshold"
        case pseudoLabelK = "pseudo_label_k"
        case pseudoLabelTemperature = "pseudo_label_temperature"
        case reconstructionWeight = "reconstruction_weight"
        case sides
        case siglipBias = "siglip_bias"
        case symmetric
        case maskDuplicates = "mask_duplicates"
        case hardNegatives = "hard_negatives"
    }

    public init() {}

    /// True when the model has a second tower for the pairs of the data (clip, or siglip / pairs with sides pairs).
    public var usesPairTower: Bool {
        kind == .clip || (kind == .siglip || kind == .pairs) && sides == .pairs
    }

    /// True when the model learns a logit bias (siglip).
    public var learnsLogitBias: Bool { kind == .siglip }

    /// True when NT-Xent is reweighted or debiased (HardNegativeNTXentLoss instead of NTXentLoss).
    public var usesHardNegatives: Bool {
        hardNegativeBeta != 0 || debiasedTauPlus != 0 || (hardNegativeSchedule != .constant && hardNegativeBetaFinal != 0)
    }
}

/// Where siglip and pairs take the two sides of a pair from.
public enum PairSides: String, Codable, Sendable, CaseIterable {
    /// The two views of each sample through the one encoder: view 0 is the anchor (x), view 1 its positive (y).
    case views
    /// The sample through the first tower (x) and its pair through the pair tower (y): the data needs pairs, as clip.
    case pairs

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// How the hard-negative concentration beta moves over the run (a curriculum).
public enum HardNegativeSchedule: String, Codable, Sendable, CaseIterable {
    /// loss.hard_negative_beta throughout.
    case constant
    /// Straight line from loss.hard_negative_beta at step 0 to loss.hard_negative_beta_final at the end.
    case linear
    /// Cosine from loss.hard_negative_beta at step 0 to loss.hard_negative_beta_final at the end.
    case cosine

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Element format of gradients on the wire.
public enum CommunicationPrecision: String, Codable, Sendable, CaseIterable {
    /// Float32: exact sums, twice the bytes.
    case fp32
    /// bfloat16: fp32's range, 8 bits of mantissa; no scaling needed.
    case bf16
    /// IEEE half: 11 bits of mantissa, range 6e-5 ... 65504, so gradients are scaled dynamically.
    case fp16

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// How ranks exchange gradients.
public struct CommunicationSection: Codable, Sendable, Equatable {
    /// Format of gradients on the wire; sums are always formed in fp32 and applied to fp32 weights.
    public var precision: CommunicationPrecision = .bf16
    /// Size of one gradient all-reduce bucket in MB (of fp32 gradients); buckets start as soon as backward has finished their layers.
    public var bucketMB: Float = 4
    /// fp16 only: initial gradient scale before casting to the wire.
    public var fp16InitialScale: Float = 65536
    /// fp16 only: clean steps after which the scale doubles again (it halves on every overflow).
    public var fp16ScaleWindow: Int = 500
    /// Abort the job when a collective has waited this many seconds (0 = no watchdog; MPI runs only).
    public var watchdogSeconds: Double = 300
    /// The same limit while the ranks evaluate, where rank 0 classifies alone for minutes (0 = evaluation unwatched).
    public var evalWatchdogSeconds: Double = 3600

    enum CodingKeys: String, CodingKey {
        case precision
        case bucketMB = "bucket_mb"
        case fp16InitialScale = "fp16_initial_scale"
        case fp16ScaleWindow = "fp16_scale_window"
        case watchdogSeconds = "watchdog_seconds"
        case evalWatchdogSeconds = "eval_watchdog_seconds"
    }

    public init() {}
}

/// Optimizer algorithm.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// Stochastic gradient descent with (optionally Nesterov) momentum.
    case sgd
    /// Adam with decoupled weight decay.
    case adamw
    /// SGD with momentum and layer-wise trust ratio (You et al. 2017).
    case lars

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Shape of the learning rate over steps (after warm-up).
public enum ScheduleKind: String, Codable, Sendable, CaseIterable {
    /// The learning rate stays at `lr`.
    case constant
    /// Cosine decay from `lr` to `final_lr` over the run.
    case cosine

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Optimizer, learning-rate schedule and gradient clipping.
public struct OptimizerSection: Codable, Sendable, Equatable {
    /// Optimizer algorithm.
    public var kind: OptimizerKind = .adamw
    /// Peak learning rate.
    public var lr: Float = 1e-3
    /// AdamW: decay rates (beta1, beta2) of the first and second moment estimates.
    public var betas: [Float] = [0.9, 0.999]
    /// AdamW: added to the denominator for numerical stability.
    public var eps: Float = 1e-8
    /// Weight decay coefficient (decoupled for AdamW, added to the gradient for SGD and LARS).
    public var weightDecay: Float = 1e-4
    /// SGD and LARS: momentum coefficient.
    public var momentum: Float = 0.9
    /// SGD: use Nesterov momentum.
    public var nesterov: Bool = false
    /// LARS: trust coefficient eta of the layer-wise learning-rate ratio.
    public var trustCoefficient: Float = 0.001
    /// Learning-rate schedule after warm-up.
    public var schedule: ScheduleKind = .constant
    /// Steps of linear warm-up from 0 to `lr` (0 = none).
    public var warmupSteps: Int = 0
    /// Cosine schedule: learning rate at the last step.
    public var finalLR: Float = 0
    /// Clip the global gradient L2 norm to this value (0 = off).
    public var clipNorm: Float = 0
    /// Multiplies the learning rate of the first tower's encoder (fine-tuning: e.g. 0.1).
    public var encoderLRScale: Float = 1

    enum CodingKeys: String, CodingKey {
        case kind, lr, betas, eps
        case weightDecay = "weight_decay"
        case momentum, nesterov
        case trustCoefficient = "trust_coefficient"
        case schedule
        case warmupSteps = "warmup_steps"
        case finalLR = "final_lr"
        case clipNorm = "clip_norm"
        case encoderLRScale = "encoder_lr_scale"
    }

    public init() {}
}

/// Length of the run and logging cadence.
public struct TrainSection: Codable, Sendable, Equatable {
    /// Passes over the training set.
    public var epochs: Int = 15
    /// Stop after this many optimizer steps, even mid-epoch (0 = no limit).
    public var maxSteps: Int = 0
    /// Log loss, learning rate and throughput every this many steps.
    public var logEverySteps: Int = 10
    /// OpenBLAS threads per rank.
    public var blasThreads: Int = 1
    /// Gradient caching (Gao et al. 2021): forward and backward the model this many views at a time,
    /// so its activations cost this many rows, not the rank's V (0 = off: all V at once).
    public var gradientCacheChunk: Int = 0
    /// The model's GEMMs in fp32 or bf16 (fp32 accumulation, master weights and loss; `ComputePrecision`).
    public var computePrecision: ComputePrecision = .fp32
    /// The library of the fp32 GEMMs: auto (oneDNN where available), openblas or onednn (`GEMMLibraryChoice`).
    public var gemmLibrary: GEMMLibraryChoice = .auto
    /// Stop the run after this many skipped steps in a row (non-finite summed loss or gradients; 0 = never).
    public var maxSkippedSteps: Int = 20

    enum CodingKeys: String, CodingKey {
        case epochs
        case maxSteps = "max_steps"
        case logEverySteps = "log_every_steps"
        case blasThreads = "blas_threads"
        case gradientCacheChunk = "gradient_cache_chunk"
        case computePrecision = "compute_precision"
        case gemmLibrary = "gemm_library"
        case maxSkippedSteps = "max_skipped_steps"
    }

    public init() {}
}

/// Representation-quality monitors (on the frozen representation h of un-augmented images).
public struct EvalSection: Codable, Sendable, Equatable {
    /// Run kNN evaluation every this many epochs (0 = only at the end; it always runs at the end).
    public var knnEveryEpochs: Int = 5
    /// kNN: number of neighbours that vote.
    public var knnK: Int = 200
    /// kNN: votes are weighted by exp(cosine similarity / knn_temperature).
    public var knnTemperature: Float = 0.1
    /// Text sets: retrieval on the test split (recall@1/5/10, MRR@10, nDCG@10; Spearman with scores) every this many
    /// epochs (0 = only at the end; it always runs at the end, and with every kNN evaluation).
    public var retrievalEveryEpochs: Int = 0
    /// Also fit and score the linear probe at every this many epochs' evaluation, and at the end (0 = never during training).
    public var linearEveryEpochs: Int = 0
    /// Stop when the monitor has not improved by `early_stopping_min_delta` for this many evaluations (0 = off).
    public var earlyStoppingPatience: Int = 0
    /// What early stopping watches: knn or linear accuracy on the test split.
    public var earlyStoppingMonitor: EvalMonitor = .knn
    /// Smallest rise of the monitor that counts as an improvement.
    public var earlyStoppingMinDelta: Float = 0
    /// `contrast eval full`: the linear probe is fitted on this fraction of the training labels, the
    /// subset `data.labeled_fraction` would keep with the same seed (1 = every label).
    public var probeLabeledFraction: Float = 1
    /// Zero-shot classification through a text pair tower (model.pair_encoder bert): class prompts against images.
    public var zeroShot: ZeroShotSection = ZeroShotSection()

    enum CodingKeys: String, CodingKey {
        case zeroShot = "zero_shot"
        case knnEveryEpochs = "knn_every_epochs"
        case knnK = "knn_k"
        case knnTemperature = "knn_temperature"
        case linearEveryEpochs = "linear_every_epochs"
        case retrievalEveryEpochs = "retrieval_every_epochs"
        case earlyStoppingPatience = "early_stopping_patience"
        case earlyStoppingMonitor = "early_stopping_monitor"
        case earlyStoppingMinDelta = "early_stopping_min_delta"
        case probeLabeledFraction = "probe_labeled_fraction"
    }

    public init() {}
}

/// `eval.zero_shot`: each class's text embedding is the normalised mean of its prompts' embeddings through
/// the text tower; an image's class is the one of highest cosine (CLIP, Radford et al. 2021, section 3.1.4).
public struct ZeroShotSection: Codable, Sendable, Equatable {
    /// Class names by label; empty = the data set's (Fashion-MNIST's caption names, or the manifest's `classes`).
    public var classNames: [String] = []
    /// Prompt templates, `{}` standing for the class name.
    public var templates: [String] = ["a photo of a {}."]

    enum CodingKeys: String, CodingKey {
        case templates
        case classNames = "class_names"
    }

    public init() {}
}

/// An evaluation early stopping can watch.
public enum EvalMonitor: String, Codable, Sendable, CaseIterable {
    /// kNN accuracy of the representation on the test split.
    case knn
    /// Linear-probe accuracy (needs eval.linear_every_epochs > 0).
    case linear

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// How a run reports on its health (docs/monitoring.md).
public struct MonitorSection: Codable, Sendable, Equatable {
    /// Measure the embedding geometry of the global batch every this many steps (0 = never).
    public var geometryEverySteps: Int = 50
    /// Warn of collapse when the mean per-dimension std of the embeddings, times sqrt(width),
    /// falls below this (about 1 when spread over the sphere, 0 when collapsed).
    public var collapseStd: Float = 0.2
    /// Warn of a straggler when a rank's compute time per step exceeds the median rank's by this factor.
    public var stragglerFactor: Float = 1.5
    /// ... and by at least this many milliseconds per step: a factor alone flags noise when steps take a millisecond.
    public var stragglerMinMs: Float = 10
    /// Warn when the training loop waits for data more than this fraction of the step time.
    public var dataWaitFraction: Float = 0.1
    /// ... and more than this many milliseconds per step: a 0.03 ms wait in a 0.3 ms step costs nothing worth a warning.
    public var dataWaitMinMs: Float = 2
    /// Warn after this many consecutive skipped (non-finite gradient) steps.
    public var skippedSteps: Int = 3
    /// Megabytes each pair of neighbouring hosts exchanges at start-up to measure its link (the
    /// first rank of each host); 0 = no link probe. Only runs whose ranks span two or more hosts.
    public var linkProbeMb: Float = 4
    /// Warn, naming the host and its ranks, when a host's link is this many times slower than
    /// the median host's (three or more hosts: with two, no host can be told from the other).
    public var linkSlowFactor: Float = 2
    /// Write TensorBoard event files (scalars, rank 0) to run_dir/tensorboard.
    public var tensorboard: Bool = true
    /// Live progress line on a terminal: auto (when standard output is a terminal), always, never.
    public var progress: ProgressKind = .auto

    enum CodingKeys: String, CodingKey {
        case geometryEverySteps = "geometry_every_steps"
        case collapseStd = "collapse_std"
        case stragglerFactor = "straggler_factor"
        case stragglerMinMs = "straggler_min_ms"
        case dataWaitFraction = "data_wait_fraction"
        case dataWaitMinMs = "data_wait_min_ms"
        case skippedSteps = "skipped_steps"
        case linkProbeMb = "link_probe_mb"
        case linkSlowFactor = "link_slow_factor"
        case tensorboard, progress
    }

    public init() {}
}

/// When the live progress line is shown.
public enum ProgressKind: String, Codable, Sendable, CaseIterable {
    /// When standard output is a terminal.
    case auto
    /// Always (control characters on standard output).
    case always
    /// Never: plain periodic lines only.
    case never

    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// When checkpoints are written and how many are kept (sharded, zstd-compressed; docs/checkpoint-format.md).
public struct CheckpointSection: Codable, Sendable, Equatable {
    /// Write a checkpoint every this many steps (0 = not by step count).
    public var everySteps: Int = 500
    /// Write a checkpoint when this many minutes have passed since the last one (0 = not by time).
    public var everyMinutes: Float = 30
    /// Keep the newest this many checkpoints (at least 1; a new one commits before an old one is deleted).
    public var keepLast: Int = 3
    /// Also keep every checkpoint whose step is a multiple of this (0 = none).
    public var keepEvery: Int = 0
    /// zstd compression level.
    public var level: Int = 3
    /// Byte-plane shuffle of floats before compression (compresses floats far better).
    public var shuffle: Bool = true

    enum CodingKeys: String, CodingKey {
        case everySteps = "every_steps"
        case everyMinutes = "every_minutes"
        case keepLast = "keep_last"
        case keepEvery = "keep_every"
        case level, shuffle
    }

    public init() {}
}

/// Thrown while decoding a String-valued enum from an unknown value; ConfigLoader turns it into a
/// ConfigError that lists the valid values.
struct InvalidChoice: Error {
    var codingPath: [String]
    var choices: [String]
}

/// Decodes a String raw-value enum, failing with the list of valid values instead of a generic message.
func decodeChoice<Choice>(from decoder: any Decoder) throws -> Choice
where Choice: RawRepresentable & CaseIterable, Choice.RawValue == String {
    let path = decoder.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
    let choices = Choice.allCases.map(\.rawValue)
    guard let raw = try? decoder.singleValueContainer().decode(String.self),
          let choice = Choice(rawValue: raw) else {
        throw InvalidChoice(codingPath: path, choices: choices)
    }
    return choice
}

/// What the model's GEMMs multiply in (train.compute_precision). bf16: the encoder's, adapter's,
/// head's (and pair tower's and decoder's) Linear and Conv2d GEMMs, forward, dW and dX, round their
/// inputs to bf16 and accumulate in fp32 (oneDNN, AVX-512 BF16); their outputs, the gradients, the
/// master weights, the optimizer, normalisation and the loss stay fp32. Evaluation runs in fp32.
public enum ComputePrecision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16
    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}

/// Which library runs the fp32 GEMMs of training (train.gemm_library): `auto` takes oneDNN where it
/// has an fp32 matmul for the CPU (AVX-512 brgemm, about 6 % faster than Debian's OpenBLAS on the
/// benchmark's GEMMs), otherwise OpenBLAS. bf16 compute always runs in oneDNN.
public enum GEMMLibraryChoice: String, Codable, Sendable, CaseIterable {
    case auto, openblas, onednn
    public init(from decoder: any Decoder) throws { self = try decodeChoice(from: decoder) }
}
