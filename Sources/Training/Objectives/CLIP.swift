import Evaluation
import Contrastive
import Distributed
import NN
import Tensor

/// CLIP (Radford et al. 2021), two towers: the batch is B features then B pairs; the first tower
/// embeds the features (a), the pair tower the pairs (b), both are all-gathered, and the
/// symmetric loss of the local rows against the global batch (a -> all b, b -> all a) gives four
/// gradients, the gathered two reduce-scattered back onto their owners.
///
/// Shapes: B pairs per rank, P ranks, N = P B global pairs, I and W the two towers' features,
/// E embedding width. The buffers are laid out tower by tower: local rows [B of a, B of b],
/// gathered rows [N of a, N of b], each tower's N rank-major.
final class CLIP: Objective {
    let model: ContrastiveModel
    let communicator: Communicator
    let passes: ModelPasses
    let clip: CLIPLoss
    /// B, N, E.
    let samples: Int, globalSamples: Int, width: Int
    let gathered: Tensor            // 2N x E: [a of every rank, b of every rank]
    let localGradient: Tensor       // 2B x E: dL/dz_a, dL/dz_b through the local rows, then of them
    let gatheredGradient: Tensor    // 2N x E: dL/dz through the gathered copies
    let ownGradient: Tensor         // 2B x E: this rank's share of it (z_a, z_b while cached)
    /// B x E per rank, for each tower's gather and reduce-scatter.
    let counts: [Int]
    /// The step's features and pairs, and their embeddings z_a, z_b (B x E each).
    private var features: UnsafePointer<Float>?, pairs: UnsafePointer<Float>?
    private var featureEmbeddings: UnsafeMutablePointer<Float>?, pairEmbeddings: UnsafeMutablePointer<Float>?

    init(model: ContrastiveModel, communicator: Communicator, samplesPerRank b: Int, passes: ModelPasses,
         temperature: Float, logitChunk: Int) {
        precondition(model.pairInputWidth > 0, "CLIP: the model has no pair tower")
        self.model = model
        self.communicator = communicator
        self.passes = passes
        clip = CLIPLoss(temperature: temperature, logitChunk: logitChunk)
        let n = communicator.size * b, e = model.embeddingWidth
        samples = b; globalSamples = n; width = e
        gathered = Tensor(zeros: [2 * n, e])
        localGradient = Tensor(zeros: [2 * b, e])
        gatheredGradient = Tensor(zeros: [2 * n, e])
        ownGradient = Tensor(zeros: [2 * b, e])
        counts = [Int](repeating: b * e, count: communicator.size)
    }

    var inputCount: Int { samples * (model.inputWidth + model.pairInputWidth) }
    var globalAnchors: Int { 2 * globalSamples }

    func forward(_ input: UnsafePointer<Float>) {
        let b = samples, e = width, pairs = input + b * model.inputWidth
        features = input
        self.pairs = pairs
        featureEmbeddings = passes.embed(.first, input, rows: b, scratch: ownGradient.data)
        pairEmbeddings = passes.embed(.pair, pairs, rows: b, scratch: ownGradient.data + b * e)
    }

    func gather() throws {
        let allB = gathered.data + globalSamples * width
        try communicator.allGather(featureEmbeddings!, into: gathered.data, counts: counts)
        try communicator.allGather(pairEmbeddings!, into: allB, counts: counts)
    }

    func loss(_ plan: StepPlan) -> ObjectiveLoss {
        let b = samples, n = globalSamples, e = width
        clip.temperature = plan.temperature
        let r = clip.forwardBackward(
            localA: featureEmbeddings!, localB: pairEmbeddings!, localCount: b, allA: gathered.data, allB: gathered.data + n * e,
            allCount: n, dimension: e, offset: communicator.rank * b, normalization: n,
            localAGradient: localGradient.data, localBGradient: localGradient.data + b * e,
            allAGradient: gatheredGradient.data, allBGradient: gatheredGradient.data + n * e)
        return ObjectiveLoss(share: r.loss, positiveTop1: r.aToBTop1 + r.bToATop1, logitScaleGradient: Float(r.logitScaleGradient))
    }

    /// Each tower's gathered gradient summed onto the rank that owns the rows.
    func scatter() throws {
        let b = samples, n = globalSamples, e = width
        try communicator.reduceScatter(gatheredGradient.data, into: ownGradient.data, counts: counts)
        try communicator.reduceScatter(gatheredGradient.data + n * e, into: ownGradient.data + b * e, counts: counts)
        Kernels.axpy(localGradient.data, alpha: 1, x: ownGradient.data, count: 2 * b * e)
    }

    /// The pair tower sits after the first in the arena: its gradients are final first.
    func backward(_ gradientsFinal: @escaping (Int) -> Void) {
        let b = samples, e = width
        passes.backward(.pair, pairs!, rows: b, embeddingGradient: localGradient.data + b * e, gradientsFinal: gradientsFinal)
        passes.backward(.first, features!, rows: b, embeddingGradient: localGradient.data, gradientsFinal: gradientsFinal)
    }

    /// Geometry of the gathered pairs: rows 0..<N features, N..<2N their pairs.
    func geometry() -> EmbeddingGeometry.Measures {
        let n = globalSamples
        return EmbeddingGeometry.measure(gathered.data, count: 2 * n, width: width) { $0 < n ? $0 + n : $0 - n }
    }

    var memory: ObjectiveMemory {
        ObjectiveMemory(logits: clip.workspaceBytes, embeddingExchange: [gathered, localGradient, gatheredGradient, ownGradient].reduce(0) { $0 + $1.count }
                        * MemoryLayout<Float>.stride)
    }
}
