import Config
import NN
import Tensor

/// The two sides x and y of a rank's B pairs, as siglip and pairs read them (loss.sides): the two
/// views of each sample through the first tower (views), or the sample through the first tower
/// and its pair through the pair tower (pairs, CLIP's batch). Either way x and y are B x E, and
/// their gradients come back as one 2B x E buffer [dL/dx, dL/dy].
///
/// Shapes: B pairs per rank, I and W the towers' features, E embedding width. The batch is
/// views: 2B x I [view 0 of the B samples, view 1 of them], then B labels with `ids`;
/// pairs: B x I features then B x W pairs.
final class PairSidesBatch {
    let model: ContrastiveModel
    let sides: PairSides
    let passes: ModelPasses
    /// B, E.
    let samples: Int, width: Int
    /// Whether the batch carries each sample's label after the views (the pair ids).
    let carriesIds: Bool
    /// 2B x E: z of both sides while gradient caching keeps only z (the model's own buffers otherwise).
    let embeddings: Tensor
    /// 2B x E: [dL/dx, dL/dy], what backward consumes.
    let gradient: Tensor
    /// The step's input and its x, y rows (B x E each).
    private var input: UnsafePointer<Float>?
    private(set) var x: UnsafeMutablePointer<Float>?
    private(set) var y: UnsafeMutablePointer<Float>?

    init(model: ContrastiveModel, sides: PairSides, samplesPerRank b: Int, passes: ModelPasses, ids: Bool) {
        precondition(sides == .views || model.pairInputWidth > 0, "loss.sides pairs: the model has no pair tower")
        precondition(!ids || sides == .views, "pair ids ride on the views' batch only")
        self.model = model
        self.sides = sides
        self.passes = passes
        samples = b
        width = model.embeddingWidth
        carriesIds = ids
        embeddings = Tensor(zeros: [2 * b, model.embeddingWidth])
        gradient = Tensor(zeros: [2 * b, model.embeddingWidth])
    }

    /// Floats of one rank's batch.
    var inputCount: Int {
        switch sides {
        case .views: 2 * samples * model.inputWidth + (carriesIds ? samples : 0)
        case .pairs: samples * (model.inputWidth + model.pairInputWidth)
        }
    }

    /// The B labels after the views (pair ids), as the batch holds them (floats of small integers).
    var labels: UnsafePointer<Float> { input! + 2 * samples * model.inputWidth }

    func forward(_ input: UnsafePointer<Float>) {
        self.input = input
        let b = samples, e = width
        switch sides {
        case .views:
            let z = passes.embed(.first, input, rows: 2 * b, scratch: embeddings.data)
            x = z; y = z + b * e
        case .pairs:
            x = passes.embed(.first, input, rows: b, scratch: embeddings.data)
            y = passes.embed(.pair, input + b * model.inputWidth, rows: b, scratch: embeddings.data + b * e)
        }
    }

    /// Backward from `gradient`; the pair tower first, as it sits after the first in the arena.
    func backward(_ gradientsFinal: @escaping (Int) -> Void) {
        let b = samples, e = width
        switch sides {
        case .views:
            passes.backward(.first, input!, rows: 2 * b, embeddingGradient: gradient.data, gradientsFinal: gradientsFinal)
        case .pairs:
            passes.backward(.pair, input! + b * model.inputWidth, rows: b, embeddingGradient: gradient.data + b * e,
                            gradientsFinal: gradientsFinal)
            passes.backward(.first, input!, rows: b, embeddingGradient: gradient.data, gradientsFinal: gradientsFinal)
        }
    }

    var bytes: Int { (embeddings.count + gradient.count) * MemoryLayout<Float>.stride }
}
