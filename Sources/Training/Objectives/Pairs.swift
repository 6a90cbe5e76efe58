import Evaluation
import Config
import Contrastive
import Distributed
import NN
import Tensor

/// Pairs (sentence-transformers' MultipleNegativesRankingLoss with global negatives): each local
/// anchor x_i against the positives y of the whole global batch, and with loss.symmetric each local
/// positive against the global anchors (PairLoss). With hard negatives (a text set's negative
/// field, loss.hard_negatives) each sample's negative h goes through the same encoder and the
/// gathered negatives of every rank join every anchor's candidates, after the positives; the
/// positive -> anchors direction does not use them (MultipleNegativesSymmetricRankingLoss). The
/// anchors, positives, negatives and ids are all-gathered; the gradients of the gathered copies are
/// reduce-scattered onto their owners (DESIGN.md decision 3). With loss.mask_duplicates each pair's
/// id is its label (a text set: its group, or the hash of its positive's text, carried exactly),
/// each negative's the hash of its text, and a candidate sharing an anchor's pair id is masked out
/// of that anchor's negatives, on any rank: a duplicate of its positive, or a hard negative that
/// is its positive's text. When a text set's pair ids are its groups, the positives' text hashes
/// travel too (keys) and a candidate with the same text as an anchor's positive is masked as well.
///
/// Shapes: B pairs per rank, P ranks, N = P B, E embedding width, S = 2 sides (3 with hard
/// negatives). Gathered rows are rank-major per side: [x of every rank], [y of every rank], [h of
/// every rank], N x E each; the candidates are [y, h], C = N (2N) rows.
final class Pairs: Objective {
    var batchLayout: BatchLayout? { sides.batchLayout }
    let sides: PairSidesBatch
    let communicator: Communicator
    let pairLoss: PairLoss
    /// B, N, E, S.
    let samples: Int, globalSamples: Int, width: Int, sideCount: Int
    let gathered: Tensor            // S N x E: [x of every rank, y of every rank, h of every rank]
    let gatheredGradient: Tensor    // S N x E: dL/d of the gathered copies, [x, y, h]
    let ownGradient: Tensor         // S B x E: this rank's share of it
    /// This rank's pair ids and the gathered candidates' (with loss.mask_duplicates): the B (N)
    /// pairs', then with hard negatives the B (N) negatives'.
    private var localIds: [UInt64]
    private var ids: [UInt64]
    /// With text keys (pair ids that are groups): this rank's B positives' keys, and the
    /// candidates' keys (the N gathered positives', then the negatives', whose keys are their ids).
    private var localKeys: [UInt64]
    private var keys: [UInt64]
    let counts: [Int]

    init(sides: PairSidesBatch, communicator: Communicator, config l: LossSection) {
        self.sides = sides
        self.communicator = communicator
        pairLoss = PairLoss(temperature: l.temperature, symmetric: l.symmetric)
        let b = sides.samples, n = communicator.size * b, e = sides.width, s = sides.layout.hardNegatives ? 3 : 2
        samples = b; globalSamples = n; width = e; sideCount = s
        gathered = Tensor(zeros: [s * n, e])
        gatheredGradient = Tensor(zeros: [s * n, e])
        ownGradient = Tensor(zeros: [s * b, e])
        localIds = [UInt64](repeating: 0, count: sides.idCount)
        ids = [UInt64](repeating: 0, count: sides.idCount * communicator.size)
        localKeys = [UInt64](repeating: 0, count: sides.carriesKeys ? b : 0)
        keys = [UInt64](repeating: 0, count: sides.carriesKeys ? sides.idCount * communicator.size : 0)
        counts = [Int](repeating: b * e, count: communicator.size)
    }

    var inputCount: Int { sides.inputCount }
    var globalAnchors: Int { (pairLoss.symmetric ? 2 : 1) * globalSamples }
    var passes: ModelPasses { sides.passes }

    func forward(_ input: UnsafePointer<Float>) { sides.forward(input) }

    func gather() throws {
        let n = globalSamples, e = width
        try communicator.allGather(sides.x!, into: gathered.data, counts: counts)
        try communicator.allGather(sides.y!, into: gathered.data + n * e, counts: counts)
        if let h = sides.h { try communicator.allGather(h, into: gathered.data + 2 * n * e, counts: counts) }
        if sides.carriesIds {
            for i in 0..<localIds.count { localIds[i] = sides.id(i) }
            // The pairs' ids of every rank, then the negatives': the candidates' order.
            let b = samples, bytes = b * MemoryLayout<UInt64>.stride
            try localIds.withUnsafeBytes { send in
                try ids.withUnsafeMutableBytes { receive in
                    for part in 0..<(sideCount - 1) {
                        try communicator.allGatherBytes(send.baseAddress! + part * bytes, bytes: bytes,
                                                        into: receive.baseAddress! + part * n * MemoryLayout<UInt64>.stride)
                    }
                }
            }
            if sides.carriesKeys {
                for i in 0..<b { localKeys[i] = sides.key(i) }
                try localKeys.withUnsafeBytes { send in
                    try keys.withUnsafeMutableBytes { receive in
                        try communicator.allGatherBytes(send.baseAddress!, bytes: bytes, into: receive.baseAddress!)
                    }
                }
                for j in n..<keys.count { keys[j] = ids[j] }
            }
        }
    }

    func loss(_ plan: StepPlan) throws -> ObjectiveLoss {
        let b = samples, n = globalSamples, e = width, c = (sideCount - 1) * n
        pairLoss.temperature = plan.temperature
        let allX = gathered.data, candidates = gathered.data + n * e
        let localGradient = sides.gradient.data
        let r = ids.withUnsafeBufferPointer { idBuffer in
            keys.withUnsafeBufferPointer { keyBuffer in
                pairLoss.forwardBackward(
                    anchors: sides.x!, positives: sides.y!, count: b, candidates: candidates, candidateCount: c, allAnchors: allX, pairs: n,
                    dimension: e, offset: communicator.rank * b, ids: sides.carriesIds ? idBuffer.baseAddress : nil,
                    keys: sides.carriesKeys ? keyBuffer.baseAddress : nil,
                    anchorGradient: localGradient, positiveGradient: localGradient + b * e,
                    candidateGradient: gatheredGradient.data + n * e, allAnchorGradient: gatheredGradient.data)
            }
        }
        if !pairLoss.symmetric {
            // One direction writes no gradient through the local positives or the gathered anchors.
            (localGradient + b * e).update(repeating: 0, count: b * e)
            gatheredGradient.data.update(repeating: 0, count: n * e)
        }
        // The negatives' gradient comes through their gathered copies only.
        if sideCount == 3 { (localGradient + 2 * b * e).update(repeating: 0, count: b * e) }
        return ObjectiveLoss(share: r.loss, positiveTop1: r.positiveTop1, logitScaleGradient: Float(r.logitScaleGradient))
    }

    /// Each side's gathered gradient summed onto the rank that owns the rows, added to the local rows'.
    func scatter() throws {
        let b = samples, n = globalSamples, e = width
        for side in 0..<sideCount {
            try communicator.reduceScatter(gatheredGradient.data + side * n * e, into: ownGradient.data + side * b * e, counts: counts)
        }
        Kernels.axpy(sides.gradient.data, alpha: 1, x: ownGradient.data, count: sideCount * b * e)
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
