@testable import NN
import Tensor

/// The side of every ReLU unit in `layer` after its last forward of `batch` rows (output > 0 is
/// the pre-activation's side), for GradientCheck.differences: a central difference is a
/// derivative only where no unit changes sides within the step. A layer type not listed here
/// contributes nothing, so a new layer with a ReLU inside must be added (its kinks would
/// otherwise show up as gradient mismatches, not pass unseen).
func activationPattern(of layer: Layer, batch: Int) -> [Bool] {
    func sides(_ buffer: ScratchBuffer, _ width: Int) -> [Bool] {
        let y = buffer.tensor.data
        return (0..<(batch * width)).map { y[$0] > 0 }
    }
    switch layer {
    case let sequential as Sequential: return sequential.layers.flatMap { activationPattern(of: $0, batch: batch) }
    case let relu as ReLU: return sides(relu.output, relu.outputWidth)
    case let linear as Linear: return linear.activation == .relu ? sides(linear.output, linear.outputWidth) : []
    case let norm as GroupNorm: return norm.activation == .relu ? sides(norm.output, norm.outputWidth) : []
    case let block as ResidualBlock: return activationPattern(of: block.main, batch: batch) + sides(block.output, block.outputWidth)
    case let multiScale as MultiScalePool:
        return activationPattern(of: multiScale.stage, batch: batch) + activationPattern(of: multiScale.inner, batch: batch)
    case let adapter as ResidualAdapter: return activationPattern(of: adapter.down, batch: batch)
    // A max pool's derivative changes where a window's winner does: the winners' bits are its sides.
    case let pool as MaxPool2d:
        return pool.winners.prefix(batch * pool.outputWidth).flatMap { w in (0..<16).map { w >> $0 & 1 == 1 } }
    case let broken as BrokenReLU: return activationPattern(of: broken.inner, batch: batch)
    default: return []
    }
}
