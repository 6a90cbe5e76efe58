import Checkpoint
import Contrastive
import Data
import Distributed
import Foundation
import NN
import Tensor

/// A whole training run on this rank: data, the step, logs, periodic kNN evaluation, final
/// weights. Every rank runs it; rank 0 writes the shared files (config, train.log, weights).
public final class Trainer {
    public let config: TrainingConfig
    public let communicator: Communicator
    public let runDirectory: URL
    public let log: RunLog
    /// This rank's samples, their order and how batches are made.
    public let data: TrainingData
    public var sampler: Sampler { data.sampler }
    public let step: TrainingStep
    /// Steps of the whole run: epochs x batches per epoch, capped by train.max_steps.
    public let totalSteps: Int
    public internal(set) var position = SamplerPosition()
    public internal(set) var stepsDone = 0
    /// Loss sum and step count of the epoch in progress (checkpointed, for exact epoch means).
    var epochLossSum = 0.0
    var epochStepCount = 0
    var lastCheckpointTime = monotonicSeconds()
    /// The checkpoint this run continues from, if any.
    public private(set) var resumedFrom: URL?
    /// Host name of every rank, by rank.
    public let hosts: [String]
    /// Where interval and evaluation scalars also go (TensorBoard, rank 0).
    var scalarSink: (([(tag: String, value: Double)], Int) -> Void)?

    public struct Summary: Sendable {
        public var steps: Int
        public var finalLoss: Double
        public var knnAccuracy: Double
        public var runDirectory: String
        public var epochMeanLosses: [Double]
        /// Stopped early by SIGTERM / SIGUSR1 after writing a checkpoint: exit with `Trainer.interruptedExitCode`.
        public var interrupted: Bool
    }

    /// Exit status after a stop request was honoured (checkpoint written): EX_TEMPFAIL, "try
    /// again", so a requeue script knows to resume.
    public static let interruptedExitCode: Int32 = 75

    public init(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator()) throws {
        self.config = config
        self.communicator = communicator
        let rank = communicator.rank, size = communicator.size
        runDirectory = URL(fileURLWithPath: config.runDirectory)
        try Self.checkSameConfig(config, communicator)
        hosts = try communicator.hostnames()

        // Everything that can fail on user input is checked before the run directory exists,
        // so a mistake leaves nothing behind that blocks the corrected run.
        // A rank that cannot read its shards throws; the launcher aborts the job naming it.
        data = try TrainingData(config: config, rank: rank, worldSize: size, loadTest: rank == 0)
        let all = config.train.epochs * data.sampler.batchesPerEpoch
        totalSteps = config.train.maxSteps > 0 ? min(all, config.train.maxSteps) : all

        var notes: [String] = []
        let resumeFrom = try Self.checkpointToResume(config, runDirectory: runDirectory, communicator: communicator) { notes.append($0) }
        if rank == 0 {
            try RunFiles.createDirectory(runDirectory)
            try AtomicFile.write(Data(config.yaml().utf8), to: runDirectory.appendingPathComponent("config.yaml"))
        }
        try communicator.barrier()      // the directory exists before other ranks open their files
        log = try RunLog(directory: runDirectory, rank: rank, echo: rank == 0)
        for note in notes { log.info(note) }
        BLASThreads.set(config.train.blasThreads)
        step = try TrainingStep(config: config, communicator: communicator, inputWidth: data.train.featureWidth,
                                pairWidth: data.train.pairWidth, samplesPerStep: config.data.batchPerRank, totalSteps: totalSteps)
        if let slow = ProcessInfo.processInfo.environment["CONTRAST_SLOW_RANK"] {
            let parts = slow.split(separator: ":").compactMap { Double($0) }
            guard parts.count == 2 else {
                throw RunFiles.Failure(description: "CONTRAST_SLOW_RANK=\(slow) must be rank:milliseconds, e.g. 1:50")
            }
            if Int(parts[0]) == rank { step.injectedDelay = parts[1] / 1000 }
        }
        if let resumeFrom {
            try restore(from: resumeFrom)
            resumedFrom = resumeFrom
        }
        StopSignal.install()
    }

    /// Ranks must run the same config: compare a hash of the resolved config across ranks.
    static func checkSameConfig(_ config: TrainingConfig, _ communicator: Communicator) throws {
        guard communicator.size > 1 else { return }
        var hash = WeightsFile.fnv1a(config.yaml().utf8)
        var all = [UInt64](repeating: 0, count: communicator.size)
        try withUnsafeBytes(of: &hash) { mine in
            try all.withUnsafeMutableBytes { try communicator.allGatherBytes(mine.baseAddress!, bytes: 8, into: $0.baseAddress!) }
        }
        if let other = all.firstIndex(where: { $0 != all[0] }) {
            throw RunFiles.Failure(description: String(format:
                "the ranks run different configs: rank 0 has config hash %016llx, rank %d has %016llx; start every rank with the same config and --set arguments",
                all[0], other, all[other]))
        }
    }

    /// Whether this rank writes the human-readable log (rank 0).
    var isRoot: Bool { communicator.rank == 0 }

