// Range checks that types cannot express. Each failure names the dotted key, the rule and the value.

extension TrainingConfig {
    /// Checks every value is in its allowed range.
    /// - Throws: `ConfigError` for the first value out of range, with `key` set to its dotted key.
    public func validate() throws {
        try check(!runDirectory.isEmpty, "run_dir", "must not be empty", runDirectory)

        try check(!data.path.isEmpty, "data.path", "must not be empty", data.path)
        try check(data.batchPerRank >= 1, "data.batch_per_rank", "must be at least 1", data.batchPerRank)
        try check(data.virtualShards >= 1, "data.virtual_shards", "must be at least 1", data.virtualShards)
        try check(data.trainLimit >= 0, "data.train_limit", "must be 0 (all) or positive", data.trainLimit)
        try check(data.testLimit >= 0, "data.test_limit", "must be 0 (all) or positive", data.testLimit)
        try check(data.labeledFraction >= 0 && data.labeledFraction <= 1, "data.labeled_fraction", "must be in [0, 1]", data.labeledFraction)
        try check(data.prefetch >= 0, "data.prefetch", "must be 0 (views made in the training loop) or positive", data.prefetch)
        try check(data.shuffleBuffer >= 1 && data.shuffleBuffer <= 1 << 24, "data.shuffle_buffer",
                  "must be in 1 ... 16777216 (samples each shard's shuffle buffer holds with data.hold: stream)", data.shuffleBuffer)
        if data.hold == .stream && data.dataset != .prepared {
            throw ConfigError(key: "data.hold", problem: "config key 'data.hold' is stream, but data.dataset \(data.dataset.rawValue) cannot be "
                              + "streamed (only shard files written by `contrast prepare` can); prepare it first (contrast prepare "
                              + "\(data.dataset.rawValue) --out DIR) and set data.dataset: prepared and data.path: DIR, or use data.hold memory or disk")
        }

        try checkRange(views.cropArea, "views.crop_area", "two numbers [lo, hi] with 0 < lo <= hi <= 1") {
            $0 > 0 && $0 <= $1 && $1 <= 1
        }
        try checkRange(views.aspectRatio, "views.aspect_ratio", "two numbers [lo, hi] with 0 < lo <= hi") {
            $0 > 0 && $0 <= $1 && $1.isFinite
        }
        try checkProbability(views.flip, "views.flip")
        try check(views.jitter >= 0 && views.jitter <= 1, "views.jitter", "must be in [0, 1]", views.jitter)
        try checkProbability(views.jitterProbability, "views.jitter_p")
        try check(views.noise >= 0 && views.noise.isFinite, "views.noise", "must be 0 or positive", views.noise)
        try check(views.saturation >= 0 && views.saturation <= 1, "views.saturation", "must be in [0, 1] (0 = off)", views.saturation)
        try check(views.hue >= 0 && views.hue <= 0.5, "views.hue", "must be in [0, 0.5] turns (0 = off)", views.hue)
        try checkProbability(views.grayscaleProbability, "views.grayscale_p")
        try checkProbability(views.blurProbability, "views.blur_p")
        try check(views.blurKernel == 0 || (views.blurKernel > 0 && views.blurKernel % 2 == 1), "views.blur_kernel",
                  "must be 0 (10 % of the image side) or an odd number of pixels", views.blurKernel)
        try checkRange(views.blurSigma, "views.blur_sigma", "two numbers [lo, hi] with 0 < lo <= hi") {
            $0 > 0 && $0 <= $1 && $1.isFinite
        }
        try checkProbability(views.solarizeProbability, "views.solarize_p")
        try check(views.solarizeThreshold.isFinite, "views.solarize_threshold", "must be a number (0.5 = BYOL's)", views.solarizeThreshold)

        try checkRange(featureViews.scale, "feature_views.scale", "two numbers [lo, hi] with 0 < lo <= hi") {
            $0 > 0 && $0 <= $1 && $1.isFinite
        }
        try check(featureViews.mask >= 0 && featureViews.mask < 1, "feature_views.mask", "must be in [0, 1)", featureViews.mask)
        try check(featureViews.dropout >= 0 && featureViews.dropout < 1, "feature_views.dropout", "must be in [0, 1)", featureViews.dropout)
        try check(featureViews.noise >= 0 && featureViews.noise.isFinite, "feature_views.noise", "must be 0 or positive", featureViews.noise)
        try check(!model.channels.isEmpty && model.channels.allSatisfy { $0 >= 1 }, "model.channels", "must be one or more widths, each at least 1",
                  model.channels)
        try check(model.poolCells >= 1, "model.pool_cells", "must be at least 1 (1 = global average pool)", model.poolCells)
        if model.encoder == .resnet {
            try validateResNet()
        } else {
            try check(model.poolStages >= 1 && model.poolStages <= model.channels.count, "model.pool_stages",
                      "must be between 1 and the number of model.channels stages (\(model.channels.count))", model.poolStages)
        }
        try check(model.pairHidden.allSatisfy { $0 >= 1 }, "model.pair_hidden", "widths must be at least 1", model.pairHidden)
        if model.pairEncoder == .bert {
            try check(loss.usesPairTower, "model.pair_encoder", "is bert, a text pair tower, which needs a loss with two towers: "
                      + "loss.kind clip, or siglip / pairs with loss.sides pairs", model.pairEncoder.rawValue)
            if model.encoder != .bert { try validateBert() }
            try check(!eval.zeroShot.templates.isEmpty, "eval.zero_shot.templates", "must hold at least one template, e.g. [\"a photo of a {}.\"]",
                      eval.zeroShot.templates)
            for template in eval.zeroShot.templates {
                try check(template.contains("{}"), "eval.zero_shot.templates", "needs {} in every template, where the class name goes", template)
            }
        }

        try check(model.hidden.allSatisfy { $0 >= 1 }, "model.hidden", "widths must be at least 1", model.hidden)
        // The head's last width is the embedding z every loss reads: a model without one cannot train.
        try check(!model.projection.isEmpty, "model.projection", "needs at least one width (its last is the embedding z the loss reads)",
                  model.projection)
        if model.encoder == .cnn || model.encoder == .resnet {
            try check(model.representation >= 0, "model.representation",
                      "must be 0 (h is the pooled maps) or a width of at least 1", model.representation)
        } else if model.encoder == .vit || model.encoder == .bert {
            try check(model.representation >= 0, "model.representation",
                      "must be 0 (h is the pooled token) or a width of at least 1", model.representation)
            if model.encoder == .vit { try validateViT() } else { try validateBert() }
        } else {
            try check(model.representation >= 1, "model.representation", "must be at least 1", model.representation)
        }
        try check(model.projection.allSatisfy { $0 >= 1 }, "model.projection", "widths must be at least 1",
                  model.projection)
        try check(model.dropout >= 0 && model.dropout < 1, "model.dropout", "must be in [0, 1) (0 = off)", model.dropout)
        try check(model.dropPath >= 0 && model.dropPath < 1, "model.drop_path", "must be in [0, 1) (0 = off)", model.dropPath)
        try check(model.attentionDropout >= 0 && model.attentionDropout < 1, "model.attention_dropout", "must be in [0, 1) (0 = off)",
                  model.attentionDropout)
        // A rate the encoder has no place for would be silently ignored.
        if model.encoder == .bert {
            for (key, value) in [("dropout", model.dropout), ("attention_dropout", model.attentionDropout), ("drop_path", model.dropPath)] {
                try check(value == 0, "model.\(key)", "does not apply to the bert encoder; set model.bert.dropout and "
                          + "model.bert.attention_dropout (BERT's hidden and attention dropout) instead", value)
            }
        }
        try check(model.attentionDropout == 0 || model.encoder == .vit, "model.attention_dropout",
                  "applies to the vit encoder only (attention probabilities); for \(model.encoder.rawValue) use "
                  + (model.encoder == .mlp ? "model.dropout" : "model.drop_path"), model.attentionDropout)
        try check(model.dropout == 0 || (model.encoder != .cnn && model.encoder != .resnet), "model.dropout",
                  "applies to the mlp and vit encoders; for \(model.encoder.rawValue) use model.drop_path (stochastic depth)", model.dropout)
        try check(model.dropPath == 0 || model.encoder != .mlp, "model.drop_path",
                  "needs residual blocks (encoder cnn, resnet or vit); for mlp use model.dropout", model.dropPath)

        try checkPositive(loss.temperature, "loss.temperature")
        try checkPositive(loss.temperatureFinal, "loss.temperature_final")
        try checkPositive(loss.temperatureMin, "loss.temperature_min")
        try check(loss.temperatureMode != .learnable || loss.temperatureMin <= loss.temperature, "loss.temperature_min",
                  "must not exceed loss.temperature (\(loss.temperature)), the learnable temperature's start", loss.temperatureMin)
        try check(loss.logitChunk >= 0, "loss.logit_chunk", "must be 0 (all candidates at once) or positive", loss.logitChunk)
        try check(loss.mocoQueue >= 0, "loss.moco_queue", "must be 0 (off) or a number of keys", loss.mocoQueue)
        try check(loss.mocoMomentum >= 0 && loss.mocoMomentum < 1, "loss.moco_momentum", "must be in [0, 1)", loss.mocoMomentum)
        try check(loss.mocoQueue == 0 || loss.kind == .ntxent, "loss.moco_queue",
                  "needs loss.kind ntxent (the momentum queue is an option of NT-Xent); set loss.moco_queue=0 for \(loss.kind.rawValue)",
                  loss.mocoQueue)
        try checkNonNegative(loss.hardNegativeBeta, "loss.hard_negative_beta")
        try checkNonNegative(loss.hardNegativeBetaFinal, "loss.hard_negative_beta_final")
        try check(loss.debiasedTauPlus >= 0 && loss.debiasedTauPlus < 1, "loss.debiased_tau_plus", "must be in [0, 1)", loss.debiasedTauPlus)
        let hardNegativeKey = loss.debiasedTauPlus != 0 ? "loss.debiased_tau_plus"
            : loss.hardNegativeBeta != 0 ? "loss.hard_negative_beta" : "loss.hard_negative_beta_final"
        let hardNegativeValue = loss.debiasedTauPlus != 0 ? loss.debiasedTauPlus
            : loss.hardNegativeBeta != 0 ? loss.hardNegativeBeta : loss.hardNegativeBetaFinal
        try check(!loss.usesHardNegatives || loss.kind == .ntxent, hardNegativeKey,
                  "reweights NT-Xent's negatives, but loss.kind is \(loss.kind.rawValue); set loss.kind ntxent or leave "
                  + "loss.hard_negative_beta, loss.hard_negative_beta_final and loss.debiased_tau_plus at 0", hardNegativeValue)
        try check(loss.pseudoLabels == .none || loss.kind == .supcon, "loss.pseudo_labels",
                  "needs loss.kind supcon (labels with unlabeled samples); set loss.pseudo_labels none", loss.pseudoLabels.rawValue)
        try check(loss.pseudoLabelThreshold > 0 && loss.pseudoLabelThreshold <= 1, "loss.pseudo_label_threshold", "must be in (0, 1]",
                  loss.pseudoLabelThreshold)
        try check(eval.probeLabeledFraction > 0 && eval.probeLabeledFraction <= 1, "eval.probe_labeled_fraction", "must be in (0, 1]",
                  eval.probeLabeledFraction)
        try check(loss.pseudoLabelK >= 1, "loss.pseudo_label_k", "must be at least 1", loss.pseudoLabelK)
        try checkPositive(loss.pseudoLabelTemperature, "loss.pseudo_label_temperature")
        try check(loss.reconstructionWeight >= 0 && loss.reconstructionWeight.isFinite, "loss.reconstruction_weight",
                  "must be 0 (off) or positive", loss.reconstructionWeight)
        try check(loss.reconstructionWeight == 0 || loss.kind == .ntxent || loss.kind == .supcon, "loss.reconstruction_weight",
                  "must be 0 with loss.kind \(loss.kind.rawValue) (the decoder reconstructs the views of ntxent or supcon); set it to 0",
                  loss.reconstructionWeight)
        try check(loss.siglipBias.isFinite, "loss.siglip_bias", "must be a finite number (SigLIP starts at -10)", loss.siglipBias)
        try check(!loss.maskDuplicates || loss.kind == .pairs, "loss.mask_duplicates",
                  "needs loss.kind pairs (it masks duplicates of a pair's positive); set it to false", loss.maskDuplicates)
        try check(!loss.maskDuplicates || loss.sides == .views, "loss.mask_duplicates",
                  "reads each sample's pair id from its label, which pair batches (loss.sides pairs) do not carry; "
                  + "use loss.sides views or set loss.mask_duplicates false", loss.maskDuplicates)
        try check(model.decoder.allSatisfy { $0 >= 1 }, "model.decoder", "widths must be at least 1", model.decoder)
        try check(loss.reconstructionWeight == 0 || train.gradientCacheChunk == 0, "loss.reconstruction_weight",
                  "needs train.gradient_cache_chunk 0 (the decoder reads the whole batch's representations); set one of them to 0",
                  loss.reconstructionWeight)
        // MoCo scores its queries against the key encoder's keys: the reweighted negatives and the
        // decoder are options of the plain step that MoCo's objective does not run.
        try check(loss.mocoQueue == 0 || !loss.usesHardNegatives, "loss.moco_queue",
                  "cannot be combined with hard negatives (\(hardNegativeKey)); set loss.moco_queue=0 or \(hardNegativeKey)=0", loss.mocoQueue)
        try check(loss.mocoQueue == 0 || loss.reconstructionWeight == 0, "loss.moco_queue",
                  "cannot be combined with the reconstruction decoder; set loss.moco_queue=0 or loss.reconstruction_weight=0", loss.mocoQueue)
        try check(checkpoint.everySteps >= 0, "checkpoint.every_steps", "must be 0 (off) or positive", checkpoint.everySteps)
        try check(checkpoint.everyMinutes >= 0 && checkpoint.everyMinutes.isFinite, "checkpoint.every_minutes",
                  "must be 0 (off) or positive", checkpoint.everyMinutes)
        try check(checkpoint.keepLast >= 1, "checkpoint.keep_last", "must be at least 1", checkpoint.keepLast)
        try check(checkpoint.keepEvery >= 0, "checkpoint.keep_every", "must be 0 (off) or positive", checkpoint.keepEvery)
        try check((1...19).contains(checkpoint.level), "checkpoint.level", "must be a zstd level from 1 to 19", checkpoint.level)
        try check(!resume.isEmpty, "resume", "must be auto, never or the path of a checkpoint directory", resume)
        try checkPositive(communication.bucketMB, "communication.bucket_mb")
        try checkPositive(communication.fp16InitialScale, "communication.fp16_initial_scale")
        try check(communication.watchdogSeconds.isFinite && communication.watchdogSeconds >= 0, "communication.watchdog_seconds",
                  "must be 0 (no watchdog) or a positive number of seconds", communication.watchdogSeconds)
        try check(communication.evalWatchdogSeconds.isFinite && communication.evalWatchdogSeconds >= 0, "communication.eval_watchdog_seconds",
                  "must be 0 (evaluation unwatched) or a positive number of seconds", communication.evalWatchdogSeconds)
        try check(communication.fp16ScaleWindow >= 1, "communication.fp16_scale_window", "must be at least 1",
                  communication.fp16ScaleWindow)

        try checkPositive(optimizer.lr, "optimizer.lr")
        try check(optimizer.betas.count == 2 && optimizer.betas.allSatisfy { $0 >= 0 && $0 < 1 },
                  "optimizer.betas", "must be two numbers [beta1, beta2], each in [0, 1)", optimizer.betas)
        try checkPositive(optimizer.eps, "optimizer.eps")
        try checkNonNegative(optimizer.weightDecay, "optimizer.weight_decay")
        try check(optimizer.momentum >= 0 && optimizer.momentum < 1, "optimizer.momentum", "must be in [0, 1)",
                  optimizer.momentum)
        try checkPositive(optimizer.trustCoefficient, "optimizer.trust_coefficient")
        try check(optimizer.warmupSteps >= 0, "optimizer.warmup_steps", "must be 0 (none) or positive",
                  optimizer.warmupSteps)
        try checkNonNegative(optimizer.finalLR, "optimizer.final_lr")
        try checkNonNegative(optimizer.clipNorm, "optimizer.clip_norm")

        try check(train.epochs >= 1, "train.epochs", "must be at least 1", train.epochs)
        try check(train.maxSteps >= 0, "train.max_steps", "must be 0 (no limit) or positive", train.maxSteps)
        try check(train.logEverySteps >= 1, "train.log_every_steps", "must be at least 1", train.logEverySteps)
        try check(train.blasThreads >= 1, "train.blas_threads", "must be at least 1", train.blasThreads)
        try check(train.maxSkippedSteps >= 0, "train.max_skipped_steps", "must be 0 (never stop) or positive", train.maxSkippedSteps)
        try check(train.gradientCacheChunk >= 0, "train.gradient_cache_chunk",
                  "must be 0 (off) or a positive number of views per chunk", train.gradientCacheChunk)

        try check(monitor.geometryEverySteps >= 0, "monitor.geometry_every_steps", "must be 0 (never) or positive", monitor.geometryEverySteps)
        try checkNonNegative(monitor.collapseStd, "monitor.collapse_std")
        try check(monitor.stragglerFactor > 1 && monitor.stragglerFactor.isFinite, "monitor.straggler_factor", "must be greater than 1",
                  monitor.stragglerFactor)
        try check(monitor.dataWaitFraction > 0 && monitor.dataWaitFraction <= 1, "monitor.data_wait_fraction", "must be in (0, 1]",
                  monitor.dataWaitFraction)
        try checkNonNegative(monitor.stragglerMinMs, "monitor.straggler_min_ms")
        try checkNonNegative(monitor.dataWaitMinMs, "monitor.data_wait_min_ms")
        try check(monitor.skippedSteps >= 1, "monitor.skipped_steps", "must be at least 1", monitor.skippedSteps)
        try check(monitor.linkProbeMb >= 0 && monitor.linkProbeMb <= 1024, "monitor.link_probe_mb",
                  "must be 0 (no link probe) or a size up to 1024 MB", monitor.linkProbeMb)
        try check(monitor.linkSlowFactor > 1 && monitor.linkSlowFactor.isFinite, "monitor.link_slow_factor", "must be greater than 1",
                  monitor.linkSlowFactor)

        try check(eval.knnEveryEpochs >= 0, "eval.knn_every_epochs", "must be 0 (only at the end) or positive",
                  eval.knnEveryEpochs)
        try check(eval.retrievalEveryEpochs >= 0, "eval.retrieval_every_epochs", "must be 0 (only at the end) or positive",
                  eval.retrievalEveryEpochs)
        try check(eval.knnK >= 1, "eval.knn_k", "must be at least 1", eval.knnK)
        try checkPositive(eval.knnTemperature, "eval.knn_temperature")
        try check(eval.linearEveryEpochs >= 0, "eval.linear_every_epochs", "must be 0 (never during training) or positive",
                  eval.linearEveryEpochs)
        try check(eval.earlyStoppingPatience >= 0, "eval.early_stopping_patience", "must be 0 (off) or positive",
                  eval.earlyStoppingPatience)
        try checkNonNegative(eval.earlyStoppingMinDelta, "eval.early_stopping_min_delta")
        try check(eval.earlyStoppingPatience == 0 || eval.earlyStoppingMonitor != .linear || eval.linearEveryEpochs > 0,
                  "eval.early_stopping_monitor", "is linear, so eval.linear_every_epochs must be positive (the probe must run)",
                  eval.earlyStoppingMonitor.rawValue)
        try check(eval.earlyStoppingPatience == 0 || eval.knnEveryEpochs > 0 || eval.linearEveryEpochs > 0,
                  "eval.early_stopping_patience", "needs evaluations during training: set eval.knn_every_epochs", eval.earlyStoppingPatience)
        try validateFineTuning()
    }
}

