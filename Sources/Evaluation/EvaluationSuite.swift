import RunFiles
import NN
import Config
import Data
import Foundation
import Tensor

/// The evaluation suite (docs/evaluation.md): kNN, linear probe, calibration and robustness to
/// corrupted test images, for the raw inputs (pixels or features), the randomly initialised encoder and the trained one.
/// One process; the work is GEMMs in OpenBLAS (train.blas_threads threads).
extension Evaluation {
    /// A feature extractor under evaluation: maps inputs (count x F) to features (count x width).
    public struct Encoder {
        public var name: String
        public var width: Int
        public var features: (Tensor) -> Tensor

        public init(name: String, width: Int, features: @escaping (Tensor) -> Tensor) {
            self.name = name
            self.width = width
            self.features = features
        }

        /// The inputs themselves: the baseline any representation must beat. "raw pixels" when
        /// they are images, else "raw features".
        public static func raw(width: Int, images: Bool) -> Encoder { Encoder(name: rawName(images: images), width: width) { $0 } }

        /// The raw-input baseline's name.
        public static func rawName(images: Bool) -> String { images ? "raw pixels" : "raw features" }

        /// The representation h of `model`.
        public static func model(_ model: ContrastiveModel, name: String) -> Encoder {
            Encoder(name: name, width: model.representationWidth) { inputs in
                let out = Tensor(zeros: [inputs.rows, model.representationWidth])
                model.representations(of: inputs.data, count: inputs.rows, into: out.data)
                return out
            }
        }
    }

    /// The suite for a trained model: the raw inputs, the model's architecture freshly initialised
    /// with the config's seed (the trained model's own starting point), and the trained model,
    /// on the config's data (train and test splits, data.train_limit / data.test_limit honoured).
    /// `data` names the folder the config's data came from (--data, else data.path), for messages.
    public static func suite(trained: TrainedModel, config: TrainingConfig, data: String? = nil,
                             progress: ((String) -> Void)? = nil) throws -> EvaluationReport {
        let started = monotonicSeconds()
        let train = try evaluationSplit(config, .train)
        try trained.check(fits: train, data: data ?? config.data.path)
        let test = try evaluationSplit(config, .test)
        let loading = monotonicSeconds() - started
        progress?(String(format: "loaded %d train and %d test samples in %.1f s", train.count, test.count, loading))
        let random = TrainedModel.makeModel(config, inputs: trained.inputs)
        random.initialise(seed: UInt64(config.seed))
        let encoders = [Encoder.raw(width: train.featureWidth, images: train.isImage), .model(random, name: "random init"),
                        .model(trained.model, name: "trained")]
        var report = try suite(train: train, test: test, encoders: encoders, k: config.eval.knnK, temperature: config.eval.knnTemperature,
                               corruptions: Corruption.defaults(for: test), seed: UInt64(config.seed), source: trained.source,
                               classNames: classNames(of: config),
                               probeLabels: config.eval.probeLabeledFraction < 1
                                   ? LabelSubset(fraction: config.eval.probeLabeledFraction, seed: UInt64(config.seed)) : nil,
                               progress: progress)
        report.timings.insert(EvaluationReport.Timing(part: "load data", seconds: loading), at: 0)
        report.totalSeconds = monotonicSeconds() - started
        return report
    }

    /// The config's class names by label: Fashion-MNIST's, or the optional `classes` of a
    /// prepared set's manifest (its test split's, else its training split's); empty when the
    /// data set names none (the table then says "class N").
    public static func classNames(of config: TrainingConfig) -> [String] {
        let path = config.data.path.replacingOccurrences(of: "{rank}", with: "0")
        switch config.data.dataset {
        case .fashionMNIST: return FashionMNIST.classNames
        case .prepared:
            let (train, test) = ShardedDataset.splits(of: path)
            return (try? ShardedDataset.readManifest(directory: test ?? train))?.classes ?? []
        }
    }