    /// Trains to the end (or to a stop signal). An error is also written to this rank's log
    /// (train.log or rank-<r>.log) before it ends the job, so the run directory tells why.
    public func run() throws -> Summary {
        do { return try train() } catch {
            log.clearProgress()
            log.info("ERROR on rank \(communicator.rank) (\(hosts[communicator.rank])): \(error)")
            throw error
        }
    }

    private func train() throws -> Summary {
        let c = config, p = communicator.size
        let globalImages = c.data.batchPerRank * p
        if isRoot {
            log.info("contrast run \(runDirectory.path): \(data.train.totalCount) train / \(data.test?.count ?? 0) test samples, "
                     + "\(step.model.arena.parameterCount) parameters, \(totalSteps) steps "
                     + "(\(sampler.batchesPerEpoch) per epoch, \(globalImages) samples each = \(c.data.batchPerRank) per rank), "
                     + "\(p) rank(s), \(sampler.virtualShards) shards, BLAS threads \(BLASThreads.current), "
                     + "kernels \(Kernels.instructionSet), gradients on the wire as \(step.reducer.precision.rawValue) "
                     + "in \(step.reducer.buckets.count) bucket(s)")
            log.info("world: " + hosts.enumerated().map { "rank \($0.offset) on \($0.element)" }.joined(separator: ", "))
            log.info("data: " + data.summary)
            log.info("resolved config:\n" + c.yaml())
            if let resumedFrom {
                log.info("resumed from checkpoint \(resumedFrom.path) at step \(stepsDone) (epoch \(position.epoch + 1), batch \(position.batch))")
            }
        }
        var lastLoss = Double.nan
        var epochMeans: [Double] = []
        let started = monotonicSeconds()
        var interrupted = false
        var savedAt = resumedFrom != nil ? stepsDone : -1
        var knnAccuracy = Double.nan
        var order: EpochOrder? = nil
        if isRoot && c.monitor.tensorboard && scalarSink == nil {
            // A failing event file is worth a warning, never the run.
            let writer = try TensorBoardWriter(directory: runDirectory.appendingPathComponent("tensorboard"))
            var failed = false
            scalarSink = { [log] values, at in
                guard !failed else { return }
                do { try writer.add(values, step: at) } catch {
                    failed = true
                    log.warn("TensorBoard events are no longer written: \(error)", step: at)
                }
            }
        }
        let monitor = Monitor(config: c, communicator: communicator, log: log, step: step, totalSteps: totalSteps,
                              stepsDone: stepsDone, hosts: hosts)
        monitor.scalars = scalarSink
        monitor.start(step: step, data: data, resumedFrom: resumedFrom, stepsDone: stepsDone)
        defer { log.clearProgress() }

        // The coming batches, made ahead on a background thread (or in the loop).
        let prefetcher = c.data.prefetch > 0 && stepsDone < totalSteps
            ? try ViewPrefetcher(maker: data.maker, sampler: sampler, rank: communicator.rank, worldSize: p,
                                 start: position, steps: totalSteps - stepsDone, depth: c.data.prefetch)
            : nil
        defer { prefetcher?.stop() }

        while stepsDone < totalSteps {
            let epoch = position.epoch
            var input: UnsafePointer<Float>? = nil
            let dataWait: Double
            if let prefetcher {
                (input, dataWait) = prefetcher.next()
            } else {
                if order?.epoch != epoch { order = try sampler.order(epoch: epoch, rank: communicator.rank, worldSize: p) }
                let t0 = monotonicSeconds()
                data.maker.makeBatch(samples: order!.batch(position.batch), epoch: epoch, into: step.batch.data)
                dataWait = monotonicSeconds() - t0
            }
            let learningRate = step.schedule.learningRate(atStep: stepsDone)
            // Requests every rank must agree on travel with the step's statistics (summed).
            let dueByTime = c.checkpoint.everyMinutes > 0 && monotonicSeconds() - lastCheckpointTime >= Double(c.checkpoint.everyMinutes) * 60
            step.requests = (stop: StopSignal.received != 0 ? 1 : 0, checkpoint: dueByTime ? 1 : 0)
            var result = try step.step(learningRate: learningRate, input: input)
            result.times.augmentation = dataWait
            if !result.applied && isRoot {
                log.info(String(format: "step %d: summed gradients not finite, update skipped on every rank (%d skipped so far; scale now %g)",
                                stepsDone + 1, step.reducer.skippedSteps, step.reducer.scale))
            }
            stepsDone += 1
            position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
            try monitor.afterStep(stepsDone: stepsDone, epoch: epoch, result: result, learningRate: learningRate, step: step)
            guard result.loss.isFinite else {
                throw RunFiles.Failure(description: "training diverged at step \(stepsDone) (loss \(result.loss)); lower optimizer.lr")
            }
            lastLoss = result.loss
            epochLossSum += result.loss; epochStepCount += 1

            let epochEnded = position.batch == 0 || stepsDone == totalSteps
            if epochEnded {
                let mean = epochLossSum / Double(max(1, epochStepCount))
                epochMeans.append(mean)
                if isRoot { log.info(String(format: "epoch %d: mean loss %.4f over %d steps", epoch + 1, mean, epochStepCount)) }
                log.record("epoch", [("step", .int(stepsDone)), ("epoch", .int(epoch)), ("epoch_mean_loss", .number(mean))])
                epochLossSum = 0; epochStepCount = 0
            }
            if position.batch == 0 && c.eval.knnEveryEpochs > 0 && (epoch + 1) % c.eval.knnEveryEpochs == 0 && stepsDone < totalSteps {
                knnAccuracy = try evaluate(epoch: epoch + 1)
            }
            if result.requests.stop > 0 {
                if isRoot { log.info("\(StopSignal.name) received: stopping after step \(stepsDone) with a checkpoint") }
                try saveCheckpoint(reason: "stop requested")
                interrupted = true
                break
            }
            let dueBySteps = c.checkpoint.everySteps > 0 && stepsDone % c.checkpoint.everySteps == 0
            if (dueBySteps || result.requests.checkpoint > 0) && stepsDone < totalSteps {
                try saveCheckpoint(reason: dueBySteps ? "every \(c.checkpoint.everySteps) steps" : "every \(c.checkpoint.everyMinutes) minutes")
                savedAt = stepsDone
            }
        }
        if interrupted {
            log.record("end", [("step", .int(stepsDone)), ("interrupted", .bool(true)), ("seconds", .number(monotonicSeconds() - started))])
            return Summary(steps: stepsDone, finalLoss: lastLoss, knnAccuracy: .nan, runDirectory: runDirectory.path,
                           epochMeanLosses: epochMeans, interrupted: true)
        }
        if savedAt != stepsDone { try saveCheckpoint(reason: "end of training") }
        knnAccuracy = try evaluate(epoch: position.epoch)
        if isRoot {
            try WeightsFile.write(step.model.arena, to: runDirectory.appendingPathComponent("weights.bin"))
            log.info(String(format: "done: %d steps in %@, final loss %.4f, kNN accuracy %.2f%%; weights in %@",
                            stepsDone, Self.duration(monotonicSeconds() - started), lastLoss, knnAccuracy * 100,
                            runDirectory.appendingPathComponent("weights.bin").path))
        }
        log.record("end", [("step", .int(stepsDone)), ("interrupted", .bool(false)), ("seconds", .number(monotonicSeconds() - started))])
        try communicator.barrier()
        return Summary(steps: stepsDone, finalLoss: lastLoss, knnAccuracy: knnAccuracy, runDirectory: runDirectory.path,
                       epochMeanLosses: epochMeans, interrupted: false)
    }

