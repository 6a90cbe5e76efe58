import Evaluation
import Contrastive
import Distributed
import NN
import Tensor

/// SigLIP (Zhai et al. 2023): the sigmoid loss of every (x_i, y_j) of the global batch, computed in
/// a ring of the ranks (SigLIPLoss): no all-gather and no reduce-scatter, the y blocks and their
/// gradients travel rank to rank with `ringShift` inside `loss`. t = e^theta is the learned (or
/// fixed, 1 / loss.temperature) scale; the bias b is a parameter of the model (`logitBias`),
/// started at loss.siglip_bias and checkpointed with the others.
///
/// Shapes: B pairs per rank, P ranks, N = P B, E embedding width.
final class SigLIP: Objective {
    let sides: PairSidesBatch
    let communicator: Communicator
    let siglip = SigLIPLoss()

    init(sides: PairSidesBatch, communicator: Communicator) {
        precondition(sides.model.logitBias != nil, "SigLIP: the model has no logit bias")
        self.sides = sides
        self.communicator = communicator
    }

    var inputCount: Int { sides.inputCount }
    var globalAnchors: Int { communicator.size * sides.samples }
    var passes: ModelPasses { sides.passes }

    func forward(_ input: UnsafePointer<Float>) { sides.forward(input) }

    /// Nothing to gather: the ring exchanges the blocks inside `loss`.
    func gather() throws {}

    func loss(_ plan: StepPlan) throws -> ObjectiveLoss {
        let b = sides.samples, e = sides.width, model = sides.model
        let bias = model.arena.parameters(model.logitBias!)[0]
        let r = try siglip.forwardBackward(
            x: sides.x!, y: sides.y!, count: b, dimension: e, ranks: communicator.size, normalization: communicator.size * b,
            scale: 1 / plan.temperature, bias: bias, xGradient: sides.gradient.data, yGradient: sides.gradient.data + b * e
        ) { [communicator] send, receive, count in
            try communicator.ringShift(send, into: receive, count: count)
        }
        return ObjectiveLoss(share: r.loss, positiveTop1: r.positiveTop1, logitScaleGradient: Float(r.logitScaleGradient),
                             logitBiasGradient: Float(r.biasGradient))
    }

    /// Nothing to scatter: each y block's gradient came home at the ring's last turn.
    func scatter() throws {}

    func backward(_ gradientsFinal: @escaping (Int) -> Void) { sides.backward(gradientsFinal) }

    /// Geometry of this rank's pairs (the ring never gathers the batch): rows 0..<B are x, B..<2B their y.
    func geometry() -> EmbeddingGeometry.Measures {
        let b = sides.samples, z = Tensor(zeros: [2 * b, sides.width])
        z.data.update(from: sides.x!, count: b * sides.width)
        (z.data + b * sides.width).update(from: sides.y!, count: b * sides.width)
        return EmbeddingGeometry.measure(z.data, count: 2 * b, width: sides.width) { $0 < b ? $0 + b : $0 - b }
    }

    var memory: ObjectiveMemory { ObjectiveMemory(logits: siglip.workspaceBytes, embeddingExchange: sides.bytes) }
}
