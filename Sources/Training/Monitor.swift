import RunFiles
import Config
import Contrastive
import Distributed
import Foundation
import Tensor

/// What a run reports as it trains (docs/monitoring.md): a `step` record per step on every
/// rank, the human-readable line per logging interval on rank 0, the embedding geometry of the
/// global batch, and health warnings as they happen: non-finite loss, repeated skipped steps,
/// collapse, stragglers (named by rank and host), data waits.
///
/// Every rank calls `afterStep` after every step: at the end of each logging interval the
/// ranks exchange their compute times (one small all-gather), so the call is collective there.
final class Monitor {
    let config: TrainingConfig
    let communicator: Communicator
    let log: RunLog
    let totalSteps: Int
    let hosts: [String]
    /// Payload bytes this rank hands to collectives per step (gather, reduce-scatter, gradients, statistics).
    let bytesPerStep: Int
    let showProgress: Bool
    /// Where interval scalars also go (TensorBoard on rank 0), tag -> value at a step.
    var scalars: ((_ values: [(tag: String, value: Double)], _ step: Int) -> Void)?

    private var window = StepTimes(), windowHidden = 0.0
    /// Wall seconds of the interval's steps (`time_wall` summed), for its images/s (`Throughput`).
    private var windowWall = 0.0
    /// When the previous step ended (at first: when the loop began), for the next `time_wall`.
    private var previousStepEnd = monotonicSeconds()
    private var windowLoss = 0.0, windowAccuracy = 0.0, windowSteps = 0
    /// The temperature of the interval's last step (scheduled or learned), as the learning rate is.
    private var lastTemperature: Float = 0
    /// Interval sums of the optional terms (pseudo-label fraction, reconstruction error).
    private var windowPseudoLabels = 0.0, windowReconstruction = 0.0
    private var skippedInARow = 0
    private var collapseWarned = false
    /// The first interval includes filling the data pipeline: no data-wait warning for it.
    private var firstInterval = true
    private let started = monotonicSeconds()
    private let stepsAtStart: Int

    init(config: TrainingConfig, communicator: Communicator, log: RunLog, step: TrainingStep, totalSteps: Int,
         stepsDone: Int, hosts: [String]) {
        self.config = config
        self.communicator = communicator
        self.log = log
        self.totalSteps = totalSteps
        self.hosts = hosts
        stepsAtStart = stepsDone
        let p = communicator.size, v = 2 * step.samplesPerStep, e = step.model.embeddingWidth
        let wire = step.reducer.precision == .fp32 ? 4 : 2
        bytesPerStep = p == 1 ? 0 : v * e * 4 + p * v * e * 4 + step.model.arena.count * wire + step.statistics.count * 4
        let mode = config.monitor.progress
        // Under mpirun or srun a rank's standard output is the launcher's pipe or pseudo-terminal,
        // whatever the launcher's own output is: `auto` only trusts a terminal outside a launcher.
        showProgress = communicator.isRoot
            && (mode == .always || (mode == .auto && isatty(STDOUT_FILENO) != 0 && !Launch.isUnderLauncher()))
    }

    /// Host of rank r, for messages.
    func host(_ rank: Int) -> String { rank < hosts.count ? hosts[rank] : "?" }

    /// The `start` record: schema version, world layout and what the run will do.
    func start(step: TrainingStep, data: TrainingData, resumedFrom: URL?, stepsDone: Int) {
        log.record("start", [
            ("schema_version", .int(RunLog.schemaVersion)), ("contrast_version", .string(contrastVersion)),
            ("rank", .int(communicator.rank)), ("world_size", .int(communicator.size)),
            ("host", .string(host(communicator.rank))), ("pid", .int(Int(getpid()))), ("hosts", .string(hosts.joined(separator: ","))),
            ("total_steps", .int(totalSteps)), ("start_step", .int(stepsDone)),
            ("batches_per_epoch", .int(data.sampler.batchesPerEpoch)),
            ("global_batch", .int(config.data.batchPerRank * communicator.size)), ("loss_kind", .string(config.loss.kind.rawValue)),
            ("parameters", .int(step.model.arena.parameterCount)), ("resumed_from", .string(resumedFrom?.path ?? "")),
        ])
    }

