import Contrastive
import Data
import Foundation
import NN
import Tensor

/// Single-step machinery of SimCLR training: views, forward, NT-Xent, backward, update.
///
/// Shapes: B images per step, V = 2B views, P pixels, R representation, E embedding width.
/// Every buffer is allocated once here; a steady-state step allocates only the sample list.
public final class TrainingStep {
    public let config: TrainingConfig
    public let model: ContrastiveModel
    public let optimizer: Optimizer
    public let schedule: LearningRateSchedule
    public let loss: NTXentLoss
    public let viewMaker: ViewMaker
    public let imagesPerStep: Int

    let views: Tensor               // V x P
    let anchorGradient: Tensor      // V x E
    let candidateGradient: Tensor   // V x E
    var selfIndex: [Int32]
    var positiveIndex: [Int32]

    public struct Result: Sendable {
        public var loss: Double
        public var positiveAccuracy: Double
        public var learningRate: Float
        public var gradientNorm: Float
        public var times: StepTimes
    }

    /// `totalSteps` is the length of the run, which a cosine schedule decays over.
    public init(config: TrainingConfig, pixelsPerImage: Int, height: Int, width: Int, imagesPerStep: Int, totalSteps: Int) {
        self.config = config
        self.imagesPerStep = imagesPerStep
        model = ContrastiveModel(config.model, inputWidth: pixelsPerImage)
        model.initialise(seed: UInt64(config.seed))
        let o = config.optimizer
        switch o.kind {
        case .sgd:
            optimizer = SGD(for: model.arena, momentum: o.momentum, nesterov: o.nesterov, weightDecay: o.weightDecay)
        case .adamw:
            optimizer = AdamW(for: model.arena, betas: (o.betas[0], o.betas[1]), epsilon: o.eps, weightDecay: o.weightDecay)
        case .lars:
            optimizer = LARS(for: model.arena, momentum: o.momentum, weightDecay: o.weightDecay,
                             trustCoefficient: o.trustCoefficient, nesterov: o.nesterov)
        }
        schedule = Self.schedule(o, totalSteps: totalSteps)
        loss = NTXentLoss(temperature: config.loss.temperature)
        let v = config.views
        viewMaker = ViewMaker(height: height, width: width, settings: ViewSettings(
            cropArea: v.cropArea[0]...v.cropArea[1], aspectRatio: v.aspectRatio[0]...v.aspectRatio[1],
            flipProbability: v.flip, jitterStrength: v.jitter, jitterProbability: v.jitterProbability, noiseSigma: v.noise))
        let viewCount = 2 * imagesPerStep
        views = Tensor(zeros: [viewCount, pixelsPerImage])
        anchorGradient = Tensor(zeros: [viewCount, model.embeddingWidth])
        candidateGradient = Tensor(zeros: [viewCount, model.embeddingWidth])
        selfIndex = [Int32](repeating: 0, count: viewCount)
        positiveIndex = [Int32](repeating: 0, count: viewCount)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positiveIndex, samples: imagesPerStep, offset: 0)
    }

    /// Linear warm-up over `warmup_steps`, then constant or cosine decay to `final_lr`.
    static func schedule(_ o: OptimizerSection, totalSteps: Int) -> LearningRateSchedule {
        switch o.schedule {
        case .constant where o.warmupSteps == 0: return .constant(o.lr)
        case .constant: return .warmupCosine(base: o.lr, warmupSteps: o.warmupSteps, totalSteps: totalSteps, final: o.lr)
        case .cosine: return .warmupCosine(base: o.lr, warmupSteps: o.warmupSteps, totalSteps: totalSteps, final: o.finalLR)
        }
    }

    /// Makes the two views of `samples` (epoch `epoch`) into the view buffer.
    public func makeViews(dataset: ImageDataset, samples: [Int], epoch: Int) {
        precondition(samples.count == imagesPerStep, "step of \(imagesPerStep) images got \(samples.count)")
        viewMaker.makeViews(dataset: dataset, samples: samples, epoch: epoch, seed: UInt64(config.seed), into: views.data)
    }

    /// One optimisation step on the views currently in the view buffer.
    public func step(learningRate: Float) -> Result {
        let v = 2 * imagesPerStep, e = model.embeddingWidth
        var times = StepTimes()
        var t = monotonicSeconds()
        func lap(_ field: WritableKeyPath<StepTimes, Double>) {
            let now = monotonicSeconds()
            times[keyPath: field] += now - t
            t = now
        }

        let (_, z) = model.forward(views.data, batch: v)
        lap(\.forward)
        // One process: the anchors are all the candidates, so dL/dz is the sum of both parts.
        let result = loss.forwardBackward(
            anchors: z, anchorCount: v, candidates: z, candidateCount: v, dimension: e,
            selfIndex: selfIndex, positiveIndex: positiveIndex, normalization: v,
            anchorGradient: anchorGradient.data, candidateGradient: candidateGradient.data)
        Kernels.axpy(anchorGradient.data, alpha: 1, x: candidateGradient.data, count: v * e)
        lap(\.loss)
        model.arena.zeroGradients()
        model.backward(anchorGradient.data, batch: v)
        lap(\.backward)
        var gradientNorm: Float = .nan
        if config.optimizer.clipNorm > 0 {
            gradientNorm = clipGradientNorm(model.arena, maxNorm: config.optimizer.clipNorm)
        }
        optimizer.step(model.arena, learningRate: learningRate)
        lap(\.optimizer)
        return Result(loss: result.loss, positiveAccuracy: Double(result.positiveTop1) / Double(v),
                      learningRate: learningRate, gradientNorm: gradientNorm, times: times)
    }
}