    /// The suite on given splits and encoders. Each encoder embeds the training inputs once and
    /// each test set (clean, then every corruption) once; its probe is fitted on the clean
    /// training features and evaluated, like kNN (memory: the clean training features), on every
    /// test set. Per-class scores and ECE are on the clean test set. With `probeLabels` the probe is
    /// fitted on that subset of the training samples only (the labels a semi-supervised user has);
    /// kNN's memory keeps every training sample.
    public static func suite(train: SampleRows, test: SampleRows, encoders: [Encoder], k: Int, temperature: Float,
                             lambda: Double = LinearProbe.defaultLambda, corruptions: [Corruption], seed: UInt64,
                             source: String, classNames: [String] = [], probeLabels: LabelSubset? = nil,
                             progress: ((String) -> Void)? = nil,
                             progressInterval: Double = EvaluationProgress.defaultInterval) throws -> EvaluationReport {
        let started = monotonicSeconds()
        // Between the lines below, a line at least every `progressInterval` seconds of work.
        let ticker = progress.map { EvaluationProgress(every: progressInterval, $0) }
        let trainLabels = try integerLabels(train, split: "train"), testLabels = try integerLabels(test, split: "test")
        guard test.featureShape == train.featureShape else {
            throw RunDirectory.Failure(description: "the test split's features are \(test.featureShape), the training split's \(train.featureShape); "
                                   + "prepare both splits from the same data")
        }
        let classes = max(2, (trainLabels.max() ?? 0) + 1, (testLabels.max() ?? 0) + 1)
        guard classes <= 256 else {
            throw RunDirectory.Failure(description: "labels reach \(classes - 1); kNN evaluation takes labels 0..<256, relabel the data set's classes")
        }
        let classifier = KNNClassifier(k: k, temperature: temperature, classes: classes)
        let memoryLabels = trainLabels.map { UInt8($0) }, queryLabels = testLabels.map { UInt8($0) }
        var seconds = [String: Double]()
        func timed<T>(_ part: String, _ body: () -> T) -> T {
            let t0 = monotonicSeconds()
            let result = body()
            seconds[part, default: 0] += monotonicSeconds() - t0
            return result
        }

        let trainInputs = timed("inputs") { inputs(train) }
        // Rows of the training split the probe may use (sample i is row i).
        let probeRows = probeLabels.map { subset in (0..<train.count).filter { subset.isLabeled($0) } }
        if let probeRows, probeRows.isEmpty {
            throw RunDirectory.Failure(description: "eval.probe_labeled_fraction \(probeLabels!.fraction) keeps none of the \(train.count) "
                                   + "training samples; raise it")
        }
        var trainFeatures: [Tensor] = [], probes: [LinearProbe] = []
        for encoder in encoders {
            ticker?.note("\(encoder.name): embedding the \(train.count) training samples")
            let features = timed(encoder.name + ": features") { encoder.features(trainInputs) }
            ticker?.note("\(encoder.name): fitting the linear probe")
            let probe = timed(encoder.name + ": probe fit") {
                guard let probeRows else {
                    return LinearProbe.fit(features: features, labels: trainLabels, classes: classes, lambda: lambda, progress: ticker)
                }
                let width = features.count / train.count
                let subset = Tensor(zeros: [probeRows.count, width])
                for (row, sample) in probeRows.enumerated() {
                    (subset.data + row * width).update(from: features.data + sample * width, count: width)
                }
                return LinearProbe.fit(features: subset, labels: probeRows.map { trainLabels[$0] }, classes: classes, lambda: lambda,
                                       progress: ticker)
            }
            ticker?.say(String(format: "%@: probe fitted in %.1f s (%d iterations, %@)", encoder.name, probe.summary.seconds,
                               probe.summary.iterations, probe.summary.stop.rawValue))
            trainFeatures.append(features)
            probes.append(probe)
        }

        var results = encoders.map {
            EvaluationReport.EncoderResult(name: $0.name, width: $0.width, knnAccuracy: 0, probeAccuracy: 0, probeCalibrationError: 0,
                                           probe: LinearProbe.Summary(iterations: 0, evaluations: 0, loss: 0, gradientNorm: 0, stop: .converged, seconds: 0),
                                           robustness: [], perClass: [])
        }
        let testSets: [Corruption?] = [nil] + corruptions
        for corruption in testSets {
            let testInputs = timed("inputs") {
                let out = Tensor(zeros: [test.count, test.featureWidth])
                if let corruption {
                    test.writeCorruptedInputs(test.held, corruption: corruption, seed: seed, into: out.data)
                } else {
                    test.writeInputs(test.held, into: out.data)
                }
                return out
            }
            for (index, encoder) in encoders.enumerated() {
                let features = timed(encoder.name + ": features") { encoder.features(testInputs) }
                let knn = timed(encoder.name + ": kNN") {
                    classifier.accuracy(memory: trainFeatures[index], memoryLabels: memoryLabels, queries: features, queryLabels: queryLabels,
                                        progress: ticker)
                }
                let probabilities = timed(encoder.name + ": probe predict") { probes[index].predictProbabilities(features) }
                let predictions = LinearProbe.argmax(probabilities, classes: classes)
                let metrics = ClassificationMetrics(predictions: predictions, labels: testLabels, classes: classes)
                if let corruption {
                    results[index].robustness.append(.init(corruption: corruption.description, knnAccuracy: knn, probeAccuracy: metrics.accuracy))
                } else {
                    results[index].knnAccuracy = knn
                    results[index].probeAccuracy = metrics.accuracy
                    results[index].probeCalibrationError = ClassificationMetrics.expectedCalibrationError(
                        probabilities: probabilities, labels: testLabels, classes: classes)
                    results[index].probe = probes[index].summary
                    let (precision, recall, support) = (metrics.precision, metrics.recall, metrics.support)
                    results[index].perClass = (0..<classes).map { c in
                        .init(label: c, name: c < classNames.count ? classNames[c] : "class \(c)", precision: precision[c],
                              recall: recall[c], support: support[c])
                    }
                }
            }
            ticker?.say(String(format: "evaluated the %@ test set (%.1f s so far)", corruption?.description ?? "clean", monotonicSeconds() - started))
        }

        var timings = [EvaluationReport.Timing(part: "inputs (train, clean and \(corruptions.count) corrupted test sets)", seconds: seconds["inputs"] ?? 0)]
        for encoder in encoders {
            for part in ["features", "kNN", "probe fit", "probe predict"] {
                timings.append(.init(part: encoder.name + ": " + part, seconds: seconds[encoder.name + ": " + part] ?? 0))
            }
        }
        return EvaluationReport(source: source, trainSamples: train.count, testSamples: test.count, classes: classes, knnK: k,
                                knnTemperature: Double(temperature), probeLambda: lambda, probeTrainSamples: probeRows?.count, seed: Int(seed),
                                corruptions: corruptions.map(\.description), encoders: results, timings: timings,
                                totalSeconds: monotonicSeconds() - started)
    }

