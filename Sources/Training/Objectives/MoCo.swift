import Evaluation
import RunFiles
import Config
import Checkpoint
import Contrastive
import Distributed
import Foundation
import NN
import Tensor

/// MoCo (He et al. 2020), an option of NT-Xent (`loss.moco_queue` K > 0): queries through the
/// online model, keys through the momentum model (MomentumQueue.swift), both all-gathered;
/// NT-Xent of the queries against [N keys, the queue]; the keys enter the queue; backward of the
/// queries only (no reduce-scatter: keys get no gradient). For query i the positive is the key
/// of its other view, the key of its own view is excluded, M = N normalises, so that summing the
/// ranks' gradients gives the one-process gradient.
///
/// Shapes: B samples per rank, V = 2B local views, P ranks, N = P V global views, E embedding
/// width. The batch is V x I views, as SimCLR's.
final class MoCo: Objective {
    let model: ContrastiveModel
    let communicator: Communicator
    let passes: ModelPasses
    let queue: MomentumQueue
    let ntxent: NTXentLoss
    /// B, V, N, E.
    let samples: Int, views: Int, globalViews: Int, width: Int
    /// N x E: every rank's queries. The loss needs only the local ones; the monitor measures the
    /// embedding geometry (and collapse) on these.
    let queries: Tensor
    let queryGradient: Tensor       // V x E
    /// V x E: the queries while gradient caching keeps only z.
    let cachedQueries: Tensor
    let selfIndex: [Int32]
    let positiveIndex: [Int32]
    let counts: [Int]
    /// The step's views, their queries (V x E) and keys (V x E).
    private var input: UnsafePointer<Float>?
    private var localQueries: UnsafeMutablePointer<Float>?, keys: UnsafeMutablePointer<Float>?

    /// `keyModel`: a second model of the query model's config (its own arena), set here to the
    /// query model's parameters.
    init(model: ContrastiveModel, keyModel: ContrastiveModel, communicator: Communicator, samplesPerRank b: Int, passes: ModelPasses,
         config l: LossSection) {
        self.model = model
        self.communicator = communicator
        self.passes = passes
        let v = 2 * b, n = communicator.size * v, e = model.embeddingWidth
        samples = b; views = v; globalViews = n; width = e
        queue = MomentumQueue(model: keyModel, momentum: l.mocoMomentum, capacity: l.mocoQueue, samplesPerRank: b, ranks: communicator.size)
        // theta_k = theta_q (after the step's broadcast of theta_q).
        queue.copyParameters(from: model.arena)
        ntxent = NTXentLoss(temperature: l.temperature, logitChunk: l.logitChunk)
        queries = Tensor(zeros: [n, e])
        queryGradient = Tensor(zeros: [v, e])
        cachedQueries = Tensor(zeros: [v, e])
        // Query i of rank r: its own view's key is gathered row r V + i, its other view's r V + (i + B) mod V.
        (selfIndex, positiveIndex) = TwoViewPairs.indices(samples: b, offset: communicator.rank * v)
        counts = [Int](repeating: v * e, count: communicator.size)
    }

    var inputCount: Int { views * model.inputWidth }
    var globalAnchors: Int { globalViews }

    func forward(_ input: UnsafePointer<Float>) {
        self.input = input
        localQueries = passes.embed(.first, input, rows: views, scratch: cachedQueries.data)
        keys = queue.model.forward(input, batch: views).embedding
    }

    func gather() throws {
        try communicator.allGather(keys!, into: queue.candidates.data, counts: counts)
        try communicator.allGather(localQueries!, into: queries.data, counts: counts)
    }

    /// The loss against [keys, queue], then this step's keys enter the queue.
    func loss(_ plan: StepPlan) -> ObjectiveLoss {
        ntxent.temperature = plan.temperature
        let r = ntxent.forwardBackward(
            anchors: localQueries!, anchorCount: views, candidates: queue.candidates.data, candidateCount: queue.candidateCount,
            dimension: width, selfIndex: selfIndex, positiveIndex: positiveIndex, normalization: globalViews,
            anchorGradient: queryGradient.data, candidateGradient: nil)
        queue.enqueue()
        return ObjectiveLoss(share: r.loss, positiveTop1: r.positiveTop1, logitScaleGradient: Float(r.logitScaleGradient))
    }

    /// Keys get no gradient: nothing to send back.
    func scatter() throws {}

    func backward(_ gradientsFinal: @escaping (Int) -> Void) {
        passes.backward(.first, input!, rows: views, embeddingGradient: queryGradient.data, gradientsFinal: gradientsFinal)
    }

    /// theta_k <- m theta_k + (1 - m) theta_q with the updated theta_q.
    func afterUpdate() { queue.follow(model.arena) }

    func geometry() -> EmbeddingGeometry.Measures {
        let v = views, b = samples
        return EmbeddingGeometry.measure(queries.data, count: globalViews, width: width) { ($0 / v) * v + ($0 % v + b) % v }
    }

    var memory: ObjectiveMemory {
        let float = MemoryLayout<Float>.stride
        return ObjectiveMemory(logits: ntxent.workspaceBytes,
                               embeddingExchange: [queries, queryGradient, cachedQueries].reduce(0) { $0 + $1.count } * float,
                               momentumQueue: (2 * queue.model.arena.count + queue.candidates.count) * float)
    }

    var summary: String? {
        "MoCo: momentum encoder (m = \(queue.momentum)), queue of \(queue.capacity) keys x \(width), "
            + "\(queue.keysPerStep) keys enter per step, full after \((queue.capacity + queue.keysPerStep - 1) / queue.keysPerStep) step(s)"
    }

    var checkpointBuffers: [CheckpointBuffer] { queue.checkpointBuffers }

    func checkResumable(from checkpoint: URL) throws { try queue.checkResumable(from: checkpoint) }

    func save(into state: inout TrainingState) { state.momentumQueue = queue.state }

    func restore(from state: TrainingState, checkpoint: URL) throws {
        guard let saved = state.momentumQueue else {
            throw RunDirectory.Failure(description: "\(checkpoint.path)/manifest.json: its training state lacks the MoCo queue's position; "
                                   + "resume from another checkpoint")
        }
        try queue.restore(saved)
    }
}
