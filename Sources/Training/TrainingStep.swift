import Evaluation
import RunFiles
import Config
import Contrastive
import Data
import Distributed
import Foundation
import NN
import Tensor

/// One data-parallel SimCLR step on this rank: views, forward, all-gather of embeddings,
/// NT-Xent of the local anchors against the global batch, reduce-scatter of the candidate
/// gradient, backward with bucketed gradient all-reduce, update (DESIGN.md decisions 3, 4).
///
/// With `loss.kind: clip` the step is two-tower: the batch is B features then B pairs, the
/// towers embed them, both embeddings are all-gathered and the symmetric CLIP loss of the local
/// rows against the global batch gives four gradients, the gathered two reduce-scattered back.
/// The buffers keep their shapes: the V = 2B local rows are [B of a, B of b], the N = 2 P B
/// gathered rows [P B of a, P B of b].
///
/// Shapes: B images per rank, V = 2B local views, P ranks, N = P V global views, I pixels,
/// E embedding width. Global candidate rows are rank-major: rank r holds rows r V ..< (r+1) V,
/// laid out [view 0 of its B images, view 1 of the same images]. Every buffer is allocated
/// once; a steady-state step allocates nothing but the sample list.
public final class TrainingStep {
    public let config: TrainingConfig
    public let communicator: Communicator
    public let model: ContrastiveModel
    public let optimizer: Optimizer
    public let schedule: LearningRateSchedule
    public let loss: NTXentLoss
    /// The two-tower loss (loss.kind clip), else nil.
    public let clipLoss: CLIPLoss?
    /// The supervised contrastive loss (loss.kind supcon), else nil.
    public let supConLoss: SupConLoss?
    /// MoCo's momentum encoder and queue of keys (loss.moco_queue > 0), else nil.
    public let momentumQueue: MomentumQueue?
    /// NT-Xent with hard negatives / debiasing (loss.hard_negative_beta, loss.debiased_tau_plus), else nil.
    public let hardNegativeLoss: HardNegativeNTXentLoss?
    /// SupCon: labels of this rank's V views and of the N gathered ones (-1: unlabeled).
    var anchorLabels: [Int32] = []
    var candidateLabels: [Int32] = []
    let labelFloats: Tensor
    /// loss.pseudo_labels knn: the vote, and the other view's row of every global row.
    let pseudoLabeler: KNNPseudoLabeler?
    var partners: [Int32] = []
    /// loss.reconstruction_weight > 0: dL/dx_hat of the local views (V x I), else nil.
    let reconstructionGradient: Tensor?
    public let reducer: GradientReducer
    /// Samples per rank per step (B).
    public let samplesPerStep: Int
    /// Length of the run, which a cosine temperature decays over.
    public let totalSteps: Int
    /// This rank's dL/dtheta of the current step (learnable temperature), written into the arena's
    /// gradient after it is zeroed and before backward starts the all-reduce.
    var logitScaleGradient: Float = 0