    /// Linear-probe test accuracy of the model's representation h, for a periodic training
    /// monitor: the probe is fitted on `train`'s representations (the rows given) and scored on
    /// `test`'s. At most
    /// `maxIterations` (fewer than the suite's 500: a monitor tracks a trend). Nil when either
    /// split has no labels. Cost: embedding both splits, then per iteration two Double GEMMs over
    /// train's representations (4 N R C flops; ~0.04 s at N = 60,000, R = 256, C = 10).
    public static func linearProbeAccuracy(model: ContrastiveModel, train: SampleRows, test: SampleRows,
                                           lambda: Double = LinearProbe.defaultLambda, tolerance: Double = LinearProbe.defaultTolerance,
                                           maxIterations: Int = 300) -> Double? {
        guard let trainLabels = try? integerLabels(train, split: "train"), let testLabels = try? integerLabels(test, split: "test") else {
            return nil
        }
        let classes = max(2, (trainLabels.max() ?? 0) + 1, (testLabels.max() ?? 0) + 1)
        let probe = LinearProbe.fit(features: representations(model: model, rows: train), labels: trainLabels, classes: classes,
                                    lambda: lambda, tolerance: tolerance, maxIterations: maxIterations)
        return probe.accuracy(features: representations(model: model, rows: test), labels: testLabels)
    }

    /// Labels as Int, checked non-negative.
    static func integerLabels(_ rows: SampleRows, split: String) throws -> [Int] {
        guard let labels = rows.labels else {
            throw RunDirectory.Failure(description: "the \(split) split has no labels; kNN and the linear probe need labelled train and test splits "
                                   + "(prepare the data set with labels)")
        }
        guard labels.allSatisfy({ $0 >= 0 && $0 < Int64(Int32.max) }) else {
            throw RunDirectory.Failure(description: "the \(split) split has a negative label; labels must be class indices 0, 1, 2, ...")
        }
        return labels.map { Int($0) }
    }

    /// The config's train and test splits for evaluation on one process: the first
    /// data.train_limit / data.test_limit samples of each when those are set. The one place a
    /// config's data set becomes samples outside training.
    public static func evaluationSplits(_ config: TrainingConfig) throws -> (train: SampleRows, test: SampleRows) {
        (try evaluationSplit(config, .train), try evaluationSplit(config, .test))
    }

