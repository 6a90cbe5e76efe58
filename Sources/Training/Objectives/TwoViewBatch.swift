import Evaluation
import Contrastive
import Distributed
import NN
import Tensor

/// What the two-view objectives (SimCLR, SupCon) share: a rank's V = 2B views through the
/// first tower, the embeddings all-gathered to N rows, and the candidates' gradient summed back
/// onto the rank that owns them (DESIGN.md decision 3).
///
/// Shapes: B samples per rank, V = 2B local views, P ranks, N = P V global views, I features,
/// E embedding width. The batch is V x I, [view 0 of the B samples, view 1 of the same]. Global
/// candidate rows are rank-major: rank r holds rows r V ..< (r+1) V.
final class TwoViewBatch {
    let model: ContrastiveModel
    let communicator: Communicator
    let passes: ModelPasses
    /// With a decoder (loss.reconstruction_weight > 0): its term of the loss, else nil.
    let reconstruction: ReconstructionTerm?
    /// B, V, N, E.
    let samples: Int, views: Int, globalViews: Int, width: Int
    let gathered: Tensor            // N x E, every rank's embeddings
    let anchorGradient: Tensor      // V x E, dL/dz through this rank's anchors, then of its rows
    let candidateGradient: Tensor   // N x E, dL/dz through the gathered copy
    let ownGradient: Tensor         // V x E, this rank's share of the candidate gradient (z while cached)
    let selfIndex: [Int32]
    let positiveIndex: [Int32]
    /// V x E per rank, for the gather and the reduce-scatter.
    let counts: [Int]
    /// The step's views and their embeddings z (V x E), from `forward`.
    private(set) var input: UnsafePointer<Float>?
    private(set) var embeddings: UnsafeMutablePointer<Float>?

    init(model: ContrastiveModel, communicator: Communicator, samplesPerRank b: Int, passes: ModelPasses,
         reconstruction: ReconstructionTerm?) {
        self.model = model
        self.communicator = communicator
        self.passes = passes
        self.reconstruction = reconstruction
        let v = 2 * b, n = communicator.size * v, e = model.embeddingWidth
        samples = b; views = v; globalViews = n; width = e
        gathered = Tensor(zeros: [n, e])
        anchorGradient = Tensor(zeros: [v, e])
        candidateGradient = Tensor(zeros: [n, e])
        ownGradient = Tensor(zeros: [v, e])
        (selfIndex, positiveIndex) = TwoViewPairs.indices(samples: b, offset: communicator.rank * v)
        counts = [Int](repeating: v * e, count: communicator.size)
    }

    /// Floats of the views (V x I).
    var inputCount: Int { views * model.inputWidth }

    /// z of the V views; with gradient caching it is kept in `ownGradient`, free until the reduce-scatter.
    func forward(_ input: UnsafePointer<Float>) {
        self.input = input
        embeddings = passes.embed(.first, input, rows: views, scratch: ownGradient.data)
    }

    func gather() throws {
        try communicator.allGather(embeddings!, into: gathered.data, counts: counts)
    }

    /// dL/dz of this rank's rows: through its anchors, plus every rank's contribution through
    /// the gathered copy, summed onto the owner.
    func scatter() throws {
        try communicator.reduceScatter(candidateGradient.data, into: ownGradient.data, counts: counts)
        Kernels.axpy(anchorGradient.data, alpha: 1, x: ownGradient.data, count: views * width)
    }

    func backward(_ gradientsFinal: @escaping (Int) -> Void) {
        passes.backward(.first, input!, rows: views, embeddingGradient: anchorGradient.data, gradientsFinal: gradientsFinal)
    }

    /// Geometry of the gathered views; the positive of a row is its sample's other view.
    func geometry() -> EmbeddingGeometry.Measures {
        let v = views, b = samples
        return EmbeddingGeometry.measure(gathered.data, count: globalViews, width: width) { ($0 / v) * v + ($0 % v + b) % v }
    }

    /// The exchange's buffers.
    var exchangeBytes: Int {
        [gathered, anchorGradient, candidateGradient, ownGradient].reduce(0) { $0 + $1.count } * MemoryLayout<Float>.stride
    }
}
