import Foundation
import Tensor

/// Layer normalisation over the last dimension (Ba et al. 2016), PyTorch's `nn.LayerNorm`:
/// y = (x - mean) / sqrt(var + eps) * gamma + beta, var biased. gamma = 1, beta = 0 at init.
/// Shapes: B x W in and out; gamma, beta: W.
public final class LayerNorm: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public let epsilon: Float
    public let scale: ParameterSlice
    public let shift: ParameterSlice
    public var computesInputGradient = true
    private let arena: ParameterArena
    private let output = ScratchBuffer()
    private let normalised = ScratchBuffer()     // x-hat, B x W
    private let inverseStd = ScratchBuffer()     // 1/sqrt(var + eps), B
    private let inputGradient = ScratchBuffer()

    public init(width: Int, epsilon: Float = 1e-5, name: String, arena: ParameterArena) {
        self.inputWidth = width
        self.epsilon = epsilon
        self.arena = arena
        self.scale = arena.allocate(name: "\(name).weight", shape: [width], kind: .normScale)
        self.shift = arena.allocate(name: "\(name).bias", shape: [width], kind: .normShift)
    }

    public func initialise() {
        arena.parameters(scale).update(repeating: 1, count: inputWidth)
        arena.parameters(shift).update(repeating: 0, count: inputWidth)
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let w = inputWidth
        let y = output.pointer(count: batch * w), xhat = normalised.pointer(count: batch * w)
        Kernels.layerNorm(y, normalised: xhat, inverseStd: inverseStd.pointer(count: batch), input: input,
                          gamma: arena.parameters(scale), beta: arena.parameters(shift), rows: batch, width: w, epsilon: epsilon)
        return y
    }

    /// dgamma += sum_r dy x-hat; dbeta += sum_r dy;
    /// dx = s/W (W dxh - sum(dxh) - x-hat sum(dxh x-hat)), dxh = dy gamma.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let w = inputWidth
        let dx: UnsafeMutablePointer<Float>? = computesInputGradient ? inputGradient.pointer(count: batch * w) : nil
        Kernels.layerNormBackward(inputGradient: dx, scaleGradient: arena.gradients(scale), shiftGradient: arena.gradients(shift),
                                  outputGradient: outputGradient, normalised: normalised.tensor.data, inverseStd: inverseStd.tensor.data,
                                  gamma: arena.parameters(scale), rows: batch, width: w)
        return dx
    }
}