    /// Records step `stepsDone` (just finished), logs and checks health at interval ends.
    func afterStep(stepsDone: Int, epoch: Int, result: TrainingStep.Result, step: TrainingStep) throws {
        let c = config, globalSamples = c.data.batchPerRank * communicator.size
        let times = result.times, learningRate = result.learningRate
        var optional: [(String, JSONValue)] = []
        if let fraction = result.pseudoLabelFraction { optional.append(("pseudo_label_fraction", .number(fraction))) }
        if let error = result.reconstructionLoss { optional.append(("reconstruction_loss", .number(error))) }
        if let beta = result.hardNegativeBeta { optional.append(("hard_negative_beta", .number(Double(beta)))) }
        if let bias = result.logitBias { optional.append(("logit_bias", .number(Double(bias)))) }
        let now = monotonicSeconds(), wall = now - previousStepEnd
        previousStepEnd = now
        log.record("step", [
            ("step", .int(stepsDone)), ("epoch", .int(epoch)), ("loss", .number(result.loss)),
            ("positive_accuracy", .number(result.positiveAccuracy)), ("lr", .number(Double(learningRate))),
            ("temperature", .number(Double(result.temperature))), ("gradient_norm", .number(Double(result.gradientNorm))),
            ("loss_scale", .number(Double(step.reducer.scale))), ("skipped", .bool(!result.applied)),
            ("images_per_second", .number(Double(globalSamples) / times.total)),
            ("time_data_wait", .number(times.dataWait)), ("time_forward", .number(times.forward)),
            ("time_gather", .number(times.gather)), ("time_loss", .number(times.loss)),
            ("time_backward", .number(times.backward)),
            ("time_communication_exposed", .number(times.communication)),
            ("time_communication_hidden", .number(result.communication.hidden)),
            ("time_optimizer", .number(times.optimizer)), ("bytes_communicated", .int(bytesPerStep)),
            ("time_wall", .number(wall)),
        ] + optional)
        window = window + times
        windowHidden += result.communication.hidden
        windowWall += wall
        windowLoss += result.loss; windowAccuracy += result.positiveAccuracy; windowSteps += 1
        lastTemperature = result.temperature
        windowPseudoLabels += result.pseudoLabelFraction ?? 0; windowReconstruction += result.reconstructionLoss ?? 0

        if !result.applied {
            skippedInARow += 1
            if skippedInARow == c.monitor.skippedSteps && communicator.isRoot {
                log.warn(String(format: "%d steps in a row skipped (loss or gradients not finite; fp16 loss scale now %g): "
                                + "if it goes on, lower optimizer.lr or use communication.precision bf16",
                                skippedInARow, step.reducer.scale), step: stepsDone)
            }
        } else {
            skippedInARow = 0
        }
        if !result.loss.isFinite && communicator.isRoot {
            log.warn("loss is \(result.loss) at step \(stepsDone): the update was skipped on every rank", step: stepsDone)
        }
        if c.monitor.geometryEverySteps > 0 && stepsDone % c.monitor.geometryEverySteps == 0 && communicator.isRoot {
            geometry(stepsDone: stepsDone, step: step)
        }
        if showProgress {
            let elapsed = monotonicSeconds() - started
            let eta = elapsed / Double(stepsDone - stepsAtStart) * Double(totalSteps - stepsDone)
            log.progress(String(format: "step %d/%d (%.0f%%) epoch %d loss %.4f %.0f img/s eta %@", stepsDone, totalSteps,
                                100 * Double(stepsDone) / Double(totalSteps), epoch + 1, result.loss,
                                Double(globalSamples) / times.total, RunLog.duration(eta)))
        }
        if stepsDone % max(1, c.train.logEverySteps) == 0 || stepsDone == totalSteps {
            try endOfInterval(stepsDone: stepsDone, epoch: epoch, learningRate: learningRate)
        }
    }

