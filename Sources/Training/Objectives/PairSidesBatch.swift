import Config
import NN
import Tensor

/// The two sides x and y of a rank's B pairs, as siglip and pairs read them (loss.sides): the two
/// views of each sample through the first tower (views), or the sample through the first tower
/// and its pair through the pair tower (pairs, CLIP's batch). Either way x and y are B x E, and
/// their gradients come back as one 2B x E buffer [dL/dx, dL/dy].
///
/// With hard negatives (views only: a text set's negative field) a third side h, each sample's
/// hard negative through the same encoder, B x E, its gradient the third B rows of `gradient`.
///
/// Shapes: B pairs per rank, I and W the towers' features, E embedding width, K floats an id (1,
/// or `CarriedId.floats` with exact ids). The batch is
/// views: 2B x I [view 0 of the B samples, view 1 of them] (3B x I with the B negatives after
/// them), then with `ids` the B pair ids (and with negatives the B negatives' ids, and with text
/// keys the B positives' keys), K floats each;
/// pairs: B x I features then B x W pairs.
final class PairSidesBatch {
    let model: ContrastiveModel
    let sides: PairSides
    let passes: ModelPasses
    /// B, E.
    let samples: Int, width: Int
    /// Whether the batch carries each sample's label after the views (the pair ids).
    let carriesIds: Bool
    /// The views' layout: hard negatives as a third side, ids exact.
    let layout: ViewsLayout
    /// Local rows through the first tower: 2B (views), 3B (views with negatives), B (pairs).
    let rows: Int
    /// 2B x E (3B x E with negatives): z of both sides while gradient caching keeps only z (the model's own buffers otherwise).
    let embeddings: Tensor
    /// 2B x E: [dL/dx, dL/dy] (3B x E: and dL/dh), what backward consumes.
    let gradient: Tensor
    /// The step's input and its x, y rows (B x E each).
    private var input: UnsafePointer<Float>?
    private(set) var x: UnsafeMutablePointer<Float>?
    private(set) var y: UnsafeMutablePointer<Float>?
    /// The B hard negatives' rows (with `layout.hardNegatives`).
    private(set) var h: UnsafeMutablePointer<Float>?

    init(model: ContrastiveModel, sides: PairSides, samplesPerRank b: Int, passes: ModelPasses, ids: Bool, layout: ViewsLayout = ViewsLayout()) {
        precondition(sides == .views || model.pairInputWidth > 0, "loss.sides pairs: the model has no pair tower")
        precondition(!ids || sides == .views, "pair ids ride on the views' batch only")
        precondition(!layout.hardNegatives || sides == .views, "hard negatives ride on the views' batch only")
        self.model = model
        self.sides = sides
        self.passes = passes
        samples = b
        width = model.embeddingWidth
        carriesIds = ids
        self.layout = layout
        rows = sides == .pairs ? b : layout.hardNegatives ? 3 * b : 2 * b
        let sideRows = layout.hardNegatives ? 3 * b : 2 * b
        embeddings = Tensor(zeros: [sideRows, model.embeddingWidth])
        gradient = Tensor(zeros: [sideRows, model.embeddingWidth])
    }

    /// Floats of one id: one float of a label, or an exact 64-bit id.
    var idFloats: Int { layout.exactIds ? CarriedId.floats : 1 }

    /// Ids a batch carries: the B pairs', and the B negatives' with hard negatives.
    var idCount: Int { carriesIds ? (layout.hardNegatives ? 2 : 1) * samples : 0 }

    /// Whether the B positives' text keys follow the ids.
    var carriesKeys: Bool { carriesIds && layout.keys }

    /// The layout of a views batch as this objective reads it (nil for pairs: no views).
    var batchLayout: BatchLayout? {
        guard sides == .views else { return nil }
        return BatchLayout(samples: samples, rows: rows, rowWidth: model.inputWidth,
                           idBlocks: carriesIds ? (layout.hardNegatives ? 2 : 1) + (carriesKeys ? 1 : 0) : 0,
                           idFloats: carriesIds ? idFloats : 0)
    }

    /// Floats of one rank's batch.
    var inputCount: Int {
        switch sides {
        case .views: rows * model.inputWidth + (idCount + (carriesKeys ? samples : 0)) * idFloats
        case .pairs: samples * (model.inputWidth + model.pairInputWidth)
        }
    }

    /// Id `index` after the views (0 ..< B the pair ids, B ..< 2B the negatives'), as its bits.
    func id(_ index: Int) -> UInt64 {
        let start = input! + rows * model.inputWidth + index * idFloats
        // A label is a float of a small integer; an id is the integer's bits.
        return layout.exactIds ? CarriedId.read(start) : UInt64(bitPattern: Int64(start[0]))
    }

    /// Positive `index`'s text key, after the ids (with `carriesKeys`).
    func key(_ index: Int) -> UInt64 {
        CarriedId.read(input! + rows * model.inputWidth + (idCount + index) * idFloats)
    }

    func forward(_ input: UnsafePointer<Float>) {
        self.input = input
        let b = samples, e = width
        switch sides {
        case .views:
            let z = passes.embed(.first, input, rows: rows, scratch: embeddings.data)
            x = z; y = z + b * e
            h = layout.hardNegatives ? z + 2 * b * e : nil
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
            passes.backward(.first, input!, rows: rows, embeddingGradient: gradient.data, gradientsFinal: gradientsFinal)
        case .pairs:
            passes.backward(.pair, input! + b * model.inputWidth, rows: b, embeddingGradient: gradient.data + b * e,
                            gradientsFinal: gradientsFinal)
            passes.backward(.first, input!, rows: b, embeddingGradient: gradient.data, gradientsFinal: gradientsFinal)
        }
    }

    var bytes: Int { (embeddings.count + gradient.count) * MemoryLayout<Float>.stride }
}

/// What a views batch holds besides the two views of B samples, decided by the data
/// (`TrainingData.viewsLayout`): the objective reads the layout the batch maker writes.
public struct ViewsLayout: Sendable, Equatable {
    /// A third B rows after the views: each sample's hard negative (a text set's negative field,
    /// loss.hard_negatives), and with pair ids the B negatives' ids after the pairs'.
    public var hardNegatives: Bool
    /// Pair ids carried exactly (`CarriedId`, a text set's 64-bit ids), not as one float of a label.
    public var exactIds: Bool
    /// After the exact ids, the B positives' text hashes (a text set whose pair ids are groups): a
    /// candidate with an anchor's positive's text is masked too. A negative's key is its id.
    public var keys: Bool

    public init(hardNegatives: Bool = false, exactIds: Bool = false, keys: Bool = false) {
        precondition(!keys || exactIds, "text keys ride with exact ids")
        self.hardNegatives = hardNegatives
        self.exactIds = exactIds
        self.keys = keys
    }
}
