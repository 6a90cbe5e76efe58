import Evaluation
import Config
import Contrastive
import Distributed
import NN
import Tensor

/// Pairs (sentence-transformers' MultipleNegativesRankingLoss with global negatives): each local
/// anchor x_i against the positives y of the whole global batch, and with loss.symmetric each local
/// positive against the global anchors (PairLoss). The anchors, positives and pair ids are
/// all-gathered; the gradients of the gathered copies are reduce-scattered onto their owners
/// (DESIGN.md decision 3). With loss.mask_duplicates each sample's label is its pair id, and a
/// positive sharing an anchor's pair id is masked out of that anchor's negatives, on any rank.
///
/// Shapes: B pairs per rank, P ranks, N = P B, E embedding width. Gathered rows are rank-major:
/// [x of every rank] and [y of every rank], N x E each.
final class Pairs: Objective {
    let sides: PairSidesBatch
    let communicator: Communicator
    let pairLoss: PairLoss
    /// B, N, E.
    let samples: Int, globalSamples: Int, width: Int
    let gathered: Tensor            // 2N x E: [x of every rank, y of every rank]
    let gatheredGradient: Tensor    // 2N x E: dL/d of the gathered copies, [x, y]
    let ownGradient: Tensor         // 2B x E: this rank's share of it
    /// This rank's B pair ids and the N gathered ones (with loss.mask_duplicates).
    private var localIds: [UInt64]
    private var ids: [UInt64]
    let counts: [Int]

    init(sides: PairSidesBatch, communicator: Communicator, config l: LossSection) {
        self.sides = sides
        self.communicator = communicator
        pairLoss = PairLoss(temperature: l.temperature, symmetric: l.symmetric)
        let b = sides.samples, n = communicator.size * b, e = sides.width
        samples = b; globalSamples = n; width = e
        gathered = Tensor(zeros: [2 * n, e])
        gatheredGradient = Tensor(zeros: [2 * n, e])
        ownGradient = Tensor(zeros: [2 * b, e])
        localIds = [UInt64](repeating: 0, count: sides.carriesIds ? b : 0)
        ids = [UInt64](repeating: 0, count: sides.carriesIds ? n : 0)
        counts = [Int](repeating: b * e, count: communicator.size)
    }

    var inputCount: Int { sides.inputCount }
    var globalAnchors: Int { (pairLoss.symmetric ? 2 : 1) * globalSamples }
    var passes: ModelPasses { sides.passes }

    func forward(_ input: UnsafePointer<Float>) { sides.forward(input) }

    func gather() throws {
        try communicator.allGather(sides.x!, into: gathered.data, counts: counts)
        try communicator.allGather(sides.y!, into: gathered.data + globalSamples * width, counts: counts)
        if sides.carriesIds {
            // Labels arrive as floats of small integers; an id is the integer's bits.
            let labels = sides.labels
            for i in 0..<samples { localIds[i] = UInt64(bitPattern: Int64(labels[i])) }
            try localIds.withUnsafeBytes { send in
                try ids.withUnsafeMutableBytes { receive in
                    try communicator.allGatherBytes(send.baseAddress!, bytes: send.count, into: receive.baseAddress!)
                }
            }
        }
    }

    func loss(_ plan: StepPlan) throws -> ObjectiveLoss {
        let b = samples, n = globalSamples, e = width
        pairLoss.temperature = plan.temperature
        let allX = gathered.data, allY = gathered.data + n * e
        let localGradient = sides.gradient.data
        let r = ids.withUnsafeBufferPointer { idBuffer in
            pairLoss.forwardBackward(
                anchors: sides.x!, positives: sides.y!, count: b, candidates: allY, candidateCount: n, allAnchors: allX, pairs: n,
                dimension: e, offset: communicator.rank * b, ids: sides.carriesIds ? idBuffer.baseAddress : nil,
                anchorGradient: localGradient, positiveGradient: localGradient + b * e,
                candidateGradient: gatheredGradient.data + n * e, allAnchorGradient: gatheredGradient.data)
        }
        if !pairLoss.symmetric {
            // One direction writes no gradient through the local positives or the gathered anchors.
            (localGradient + b * e).update(repeating: 0, count: b * e)
            gatheredGradient.data.update(repeating: 0, count: n * e)
        }
        return ObjectiveLoss(share: r.loss, positiveTop1: r.positiveTop1, logitScaleGradient: Float(r.logitScaleGradient))
    }

    /// Each side's gathered gradient summed onto the rank that owns the rows, added to the local rows'.
    func scatter() throws {
        let b = samples, n = globalSamples, e = width
        try communicator.reduceScatter(gatheredGradient.data, into: ownGradient.data, counts: counts)
        try communicator.reduceScatter(gatheredGradient.data + n * e, into: ownGradient.data + b * e, counts: counts)
        Kernels.axpy(sides.gradient.data, alpha: 1, x: ownGradient.data, count: 2 * b * e)
    }

    func backward(_ gradientsFinal: @escaping (Int) -> Void) { sides.backward(gradientsFinal) }

    /// Geometry of the gathered pairs: rows 0..<N anchors, N..<2N their positives.
    func geometry() -> EmbeddingGeometry.Measures {
        let n = globalSamples
        return EmbeddingGeometry.measure(gathered.data, count: 2 * n, width: width) { $0 < n ? $0 + n : $0 - n }
    }

    var memory: ObjectiveMemory {
        ObjectiveMemory(logits: pairLoss.workspaceBytes,
                        embeddingExchange: sides.bytes + [gathered, gatheredGradient, ownGradient].reduce(0) { $0 + $1.count } * 4)
    }
}
