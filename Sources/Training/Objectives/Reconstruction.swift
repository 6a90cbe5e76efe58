import Evaluation
import Contrastive
import NN
import Tensor

// The hybrid objective (loss.reconstruction_weight w > 0): a decoder reconstructs the views from
// their representations h, and w times the mean squared error joins the contrastive loss,
//
//     L = L_contrastive + w sum_local (x_hat - x)^2 / (N I),
//
// its dL/dh adding to the head's in the model's backward. It rides on the first tower's pass,
// so the two-view objectives (SimCLR, SupCon) are the same with or without it.
//
// Shapes: V = 2B local views, N = P V global views, I features, R representation width.

/// The decoder's term of the loss: the reconstruction error of the local views and its gradient.
final class ReconstructionTerm {
    /// w of loss.reconstruction_weight.
    let weight: Float
    /// dL/dx_hat of the local views (V x I).
    let gradient: Tensor
    /// V, N: the rows reconstructed here and the global rows the error is averaged over.
    let rows: Int
    let normalization: Int
    /// This rank's share of the global mean squared error of the last forward (unweighted).
    private(set) var share = 0.0

    init(weight: Float, rows: Int, width: Int, normalization: Int) {
        self.weight = weight
        self.rows = rows
        self.normalization = normalization
        gradient = Tensor(zeros: [rows, width])
    }

    /// The decoder's reconstruction of `target` (V x I, the views the encoder saw) from their
    /// representations h (V x R), the error's share and dL/dx_hat.
    func forward(model: ContrastiveModel, representation: UnsafePointer<Float>, target: UnsafePointer<Float>) {
        let prediction = model.reconstruct(representation, batch: rows)
        share = ReconstructionLoss.forwardBackward(prediction: prediction, target: target, rows: rows, width: model.inputWidth,
                                                   normalization: normalization, weight: weight, gradient: gradient.data)
    }
}

/// The first tower with the decoder on its representation: one forward of all rows, since the
/// decoder reads the whole batch's h (hence no gradient caching with it, ConfigValidation).
final class ReconstructingPasses: ModelPasses {
    let model: ContrastiveModel
    let term: ReconstructionTerm

    init(model: ContrastiveModel, term: ReconstructionTerm) {
        self.model = model
        self.term = term
    }

    func embed(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        precondition(tower == .first && rows == term.rows, "ReconstructingPasses: the decoder reconstructs the first tower's views")
        let (h, z) = model.forward(input, batch: rows)
        term.forward(model: model, representation: h, target: input)
        return z
    }

    /// The decoder's backward runs first; its dL/dh adds to the head's (ContrastiveModel.backward).
    func backward(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, embeddingGradient: UnsafeMutablePointer<Float>,
                  gradientsFinal: @escaping (Int) -> Void) {
        model.backward(embeddingGradient, batch: rows, gradientsFinal: gradientsFinal, reconstructionGradient: term.gradient.data)
    }

    var replaySeconds: Double { 0 }
}

extension ObjectiveLoss {
    /// This loss with the decoder's weighted share added, and the share reported.
    func adding(_ reconstruction: ReconstructionTerm?) -> ObjectiveLoss {
        guard let reconstruction else { return self }
        var loss = self
        loss.share += Double(reconstruction.weight) * reconstruction.share
        loss.reconstruction = reconstruction.share
        return loss
    }
}
