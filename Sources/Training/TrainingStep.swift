import Evaluation
import Config
import Contrastive
import Data
import Distributed
import Foundation
import NN
import Tensor

/// One data-parallel optimisation step of a contrastive objective on this rank (DESIGN.md
/// decisions 3, 4): the objective's forward, all-gather, loss and reduce-scatter
/// (Objectives/), then backward overlapping the bucketed gradient all-reduce, the skip
/// decision, clipping and the update, which every objective shares.
///
/// The objective (SimCLR, SupCon, CLIP, SigLIP, Pairs or MoCo, from loss.kind and loss.moco_queue) owns its
/// buffers; the step owns the model, the optimizer, the reducer and the statistics buffer, each
/// allocated once: a steady-state step allocates nothing but the sample list.
public final class TrainingStep {
    public let config: TrainingConfig
    public let communicator: Communicator
    public let model: ContrastiveModel
    public let optimizer: Optimizer
    public let reducer: GradientReducer
    /// Learning rate, temperature and hard-negative beta of every step.
    public let schedules: Schedules
    let objective: any Objective
    /// Samples per rank per step (B).
    public let samplesPerStep: Int
    /// Length of the run, which the schedules decay over.
    public let totalSteps: Int
    /// Faults and delays injected at named points of the step (tests, the fault harness).
    public let hooks: StepHooks

    /// One rank's batch as the objective reads it, for callers that make batches in place: V x I
    /// views (ntxent, moco, siglip and pairs with loss.sides views), then B labels (supcon, pairs with
    /// loss.mask_duplicates), or B x I features then B x W pairs (clip, loss.sides pairs).
    public let batch: Tensor
    /// The wire buffer of the step's statistics (`StepStatistics`), summed over ranks while
    /// backward runs.
    let statistics: Tensor
    /// Where backward reports finished gradients: the nan-grad hook, then the reducer's buckets.
    /// Made once, so a step allocates no closure.
    private let gradientsFinal: (Int) -> Void

    public struct Result: Sendable {
        /// Loss of the whole global batch (identical on every rank).
        public var loss: Double
        /// Fraction of the global batch's anchors whose positive is their nearest candidate.
        public var positiveAccuracy: Double
        public var learningRate: Float
        /// L2 norm of the summed gradient (before clipping); NaN when the step was skipped.
        public var gradientNorm: Float
        /// False when the summed gradients or the summed loss were not finite and the update was skipped.
        public var applied: Bool
        public var times: StepTimes
        public var communication: GradientReducer.Timing
        /// Requests summed over ranks (> 0: some rank asked).
        public var requests: (stop: Float, checkpoint: Float)
        /// The softmax temperature the step's loss used (scheduled or learned).
        public var temperature: Float
        /// The hard-negative concentration beta the step's loss used; nil without hard negatives.
        public var hardNegativeBeta: Float? = nil
        /// loss.pseudo_labels knn: fraction of the global batch's unlabeled samples given a pseudo-label.
        public var pseudoLabelFraction: Double? = nil
        /// loss.reconstruction_weight > 0: mean squared reconstruction error of the global batch (unweighted).
        public var reconstructionLoss: Double? = nil
        /// loss.kind siglip: the learned logit bias b the step's loss used; nil otherwise.
        public var logitBias: Float? = nil
    }

    /// `inputWidth` is I, the features of a sample (`pairWidth` W, of its pair: clip);
    /// `totalSteps` is the length of the run, which the schedules decay over; `layout` is what the
    /// data's views batch holds besides the views (`TrainingData.viewsLayout`).
    public convenience init(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator(),
                            inputWidth: Int, pairWidth: Int = 0, imageShape: [Int]? = nil, samplesPerStep: Int, totalSteps: Int,
                            layout: ViewsLayout = ViewsLayout()) throws {
        try self.init(config: config, communicator: communicator, inputWidth: inputWidth, pairWidth: pairWidth, imageShape: imageShape,
                      samplesPerStep: samplesPerStep, totalSteps: totalSteps, gradientCacheChunk: nil, layout: layout)
    }

