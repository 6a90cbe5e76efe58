import Tensor

/// The L2 norm of all gradients of the arena (or of its offsets `range`, the trainable ones) taken as one
/// vector, ‖g‖ = √(Σ g²), accumulated in Double. Padding between slices holds zeros and does not count.
public func globalGradientNorm(_ arena: ParameterArena, range: Range<Int>? = nil) -> Float {
    let range = range ?? 0..<arena.count
    return Float(Kernels.sumOfSquares(arena.gradients.data + range.lowerBound, count: range.count).squareRoot())
}

/// Rescales the gradients in place so that their global norm is at most `maxNorm`, like
/// torch.nn.utils.clip_grad_norm_ (norm type 2):
///
///     c = maxNorm / (‖g‖ + 1e-6);   g ← c g   if c < 1
///
/// A non-finite norm leaves the gradients as they are (the caller should skip the step,
/// as the loss scaler does); PyTorch would fill them with NaN.
/// - Returns: the global norm before clipping.
@discardableResult
public func clipGradientNorm(_ arena: ParameterArena, maxNorm: Float, range: Range<Int>? = nil) -> Float {
    precondition(maxNorm > 0, "clipGradientNorm: maxNorm must be > 0, got \(maxNorm)")
    let range = range ?? 0..<arena.count
    let norm = globalGradientNorm(arena, range: range)
    guard norm.isFinite else { return norm }
    let coefficient = Float(Double(maxNorm) / (Double(norm) + 1e-6))
    if coefficient < 1 {
        Kernels.scale(arena.gradients.data + range.lowerBound, by: coefficient, count: range.count)
    }
    return norm
}