    /// One split of the config's data set: its first `limit` samples (default data.train_limit
    /// or data.test_limit; 0 = all). Of a prepared set only the shard files holding them are read.
    public static func evaluationSplit(_ config: TrainingConfig, _ split: FashionMNIST.Split, limit: Int? = nil) throws -> SampleRows {
        let d = config.data
        let path = d.path.replacingOccurrences(of: "{rank}", with: "0")
        let limit = limit ?? (split == .train ? d.trainLimit : d.testLimit)
        guard FileManager.default.fileExists(atPath: path) else {
            throw RunDirectory.Failure(description: "the data set \(path) (data.path) does not exist; it may have moved: "
                                   + "pass --data DIR with the data set to evaluate on (of the model's input shape)")
        }
        switch d.dataset {
        case .fashionMNIST:
            return SampleRows(try FashionMNIST.load(directory: path, split: split, limit: limit))
        case .prepared:
            let (trainPath, testPath) = ShardedDataset.splits(of: path)
            var folder = trainPath
            if split == .test {
                guard let testPath else {
                    throw RunDirectory.Failure(description: "\(path) has no test split (test/dataset.json); evaluating needs one: "
                                           + "prepare it with one (contrast prepare npy ... --test-fraction 0.2), or point data.path (--data) at the folder holding train/ and test/")
                }
                folder = testPath
            }
            let shards = ShardedDataset.shards(of: try ShardedDataset.readManifest(directory: folder), holdingFirst: limit)
            return try SampleRows.read(ShardedDataset(directory: folder, checking: shards), shards: shards, limit: limit)
        }
    }

    /// What a model trained on the config's data set takes, read from the training split's
    /// manifest (a prepared set) or one image (Fashion-MNIST), not from the samples.
    public static func modelInputs(of config: TrainingConfig) throws -> ModelInputs {
        let path = config.data.path.replacingOccurrences(of: "{rank}", with: "0")
        switch config.data.dataset {
        case .fashionMNIST:
            let images = try FashionMNIST.load(directory: path, split: .test, limit: 1)
            return ModelInputs(features: [images.height, images.width], image: true)
        case .prepared:
            let train = ShardedDataset.splits(of: path).train
            let manifest = try ShardedDataset.readManifest(directory: train)
            let features = try manifest.requireInputs(path: train)
            let shape = features.sampleShape
            return ModelInputs(features: shape, image: features.dtype == .uint8 && SampleRows.isImageShape(shape),
                               pairs: manifest.pairs?.shape)
        }
    }

    /// The config with its data set replaced by the folder `path` (`--data`): one `contrast
    /// prepare` wrote (train/ and test/ inside, or one data-set folder) or one holding
    /// Fashion-MNIST's IDX files. The limits and everything else stay.
    public static func config(_ config: TrainingConfig, data path: String) throws -> TrainingConfig {
        let exists = { FileManager.default.fileExists(atPath: path + "/" + $0) }
        var config = config
        if exists(ShardManifest.fileName) || exists("train/" + ShardManifest.fileName) {
            config.data.dataset = .prepared
        } else if exists("train-images-idx3-ubyte.gz") || exists("t10k-images-idx3-ubyte.gz") {
            config.data.dataset = .fashionMNIST
        } else {
            throw RunDirectory.Failure(description: "--data \(path) is neither a prepared data set (no \(ShardManifest.fileName) in it or in "
                                   + "its train/ folder) nor a Fashion-MNIST folder (no train-images-idx3-ubyte.gz); "
                                   + "pass the folder `contrast prepare` wrote or the IDX files' folder")
        }
        config.data.path = path
        return config
    }

    /// Keys `contrast eval full --set` may override: the data to evaluate on and the kNN
    /// settings. The model's architecture and seed come from the checkpoint.
    public static let evaluationOverridePrefixes = ["data.", "eval."]

    /// The trained model's config with `overrides` applied, each checked to be one the suite allows.
    public static func evaluationConfig(_ config: TrainingConfig, overrides: [String]) throws -> TrainingConfig {
        for override in overrides where !evaluationOverridePrefixes.contains(where: { override.hasPrefix($0) }) {
            let key = override.split(separator: "=", maxSplits: 1).first.map(String.init) ?? override
            throw ConfigError(key: key, problem: "--set \(override): evaluation takes the model and its seed from the checkpoint",
                              hint: "override only data.* keys (e.g. data.test_limit=1000) or eval.* keys")
        }
        return try ConfigLoader.load(yaml: config.yaml(), source: "the checkpoint's config", overrides: overrides)
    }
}
