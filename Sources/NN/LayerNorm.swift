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
        let inv = inverseStd.pointer(count: batch)
        let gamma = arena.parameters(scale), beta = arena.parameters(shift)
        for r in 0..<batch {
            let x = input + r * w
            var mean: Float = 0
            for c in 0..<w { mean += x[c] }
            mean /= Float(w)
            var variance: Float = 0
            for c in 0..<w { let d = x[c] - mean; variance += d * d }
            variance /= Float(w)
            let s = 1 / (variance + epsilon).squareRoot()
            inv[r] = s
            for c in 0..<w {
                let n = (x[c] - mean) * s
                xhat[r * w + c] = n
                y[r * w + c] = n * gamma[c] + beta[c]
            }
        }
        return y
    }

    /// dgamma += sum_r dy x-hat; dbeta += sum_r dy;
    /// dx = s/W (W dxh - sum(dxh) - x-hat sum(dxh x-hat)), dxh = dy gamma.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let w = inputWidth
        let xhat = normalised.tensor.data, inv = inverseStd.tensor.data
        let gamma = arena.parameters(scale)
        let dgamma = arena.gradients(scale), dbeta = arena.gradients(shift)
        let dx: UnsafeMutablePointer<Float>? = computesInputGradient ? inputGradient.pointer(count: batch * w) : nil
        for r in 0..<batch {
            let dy = outputGradient + r * w, xh = xhat + r * w
            var sumDxh: Float = 0, sumDxhXh: Float = 0
            for c in 0..<w {
                dgamma[c] += dy[c] * xh[c]
                dbeta[c] += dy[c]
                let dxh = dy[c] * gamma[c]
                sumDxh += dxh
                sumDxhXh += dxh * xh[c]
            }
            guard let dx else { continue }
            let s = inv[r] / Float(w)
            for c in 0..<w {
                let dxh = dy[c] * gamma[c]
                dx[r * w + c] = s * (Float(w) * dxh - sumDxh - xh[c] * sumDxhXh)
            }
        }
        return dx
    }
}
