import Tensor

/// A residual bottleneck adapter (Houlsby et al. 2019) on the representation:
///
///     h' = h + W_up relu(W_down h + b_down) + b_up
///
/// W_up and b_up start at zero, so a new adapter is the identity and fine-tuning starts from
/// the pretrained representation exactly.
///
/// Shapes: B batch, R representation width, A bottleneck width. h: B x R, W_down: A x R,
/// b_down: A, W_up: R x A, b_up: R, h': B x R.
public final class ResidualAdapter: Layer {
    /// h -> relu(W_down h + b_down) (B x A), then -> W_up a + b_up (B x R).
    public let down: Linear
    public let up: Linear
    public var inputWidth: Int { down.inputWidth }
    public var outputWidth: Int { up.outputWidth }
    /// Whether backward returns dL/dh. Off when nothing below the adapter trains (a frozen encoder):
    /// then the down projection's dL/dh GEMM is skipped too.
    public var computesInputGradient: Bool {
        get { down.computesInputGradient }
        set { down.computesInputGradient = newValue }
    }
    private let arena: ParameterArena
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    /// Registers `<name>.down.weight` (A x R), `<name>.down.bias` (A), `<name>.up.weight` (R x A),
    /// `<name>.up.bias` (R) in `arena`, in that order.
    public init(width: Int, bottleneck: Int, name: String, arena: ParameterArena) {
        precondition(width > 0 && bottleneck > 0, "ResidualAdapter: widths must be > 0, got \(width) and \(bottleneck)")
        self.arena = arena
        down = Linear(inputDimensions: width, outputDimensions: bottleneck, activation: .relu, name: "\(name).down", arena: arena)
        up = Linear(inputDimensions: bottleneck, outputDimensions: width, name: "\(name).up", arena: arena)
    }

    /// W_down and b_down get PyTorch's Linear default from stream `stream`; W_up and b_up are zero
    /// (the identity at initialisation).
    public func initialise(seed: UInt64, stream: UInt64) {
        down.initialise(seed: seed, stream: stream)
        arena.parameters(up.weight).update(repeating: 0, count: up.weight.count)
        if let bias = up.bias { arena.parameters(bias).update(repeating: 0, count: bias.count) }
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let n = batch * outputWidth
        let y = output.pointer(count: n)
        y.update(from: up.forward(down.forward(input, batch: batch), batch: batch), count: n)
        Kernels.axpy(y, alpha: 1, x: input, count: n)
        return y
    }

    /// dL/dh = dL/dh' + W_down^T (relu' (W_up^T dL/dh')): the skip path plus the bottleneck's.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let n = batch * outputWidth
        var dx: UnsafeMutablePointer<Float>? = nil
        if computesInputGradient {
            // The skip path's share, kept before `up` may consume dL/dh'.
            dx = inputGradient.pointer(count: n)
            dx!.update(from: outputGradient, count: n)
        }
        guard let da = up.backward(outputGradient, batch: batch) else {
            preconditionFailure("ResidualAdapter: the up projection must return its input gradient")
        }
        let bottleneckGradient = down.backward(da, batch: batch)
        if let dx, let bottleneckGradient { Kernels.axpy(dx, alpha: 1, x: bottleneckGradient, count: n) }
        return dx
    }
}