/// A whole training run: data, the step, logs, periodic kNN evaluation, final weights.
public final class Trainer {
    public let config: TrainingConfig
    public let runDirectory: URL
    public let log: RunLog
    public let trainSet: ImageDataset
    public let testSet: ImageDataset
    public let sampler: Sampler
    public let step: TrainingStep
    public private(set) var position = SamplerPosition()
    public private(set) var stepsDone = 0

    public struct Summary: Sendable {
        public var steps: Int
        public var finalLoss: Double
        public var knnAccuracy: Double
        public var runDirectory: String
    }

    public init(config: TrainingConfig) throws {
        self.config = config
        runDirectory = URL(fileURLWithPath: config.runDirectory)
        if let existing = try? FileManager.default.contentsOfDirectory(atPath: runDirectory.path), !existing.isEmpty {
            throw RunFiles.Failure(description:
                "run directory \(runDirectory.path) already holds files; choose a new one (--set run_dir=...) or remove it")
        }
        // Everything that can fail on user input is checked before the run directory exists,
        // so a mistake leaves nothing behind that blocks the corrected run.
        trainSet = try FashionMNIST.load(directory: config.data.path, split: .train, limit: config.data.trainLimit)
        testSet = try FashionMNIST.load(directory: config.data.path, split: .test, limit: config.data.testLimit)
        sampler = try Sampler(sampleCount: trainSet.count, globalBatchSize: config.data.batchPerRank,
                              virtualShards: config.data.virtualShards, seed: UInt64(config.seed))

        try RunFiles.createDirectory(runDirectory)
        try RunFiles.writeAtomically(Data(config.yaml().utf8), to: runDirectory.appendingPathComponent("config.yaml"))
        log = try RunLog(directory: runDirectory)
        BLASThreads.set(config.train.blasThreads)
        let all = config.train.epochs * sampler.batchesPerEpoch
        totalSteps = config.train.maxSteps > 0 ? min(all, config.train.maxSteps) : all
        step = TrainingStep(config: config, pixelsPerImage: trainSet.pixelsPerImage, height: trainSet.height,
                            width: trainSet.width, imagesPerStep: config.data.batchPerRank, totalSteps: totalSteps)
    }

    /// Steps of the whole run: epochs x batches per epoch, capped by train.max_steps.
    public let totalSteps: Int