    /// `gradientCacheChunk`: cache gradients in chunks of that many rows whatever the config says,
    /// even one chunk of all rows (tests of the mechanism).
    init(config: TrainingConfig, communicator: Communicator, inputWidth: Int, pairWidth: Int, imageShape: [Int]?,
         samplesPerStep: Int, totalSteps: Int, gradientCacheChunk: Int?, layout: ViewsLayout = ViewsLayout()) throws {
        self.config = config
        self.communicator = communicator
        self.samplesPerStep = samplesPerStep
        self.totalSteps = totalSteps
        let clip = config.loss.usesPairTower
        precondition(!clip || pairWidth > 0, "TrainingStep: loss.kind \(config.loss.kind.rawValue) with a pair tower needs pairs")
        try config.validateModel(imageShape: imageShape)
        let reconstruction = config.loss.reconstructionWeight > 0
        precondition(!(clip && reconstruction), "TrainingStep: loss.reconstruction_weight with loss.kind clip")
        model = ContrastiveModel(config.model, inputWidth: inputWidth, pairInputWidth: clip ? pairWidth : 0, imageShape: imageShape,
                                 learnableTemperature: config.loss.temperatureMode == .learnable,
                                 learnableBias: config.loss.learnsLogitBias, reconstruction: reconstruction)
        model.initialise(seed: UInt64(config.seed))
        model.freezesEncoder = config.freeze == .encoder
        // Every objective's local rows are [view 0 of its B samples, view 1 of them] (CLIP: one view; pairs
        // with hard negatives: the negatives as view 2), and rank r's samples are slots r B ..< (r+1) B of
        // the global batch: masks follow the global sample and the view.
        model.dropoutKey.rows = (communicator.rank * samplesPerStep, samplesPerStep)
        try config.train.computePrecision.checkAvailable()
        try config.train.gemmLibrary.apply()
        model.computePrecision = config.train.computePrecision.gemm
        if let theta = model.logitScale { model.arena.parameters(theta)[0] = log(1 / config.loss.temperature) }
        if let bias = model.logitBias { model.arena.parameters(bias)[0] = config.loss.siglipBias }
        // Every rank derived the same values from the seed; the broadcast makes sure of it.
        try communicator.broadcast(UnsafeMutableRawPointer(model.arena.parameters.data),
                                   bytes: model.arena.count * 4, root: 0)
        let o = config.optimizer
        let groups = model.parameterGroups(encoderLearningRateScale: o.encoderLRScale)
        switch o.kind {
        case .sgd:
            optimizer = SGD(for: model.arena, momentum: o.momentum, nesterov: o.nesterov, weightDecay: o.weightDecay, groups: groups)
        case .adamw:
            optimizer = AdamW(for: model.arena, betas: (o.betas[0], o.betas[1]), epsilon: o.eps, weightDecay: o.weightDecay, groups: groups)
        case .lars:
            optimizer = LARS(for: model.arena, momentum: o.momentum, weightDecay: o.weightDecay,
                             trustCoefficient: o.trustCoefficient, nesterov: o.nesterov, groups: groups)
        }
        schedules = Schedules(config, totalSteps: totalSteps)
        let c = config.communication
        reducer = GradientReducer(arena: model.arena, communicator: communicator,
                                  precision: WirePrecision(rawValue: c.precision.rawValue)!,
                                  bucketBytes: Int(c.bucketMB * 1_048_576), initialScale: c.fp16InitialScale,
                                  scaleWindow: c.fp16ScaleWindow, trainable: model.trainableRange)
        // After the broadcast: MoCo's key model starts at the query model's parameters.
        objective = makeObjective(config: config, model: model, imageShape: imageShape, communicator: communicator,
                                  samplesPerRank: samplesPerStep, forcedChunk: gradientCacheChunk, layout: layout)
        batch = Tensor(zeros: [objective.inputCount])
        statistics = Tensor(zeros: [StepStatistics.count(reconstruction: reconstruction)])
        let hooks = StepHooks(rank: communicator.rank), reducer = self.reducer, arena = model.arena
        self.hooks = hooks
        gradientsFinal = { offset in
            hooks.gradientsFinal(from: offset, arena)
            reducer.gradientsFinal(from: offset)
        }
        if communicator.size > 1 {
            model.setBackwardProgress { reducer.poll() }
        }
    }

