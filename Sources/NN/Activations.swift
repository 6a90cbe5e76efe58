import Tensor

/// y = max(x, 0). Shapes: B x W in and out.
public final class ReLU: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var computesInputGradient = true
    /// Internal, not private: finite-difference tests read every ReLU's side (y > 0) from it.
    let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    public init(width: Int) { self.inputWidth = width }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let n = batch * inputWidth
        let y = output.pointer(count: n)
        Kernels.relu(y, input: input, count: n)
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let n = batch * inputWidth
        let dx = inputGradient.pointer(count: n)
        Kernels.reluBackward(inputGradient: dx, outputGradient: outputGradient, output: output.tensor.data, count: n)
        return dx
    }
}

/// y = x Φ(x) (exact GELU, PyTorch's default). Shapes: B x W in and out.
public final class GELU: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()
    private var savedInput: UnsafePointer<Float>?

    public init(width: Int) { self.inputWidth = width }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        savedInput = input
        let y = output.pointer(count: batch * inputWidth)
        Kernels.gelu(y, input: input, count: batch * inputWidth)
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient, let x = savedInput else { return nil }
        let n = batch * inputWidth
        let dx = inputGradient.pointer(count: n)
        Kernels.geluBackward(inputGradient: dx, outputGradient: outputGradient, input: x, count: n)
        return dx
    }
}

/// Row-wise L2 normalisation z = u / max(|u|, eps): the embedding that contrastive losses
/// compare. Shapes: B x W in and out.
public final class L2Normalize: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let norms = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    public init(width: Int) { self.inputWidth = width }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let z = output.pointer(count: batch * inputWidth)
        Kernels.l2NormalizeRows(z, norms: norms.pointer(count: batch), input: input, rows: batch, columns: inputWidth)
        return z
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let n = batch * inputWidth
        let du = inputGradient.pointer(count: n)
        du.update(repeating: 0, count: n)
        Kernels.l2NormalizeRowsBackward(inputGradient: du, outputGradient: outputGradient, output: output.tensor.data,
                                        norms: norms.tensor.data, rows: batch, columns: inputWidth)
        return du
    }
}