    public func run() throws -> Summary {
        let c = config
        log.info("contrast run \(runDirectory.path): \(trainSet.count) train / \(testSet.count) test images, "
                 + "\(step.model.arena.parameterCount) parameters, \(totalSteps) steps "
                 + "(\(sampler.batchesPerEpoch) per epoch, \(c.data.batchPerRank) images each), 1 process, "
                 + "BLAS threads \(BLASThreads.current), kernels \(Kernels.instructionSet)")
        log.info("resolved config:\n" + c.yaml())
        var lastLoss = Double.nan
        var window = StepTimes(), windowLoss = 0.0, windowAccuracy = 0.0, windowSteps = 0
        let started = monotonicSeconds()
        var knnAccuracy = Double.nan
        var order: EpochOrder? = nil

        while stepsDone < totalSteps {
            let epoch = position.epoch
            if order?.epoch != epoch { order = sampler.order(epoch: epoch) }
            let samples = order!.batch(position.batch)
            let t0 = monotonicSeconds()
            step.makeViews(dataset: trainSet, samples: samples, epoch: epoch)
            let augmentation = monotonicSeconds() - t0
            let learningRate = step.schedule.learningRate(atStep: stepsDone)
            var result = step.step(learningRate: learningRate)
            result.times.augmentation = augmentation
            guard result.loss.isFinite else {
                log.info("step \(stepsDone + 1): loss is \(result.loss); stopping (lower optimizer.lr or check the data)")
                throw RunFiles.Failure(description: "training diverged at step \(stepsDone + 1) (loss \(result.loss)); lower optimizer.lr")
            }
            stepsDone += 1
            position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
            lastLoss = result.loss
            window = window + result.times
            windowLoss += result.loss; windowAccuracy += result.positiveAccuracy; windowSteps += 1

            let imagesPerSecond = Double(c.data.batchPerRank) / result.times.total
            log.record([
                ("step", .int(stepsDone)), ("epoch", .int(epoch)), ("loss", .number(result.loss)),
                ("positive_accuracy", .number(result.positiveAccuracy)), ("lr", .number(Double(learningRate))),
                ("images_per_second", .number(imagesPerSecond)),
                ("time_augmentation", .number(result.times.augmentation)), ("time_forward", .number(result.times.forward)),
                ("time_loss", .number(result.times.loss)), ("time_backward", .number(result.times.backward)),
                ("time_optimizer", .number(result.times.optimizer)),
            ])
            if stepsDone % max(1, c.train.logEverySteps) == 0 || stepsDone == totalSteps {
                let n = Double(windowSteps)
                let elapsed = monotonicSeconds() - started
                let eta = elapsed / Double(stepsDone) * Double(totalSteps - stepsDone)
                log.info(String(format: "step %d/%d epoch %d loss %.4f pos_acc %.3f lr %.2e %.0f img/s "
                                + "(aug %.1f fwd %.1f loss %.1f bwd %.1f opt %.1f ms) eta %@",
                                stepsDone, totalSteps, epoch, windowLoss / n, windowAccuracy / n, learningRate,
                                n * Double(c.data.batchPerRank) / window.total,
                                window.augmentation / n * 1e3, window.forward / n * 1e3, window.loss / n * 1e3,
                                window.backward / n * 1e3, window.optimizer / n * 1e3, Self.duration(eta)))
                window = StepTimes(); windowLoss = 0; windowAccuracy = 0; windowSteps = 0
            }
            let epochEnded = position.batch == 0
            if epochEnded && c.eval.knnEveryEpochs > 0 && (epoch + 1) % c.eval.knnEveryEpochs == 0 && stepsDone < totalSteps {
                knnAccuracy = evaluate(epoch: epoch + 1)
            }
        }
        knnAccuracy = evaluate(epoch: position.epoch)
        try WeightsFile.write(step.model.arena, to: runDirectory.appendingPathComponent("weights.bin"))
        log.info(String(format: "done: %d steps in %@, final loss %.4f, kNN accuracy %.2f%%; weights in %@",
                        stepsDone, Self.duration(monotonicSeconds() - started), lastLoss, knnAccuracy * 100,
                        runDirectory.appendingPathComponent("weights.bin").path))
        return Summary(steps: stepsDone, finalLoss: lastLoss, knnAccuracy: knnAccuracy, runDirectory: runDirectory.path)
    }

    func evaluate(epoch: Int) -> Double {
        let t0 = monotonicSeconds()
        let accuracy = Evaluation.knnAccuracy(model: step.model, train: trainSet, test: testSet,
                                              classifier: KNNClassifier(k: config.eval.knnK, temperature: config.eval.knnTemperature))
        log.info(String(format: "eval epoch %d: kNN accuracy %.2f%% (k=%d, %.1f s)", epoch, accuracy * 100, config.eval.knnK,
                        monotonicSeconds() - t0))
        log.record([("step", .int(stepsDone)), ("epoch", .int(epoch)), ("knn_accuracy", .number(accuracy))])
        return accuracy
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}

/// Evaluation of representations on un-augmented images.
public enum Evaluation {
    /// kNN test accuracy of the model's representation h (train set as memory).
    public static func knnAccuracy(model: ContrastiveModel, train: ImageDataset, test: ImageDataset, classifier: KNNClassifier) -> Double {
        let memory = representations(model: model, dataset: train)
        let queries = representations(model: model, dataset: test)
        return classifier.accuracy(memory: memory, memoryLabels: train.labels, queries: queries, queryLabels: test.labels)
    }

    /// kNN test accuracy on raw pixels: the baseline any representation must beat.
    public static func knnAccuracyOnPixels(train: ImageDataset, test: ImageDataset, classifier: KNNClassifier) -> Double {
        classifier.accuracy(memory: pixels(train), memoryLabels: train.labels, queries: pixels(test), queryLabels: test.labels)
    }

    static func pixels(_ dataset: ImageDataset) -> Tensor {
        let out = Tensor(zeros: [dataset.count, dataset.pixelsPerImage])
        dataset.writePixels(samples: Array(0..<dataset.count), into: out.data)
        return out
    }

    /// h for every image of `dataset` (count x R), computed in chunks.
    public static func representations(model: ContrastiveModel, dataset: ImageDataset, chunk: Int = 1024) -> Tensor {
        let out = Tensor(zeros: [dataset.count, model.representationWidth])
        let pixels = Tensor(zeros: [chunk, dataset.pixelsPerImage])
        var start = 0
        while start < dataset.count {
            let rows = min(chunk, dataset.count - start)
            dataset.writePixels(samples: Array(start..<(start + rows)), into: pixels.data)
            model.representations(of: pixels.data, count: rows, into: out.data + start * model.representationWidth, batch: rows)
            start += rows
        }
        return out
    }
}