extension TrainingConfig {
    /// Checks of the model against the samples it will see, once the data set is known and before
    /// the run directory exists: `imageShape` is [height, width] of uint8 images, or [channels, height,
    /// width] of images with more than one channel (resnet and vit take them; `bench step
    /// --synthetic-images` makes them until a data set can hold them), nil for feature vectors;
    /// `features` what they are instead, for the message (e.g. "float32 [784]").
    /// (Pairs and labels the objective needs are checked where the batches are made.)
    /// `featureWidth`, when given, is the values a sample holds (the bert encoder reads 3 x max_length: ids, mask, types).
    public func validateModel(imageShape: [Int]?, features: String = "", featureWidth: Int? = nil) throws {
        if model.encoder == .bert {
            let width = 3 * model.bert.maxLength
            guard imageShape == nil, featureWidth.map({ $0 == width }) ?? true else {
                throw ConfigError(key: "model.encoder", problem: "config key 'model.encoder' is bert, whose samples are 3 x model.bert.max_length "
                                  + "= \(width) values (token ids, attention mask, token types), but the features are "
                                  + (features.isEmpty ? "images" : features),
                                  hint: "give tokenized text of max_length \(model.bert.maxLength) (docs/text.md), or another encoder")
            }
        }
        if model.encoder == .cnn {
            guard let imageShape, imageShape.count == 2 || imageShape.count == 3 else {
                throw ConfigError(key: "model.encoder", problem: "config key 'model.encoder' is cnn, but the features are "
                                  + (features.isEmpty ? "" : "\(features), ") + "not uint8 [height, width] images; use mlp for feature vectors")
            }
            // The cnn encoder's stem reads one channel; resnet and vit take any number.
            guard imageShape.count == 2 else {
                throw ConfigError(key: "model.encoder", problem: "config key 'model.encoder' is cnn, which reads one-channel images, "
                                  + "but the images have \(imageShape[0]) channels", hint: "use resnet or vit for images of several channels")
            }
            // Each stage after the first halves the image (stride 2, padding 1).
            let last = model.channels.dropFirst().reduce(imageShape.min()!) { size, _ in (size + 1) / 2 }
            guard model.poolCells <= last else {
                throw ConfigError(key: "model.pool_cells", problem: "config key 'model.pool_cells' is \(model.poolCells), but the last "
                                  + "stage's feature maps are \(last) x \(last); use at most \(last)")
            }
        }
        if model.encoder == .resnet {
            guard let shape = imageShape, shape.count == 2 || shape.count == 3 else {
                throw ConfigError(key: "model.encoder", problem: "config key 'model.encoder' is resnet, but the features are "
                                  + (features.isEmpty ? "" : "\(features), ") + "not uint8 [height, width] images; use mlp for feature vectors")
            }
            let sides = Array(shape.suffix(2))   // [height, width], after the channels when there are several
            // Sides that are multiples of the stem's and strides' product shrink exactly: every stage's maps are
            // the image over a whole factor, and no layer sees a window hanging off the edge.
            let resnet = model.resnet, factor = resnet.downsampling
            let strides = resnet.resolvedStages.map { $0.count == 3 ? String($0[2]) : "?" }.joined(separator: " x ")
            guard sides[0] % factor == 0 && sides[1] % factor == 0 else {
                let sizes = (1...3).map { String($0 * factor) }.joined(separator: ", ")
                throw ConfigError(key: "model.resnet.stages", problem: "config key 'model.resnet.stages' has strides \(strides)"
                                  + (resnet.resolvedStem == .imagenet ? " after the imagenet stem (4)" : "") + ", which shrink the image by "
                                  + "\(factor), but the images are \(sides[0]) x \(sides[1])",
                                  hint: "use images whose sides are multiples of \(factor) (\(sizes), ...), or smaller strides"
                                  + (resnet.resolvedStem == .imagenet ? " or model.resnet.stem small" : ""))
            }
            let last = min(sides[0], sides[1]) / factor
            guard model.poolCells <= last else {
                throw ConfigError(key: "model.pool_cells", problem: "config key 'model.pool_cells' is \(model.poolCells), but the last "
                                  + "stage's feature maps are \(last) x \(last); use at most \(last)")
            }
        }
        if model.encoder == .vit {
            guard let shape = imageShape, shape.count == 2 || shape.count == 3 else {
                throw ConfigError(key: "model.encoder", problem: "config key 'model.encoder' is vit, but the features are "
                                  + (features.isEmpty ? "" : "\(features), ") + "not uint8 [height, width] images; use mlp for feature vectors")
            }
            let sides = Array(shape.suffix(2))   // [height, width], after the channels when there are several
            let patch = model.vit.resolved.patch
            guard sides[0] % patch == 0 && sides[1] % patch == 0 else {
                let divisors = (1...min(sides[0], sides[1])).filter { sides[0] % $0 == 0 && sides[1] % $0 == 0 }
                throw ConfigError(key: "model.vit.patch", problem: "config key 'model.vit.patch' is \(patch), which does not divide the "
                                  + "\(sides[0]) x \(sides[1]) images", hint: "use one of \(divisors.map(String.init).joined(separator: ", "))")
            }
        }
    }
}

