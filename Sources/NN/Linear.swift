import Tensor

/// Fully connected layer, PyTorch layout: y = x W^T + b, with an optionally fused ReLU.
///
/// Shapes: B batch, I input width, O output width. x: B x I, W: O x I, b: O, y: B x O.
/// Fusing the ReLU saves one pass over y in each direction; `ReLU` exists as its own layer too.
public final class Linear: Layer {
    public enum Activation: Sendable { case identity, relu }

    /// How many pieces each backward GEMM is cut into when `progress` is set.
    static let progressBlocks = 2

    public let inputWidth: Int
    public let outputWidth: Int
    public let activation: Activation
    public let weight: ParameterSlice
    public let bias: ParameterSlice?
    public var computesInputGradient = true
    /// What the forward, dW and dX GEMMs multiply in: bf16 rounds x, W and dy for the product only
    /// (fp32 accumulation, output and gradients; train.compute_precision).
    public var computePrecision: GEMMPrecision = .fp32
    /// Called between chunks of the backward GEMMs when set: a communicator polls its
    /// non-blocking collectives here, since MPI makes progress only inside MPI calls.
    public var progress: (() -> Void)?
    private let arena: ParameterArena

    /// Internal, not private: finite-difference tests read the fused ReLU's sides (y > 0) from it.
    let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()
    private var savedInput: UnsafePointer<Float>?

    /// Registers W (O x I) and b (O) in `arena` as `<name>.weight` and `<name>.bias`.
    public init(inputDimensions: Int, outputDimensions: Int, bias: Bool = true, activation: Activation = .identity,
                name: String, arena: ParameterArena) {
        self.inputWidth = inputDimensions
        self.outputWidth = outputDimensions
        self.activation = activation
        self.arena = arena
        self.weight = arena.allocate(name: "\(name).weight", shape: [outputDimensions, inputDimensions], kind: .weight)
        self.bias = bias ? arena.allocate(name: "\(name).bias", shape: [outputDimensions], kind: .bias) : nil
    }

    /// PyTorch's default: W ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(I), 1/sqrt(I)), b ~ U(-1/sqrt(I), 1/sqrt(I)).
    /// Draws come from the counter RNG stream (seed, initialisation, `stream`): weights first, then bias.
    public func initialise(seed: UInt64, stream: UInt64) {
        var random = RandomStream(seed: seed, stream: RandomStream.id(.initialisation, stream))
        let bound = 1 / Float(inputWidth).squareRoot()
        let w = arena.parameters(weight)
        for i in 0..<weight.count { w[i] = random.nextUniform(-bound, bound) }
        if let bias {
            let b = arena.parameters(bias)
            for i in 0..<bias.count { b[i] = random.nextUniform(-bound, bound) }
        }
    }

    /// BERT's (and GPT-2's) initialisation: W ~ N(0, std^2), b = 0, from stream (seed, initialisation, `stream`).
    public func initialiseNormal(seed: UInt64, stream: UInt64, standardDeviation: Float) {
        var random = RandomStream(seed: seed, stream: RandomStream.id(.initialisation, stream))
        let w = arena.parameters(weight)
        for i in 0..<weight.count { w[i] = standardDeviation * random.nextNormal() }
        if let bias { arena.parameters(bias).update(repeating: 0, count: bias.count) }
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        savedInput = input
        let y = output.pointer(count: batch * outputWidth)
        gemm(transposeA: false, transposeB: true, m: batch, n: outputWidth, k: inputWidth,
             a: input, lda: inputWidth, b: arena.parameters(weight), ldb: inputWidth, c: y, ldc: outputWidth, precision: computePrecision)
        switch (bias, activation) {
        case (let bias?, .relu): Kernels.addBiasReLURows(y, bias: arena.parameters(bias), rows: batch, columns: outputWidth)
        case (let bias?, .identity): Kernels.addBiasRows(y, bias: arena.parameters(bias), rows: batch, columns: outputWidth)
        case (nil, .relu): Kernels.reluInPlace(y, count: batch * outputWidth)
        case (nil, .identity): break
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard let x = savedInput else { preconditionFailure("Linear.backward before forward") }
        let dy = outputGradient
        // Through the ReLU in place (y > 0 exactly where the pre-activation was), fused with db.
        switch (bias, activation) {
        case (let bias?, .relu):
            Kernels.reluBiasBackward(dy, output: output.tensor.data, biasGradient: arena.gradients(bias), rows: batch, columns: outputWidth)
        case (let bias?, .identity):
            Kernels.biasGradient(arena.gradients(bias), outputGradient: dy, rows: batch, columns: outputWidth)
        case (nil, .relu):
            Kernels.reluBackward(inputGradient: dy, outputGradient: dy, output: output.tensor.data, count: batch * outputWidth)
        case (nil, .identity): break
        }
        // dW += dy^T x  (O x I), in row blocks of dW when someone needs to be called in between.
        let blocks = progress == nil ? 1 : Self.progressBlocks
        let rowsPerBlock = (outputWidth + blocks - 1) / blocks
        var row = 0
        while row < outputWidth {
            let rows = min(rowsPerBlock, outputWidth - row)
            gemm(transposeA: true, transposeB: false, m: rows, n: inputWidth, k: batch,
                 a: dy + row, lda: outputWidth, b: x, ldb: inputWidth, beta: 1,
                 c: arena.gradients(weight) + row * inputWidth, ldc: inputWidth, precision: computePrecision)
            progress?()
            row += rows
        }
        guard computesInputGradient else { return nil }
        // dx = dy W  (B x I)
        let dx = inputGradient.pointer(count: batch * inputWidth)
        let batchPerBlock = (batch + blocks - 1) / blocks
        row = 0
        while row < batch {
            let rows = min(batchPerBlock, batch - row)
            gemm(transposeA: false, transposeB: false, m: rows, n: inputWidth, k: outputWidth,
                 a: dy + row * outputWidth, lda: outputWidth, b: arena.parameters(weight), ldb: inputWidth,
                 c: dx + row * inputWidth, ldc: inputWidth, precision: computePrecision)
            progress?()
            row += rows
        }
        return dx
    }
}