    /// The step's input, made by a `BatchMaker`: V x I views (ntxent), or B x I features then
    /// B x W pairs (clip).
    public let batch: Tensor
    public let gathered: Tensor            // N x E, every rank's embeddings
    public let anchorGradient: Tensor      // V x E
    public let candidateGradient: Tensor   // N x E
    public let ownGradient: Tensor         // V x E, this rank's share of the candidate gradient
    var selfIndex: [Int32]
    var positiveIndex: [Int32]
    /// Loss share, top-1 count and the two requests of this rank (and with a decoder its share of the
    /// reconstruction error), summed over ranks while backward runs.
    let statistics: Tensor
    /// Set before `step`: this rank wants to stop (a signal) / to checkpoint (its clock). The sums
    /// over ranks come back in the result, so every rank acts on the same step.
    public var requests: (stop: Float, checkpoint: Float) = (0, 0)
    /// Seconds this rank sleeps in every forward: fault injection for tests of the straggler
    /// warning, set from `CONTRAST_SLOW_RANK=rank:milliseconds` (docs/monitoring.md).
    public var injectedDelay = 0.0
    /// Faults to inject in the next step (`CONTRAST_FAULT`, FaultInjection.swift); nil: none.
    public var faults: StepFaults?

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
    }

    /// `inputWidth` is I, the features of a sample; `totalSteps` is the length of the run,
    /// which a cosine schedule decays over.
    public init(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator(),
                inputWidth: Int, pairWidth: Int = 0, imageShape: [Int]? = nil, samplesPerStep: Int, totalSteps: Int) throws {
        self.config = config
        self.communicator = communicator
        self.samplesPerStep = samplesPerStep
        self.totalSteps = totalSteps
        let clip = config.loss.kind == .clip
        precondition(!clip || pairWidth > 0, "TrainingStep: loss.kind clip needs pairs")
        try config.validateModel(imageShape: imageShape)
        let reconstruction = config.loss.reconstructionWeight > 0
        precondition(!(clip && reconstruction), "TrainingStep: loss.reconstruction_weight with loss.kind clip")
        model = ContrastiveModel(config.model, inputWidth: inputWidth, pairInputWidth: clip ? pairWidth : 0, imageShape: imageShape,
                                 learnableTemperature: config.loss.temperatureMode == .learnable, reconstruction: reconstruction)
        model.initialise(seed: UInt64(config.seed))
        model.freezesEncoder = config.freeze == .encoder
        try config.train.computePrecision.checkAvailable()
        try config.train.gemmLibrary.apply()
        model.computePrecision = config.train.computePrecision.gemm
        if let theta = model.logitScale { model.arena.parameters(theta)[0] = log(1 / config.loss.temperature) }
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
        schedule = Self.schedule(o, totalSteps: totalSteps)
        loss = NTXentLoss(temperature: config.loss.temperature, logitChunk: config.loss.logitChunk)
        clipLoss = clip ? CLIPLoss(temperature: config.loss.temperature, logitChunk: config.loss.logitChunk) : nil
        let supcon = config.loss.kind == .supcon
        supConLoss = supcon ? SupConLoss(temperature: config.loss.temperature, logitChunk: config.loss.logitChunk) : nil
        hardNegativeLoss = Self.makeHardNegativeLoss(config.loss)
        let c = config.communication
        reducer = GradientReducer(arena: model.arena, communicator: communicator,
                                  precision: WirePrecision(rawValue: c.precision.rawValue)!,
                                  bucketBytes: Int(c.bucketMB * 1_048_576), initialScale: c.fp16InitialScale,
                                  scaleWindow: c.fp16ScaleWindow, trainable: model.trainableRange)

        let localViews = 2 * samplesPerStep, globalViews = communicator.size * localViews, e = model.embeddingWidth
        // SupCon's batches carry the B samples' labels after the views.
        batch = Tensor(zeros: [clip ? samplesPerStep * (inputWidth + pairWidth) : localViews * inputWidth + (supcon ? samplesPerStep : 0)])
        labelFloats = Tensor(zeros: [supcon ? globalViews + localViews : 1])
        if supcon {
            anchorLabels = [Int32](repeating: -1, count: localViews)
            candidateLabels = [Int32](repeating: -1, count: globalViews)
        }
        let l = config.loss
        pseudoLabeler = supcon && l.pseudoLabels == .knn
            ? KNNPseudoLabeler(k: l.pseudoLabelK, temperature: l.pseudoLabelTemperature, threshold: l.pseudoLabelThreshold) : nil
        if pseudoLabeler != nil { partners = KNNPseudoLabeler.partners(ranks: communicator.size, samplesPerRank: samplesPerStep) }
        reconstructionGradient = reconstruction ? Tensor(zeros: [localViews, inputWidth]) : nil
        statistics = Tensor(zeros: [reconstruction ? 5 : 4])
        gathered = Tensor(zeros: [globalViews, e])
        anchorGradient = Tensor(zeros: [localViews, e])
        candidateGradient = Tensor(zeros: [globalViews, e])
        ownGradient = Tensor(zeros: [localViews, e])
        selfIndex = [Int32](repeating: 0, count: localViews)
        positiveIndex = [Int32](repeating: 0, count: localViews)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positiveIndex, samples: samplesPerStep,
                          offset: communicator.rank * localViews)
        if config.loss.mocoQueue > 0 {
            let keyModel = ContrastiveModel(config.model, inputWidth: inputWidth, imageShape: imageShape,
                                            learnableTemperature: config.loss.temperatureMode == .learnable)
            momentumQueue = MomentumQueue(model: keyModel, momentum: config.loss.mocoMomentum, capacity: config.loss.mocoQueue,
                                          samplesPerRank: samplesPerStep, ranks: communicator.size)
            // theta_k = theta_q after the broadcast.
            momentumQueue!.copyParameters(from: model.arena)
        } else {
            momentumQueue = nil
        }
        if communicator.size > 1 {
            let reducer = self.reducer
            model.setBackwardProgress { reducer.poll() }
        }
    }

    /// Linear warm-up over `warmup_steps`, then constant or cosine decay to `final_lr`.
    static func schedule(_ o: OptimizerSection, totalSteps: Int) -> LearningRateSchedule {
        switch o.schedule {
        case .constant where o.warmupSteps == 0: return .constant(o.lr)
        case .constant: return .warmupCosine(base: o.lr, warmupSteps: o.warmupSteps, totalSteps: totalSteps, final: o.lr)
        case .cosine: return .warmupCosine(base: o.lr, warmupSteps: o.warmupSteps, totalSteps: totalSteps, final: o.finalLR)
        }
    }

    /// tau(step) = final + (start - final) (1 + cos(pi step / total)) / 2: start at step 0, final at `totalSteps`.
    public static func cosineTemperature(start: Float, final: Float, step: Int, totalSteps: Int) -> Float {
        let progress = totalSteps > 0 ? min(1, Double(step) / Double(totalSteps)) : 1
        return Float(Double(final) + Double(start - final) * (1 + cos(Double.pi * progress)) / 2)
    }

    /// The temperature of step `step` (0-based): loss.temperature, its cosine schedule, or exp(-theta)
    /// of the learned logit scale as it stands now.
    public func temperature(atStep step: Int) -> Float {
        let l = config.loss
        switch l.temperatureMode {
        case .fixed: return l.temperature
        case .cosine: return Self.cosineTemperature(start: l.temperature, final: l.temperatureFinal, step: step, totalSteps: totalSteps)
        case .learnable: return exp(-model.arena.parameters(model.logitScale!)[0])
        }
    }

    /// Sets the temperature of every loss for the next step.
    private func useTemperature(_ temperature: Float) {
        loss.temperature = temperature
        clipLoss?.temperature = temperature
        supConLoss?.temperature = temperature
        hardNegativeLoss?.temperature = temperature
    }

    /// One optimisation step (every rank calls it) on `input` (a batch as `batch` holds it), by
    /// default `batch`. `temperature` is the scheduled temperature of this step (`temperature(atStep:)`;
    /// nil: that of step 0); a learnable temperature is read from the model instead.
    public func step(learningRate: Float, temperature: Float? = nil, input: UnsafePointer<Float>? = nil) throws -> Result {
        let tau = config.loss.temperatureMode == .learnable ? self.temperature(atStep: 0) : temperature ?? self.temperature(atStep: 0)
        useTemperature(tau)
        faults?.reach(.forward)
        if clipLoss != nil { return try twoTowerStep(learningRate: learningRate, input: input ?? UnsafePointer(batch.data)) }
        if let momentumQueue { return try momentumStep(momentumQueue, learningRate: learningRate, input: input ?? UnsafePointer(batch.data)) }
        let v = 2 * samplesPerStep, e = model.embeddingWidth, p = communicator.size, n = p * v
        var clock = StepClock()

        if injectedDelay > 0 { usleep(UInt32(injectedDelay * 1e6)) }
        // Gradient caching (GradientCache.swift): z is embedded in chunks into ownGradient, free until the reduce-scatter.
        // The decoder needs the whole h, so the hybrid objective runs without it (ConfigValidation).
        let views = input ?? UnsafePointer(batch.data), chunk = gradientCacheChunk(rows: v)
        var reconstructionShare: Double?
        let z: UnsafeMutablePointer<Float>
        if let chunk {
            z = cachedEmbed(.first, input: views, rows: v, chunk: chunk, into: ownGradient.data)
        } else {
            let (h, embedding) = model.forward(views, batch: v)
            reconstructionShare = reconstruct(h, input: views)
            z = embedding
        }
        clock.lap(\.forward)
        try communicator.allGather(z, count: v * e, into: gathered.data)
        clock.lap(\.gather)
        let result: (loss: Double, positiveTop1: Int)
        var pseudoLabelFraction: Double?
        if let supConLoss {
            // Both views of a sample carry its label; the labels are gathered like the embeddings.
            let own = input ?? UnsafePointer(batch.data)
            let labels = own + v * model.inputWidth, b = samplesPerStep, local = labelFloats.data + n
            for i in 0..<b { local[i] = labels[i]; local[b + i] = labels[i] }
            try communicator.allGather(local, count: v, into: labelFloats.data)
            for i in 0..<v { anchorLabels[i] = Int32(local[i]) }
            for i in 0..<n { candidateLabels[i] = Int32(labelFloats[i]) }
            pseudoLabelFraction = assignPseudoLabels(embeddings: gathered.data, count: n, dimension: e, localViews: v)
            let r = supConLoss.forwardBackward(
                anchors: z, anchorCount: v, candidates: gathered.data, candidateCount: n, dimension: e,
                selfIndex: selfIndex, positiveIndex: positiveIndex, anchorLabels: anchorLabels, candidateLabels: candidateLabels,
                normalization: n, anchorGradient: anchorGradient.data, candidateGradient: candidateGradient.data)
            result = (r.loss, r.positiveTop1)
            logitScaleGradient = Float(r.logitScaleGradient)
        } else {
            // NT-Xent, or its hard-negative / debiased form: same arguments, same result.
            let ntxent = hardNegativeLoss.map { $0.forwardBackward } ?? loss.forwardBackward
            let r = ntxent(z, v, gathered.data, n, e, selfIndex, positiveIndex, n, anchorGradient.data, candidateGradient.data)
            result = (r.loss, r.positiveTop1)
            logitScaleGradient = Float(r.logitScaleGradient)
        }
        clock.lap(\.loss)
        // dL/dz of this rank's rows: through its anchors, plus every rank's contribution
        // through the gathered copy, summed onto the owner.
        try communicator.reduceScatter(candidateGradient.data, into: ownGradient.data, counts: [Int](repeating: v * e, count: p))
        Kernels.axpy(anchorGradient.data, alpha: 1, x: ownGradient.data, count: v * e)
        clock.lap(\.gather)

        var recomputed = 0.0
        if let reconstructionShare { statistics[4] = Float(reconstructionShare) }
        let weighted = result.loss + Double(config.loss.reconstructionWeight) * (reconstructionShare ?? 0)
        var stepResult = try finish(loss: weighted, top1: result.positiveTop1, anchors: n, learningRate: learningRate, clock: clock) { final in
            if let chunk {
                recomputed = cachedBackward(.first, input: views, rows: v, chunk: chunk, embeddingGradient: anchorGradient.data, gradientsFinal: final)
            } else {
                model.backward(anchorGradient.data, batch: v, gradientsFinal: final, reconstructionGradient: reconstructionGradient?.data)
            }
        }
        stepResult.pseudoLabelFraction = pseudoLabelFraction
        stepResult.reconstructionLoss = reconstructionShare.map { p == 1 ? $0 : Double(statistics[4]) }
        return stepResult.chargingRecomputedForward(recomputed)
    }

    /// The two-tower (CLIP) step on `input` = B x I features then B x W pairs.
    func twoTowerStep(learningRate: Float, input: UnsafePointer<Float>) throws -> Result {
        guard let clipLoss else { preconditionFailure("twoTowerStep without a CLIP loss") }
        let b = samplesPerStep, e = model.embeddingWidth, p = communicator.size, n = p * b
        var clock = StepClock()
        let localB = anchorGradient.data + b * e, allB = candidateGradient.data + n * e
        if injectedDelay > 0 { usleep(UInt32(injectedDelay * 1e6)) }
        let pairs = input + b * model.inputWidth, chunk = gradientCacheChunk(rows: b)
        let za = chunk.map { cachedEmbed(.first, input: input, rows: b, chunk: $0, into: ownGradient.data) }
            ?? model.forward(input, batch: b).embedding
        let zb = chunk.map { cachedEmbed(.pair, input: pairs, rows: b, chunk: $0, into: ownGradient.data + b * e) }
            ?? model.pairForward(pairs, batch: b)
        clock.lap(\.forward)
        try communicator.allGather(za, count: b * e, into: gathered.data)
        try communicator.allGather(zb, count: b * e, into: gathered.data + n * e)
        clock.lap(\.gather)
        let result = clipLoss.forwardBackward(
            localA: za, localB: zb, localCount: b, allA: gathered.data, allB: gathered.data + n * e, allCount: n, dimension: e,
            offset: communicator.rank * b, normalization: n,
            localAGradient: anchorGradient.data, localBGradient: localB, allAGradient: candidateGradient.data, allBGradient: allB)
        logitScaleGradient = Float(result.logitScaleGradient)
        clock.lap(\.loss)
        // Each tower's gathered gradient summed onto the rank that owns the rows.
        let counts = [Int](repeating: b * e, count: p)
        try communicator.reduceScatter(candidateGradient.data, into: ownGradient.data, counts: counts)
        try communicator.reduceScatter(allB, into: ownGradient.data + b * e, counts: counts)
        Kernels.axpy(anchorGradient.data, alpha: 1, x: ownGradient.data, count: 2 * b * e)
        clock.lap(\.gather)
        // The pair tower sits after the first in the arena: its gradients are final first.
        var recomputed = 0.0
        let stepResult = try finish(loss: result.loss, top1: result.aToBTop1 + result.bToATop1, anchors: 2 * n,
                                    learningRate: learningRate, clock: clock) { final in
            if let chunk {
                recomputed = cachedBackward(.pair, input: pairs, rows: b, chunk: chunk, embeddingGradient: localB, gradientsFinal: final)
                    + cachedBackward(.first, input: input, rows: b, chunk: chunk, embeddingGradient: anchorGradient.data, gradientsFinal: final)
            } else {
                model.pairBackward(localB, batch: b, gradientsFinal: final)
                model.backward(anchorGradient.data, batch: b, gradientsFinal: final)
            }
        }
        return stepResult.chargingRecomputedForward(recomputed)
    }

    /// Backward with the bucketed all-reduce, the statistics' all-reduce beside it, and the
    /// update: the part of the step every loss shares. `backward` runs the model's backward
    /// passes, reporting finished gradients to the closure it is given.
    ///
    /// The update is applied only when the summed gradients and the summed loss are both finite:
    /// both sums are identical on every rank, so a NaN on one rank skips the step on all of them.
    func finish(loss: Double, top1: Int, anchors: Int, learningRate: Float, clock: StepClock,
                        backward: (@escaping (Int) -> Void) -> Void) throws -> Result {
        let p = communicator.size
        var clock = clock
        let loss = faults?.nanLoss == true ? Double.nan : loss
        faults?.hangIfDue()
        statistics[0] = Float(loss)
        statistics[1] = Float(top1)
        statistics[2] = requests.stop
        statistics[3] = requests.checkpoint
        let statisticsSum = try communicator.startAllReduce(UnsafeMutableRawPointer(statistics.data), count: statistics.count,
                                                            precision: .fp32)

        model.arena.zeroGradients()
        // Final before backward runs: theta's bucket (the first, theta is last in the arena) starts
        // with the first layer backward reports, and the all-reduce sums the ranks' shares.
        if let theta = model.logitScale { model.arena.gradients(theta)[0] = logitScaleGradient }
        reducer.beginStep()
        // nan-grad fault: NaN into this rank's first trainable gradient just before its bucket starts.
        let poisoned = faults?.nanGradient == true ? model.trainableRange.lowerBound : -1
        var poisonPending = poisoned >= 0
        backward { [reducer, arena = model.arena] offset in
            if poisonPending && offset <= poisoned { arena.gradients.data[poisoned] = .nan; poisonPending = false }
            reducer.gradientsFinal(from: offset)
        }
        if poisonPending { model.arena.gradients.data[poisoned] = .nan }
        clock.lap(\.backward)
        faults?.reach(.allreduce)
        try statisticsSum.wait()
        let lossFinite = (p == 1 ? loss : Double(statistics[0])).isFinite
        let applied = try reducer.finish(lossFinite: lossFinite)
        clock.lap(\.communication)

        var gradientNorm: Float = .nan
        if applied {
            faults?.reach(.optimizer)
            let trainable = model.trainableRange
            gradientNorm = config.optimizer.clipNorm > 0 ? clipGradientNorm(model.arena, maxNorm: config.optimizer.clipNorm, range: trainable)
                                                         : globalGradientNorm(model.arena, range: trainable)
            optimizer.step(model.arena, learningRate: learningRate)
            if let theta = model.logitScale {
                // CLIP's clamp of the logit scale: tau >= loss.temperature_min.
                let value = model.arena.parameters(theta)
                value[0] = min(value[0], log(1 / config.loss.temperatureMin))
            }
            momentumQueue?.follow(model.arena)
        }
        clock.lap(\.optimizer)
        let globalLoss = p == 1 ? loss : Double(statistics[0])
        return Result(loss: globalLoss, positiveAccuracy: Double(statistics[1]) / Double(anchors),
                      learningRate: learningRate, gradientNorm: gradientNorm, applied: applied,
                      times: clock.times, communication: reducer.timing, requests: (statistics[2], statistics[3]),
                      temperature: self.loss.temperature, hardNegativeBeta: hardNegativeLoss?.beta)
    }
}
