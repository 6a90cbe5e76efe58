import Tensor
import Evaluation
import RunFiles
import Config
import NN

// Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
// Limited Setup"): the loss needs every embedding of the batch, the model needs only one row's
// activations to back-propagate that row. So the step embeds its V rows C at a time, keeping
// nothing but z (V x E), takes dL/dz of all V rows from the loss as usual, then re-runs each
// chunk's forward (inputs are fixed, so the recomputation is exact) and back-propagates that
// chunk's rows of dL/dz, the parameter gradients adding up over chunks. Activations cost C rows,
// not V; the price is a second forward, about 4/3 of the model's compute (forward 1, backward 2).
//
// Layers keep scratch buffers sized by the largest batch they have been given (`ScratchBuffer`
// grows and never shrinks), so the cached step forwards nothing but chunks of at most C rows.

/// Which tower of the model a chunked pass runs through.
enum CachedTower { case first, pair }

extension TrainingStep {
    /// C of `train.gradient_cache_chunk` when it splits `rows` (0 < C < rows), else nil: one chunk
    /// is the ordinary step.
    func gradientCacheChunk(rows: Int) -> Int? {
        let chunk = config.train.gradientCacheChunk
        return chunk > 0 && chunk < rows ? chunk : nil
    }

    /// z (B x E, owned by the model) of `rows` rows of the tower's input.
    private func forward(_ tower: CachedTower, _ input: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        switch tower {
        case .first: model.forward(input, batch: rows).embedding
        case .pair: model.pairForward(input, batch: rows)
        }
    }

    private func width(_ tower: CachedTower) -> Int { tower == .first ? model.inputWidth : model.pairInputWidth }

    /// Pass 1: z (rows x E) of `input` (rows x I) into `embeddings`, `chunk` rows at a time; the
    /// activations of each chunk are overwritten by the next.
    /// - Returns: `embeddings`.
    func cachedEmbed(_ tower: CachedTower, input: UnsafePointer<Float>, rows: Int, chunk: Int,
                     into embeddings: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let e = model.embeddingWidth
        var start = 0
        while start < rows {
            let count = min(chunk, rows - start)
            let z = forward(tower, input + start * width(tower), rows: count)
            (embeddings + start * e).update(from: z, count: count * e)
            start += count
        }
        return embeddings
    }

    /// Pass 2: for each chunk, forward again to rebuild its activations, then backward with its rows
    /// of dL/dz (`embeddingGradient`, rows x E, consumed), accumulating parameter gradients. Only the
    /// last chunk reports to `gradientsFinal`: before it, no layer's gradient is final, and a bucket
    /// of the all-reduce started early would send a partial sum.
    /// - Returns: seconds spent in the recomputed forwards (the step charges them to forward).
    func cachedBackward(_ tower: CachedTower, input: UnsafePointer<Float>, rows: Int, chunk: Int,
                        embeddingGradient: UnsafeMutablePointer<Float>, gradientsFinal: @escaping (Int) -> Void) -> Double {
        let e = model.embeddingWidth
        var start = 0, recompute = 0.0
        while start < rows {
            let count = min(chunk, rows - start)
            let t0 = monotonicSeconds()
            _ = forward(tower, input + start * width(tower), rows: count)
            recompute += monotonicSeconds() - t0
            let final = start + count == rows ? gradientsFinal : nil
            switch tower {
            case .first: model.backward(embeddingGradient + start * e, batch: count, gradientsFinal: final)
            case .pair: model.pairBackward(embeddingGradient + start * e, batch: count, gradientsFinal: final)
            }
            start += count
        }
        return recompute
    }
}

extension TrainingStep.Result {
    /// The result with `seconds` of recomputed forward moved from backward (where the step's clock
    /// put them) to forward.
    func chargingRecomputedForward(_ seconds: Double) -> Self {
        var result = self
        result.times.forward += seconds
        result.times.backward -= seconds
        return result
    }
}
