import Tensor

/// A first-order optimizer over a whole `ParameterArena`.
///
/// Optimizers act on the flat parameter and gradient buffers (DESIGN.md decision 1): each
/// state (momentum, moments) is one more buffer of the arena's length, and a step is a loop
/// over contiguous ranges. Slice kinds are consulted only where the semantics need them
/// (LARS skips adaptation and decay for biases and norm parameters).
///
/// In order of increasing complexity: `SGD`, `AdamW`, `LARS`.
public protocol Optimizer: AnyObject {
    /// Steps taken so far. `step` increments it first, so the first step is step 1 (Adam's t).
    /// Checkpoints save it and set it back on resume, together with `stateBuffers`.
    var stepCount: Int { get set }

    /// Every state buffer, each with the arena's length, under a stable name. A checkpoint
    /// that saves these tensors and `stepCount` and writes them back restores the optimizer
    /// exactly (the tensors are the live buffers: copy into them, don't replace them).
    var stateBuffers: [(name: String, tensor: Tensor)] { get }

    /// Applies one update to `arena.parameters` from `arena.gradients` (which it leaves as
    /// they are) and increments `stepCount`.
    func step(_ arena: ParameterArena, learningRate: Float)
}

extension Optimizer {
    /// Checks that `arena` is the one the state buffers were sized for.
    func checkArena(_ arena: ParameterArena, stateCount: Int) {
        precondition(arena.isSealed, "\(Self.self).step: the parameter arena is not sealed yet")
        precondition(arena.count == stateCount,
                     "\(Self.self).step: the arena has \(arena.count) elements but the optimizer state was made for \(stateCount); build the optimizer after the model")
    }
}