extension TrainingConfig {
    /// The Vision Transformer's keys (encoder vit; called by `validate`): every shape key 0 (the preset's) or
    /// positive, a value for each from the key or the preset, heads dividing dim.
    func validateViT() throws {
        let vit = model.vit, shape = vit.resolved
        let keys: [(String, Int, Int)] = [("patch", vit.patch, shape.patch), ("dim", vit.dim, shape.dim), ("depth", vit.depth, shape.depth),
                                          ("heads", vit.heads, shape.heads), ("mlp_ratio", vit.mlpRatio, shape.mlpRatio)]
        for (name, own, resolved) in keys {
            try check(own >= 0, "model.vit.\(name)", "must be 0 (the preset's value) or positive", own)
            guard resolved > 0 else {
                throw ConfigError(key: "model.vit.\(name)", problem: "config key 'model.vit.\(name)' is not set and model.vit.preset is none",
                                  hint: "set model.vit.\(name), or a preset (\(ViTPreset.allCases.filter { $0 != .none }.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        guard shape.dim % shape.heads == 0 else {
            throw ConfigError(key: "model.vit.heads", problem: "config key 'model.vit.heads' is \(shape.heads), which does not divide the width "
                              + "model.vit.dim \(shape.dim)", hint: "use a divisor of \(shape.dim) (each head is dim / heads wide)")
        }
        try check(vit.attentionTile >= 0, "model.vit.attention_tile", "must be 0 (plain attention) or a tile size of at least 1", vit.attentionTile)
    }

    /// The BERT encoder's keys (encoder bert; called by `validate`): a value for every shape key from the key or
    /// the preset, heads dividing width, max_length within max_position, a vocabulary size, rates in [0, 1).
    func validateBert() throws {
        let bert = model.bert, shape = bert.resolved
        let keys: [(String, Int, Int)] = [("layers", bert.layers, shape.layers), ("width", bert.width, shape.width),
                                          ("heads", bert.heads, shape.heads), ("ffn", bert.ffn, shape.ffn)]
        for (name, own, resolved) in keys {
            try check(own >= 0, "model.bert.\(name)", "must be 0 (the preset's value) or positive", own)
            guard resolved > 0 else {
                throw ConfigError(key: "model.bert.\(name)", problem: "config key 'model.bert.\(name)' is not set and model.bert.preset is none",
                                  hint: "set model.bert.\(name), or a preset (\(BertPreset.allCases.filter { $0 != .none }.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        guard shape.width % shape.heads == 0 else {
            throw ConfigError(key: "model.bert.heads", problem: "config key 'model.bert.heads' is \(shape.heads), which does not divide the width "
                              + "\(shape.width)", hint: "use a divisor of \(shape.width) (each head is width / heads wide)")
        }
        try check(bert.maxPosition >= 1, "model.bert.max_position", "must be at least 1", bert.maxPosition)
        try check(bert.maxLength >= 2 && bert.maxLength <= bert.maxPosition, "model.bert.max_length",
                  "must be between 2 ([CLS] and [SEP]) and model.bert.max_position (\(bert.maxPosition))", bert.maxLength)
        try check(bert.vocabSize >= 0, "model.bert.vocab_size", "must be 0 (the lines of data.vocab) or positive", bert.vocabSize)
        guard bert.vocabSize > 0 else {
            throw ConfigError(key: "model.bert.vocab_size", problem: "config key 'model.bert.vocab_size' is 0 and data.vocab is not set",
                              hint: "set data.vocab to a vocab.txt (one token a line), or model.bert.vocab_size")
        }
        try check(bert.dropout >= 0 && bert.dropout < 1, "model.bert.dropout", "must be in [0, 1) (0 = off)", bert.dropout)
        try check(bert.attentionDropout >= 0 && bert.attentionDropout < 1, "model.bert.attention_dropout", "must be in [0, 1) (0 = off)",
                  bert.attentionDropout)
        try check(bert.attentionTile >= 0, "model.bert.attention_tile", "must be 0 (plain attention) or a tile size of at least 1",
                  bert.attentionTile)
    }

    /// The ResNet's keys (encoder resnet; called by `validate`): stages from the key or the preset, each
    /// [channels, blocks, stride] of positive numbers; expansion and pool_stages in range.
    func validateResNet() throws {
        let resnet = model.resnet, stages = resnet.resolvedStages
        guard !stages.isEmpty else {
            throw ConfigError(key: "model.resnet.stages", problem: "config key 'model.resnet.stages' is empty and model.resnet.preset is none",
                              hint: "set model.resnet.stages to [[channels, blocks, stride], ...], e.g. [[32, 1, 1], [64, 1, 2], [128, 1, 2]], "
                              + "or model.resnet.preset to one of \(ResNetPreset.allCases.filter { $0 != .none }.map(\.rawValue).joined(separator: ", "))")
        }
        for (i, stage) in stages.enumerated() where stage.count != 3 || stage.contains(where: { $0 < 1 }) {
            throw ConfigError(key: "model.resnet.stages", problem: "config key 'model.resnet.stages' has stage \(i + 1) "
                              + "[\(stage.map(String.init).joined(separator: ", "))], which is not [channels, blocks, stride] of numbers at least 1",
                              hint: "write each stage as three numbers, e.g. [64, 2, 2] (64 channels, 2 blocks, stride 2)")
        }
        try check(resnet.expansion >= 1, "model.resnet.expansion", "must be at least 1 (bottleneck blocks output expansion x channels)",
                  resnet.expansion)
        try check(model.poolStages >= 1 && model.poolStages <= stages.count, "model.pool_stages",
                  "must be between 1 and the number of model.resnet.stages (\(stages.count))", model.poolStages)
    }

    /// Range checks of the fine-tuning keys (called by `validate`).
    func validateFineTuning() throws {
        guard model.adapter >= 0 else {
            throw ConfigError(key: "model.adapter", problem: "config key 'model.adapter' must be 0 (no adapter) or a bottleneck width, got \(model.adapter)")
        }
        guard optimizer.encoderLRScale >= 0 && optimizer.encoderLRScale.isFinite else {
            throw ConfigError(key: "optimizer.encoder_lr_scale",
                              problem: "config key 'optimizer.encoder_lr_scale' must be 0 or positive, got \(optimizer.encoderLRScale)")
        }
        guard !initHead || !initFrom.isEmpty else {
            throw ConfigError(key: "init_head", problem: "config key 'init_head' is true but init_from is empty",
                              hint: "set init_from to the pretrained run directory, or init_head=false")
        }
    }
}

private func check(_ condition: Bool, _ key: String, _ rule: String, _ value: Any) throws {
    guard !condition else { return }
    let shown = value is String ? "\"\(value)\"" : "\(value)"
    throw ConfigError(key: key, problem: "config key '\(key)' \(rule), got \(shown)")
}

private func checkPositive(_ value: Float, _ key: String) throws {
    try check(value > 0 && value.isFinite, key, "must be greater than 0", value)
}

private func checkNonNegative(_ value: Float, _ key: String) throws {
    try check(value >= 0 && value.isFinite, key, "must be 0 or positive", value)
}

private func checkProbability(_ value: Float, _ key: String) throws {
    try check(value >= 0 && value <= 1, key, "is a probability and must be in [0, 1]", value)
}

private func checkRange(_ range: [Float], _ key: String, _ rule: String, _ valid: (Float, Float) -> Bool) throws {
    try check(range.count == 2 && valid(range[0], range[1]), key, "must be \(rule)", range)
}
