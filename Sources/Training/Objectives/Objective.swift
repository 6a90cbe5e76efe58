import Tensor
import Evaluation
import Config
import Checkpoint
import Contrastive
import Distributed
import Foundation
import NN

/// A contrastive objective as the step runs it on one rank (DESIGN.md decision 3): the model's
/// forward over the local batch, the all-gather of the embeddings, the loss of the local anchors
/// against the global batch, the reduce-scatter of the candidates' gradient onto their owners,
/// and the model's backward. The step calls the verbs in that order once per step; between
/// them it only times, and after `backward` it all-reduces the gradients and updates (the part
/// every objective shares, `TrainingStep.finish`).
///
/// An objective owns its buffers, allocated once; a steady-state step allocates nothing. The
/// losses in `Contrastive` know nothing of ranks; the objective is where they meet the
/// communicator. It runs the model through its `passes`, so gradient caching applies to every
/// objective alike (GradientCache.swift).
///
/// Shapes: B samples per rank, P ranks, E embedding width; each objective names its rows.
protocol Objective: AnyObject {
    /// Floats of one rank's batch as `forward` reads it (`TrainingStep.batch`).
    var inputCount: Int { get }
    /// Anchors of the global batch: the positive accuracy is the summed top-1 over these.
    var globalAnchors: Int { get }
    /// How the model's towers run: directly, or in chunks replayed before backward.
    var passes: ModelPasses { get }

    /// Embeds the local batch `input` (valid until `backward` returns).
    func forward(_ input: UnsafePointer<Float>)
    /// All-gathers the local embeddings (and labels or keys) from every rank.
    func gather() throws
    /// dL/dz of the local rows and of the gathered candidates under `plan`'s temperature (and
    /// hard-negative beta): this rank's share of the loss and what the ranks sum with it. (SigLIP's
    /// ring exchanges its blocks here, hence throws.)
    func loss(_ plan: StepPlan) throws -> ObjectiveLoss
    /// Sums the gathered candidates' gradient onto the ranks that own them and adds each local
    /// row's own gradient: dL/dz of this rank's rows, ready for backward.
    func scatter() throws
    /// The model's backward from dL/dz, calling `gradientsFinal(offset)` as the gradients at and
    /// above arena offset `offset` are final (the reducer starts their buckets).
    func backward(_ gradientsFinal: @escaping (Int) -> Void)

    /// After an applied update (MoCo's key model follows the query model).
    func afterUpdate()
    /// The embedding geometry of the last step's gathered embeddings (Monitor, rank 0).
    func geometry() -> EmbeddingGeometry.Measures
    /// Bytes of the objective's buffers, for `bench step`'s memory account.
    var memory: ObjectiveMemory { get }
    /// A line for the run's log about what the objective holds besides the model, or nil.
    var summary: String? { get }
    /// Payload bytes this rank hands to the objective's exchanges per step (gathers, reduce-scatters,
    /// ring turns), or nil for the two-view gather's V E + N E floats the monitor assumes.
    var exchangeBytes: Int? { get }
    /// The views batch's layout as the objective reads it, when it reads ids or hard negatives
    /// after the views (pairs); checked against the batch maker's when the run starts.
    var batchLayout: BatchLayout? { get }

    /// Buffers a checkpoint holds for the objective besides the parameters and optimizer state.
    var checkpointBuffers: [CheckpointBuffer] { get }
    /// Before a resume: whether `checkpoint` holds those buffers, else why not and what to do.
    func checkResumable(from checkpoint: URL) throws
    /// The objective's part of the checkpoint's training state.
    func save(into state: inout TrainingState)
    func restore(from state: TrainingState, checkpoint: URL) throws
}

/// What an objective's `loss` reports: this rank's share of the loss and the counts the step
/// sums over ranks with it (`StepStatistics`).
struct ObjectiveLoss {
    /// This rank's share of the global batch's loss (with a decoder, plus the weighted share of
    /// the reconstruction error).
    var share: Double
    /// Local anchors whose positive is their most similar candidate.
    var positiveTop1: Int
    /// This rank's dL/dtheta of a learnable temperature (theta = log(1/tau)); 0 without one.
    var logitScaleGradient: Float
    /// This rank's dL/db of a learned logit bias (siglip); 0 without one.
    var logitBiasGradient: Float = 0
    /// With a decoder: this rank's share of the mean squared reconstruction error (unweighted).
    var reconstruction: Double? = nil
    /// loss.pseudo_labels knn: the fraction of the global batch's unlabeled samples labeled.
    var pseudoLabelFraction: Double? = nil
}