    /// Bytes of the objective's buffers (the memory account of `bench step`).
    public var objectiveMemory: ObjectiveMemory { objective.memory }

    /// The plan of step `index` (0-based): its learning rate, temperature (a learnable one as the
    /// model holds it now), hard-negative beta, and `requests`.
    public func plan(_ index: Int, requests: StepRequests = StepRequests()) -> StepPlan {
        schedules.plan(step: index, requests: requests, learnedTemperature: model.logitScale.map { exp(-model.arena.parameters($0)[0]) })
    }

    /// Step `index` (0-based) of the run on `input`, this rank's batch as `batch` holds it (every
    /// rank calls it). `requests` are this rank's; the result carries their sums.
    public func step(_ index: Int, input: UnsafePointer<Float>, requests: StepRequests = StepRequests()) throws -> Result {
        var clock = StepClock()
        hooks.begin(step: index)
        let plan = plan(index, requests: requests)
        // Training mode for this step's forwards only (gradient caching's replays run inside backward).
        model.dropoutKey.train(seed: UInt64(config.seed), step: index)
        defer { model.dropoutKey.infer() }
        objective.forward(input);               clock.lap(\.forward)
        try objective.gather();                 clock.lap(\.gather)
        let loss = try objective.loss(plan);    clock.lap(\.loss)
        try objective.scatter();                clock.lap(\.gather)
        return try finish(loss, plan, clock) { objective.backward($0) }
    }