    /// kNN accuracy (and retrieval recall for pairs) of the test split: every rank embeds the
    /// training samples it evaluates, rank 0 classifies and logs. NaN when the data has no labels.
    func evaluate(epoch: Int) throws -> Double {
        let t0 = monotonicSeconds()
        let accuracy = try Evaluation.distributedKNN(model: step.model, train: data.train, evaluated: data.evaluated, test: data.test,
                                                    k: config.eval.knnK, temperature: config.eval.knnTemperature,
                                                    communicator: communicator)
        if isRoot {
            var fields: [(String, JSONValue)] = [("step", .int(stepsDone)), ("epoch", .int(epoch))]
            var parts: [String] = []
            if let accuracy {
                parts.append(String(format: "kNN accuracy %.2f%% (k=%d)", accuracy * 100, config.eval.knnK))
                fields.append(("knn_accuracy", .number(accuracy)))
            }
            if config.loss.kind == .clip, let test = data.test, test.pairs != nil {
                let retrieval = Evaluation.retrieval(model: step.model, rows: test)
                for (index, k) in retrieval.ks.enumerated() {
                    parts.append(String(format: "recall@%d %.2f%% / %.2f%%", k, retrieval.forward[index] * 100, retrieval.backward[index] * 100))
                    fields.append(("recall_at_\(k)_features_to_pairs", .number(retrieval.forward[index])))
                    fields.append(("recall_at_\(k)_pairs_to_features", .number(retrieval.backward[index])))
                }
            }
            if let test = data.test {
                // The test representations on their top two principal components, for the report.
                let h = Evaluation.representations(model: step.model, rows: test)
                try PCA.writeEvalFile(runDirectory: runDirectory, step: stepsDone, epoch: epoch, rows: h.data, count: test.count,
                                      width: step.model.representationWidth, labels: test.labels)
                fields.append(("pca", .string(String(format: "eval/pca-step-%d.json", stepsDone))))
            }
            if parts.isEmpty { parts.append("nothing to evaluate (no test split with labels or pairs)") }
            log.info(String(format: "eval epoch %d: %@ (%.1f s)", epoch, parts.joined(separator: ", "), monotonicSeconds() - t0))
            if fields.count > 2 { log.record("eval", fields) }
            scalarSink?(fields.dropFirst(2).compactMap { field in
                if case .number(let value) = field.1 { return (tag: "eval/" + field.0, value: value) } else { return nil }
            }, stepsDone)
        }
        var shared = [accuracy ?? -2]
        try communicator.allReduceMax(&shared)
        return shared[0] < -1 ? .nan : shared[0]
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