/// Bytes of an objective's buffers (`Bench.MemoryAccount`).
public struct ObjectiveMemory: Sendable, Equatable {
    /// The loss's workspace: its logits (and SigLIP's ring buffers); 0 for losses that do not report theirs.
    public var logits = 0
    /// Gathered embeddings and the gradients of the exchange.
    public var embeddingExchange = 0
    /// MoCo's key model (parameters and gradients) and its candidates (keys and queue).
    public var momentumQueue = 0
}

extension Objective {
    func afterUpdate() {}
    var summary: String? { nil }
    var exchangeBytes: Int? { nil }
    var batchLayout: BatchLayout? { nil }
    var checkpointBuffers: [CheckpointBuffer] { [] }
    func checkResumable(from checkpoint: URL) throws {}
    func save(into state: inout TrainingState) {}
    func restore(from state: TrainingState, checkpoint: URL) throws {}
}

/// The objective of `config`, running the model through the passes gradient caching chooses
/// (`forcedChunk`: the cached passes with that chunk whatever the rows, for tests). `imageShape`
/// and the model's input widths build MoCo's key model; `layout` is what the data's views batch
/// holds besides the views (pairs: a text set's hard negatives and exact ids).
func makeObjective(config: TrainingConfig, model: ContrastiveModel, imageShape: [Int]?, communicator: Communicator,
                   samplesPerRank b: Int, forcedChunk: Int? = nil, layout: ViewsLayout = ViewsLayout()) -> any Objective {
    let l = config.loss, v = 2 * b
    func passes(rows: Int) -> ModelPasses {
        GradientCache.passes(model: model, chunk: forcedChunk ?? GradientCache.chunk(config.train.gradientCacheChunk, rows: rows))
    }
    /// The V views through the first tower; with a decoder, the hybrid's term rides on that pass.
    func twoViews() -> TwoViewBatch {
        let term = l.reconstructionWeight > 0
            ? ReconstructionTerm(weight: l.reconstructionWeight, rows: v, width: model.inputWidth, normalization: communicator.size * v) : nil
        return TwoViewBatch(model: model, communicator: communicator, samplesPerRank: b,
                            passes: term.map { ReconstructingPasses(model: model, term: $0) } ?? passes(rows: v), reconstruction: term)
    }
    switch l.kind {
    case .clip:
        return CLIP(model: model, communicator: communicator, samplesPerRank: b, passes: passes(rows: b),
                    temperature: l.temperature, logitChunk: l.logitChunk)
    case .supcon:
        return SupCon(views: twoViews(), config: l)
    case .siglip:
        return SigLIP(sides: PairSidesBatch(model: model, sides: l.sides, samplesPerRank: b,
                                            passes: passes(rows: l.sides == .views ? v : b), ids: false),
                      communicator: communicator)
    case .pairs:
        let rows = l.sides == .pairs ? b : layout.hardNegatives ? 3 * b : v
        return Pairs(sides: PairSidesBatch(model: model, sides: l.sides, samplesPerRank: b,
                                           passes: passes(rows: rows), ids: l.maskDuplicates, layout: layout),
                     communicator: communicator, config: l)
    case .ntxent where l.mocoQueue > 0:
        // An option of NT-Xent with its own step: the hard-negative form and the decoder are not part of it.
        let keyModel = ContrastiveModel(config.model, inputWidth: model.inputWidth, imageShape: imageShape,
                                        learnableTemperature: l.temperatureMode == .learnable)
        return MoCo(model: model, keyModel: keyModel, communicator: communicator, samplesPerRank: b, passes: passes(rows: v), config: l)
    case .ntxent:
        return SimCLR(views: twoViews(), config: l)
    }
}