    /// The interval's line, the straggler check (collective) and the data-wait check.
    private func endOfInterval(stepsDone: Int, epoch: Int, learningRate: Float) throws {
        let c = config, n = Double(max(1, windowSteps)), globalSamples = c.data.batchPerRank * communicator.size
        let imagesPerSecond = Throughput.imagesPerSecond(images: windowSteps * globalSamples, wallSeconds: windowWall)
        // Compute time: the step minus waiting in collectives (a slow rank makes the others wait there).
        var busy = [(window.total - window.gather - window.communication) / n]
        var all = [Double](repeating: 0, count: communicator.size)
        if communicator.size > 1 {
            try busy.withUnsafeMutableBytes { mine in
                try all.withUnsafeMutableBytes { try communicator.allGatherBytes(mine.baseAddress!, bytes: 8, into: $0.baseAddress!) }
            }
        } else {
            all = busy
        }
        if communicator.isRoot {
            let elapsed = monotonicSeconds() - started
            let eta = elapsed / Double(max(1, stepsDone - stepsAtStart)) * Double(totalSteps - stepsDone)
            // Fits 120 columns with its timestamp: the per-phase times are in the step records and TensorBoard.
            log.info(String(format: "step %d/%d epoch %d loss %.4f pos_acc %.3f lr %.2e %.0f img/s %.1f ms/step eta %@",
                            stepsDone, totalSteps, epoch + 1, windowLoss / n, windowAccuracy / n, learningRate,
                            imagesPerSecond, window.total / n * 1e3, RunLog.duration(eta))
                     + (config.loss.pseudoLabels == .knn ? String(format: " pseudo %.3f", windowPseudoLabels / n) : "")
                     + (config.loss.reconstructionWeight > 0 ? String(format: " rec %.4f", windowReconstruction / n) : ""))
            if communicator.size > 1 {
                for (rank, time) in all.enumerated() {
                    // Against the median of the other ranks (at P = 2: the other rank).
                    var others = all
                    others.remove(at: rank)
                    let median = Statistics.median(others)!
                    guard Self.isStraggler(seconds: time, median: median, monitor: c.monitor) else { continue }
                    log.warn(String(format: "rank %d on %@ is a straggler: %.1f ms of compute per step against the median %.1f ms "
                                    + "(%.1fx > monitor.straggler_factor %.2g and +%.1f ms > monitor.straggler_min_ms %.3g)",
                                    rank, host(rank), time * 1e3, median * 1e3, time / median, c.monitor.stragglerFactor,
                                    (time - median) * 1e3, c.monitor.stragglerMinMs), step: stepsDone)
                }
            }
            scalars?([("train/loss", windowLoss / n), ("train/positive_accuracy", windowAccuracy / n),
                              ("train/lr", Double(learningRate)), ("train/temperature", Double(lastTemperature)),
                              ("speed/images_per_second", imagesPerSecond),
                              ("time/data_wait_ms", window.dataWait / n * 1e3), ("time/forward_ms", window.forward / n * 1e3),
                              ("time/gather_ms", window.gather / n * 1e3), ("time/loss_ms", window.loss / n * 1e3),
                              ("time/backward_ms", window.backward / n * 1e3),
                              ("time/communication_exposed_ms", window.communication / n * 1e3),
                              ("time/communication_hidden_ms", windowHidden / n * 1e3),
                              ("time/optimizer_ms", window.optimizer / n * 1e3)], stepsDone)
        }
        // Every rank judges its own data wait (a slow file system may slow one node only).
        if !firstInterval && Self.waitedTooLong(dataWait: window.dataWait, total: window.total, steps: windowSteps, monitor: c.monitor) {
            log.warn(String(format: "the training loop waited for data %.0f%% of the time over the last %d steps, %.1f ms per step "
                            + "(> monitor.data_wait_fraction %.2g and > monitor.data_wait_min_ms %.3g): "
                            + "raise data.prefetch, or give the ranks more cores",
                            window.dataWait / max(1e-12, window.total) * 100, windowSteps, window.dataWait / n * 1e3,
                            c.monitor.dataWaitFraction, c.monitor.dataWaitMinMs), step: stepsDone)
        }
        windowPseudoLabels = 0; windowReconstruction = 0
        window = StepTimes(); windowHidden = 0; windowWall = 0; windowLoss = 0; windowAccuracy = 0; windowSteps = 0
        firstInterval = false
    }

    /// A rank is a straggler when its compute time per step exceeds the median of the others
    /// both by `monitor.straggler_factor` and by `monitor.straggler_min_ms`: with 1 ms steps a
    /// ratio alone flags scheduler noise that costs nothing.
    static func isStraggler(seconds: Double, median: Double, monitor: MonitorSection) -> Bool {
        seconds > Double(monitor.stragglerFactor) * median && (seconds - median) * 1e3 > Double(monitor.stragglerMinMs)
    }

    /// Waiting for data is worth a warning when it is both more than `monitor.data_wait_fraction`
    /// of the step time and more than `monitor.data_wait_min_ms` per step (seconds summed over `steps`).
    static func waitedTooLong(dataWait: Double, total: Double, steps: Int, monitor: MonitorSection) -> Bool {
        dataWait / max(1e-12, total) > Double(monitor.dataWaitFraction)
            && dataWait / Double(max(1, steps)) * 1e3 > Double(monitor.dataWaitMinMs)
    }

    /// Alignment, uniformity, std, effective rank and cosines of the last step's gathered embeddings (rank 0).
    private func geometry(stepsDone: Int, step: TrainingStep) {
        let e = step.model.embeddingWidth
        let measures = step.objective.geometry()
        let spread = measures.std * Double(e).squareRoot()
        log.record("geometry", [
            ("step", .int(stepsDone)), ("alignment", .number(measures.alignment)), ("uniformity", .number(measures.uniformity)),
            ("embedding_std", .number(measures.std)), ("embedding_std_scaled", .number(spread)),
            ("effective_rank", .number(measures.effectiveRank)),
            ("positive_cosine", .number(measures.positiveCosine)), ("negative_cosine", .number(measures.negativeCosine)),
        ])
        scalars?([("geometry/alignment", measures.alignment), ("geometry/uniformity", measures.uniformity),
                          ("geometry/embedding_std", measures.std), ("geometry/effective_rank", measures.effectiveRank),
                          ("geometry/positive_cosine", measures.positiveCosine),
                          ("geometry/negative_cosine", measures.negativeCosine)], stepsDone)
        if spread < Double(config.monitor.collapseStd) {
            if !collapseWarned {
                log.warn(String(format: "the embeddings are collapsing: per-dimension std x sqrt(%d) = %.3f < %.3g "
                                + "(monitor.collapse_std); check loss.temperature, optimizer.lr and the augmentation",
                                e, spread, config.monitor.collapseStd), step: stepsDone)
                collapseWarned = true
            }
        } else {
            collapseWarned = false
        }
    }
}
