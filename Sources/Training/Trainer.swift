import Evaluation
import RunFiles
import Config
import Checkpoint
import Contrastive
import Data
import Distributed
import Foundation
import Storage
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
    /// Early stopping: the best monitored value so far (epoch 0: none yet), and its parameters.
    var earlyStoppingState: EarlyStoppingState?
    var bestParameters: Tensor?
    var model: ContrastiveModel { step.model }
    /// Where interval and evaluation scalars also go (TensorBoard, rank 0).
    var scalarSink: (([(tag: String, value: Double)], Int) -> Void)?
    /// Faults to inject (`CONTRAST_FAULT`), nil when unset.
    let faultInjection: FaultInjection?
    /// Ends the job when a collective waits longer than communication.watchdog_seconds (nil in one process).
    let watchdog: CollectiveWatchdog?
    /// Rank 0: why the latest evaluation had no kNN accuracy and the fix (`knnSkip`), nil when it had one.
    var knnSkipped: String?

    public struct Summary: Sendable {
        public var steps: Int
        public var finalLoss: Double
        /// NaN when the kNN evaluation was skipped (then `knnSkipped` says why, on rank 0).
        public var knnAccuracy: Double
        /// Rank 0: why the final evaluation has no kNN accuracy (no test split, no labels), nil when it has one.
        public var knnSkipped: String? = nil
        public var runDirectory: String
        public var epochMeanLosses: [Double]
        /// Stopped early by a stop signal (SIGTERM, SIGUSR1, SIGINT, SIGHUP, SIGUSR2) after writing a checkpoint: exit with `Trainer.interruptedExitCode`.
        public var interrupted: Bool
        /// Stopped by train.max_skipped_steps, with this message: exit with `Trainer.skippedStepsExitCode`.
        public var skippedStepsStop: String? = nil
        /// Resumed at the last step of a run that had finished: nothing was done (`finishedRun`).
        public var alreadyFinished = false
    }

    /// Exit status after a stop request was honoured (checkpoint written): EX_TEMPFAIL, "try
    /// again", so a requeue script knows to resume.
    public static let interruptedExitCode: Int32 = 75

    /// Exit status after train.max_skipped_steps steps in a row were skipped (EX_DATAERR: the
    /// numbers went bad; resuming unchanged would skip again).
    public static let skippedStepsExitCode: Int32 = 65

    public init(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator()) throws {
        self.config = config
        self.communicator = communicator
        let rank = communicator.rank, size = communicator.size
        runDirectory = URL(fileURLWithPath: config.runDirectory)
        faultInjection = try FaultInjection.configured()
        // Started first so that the start-up collectives are watched too.
        watchdog = config.communication.watchdogSeconds > 0 || config.communication.evalWatchdogSeconds > 0
            ? communicator.startWatchdog(seconds: config.communication.watchdogSeconds,
                                         evaluationSeconds: config.communication.evalWatchdogSeconds) : nil
        hosts = try Self.checkSameConfig(config, communicator)
        // Before anything is read or made: a node that cannot write the shared checkpoint folder
        // would otherwise fail at the first checkpoint, the work since the start lost.
        try WritableCheck.check(runDirectory: runDirectory, hosts: hosts, communicator: communicator)

        // Everything that can fail on user input is checked before the run directory exists,
        // so a mistake leaves nothing behind that blocks the corrected run. A mistake every rank
        // finds alike (a batch that does not divide across the ranks) is printed once and ends
        // every rank with status 1; a rank alone in failing (its shards unreadable) aborts the
        // job naming it.
        data = try communicator.agreeing {
            let data = try TrainingData(config: config, rank: rank, worldSize: size, loadTest: communicator.isRoot)
            try config.train.computePrecision.checkAvailable()
            _ = try config.train.gemmLibrary.resolved()     // an unavailable library is refused before the run directory exists
            return data
        }
        let all = config.train.epochs * data.sampler.batchesPerEpoch
        totalSteps = config.train.maxSteps > 0 ? min(all, config.train.maxSteps) : all

        var notes: [String] = []
        let resumeFrom = try Self.checkpointToResume(config, runDirectory: runDirectory, communicator: communicator) { notes.append($0) }
        // init_from starts a new run only: a resumed fine-tune continues from its own checkpoint.
        let pretrained = config.initFrom.isEmpty || resumeFrom != nil ? nil : try PretrainedEncoder.prepare(config, target: { [data] in
            ContrastiveModel(config.model, inputWidth: data.train.featureWidth, pairInputWidth: config.loss.usesPairTower ? data.train.pairWidth : 0,
                             imageShape: data.imageShape, learnableTemperature: config.loss.temperatureMode == .learnable,
                             learnableBias: config.loss.learnsLogitBias)
        }, communicator: communicator)
        if !config.initFrom.isEmpty && resumeFrom != nil { notes.append("init_from \(config.initFrom) not used: the run resumes from its own checkpoint") }
        if communicator.isRoot {
            try RunDirectory.createDirectory(runDirectory)
            try AtomicFile.write(Data(config.yaml().utf8), to: runDirectory.appendingPathComponent("config.yaml"))
        }
        try communicator.barrier()      // the directory exists before other ranks open their files
        log = try RunLog(directory: runDirectory, rank: rank, echo: communicator.isRoot)
        watchdog?.logTo(log.textFile.path)
        for note in notes { log.info(note) }
        BLASThreads.set(config.train.blasThreads)
        step = try TrainingStep(config: config, communicator: communicator, inputWidth: data.train.featureWidth,
                                pairWidth: data.train.pairWidth, imageShape: data.imageShape, samplesPerStep: config.data.batchPerRank, totalSteps: totalSteps,
                                layout: data.viewsLayout)
        try step.checkBatchLayout(data.maker)
        if let pretrained {
            try pretrained.apply(to: step.model, communicator: communicator)
            log.info(pretrained.summary)
        }
        if config.freeze == .encoder, communicator.isRoot {
            let frozen = step.model.encoderRange, wireBytes = step.reducer.precision == .fp32 ? 4 : 2
            let exchanged = step.reducer.buckets.reduce(0) { $0 + $1.count }
            log.info("freeze: encoder: arena 0..<\(frozen.upperBound) fixed (no gradients, updates or all-reduce); "
                     + "\(exchanged * wireBytes) bytes of gradients all-reduced per step instead of \(step.model.arena.count * wireBytes) "
                     + "in \(step.reducer.buckets.count) bucket(s)")
        }
        step.hooks.faults = faultInjection
        step.hooks.delay = try StepHooks.slowRankDelay(rank: rank)
        if config.eval.earlyStoppingPatience > 0 {
            earlyStoppingState = EarlyStoppingState(value: -.infinity, epoch: 0, evaluationsSince: 0)
            bestParameters = Tensor(zeros: [step.model.arena.count])
        }
        if let resumeFrom {
            try restore(from: resumeFrom)
            resumedFrom = resumeFrom
        }
        StopSignal.install(printsLine: communicator.isRoot, resumeFrom: resumeFrom?.path)
    }

    deinit { watchdog?.stop() }

    /// Ranks must run the same config and the same build of contrast: one all-gather of each
    /// rank's hash of the resolved config, its executable's build id (`BuildID`) and its host
    /// name, the first collective of a run. Returns the host names by rank. Every rank forms the
    /// same message from the same gathered records, so a mismatch is printed once, naming the
    /// ranks with their hosts, and every rank exits 1.
    static func checkSameConfig(_ config: TrainingConfig, _ communicator: Communicator) throws -> [String] {
        let size = communicator.size
        guard size > 1 else { return [Launch.localHostname()] }
        let idBytes = 128, hostBytes = Launch.hostnameSlotBytes, record = 8 + idBytes + hostBytes
        var mine = [UInt8](repeating: 0, count: record)
        withUnsafeBytes(of: WeightsFile.fnv1a(config.yaml().utf8).littleEndian) { mine.replaceSubrange(0..<8, with: $0) }
        let id = Array(BuildID.hex.utf8.prefix(idBytes - 1)), host = Array(Launch.localHostname().utf8.prefix(hostBytes - 1))
        mine.replaceSubrange(8..<(8 + id.count), with: id)
        mine.replaceSubrange((8 + idBytes)..<(8 + idBytes + host.count), with: host)
        var all = [UInt8](repeating: 0, count: record * size)
        try mine.withUnsafeBytes { m in
            try all.withUnsafeMutableBytes { try communicator.allGatherBytes(m.baseAddress!, bytes: record, into: $0.baseAddress!) }
        }
        func text(_ rank: Int, _ range: Range<Int>) -> String {
            String(decoding: all[(rank * record + range.lowerBound)..<(rank * record + range.upperBound)].prefix { $0 != 0 }, as: UTF8.self)
        }
        let hosts = (0..<size).map { text($0, (8 + idBytes)..<record) }
        let builds = (0..<size).map { text($0, 8..<(8 + idBytes)) }
        if let message = differentBuilds(builds, hosts: hosts) {
            throw SameOnEveryRank(RunDirectory.Failure(description: message))
        }
        let hashes = (0..<size).map { rank in all[(rank * record)..<(rank * record + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        if let other = hashes.firstIndex(where: { $0 != hashes[0] }) {
            throw SameOnEveryRank(RunDirectory.Failure(description: String(format:
                "the ranks run different configs: rank 0 has config hash %016llx, rank %d has %016llx; start every rank with the same config and --set arguments",
                hashes[0], other, hashes[other])))
        }
        return hosts
    }

    /// The line for ranks whose executables' build ids (by rank; empty: linked without one)
    /// differ, naming each build's ranks with their hosts; nil when all are equal.
    static func differentBuilds(_ builds: [String], hosts: [String]) -> String? {
        guard let first = builds.first, builds.contains(where: { $0 != first }) else { return nil }
        var order: [String] = []
        for build in builds where !order.contains(build) { order.append(build) }
        let groups = order.map { build -> String in
            let ranks = builds.indices.filter { builds[$0] == build }
            return Launch.ranksOnHosts(ranks, hosts: hosts) + (ranks.count == 1 ? " runs " : " run ")
                + (build.isEmpty ? "a build without a build id" : "build id \(build)")
        }
        return "the ranks run different builds of contrast: " + groups.joined(separator: "; ")
            + "; install the same build at the same path on every node (contrast --version prints a build's id)"
    }

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
        if let finished = try finishedRun() { return finished }
        let c = config, p = communicator.size
        let globalImages = c.data.batchPerRank * p
        if communicator.isRoot {
            // Lines that fit 120 columns with their timestamp (paths aside): a terminal shows them unwrapped.
            log.info("contrast run \(runDirectory.path)")
            log.info("\(data.train.totalCount) train / \(data.test?.count ?? 0) test samples, "
                     + "\(step.model.arena.parameterCount) parameters, \(totalSteps) steps "
                     + "(\(sampler.batchesPerEpoch) per epoch of \(globalImages) samples, \(c.data.batchPerRank) per rank)")
            log.info("\(p) rank(s), \(sampler.virtualShards) shards, BLAS threads \(BLASThreads.current), "
                     + "kernels \(Kernels.instructionSet), gradients as \(step.reducer.precision.rawValue) "
                     + "in \(step.reducer.buckets.count) bucket(s)")
            log.info("world: " + hosts.enumerated().map { "rank \($0.offset) on \($0.element)" }.joined(separator: ", "))
            for note in data.summary.components(separatedBy: "; ") { log.info("data: " + note) }
            if let skip = knnSkip() {
                // Said now, not only after the last step: the user may want to re-prepare before spending the time.
                log.info("eval: kNN will be skipped: \(skip.cause)" + (skip.fix.isEmpty ? "" : "; \(skip.fix)")
                         + (c.eval.earlyStoppingPatience > 0 ? "; so early stopping (eval.early_stopping_patience) has nothing to monitor" : ""))
            }
            if c.train.computePrecision == .bf16, let gemm = OneDNNGEMM.implementation {
                log.info("compute: the model's GEMMs in bf16 (fp32 accumulation and master weights) through oneDNN \(gemm)")
            } else {
                log.info("compute: the model's GEMMs in fp32 through \(FP32GEMM.description) (train.gemm_library \(c.train.gemmLibrary.rawValue))")
            }
            if let summary = step.objective.summary { log.info(summary) }
            // The whole resolved config is in the run directory (written above); the log names it.
            log.info("resolved config: " + runDirectory.appendingPathComponent("config.yaml").path)
            if let resumedFrom {
                log.info("resumed from checkpoint \(resumedFrom.path) at step \(stepsDone) (epoch \(position.epoch + 1), batch \(position.batch))")
            }
        }
        var lastLoss = Double.nan
        var epochMeans: [Double] = []
        let started = monotonicSeconds()
        // After a resume this process ran only the steps from here: the done line says so, so
        // its time is not read as the whole run's.
        let firstStep = stepsDone
        var ending = Ending.completed
        var savedAt = resumedFrom != nil ? stepsDone : -1
        var lastEvaluation: (step: Int, values: (knn: Double, linear: Double))? = nil
        if communicator.isRoot && c.monitor.tensorboard && scalarSink == nil {
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
        // Before the monitor starts its clocks: the probe's seconds are not the first step's.
        try LinkProbe.run(config: c, hosts: hosts, communicator: communicator, log: log, step: stepsDone)
        let monitor = Monitor(config: c, communicator: communicator, log: log, step: step, totalSteps: totalSteps,
                              stepsDone: stepsDone, hosts: hosts)
        monitor.scalars = scalarSink
        monitor.start(step: step, data: data, resumedFrom: resumedFrom, stepsDone: stepsDone)
        defer { log.clearProgress() }

        // The coming batches, made ahead on a background thread (or in the loop).
        // With data.hold: stream the shards are read and decompressed there too.
        let batches = try data.batches(start: position)
        let prefetcher = c.data.prefetch > 0 && stepsDone < totalSteps
            ? try ViewPrefetcher(batches: batches, floatsPerBatch: data.maker.floatsPerBatch, steps: totalSteps - stepsDone, depth: c.data.prefetch)
            : nil
        defer { prefetcher?.stop() }

        while stepsDone < totalSteps {
            let epoch = position.epoch
            let input: UnsafePointer<Float>
            let dataWait: Double
            if let prefetcher {
                (input, dataWait) = try prefetcher.next()
            } else {
                let t0 = monotonicSeconds()
                try batches.makeNext(into: step.batch.data)
                input = UnsafePointer(step.batch.data)
                dataWait = monotonicSeconds() - t0
            }
            // Requests every rank must agree on travel with the step's statistics (summed).
            let dueByTime = c.checkpoint.everyMinutes > 0 && monotonicSeconds() - lastCheckpointTime >= Double(c.checkpoint.everyMinutes) * 60
            var result = try step.step(stepsDone, input: input, requests: StepRequests(stop: StopSignal.received != 0, checkpoint: dueByTime))
            result.times.dataWait = dataWait
            if !result.applied && communicator.isRoot {
                log.info(String(format: "step %d: summed gradients or loss not finite, update skipped on every rank (%d skipped so far; scale now %g)",
                                stepsDone + 1, step.reducer.skippedSteps, step.reducer.scale))
            }
            stepsDone += 1
            position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
            try monitor.afterStep(stepsDone: stepsDone, epoch: epoch, result: result, step: step)
            // A skipped step has no usable loss when the loss itself was not finite (the skip rule).
            if result.loss.isFinite {
                lastLoss = result.loss
                epochLossSum += result.loss; epochStepCount += 1
            }
            if let message = skippedStepsStop(result) {
                // Nothing is written: the last checkpoint stays the newest, whole and resumable.
                log.info("ERROR " + message)
                ending = .skippedSteps(message)
                break
            }

            let epochEnded = position.batch == 0 || stepsDone == totalSteps
            if epochEnded {
                let mean = epochLossSum / Double(max(1, epochStepCount))
                epochMeans.append(mean)
                if communicator.isRoot { log.info(String(format: "epoch %d: mean loss %.4f over %d steps", epoch + 1, mean, epochStepCount)) }
                log.record("epoch", [("step", .int(stepsDone)), ("epoch", .int(epoch)), ("epoch_mean_loss", .number(mean))])
                epochLossSum = 0; epochStepCount = 0
            }
            let evaluationDue = [c.eval.knnEveryEpochs, c.eval.linearEveryEpochs, data.retrievesText ? c.eval.retrievalEveryEpochs : 0].contains { $0 > 0 && (epoch + 1) % $0 == 0 }
            var stopEarly = false
            if position.batch == 0 && evaluationDue && stepsDone < totalSteps {
                let values = try evaluate(epoch: epoch + 1)
                stopEarly = try earlyStopping(values, epoch: epoch + 1)
                lastEvaluation = (stepsDone, values)
            }
            if result.requests.stop > 0 {
                // Every rank stops here (the request was summed); a rank that saw no signal itself names none.
                let cause = StopSignal.received != 0 ? StopSignal.name : "a stop signal on another rank"
                if communicator.isRoot { log.info("\(cause) received: stopping after step \(stepsDone) with a checkpoint") }
                try saveCheckpoint(reason: "stop requested")
                if communicator.isRoot { log.info("stopped at step \(stepsDone); run the same command to resume") }
                ending = .interrupted
                break
            }
            if stopEarly { break }
            let dueBySteps = c.checkpoint.everySteps > 0 && stepsDone % c.checkpoint.everySteps == 0
            if (dueBySteps || result.requests.checkpoint > 0) && stepsDone < totalSteps {
                try saveCheckpoint(reason: dueBySteps ? "every \(c.checkpoint.everySteps) steps" : "every \(c.checkpoint.everyMinutes) minutes")
                savedAt = stepsDone
            }
        }
        var knnAccuracy = Double.nan
        if ending == .completed {
            if savedAt != stepsDone { try saveCheckpoint(reason: stepsDone < totalSteps ? "early stop" : "end of training") }
            knnAccuracy = try finalEvaluation(lastEvaluation: lastEvaluation)
            if communicator.isRoot {
                try WeightsFile.write(step.model.arena, inputs: data.modelInputs, to: runDirectory.appendingPathComponent("weights.bin"))
                let weights = runDirectory.appendingPathComponent("weights.bin").path
                let steps = (firstStep == 0 ? "\(stepsDone) steps" : "\(stepsDone) steps (\(stepsDone - firstStep) since the resume at step \(firstStep))")
                    + " in " + RunLog.duration(monotonicSeconds() - started)
                if knnAccuracy.isFinite {
                    log.info(String(format: "done: %@, final loss %.4f, kNN accuracy %.2f%%; weights in %@",
                                    steps, lastLoss, knnAccuracy * 100, weights))
                } else {
                    log.info(String(format: "done: %@, final loss %.4f; weights in %@; kNN skipped: %@",
                                    steps, lastLoss, weights, knnSkipped ?? "not evaluated"))
                }
            }
        }
        recordEnd(ending, seconds: monotonicSeconds() - started, knnAccuracy: knnAccuracy)
        if ending == .completed { try communicator.barrier() }
        return Summary(steps: stepsDone, finalLoss: lastLoss, knnAccuracy: knnAccuracy,
                       knnSkipped: ending == .completed && !knnAccuracy.isFinite ? knnSkipped : nil, runDirectory: runDirectory.path,
                       epochMeanLosses: epochMeans, interrupted: ending == .interrupted, skippedStepsStop: ending.message)
    }

    /// The evaluation at the end of a completed run: the last parameters (unless that evaluation
    /// just happened and stopped the run); early stopping then keeps the best evaluation's
    /// parameters, re-evaluated, for weights.bin (the last checkpoint holds the last ones).
    /// Returns the kNN accuracy of the parameters kept.
    private func finalEvaluation(lastEvaluation: (step: Int, values: (knn: Double, linear: Double))?) throws -> Double {
        let c = config
        // Epochs count from 1, as in the step lines: the epoch of the last step (position has
        // moved past it: to the next epoch's start, or within the epoch that max_steps cut short).
        let epoch = position.batch == 0 ? position.epoch : position.epoch + 1
        var finalValues = lastEvaluation?.step == stepsDone ? lastEvaluation!.values : try evaluate(epoch: epoch, final: true)
        if earlyStoppingState != nil && lastEvaluation?.step != stepsDone { _ = try earlyStopping(finalValues, epoch: epoch) }
        if let best = earlyStoppingState, best.epoch > 0, best.epoch != epoch {
            model.arena.parameters.data.update(from: bestParameters!.data, count: model.arena.count)
            if communicator.isRoot { log.info(String(format: "keeping the parameters of epoch %d (%@ %.2f%%)", best.epoch,
                                        c.eval.earlyStoppingMonitor.rawValue, best.value * 100)) }
            finalValues = try evaluate(epoch: best.epoch, final: true)
        }
        return finalValues.knn
    }

    /// Evaluates the representation on the test split: kNN accuracy (every evaluation), the
    /// linear probe (every `eval.linear_every_epochs`, and at the end when that is set), the
    /// retrieval recall of pairs, and the PCA file for the report. Every rank embeds the
    /// training samples it evaluates; rank 0 classifies and logs. Returns the monitored value
    /// (`eval.early_stopping_monitor`), the same on every rank; NaN when there is none.
    func evaluate(epoch: Int, final: Bool = false) throws -> (knn: Double, linear: Double) {
        // Rank 0 classifies alone for minutes while the others wait in the closing all-reduce:
        // the watchdog holds evaluation to its own limit (communication.eval_watchdog_seconds).
        let previousPhase = communicator.enter(.evaluation)
        defer { communicator.enter(previousPhase) }
        faultInjection?.due(rank: communicator.rank, step: stepsDone)?.hangInEvaluationIfDue()
        let t0 = monotonicSeconds(), e = config.eval
        // The fp32 master weights are evaluated in fp32, whatever the training GEMMs ran in.
        let precision = step.model.computePrecision
        step.model.computePrecision = .fp32
        defer { step.model.computePrecision = precision }
        let linearDue = e.linearEveryEpochs > 0 && (final || epoch % e.linearEveryEpochs == 0)
        if communicator.isRoot, let test = data.test, knnSkip() == nil {
            // The evaluation can take longer than the steps before it: say what is happening.
            log.info("evaluating: kNN\(linearDue ? " and linear probe" : "") on \(test.count) test samples "
                     + "against \(data.train.totalCount) training samples ...")
        }
        // A line at least every 10 s of work on rank 0, which embeds, classifies and fits alone.
        let progress = communicator.isRoot ? EvaluationProgress(every: evaluationProgressInterval) { [log] in log.info("evaluating: " + $0) } : nil
        let memory: Evaluation.LabelledRepresentations?
        if data.texts != nil {
            memory = nil   // a text set has no classes: no kNN memory (retrieval below)
        } else if data.streamed != nil {
            let (own, labels) = try data.streamedRepresentations(model: step.model, progress: progress)
            memory = try Evaluation.gatherRepresentations(model: step.model, own: own, ownLabels: labels, communicator: communicator)
        } else {
            memory = try Evaluation.gatherRepresentations(model: step.model, train: data.train, evaluated: data.evaluated,
                                                          communicator: communicator, progress: progress)
        }
        var values: [String: Double] = [:]
        if communicator.isRoot {
            // Reported once embedding is slow enough to leave the terminal silent for a while.
            let embedded = monotonicSeconds() - t0
            if embedded >= Self.evaluationProgressSeconds {
                log.info(String(format: "evaluating: training samples embedded in %.1f s; classifying ...", embedded))
            }
            var fields: [(String, JSONValue)] = [("step", .int(stepsDone)), ("epoch", .int(epoch))]
            var parts: [String] = []
            if let test = data.test {
                let queries = Evaluation.representations(model: step.model, rows: test, progress: progress, what: "test samples")
                if let memory, let queryLabels = Evaluation.classes(test.labels) {
                    // The linear probe reads the raw memory after; without it the kNN may normalise it in place.
                    let knn = Evaluation.knnAccuracy(memory: memory, queries: queries, queryLabels: queryLabels,
                                                     k: e.knnK, temperature: e.knnTemperature, consumingMemory: !linearDue,
                                                     progress: progress)
                    values["knn"] = knn
                    parts.append(String(format: "kNN accuracy %.2f%% (k=%d)", knn * 100, e.knnK))
                    fields.append(("knn_accuracy", .number(knn)))
                    if linearDue {
                        // The probe on the whole gathered training set, 300 L-BFGS iterations at most (a monitor tracks a trend).
                        let classes = max(2, Int(max(memory.labels.max() ?? 0, queryLabels.max() ?? 0)) + 1)
                        let probe = LinearProbe.fit(features: memory.features, labels: memory.labels.map { Int($0) }, classes: classes,
                                                    maxIterations: 300, progress: progress)
                        let accuracy = probe.accuracy(features: queries, labels: queryLabels.map { Int($0) })
                        values["linear"] = accuracy
                        parts.append(String(format: "linear probe %.2f%%", accuracy * 100))
                        fields.append(("linear_accuracy", .number(accuracy)))
                    }
                }
                if config.loss.usesPairTower && config.model.pairEncoder == .bert, let queryLabels = Evaluation.classes(test.labels) {
                    let names = Evaluation.zeroShotClassNames(of: config)
                    if names.count > Int(queryLabels.max() ?? 0) {
                        let accuracy = try Evaluation.zeroShot(model: step.model, test: test, labels: queryLabels,
                                                               tokens: try CaptionTokens(config: config), classNames: names,
                                                               templates: config.eval.zeroShot.templates)
                        values["zero_shot"] = accuracy
                        parts.append(String(format: "zero-shot accuracy %.2f%%", accuracy * 100))
                        fields.append(("zero_shot_accuracy", .number(accuracy)))
                    } else {
                        parts.append("zero-shot skipped (\(names.count) class names for \(Int(queryLabels.max() ?? 0) + 1) classes; "
                                     + "set eval.zero_shot.class_names)")
                    }
                }
                if config.loss.usesPairTower, test.hasPairs {
                    let retrieval = Evaluation.retrieval(model: step.model, rows: test, ks: [1, 5, 10])
                    for (index, k) in retrieval.ks.enumerated() {
                        parts.append(String(format: "recall@%d %.2f%% / %.2f%%", k, retrieval.forward[index] * 100, retrieval.backward[index] * 100))
                        fields.append(("recall_at_\(k)_features_to_pairs", .number(retrieval.forward[index])))
                        fields.append(("recall_at_\(k)_pairs_to_features", .number(retrieval.backward[index])))
                    }
                }
                // The test representations on their top two principal components, for the report.
                try PCA.writeEvalFile(runDirectory: runDirectory, step: stepsDone, epoch: epoch, rows: queries.data, count: test.count,
                                      width: step.model.representationWidth, labels: test.labels)
                fields.append(("pca", .string(String(format: "eval/pca-step-%d.json", stepsDone))))
            }
            if let retrieval = data.textRetrieval {
                let r = retrieval.evaluate(model: step.model, progress: progress), s = r.scores
                parts.append(String(format: "retrieval of %d texts among %d positives: recall@1 %.2f%%, @5 %.2f%%, @10 %.2f%%, MRR@10 %.4f, nDCG@10 %.4f",
                                    retrieval.queryCount, retrieval.documentCount, s.recall[0] * 100, s.recall[1] * 100, s.recall[2] * 100,
                                    s.meanReciprocalRank, s.normalizedDCG))
                for (index, k) in s.ks.enumerated() { fields.append(("retrieval_recall_at_\(k)", .number(s.recall[index]))) }
                fields.append(("retrieval_mrr_at_10", .number(s.meanReciprocalRank)))
                fields.append(("retrieval_ndcg_at_10", .number(s.normalizedDCG)))
                if let rho = r.spearman {
                    parts.append(String(format: "Spearman %.4f (cosine against score)", rho))
                    fields.append(("spearman", .number(rho)))
                }
            }
            // A skipped kNN is said in words (log, metrics, report), never as a NaN.
            knnSkipped = nil
            if values["knn"] == nil {
                let skip = knnSkip(labelsUsable: memory != nil) ?? (cause: "no kNN accuracy", fix: "")
                knnSkipped = skip.fix.isEmpty ? skip.cause : skip.cause + "; " + skip.fix
                parts.append("kNN skipped (\(skip.cause))")   // the fix is in the run's first and last lines
                fields.append(("knn_skipped", .string(knnSkipped!)))
            }
            log.info(String(format: "eval epoch %d: %@ (%.1f s)", epoch, parts.joined(separator: ", "), monotonicSeconds() - t0))
            log.record("eval", fields)
            scalarSink?(fields.dropFirst(2).compactMap { field in
                if case .number(let value) = field.1 { return (tag: "eval/" + field.0, value: value) } else { return nil }
            }, stepsDone)
        }
        var shared = [values["knn"] ?? -2, values["linear"] ?? -2]
        try communicator.allReduceMax(&shared)
        return (shared[0] < -1 ? .nan : shared[0], shared[1] < -1 ? .nan : shared[1])
    }

    /// An evaluation phase that took at least this long is followed by a line saying what comes next.
    static let evaluationProgressSeconds = 3.0

    /// The longest silence of an evaluation on rank 0: a progress line at least this often (tests shorten it).
    var evaluationProgressInterval = EvaluationProgress.defaultInterval

    /// Early stopping after an evaluation (same decision on every rank: the values are shared).
    /// Keeps a copy of the best parameters; returns true when patience has run out.
    func earlyStopping(_ values: (knn: Double, linear: Double), epoch: Int) throws -> Bool {
        let e = config.eval
        guard e.earlyStoppingPatience > 0, var state = earlyStoppingState else { return false }
        let value = e.earlyStoppingMonitor == .knn ? values.knn : values.linear
        guard value.isFinite else { return false }
        if state.epoch == 0 || value > state.value + Double(e.earlyStoppingMinDelta) {
            state = EarlyStoppingState(value: value, epoch: epoch, evaluationsSince: 0)
            bestParameters!.data.update(from: model.arena.parameters.data, count: model.arena.count)
        } else {
            state.evaluationsSince += 1
        }
        earlyStoppingState = state
        guard state.evaluationsSince >= e.earlyStoppingPatience else { return false }
        if communicator.isRoot {
            log.info(String(format: "early stopping at epoch %d: %@ has not improved on %.2f%% (epoch %d) for %d evaluation(s)",
                            epoch, e.earlyStoppingMonitor.rawValue, state.value * 100, state.epoch, state.evaluationsSince))
        }
        return true
    }
}
