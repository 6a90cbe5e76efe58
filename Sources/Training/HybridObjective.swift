import Evaluation
import RunFiles
import Config
import Contrastive
import Tensor

// The parts of a step that the hybrid objective (loss.reconstruction_weight) and SupCon's
// pseudo-labels (loss.pseudo_labels) add; both are no-ops when off.
//
// Shapes: V = 2B local views, N = P V global views, I features, E embedding width.

extension TrainingStep {
    /// The decoder's reconstruction of the local views from their representations h (V x R) and its
    /// gradient dL/dx_hat into `reconstructionGradient`: returns this rank's share of the global mean
    /// squared error, sum_local (x_hat - x)^2 / (N I), or nil without a decoder.
    /// The target x is the V x I views the encoder saw, the first V I floats of `input`.
    func reconstruct(_ representation: UnsafePointer<Float>, input: UnsafePointer<Float>) -> Double? {
        guard let reconstructionGradient else { return nil }
        let v = 2 * samplesPerStep
        let prediction = model.reconstruct(representation, batch: v)
        return ReconstructionLoss.forwardBackward(prediction: prediction, target: input, rows: v, width: model.inputWidth,
                                                  normalization: communicator.size * v, weight: config.loss.reconstructionWeight,
                                                  gradient: reconstructionGradient.data)
    }

    /// Pseudo-labels the unlabeled samples of `candidateLabels` (N) from the gathered embeddings
    /// (N x E) and copies this rank's rows into `anchorLabels`: returns the fraction of unlabeled
    /// samples labeled, or nil when loss.pseudo_labels is none. Every rank computes the same labels.
    func assignPseudoLabels(embeddings: UnsafePointer<Float>, count n: Int, dimension e: Int, localViews v: Int) -> Double? {
        guard let pseudoLabeler else { return nil }
        let result = candidateLabels.withUnsafeMutableBufferPointer { labels in
            partners.withUnsafeBufferPointer { partners in
                pseudoLabeler.assign(embeddings: embeddings, count: n, dimension: e, labels: labels.baseAddress!,
                                     partner: partners.baseAddress!)
            }
        }
        let offset = communicator.rank * v
        for i in 0..<v { anchorLabels[i] = candidateLabels[offset + i] }
        return result.fraction
    }
}
