import RunFiles
import NN
import Data
import Foundation
import Tensor

/// Representations or embeddings of a whole data set split (`Evaluation.evaluationSplit`), for
/// `contrast embed` and `contrast eval drift`: un-augmented inputs (uint8 as byte / 255), the model in inference.
///
/// Shapes: N samples, I input width (W for pairs), R representation width, E embedding width.
public enum Embedding {
    /// Which output of the model to write.
    public enum Output: String, Sendable, CaseIterable {
        /// The encoder's output h (N x R), what evaluation and transfer use.
        case representation
        /// The L2-normalised projection z (N x E), what the loss compared.
        case embedding
    }

    /// `output` of every held sample of `rows` (N x R or N x E), through the pair tower
    /// from the pair vectors when `pairs`, in chunks of `chunk` samples.
    /// - Throws: when the data's widths do not fit the model, or `pairs` has nothing to embed.
    public static func compute(_ model: ContrastiveModel, rows: SampleRows, output: Output, pairs: Bool = false,
                               chunk: Int = 1024) throws -> Tensor {
        if pairs {
            guard model.pairEncoder != nil else {
                throw RunDirectory.Failure(description: "--pairs embeds through the pair tower, but this model has none "
                                       + "(trained with loss.kind ntxent); leave out --pairs")
            }
            guard let pairShape = rows.pairShape else {
                throw RunDirectory.Failure(description: "--pairs: the data set has no pair vectors; prepare one with --pairs")
            }
            guard rows.pairWidth == model.pairInputWidth else {
                throw RunDirectory.Failure(description: "the model's pair tower takes vectors of width \(model.pairInputWidth), the data set's "
                                       + "pairs are \(pairShape) (width \(rows.pairWidth)); embed the data set the model was trained on")
            }
        } else if rows.featureWidth != model.inputWidth {
            throw RunDirectory.Failure(description: "the model takes inputs of width \(model.inputWidth), the data set's features are "
                                   + "\(rows.featureShape) (width \(rows.featureWidth)); embed the data set the model was trained on")
        }
        let width = output == .embedding ? model.embeddingWidth : pairs ? model.pairRepresentationWidth : model.representationWidth
        let inputWidth = pairs ? rows.pairWidth : rows.featureWidth
        let out = Tensor(zeros: [max(1, rows.count), width])
        let inputs = Tensor(zeros: [min(chunk, max(1, rows.count)), inputWidth])
        var start = rows.held.lowerBound
        while start < rows.held.upperBound {
            let count = min(chunk, rows.held.upperBound - start)
            let samples = start ..< start + count
            if pairs { rows.writePairs(samples, into: inputs.data) } else { rows.writeInputs(samples, into: inputs.data) }
            let target = out.data + (start - rows.held.lowerBound) * width
            switch output {
            case .representation: model.representations(of: inputs.data, count: count, pair: pairs, into: target, batch: count)
            case .embedding: model.embeddings(of: inputs.data, count: count, pair: pairs, into: target, batch: count)
            }
            start += count
        }
        return out
    }
}