    /// Backward with the bucketed all-reduce, the statistics' all-reduce beside it, and the
    /// update: the part of the step every objective shares. `backward` runs the model's
    /// backward passes, reporting finished gradients to the closure it is given.
    ///
    /// The update is applied only when the summed gradients and the summed loss are both finite:
    /// both sums are identical on every rank, so a NaN on one rank skips the step on all of them.
    func finish(_ loss: ObjectiveLoss, _ plan: StepPlan, _ clock: StepClock,
                backward: (_ gradientsFinal: @escaping (Int) -> Void) -> Void) throws -> Result {
        var clock = clock
        let bias = model.logitBias.map { model.arena.parameters($0)[0] }
        let mine = StepStatistics(loss: hooks.loss(loss.share), positiveTop1: Double(loss.positiveTop1),
                                  stopRequests: plan.requests.stop ? 1 : 0, checkpointRequests: plan.requests.checkpoint ? 1 : 0,
                                  reconstruction: loss.reconstruction)
        hooks.statistics()
        mine.pack(into: statistics.data)
        let statisticsSum = try communicator.startAllReduce(UnsafeMutableRawPointer(statistics.data), count: statistics.count,
                                                            precision: .fp32)

        model.arena.zeroGradients()
        // Final before backward runs: theta's bucket (the first, theta is last in the arena) starts
        // with the first layer backward reports, and the all-reduce sums the ranks' shares.
        if let theta = model.logitScale { model.arena.gradients(theta)[0] = loss.logitScaleGradient }
        if let bias = model.logitBias { model.arena.gradients(bias)[0] = loss.logitBiasGradient }
        reducer.beginStep()
        hooks.backwardBegins(firstTrainable: model.trainableRange.lowerBound)
        backward(gradientsFinal)
        hooks.backwardEnded(model.arena)
        clock.lap(\.backward)
        hooks.allReduce()
        try statisticsSum.wait()
        // In one process the sum is this rank's own, unrounded to fp32.
        let sum = communicator.size == 1 ? mine : StepStatistics(unpacking: statistics.data, reconstruction: loss.reconstruction != nil)
        let applied = try reducer.finish(lossFinite: sum.loss.isFinite)
        clock.lap(\.communication)

        var gradientNorm: Float = .nan
        if applied {
            hooks.update()
            let trainable = model.trainableRange
            gradientNorm = config.optimizer.clipNorm > 0 ? clipGradientNorm(model.arena, maxNorm: config.optimizer.clipNorm, range: trainable)
                                                         : globalGradientNorm(model.arena, range: trainable)
            optimizer.step(model.arena, learningRate: plan.learningRate)
            if let theta = model.logitScale {
                // CLIP's clamp of the logit scale: tau >= loss.temperature_min.
                let value = model.arena.parameters(theta)
                value[0] = min(value[0], log(1 / config.loss.temperatureMin))
            }
            objective.afterUpdate()
        }
        clock.lap(\.optimizer)
        var result = Result(loss: sum.loss, positiveAccuracy: sum.positiveTop1 / Double(objective.globalAnchors),
                            learningRate: plan.learningRate, gradientNorm: gradientNorm, applied: applied,
                            times: clock.times, communication: reducer.timing,
                            requests: (Float(sum.stopRequests), Float(sum.checkpointRequests)), temperature: plan.temperature,
                            hardNegativeBeta: plan.hardNegativeBeta, pseudoLabelFraction: loss.pseudoLabelFraction,
                            reconstructionLoss: sum.reconstruction, logitBias: bias)
        // Gradient caching's replayed forwards ran inside backward's time: they are forward's.
        let replay = objective.passes.replaySeconds
        result.times.forward += replay
        result.times.backward -= replay
        return result
    }
}

/// What the ranks sum each step beside the gradients, in one small fp32 all-reduce that runs
/// while backward computes: this rank's share of the loss, its top-1 count, its two requests,
/// and with a decoder its share of the reconstruction error.
struct StepStatistics: Equatable {
    var loss: Double
    var positiveTop1: Double
    var stopRequests: Double
    var checkpointRequests: Double
    var reconstruction: Double?

    /// Floats on the wire: four, five with a decoder.
    static func count(reconstruction: Bool) -> Int { reconstruction ? 5 : 4 }

    /// The wire layout, in one place: [loss, top-1, stop, checkpoint, reconstruction].
    func pack(into wire: UnsafeMutablePointer<Float>) {
        wire[0] = Float(loss)
        wire[1] = Float(positiveTop1)
        wire[2] = Float(stopRequests)
        wire[3] = Float(checkpointRequests)
        if let reconstruction { wire[4] = Float(reconstruction) }
    }

    init(loss: Double, positiveTop1: Double, stopRequests: Double, checkpointRequests: Double, reconstruction: Double?) {
        self.loss = loss
        self.positiveTop1 = positiveTop1
        self.stopRequests = stopRequests
        self.checkpointRequests = checkpointRequests
        self.reconstruction = reconstruction
    }

    init(unpacking wire: UnsafePointer<Float>, reconstruction: Bool) {
        self.init(loss: Double(wire[0]), positiveTop1: Double(wire[1]), stopRequests: Double(wire[2]),
                  checkpointRequests: Double(wire[3]), reconstruction: reconstruction ? Double(wire[4]) : nil)
    }
}

extension TrainingStep {
    /// When the run starts: the text batch maker's layout against the objective's (pairs reads
    /// the ids and negatives at places it computes itself), one line naming both if they differ.
    func checkBatchLayout(_ maker: BatchMaker) throws {
        guard let text = maker as? TextBatches, let read = objective.batchLayout else { return }
        try BatchLayout.check(maker: text.batchLayout, objective: read)
    }
}
