import Tensor
import Evaluation
import NN

// Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
// Limited Setup"): the loss needs every embedding of the batch, the model needs only one row's
// activations to back-propagate that row. So the step embeds its rows C at a time, keeping
// nothing but z (rows x E), takes dL/dz of all rows from the loss as usual, then re-runs each
// chunk's forward (inputs are fixed, so the recomputation is exact) and back-propagates that
// chunk's rows of dL/dz, the parameter gradients adding up over chunks. Activations cost C rows,
// not all of them; the price is a second forward, about 4/3 of the model's compute (forward 1,
// backward 2).
//
// It is one mechanism for every objective: an objective runs the model's towers only through
// its `ModelPasses`, and `GradientCache` is the implementation that chunks and replays them.
// The objective, the loss, the collectives and the step are the same with or without it.
//
// Dropout and drop-path masks are a function of the row (DropoutKey): each chunk's forwards set
// `rowOffset` to the chunk's first row, so the replay draws the first pass's masks, and the chunks
// together draw those of one forward of all rows.
//
// Layers keep scratch buffers sized by the largest batch they have been given (`ScratchBuffer`
// grows and never shrinks), so the cached step forwards nothing but chunks of at most C rows.

/// Which tower of the model a pass runs through.
enum Tower { case first, pair }

/// How an objective runs the model's towers over its local rows: forward to z, and later
/// backward from dL/dz, accumulating into the arena's gradients.
protocol ModelPasses: AnyObject {
    /// z (rows x E) of `rows` rows of `input` through `tower`: the model's own buffer, or
    /// `scratch` (rows x E, the objective's, untouched until the backward) when the pass keeps
    /// nothing but z.
    func embed(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, scratch: UnsafeMutablePointer<Float>)
        -> UnsafeMutablePointer<Float>
    /// Backward from dL/dz (`embeddingGradient`, rows x E, consumed) of the same `input` the
    /// tower embedded, calling `gradientsFinal` as the model's backward does.
    func backward(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, embeddingGradient: UnsafeMutablePointer<Float>,
                  gradientsFinal: @escaping (Int) -> Void)
    /// Seconds of the last step's backward spent re-running forwards (the step charges them to forward).
    var replaySeconds: Double { get }
}

extension ContrastiveModel {
    /// z (B x E, owned by the model) of `batch` rows through `tower`.
    func embed(_ tower: Tower, _ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        switch tower {
        case .first: forward(input, batch: batch).embedding
        case .pair: pairForward(input, batch: batch)
        }
    }

    /// Backward through `tower` from dL/dz (B x E, consumed).
    func backward(_ tower: Tower, _ embeddingGradient: UnsafeMutablePointer<Float>, batch: Int, gradientsFinal: ((Int) -> Void)?) {
        switch tower {
        case .first: backward(embeddingGradient, batch: batch, gradientsFinal: gradientsFinal)
        case .pair: pairBackward(embeddingGradient, batch: batch, gradientsFinal: gradientsFinal)
        }
    }

    /// I or W: the features a row of `tower`'s input has.
    func inputWidth(_ tower: Tower) -> Int { tower == .first ? inputWidth : pairInputWidth }
}

/// The ordinary passes: one forward of all rows, whose activations the backward uses.
final class DirectPasses: ModelPasses {
    let model: ContrastiveModel
    init(model: ContrastiveModel) { self.model = model }

    func embed(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        model.embed(tower, input, batch: rows)
    }

    func backward(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, embeddingGradient: UnsafeMutablePointer<Float>,
                  gradientsFinal: @escaping (Int) -> Void) {
        model.backward(tower, embeddingGradient, batch: rows, gradientsFinal: gradientsFinal)
    }

    var replaySeconds: Double { 0 }
}

/// The cached passes: embed `chunk` rows at a time keeping only z, and replay each chunk's
/// forward just before its backward.
final class GradientCache: ModelPasses {
    let model: ContrastiveModel
    /// C, rows per chunk.
    let chunk: Int
    private(set) var replaySeconds = 0.0

    init(model: ContrastiveModel, chunk: Int) {
        precondition(chunk >= 1, "GradientCache: chunk must be at least 1")
        self.model = model
        self.chunk = chunk
    }

    /// C of `train.gradient_cache_chunk` when it splits `rows` (0 < C < rows), else nil: a chunk
    /// of all rows would only cost a second forward.
    static func chunk(_ configured: Int, rows: Int) -> Int? {
        configured > 0 && configured < rows ? configured : nil
    }

    /// The passes for `chunk`: cached, or the ordinary ones when nil.
    static func passes(model: ContrastiveModel, chunk: Int?) -> ModelPasses {
        chunk.map { GradientCache(model: model, chunk: $0) } ?? DirectPasses(model: model)
    }

    /// Pass 1: z of each chunk into `scratch`; the activations of each chunk are overwritten by
    /// the next. Returns `scratch`.
    func embed(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let e = model.embeddingWidth, width = model.inputWidth(tower)
        replaySeconds = 0
        var start = 0
        while start < rows {
            let count = min(chunk, rows - start)
            model.dropoutKey.rowOffset = start
            (scratch + start * e).update(from: model.embed(tower, input + start * width, batch: count), count: count * e)
            start += count
        }
        model.dropoutKey.rowOffset = 0
        return scratch
    }

    /// Pass 2: for each chunk, forward again to rebuild its activations, then backward with its
    /// rows of dL/dz, accumulating parameter gradients. Only the last chunk reports to
    /// `gradientsFinal`: before it, no layer's gradient is final, and a bucket of the all-reduce
    /// started early would send a partial sum.
    func backward(_ tower: Tower, _ input: UnsafePointer<Float>, rows: Int, embeddingGradient: UnsafeMutablePointer<Float>,
                  gradientsFinal: @escaping (Int) -> Void) {
        let e = model.embeddingWidth, width = model.inputWidth(tower)
        var start = 0
        while start < rows {
            let count = min(chunk, rows - start)
            let t0 = monotonicSeconds()
            model.dropoutKey.rowOffset = start
            _ = model.embed(tower, input + start * width, batch: count)
            model.dropoutKey.rowOffset = 0
            replaySeconds += monotonicSeconds() - t0
            model.backward(tower, embeddingGradient + start * e, batch: count, gradientsFinal: start + count == rows ? gradientsFinal : nil)
            start += count
        }
    }
}
