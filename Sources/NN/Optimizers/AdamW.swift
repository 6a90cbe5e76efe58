import Tensor

/// Adam with decoupled weight decay (Loshchilov & Hutter 2019), exactly torch.optim.AdamW:
///
///     p ← p (1 - lr·wd)
///     m ← β1 m + (1 - β1) g
///     v ← β2 v + (1 - β2) g²
///     p ← p - (lr / c1) · m / (√v / √c2 + ε),   c1 = 1 - β1^t, c2 = 1 - β2^t
///
/// Weight decay applies to every parameter, as in PyTorch's default and the benchmark
/// workload (fmnist-simclr-mlp), except the logit scale (`Kind.isNeverDecayed`). The update is
/// `Kernels.adamW` over the flat buffer, one call per decayed or undecayed range.
public final class AdamW: Optimizer {
    public let betas: (Float, Float)
    public let epsilon: Float
    public let weightDecay: Float
    public var stepCount = 0

    /// First moment m and second moment v.
    private let firstMoment: Tensor
    private let secondMoment: Tensor
    private let count: Int
    /// Ranges of the arena it steps, whether weight decay applies to them, and their learning-rate scale.
    private let segments: [(range: Range<Int>, decays: Bool, learningRateScale: Float)]

    /// - Parameters:
    ///   - arena: the sealed arena the optimizer will step; state buffers get its length.
    ///   - betas: (β1, β2), decay rates of the moment averages.
    ///   - epsilon: ε, added to the bias-corrected √v.
    ///   - weightDecay: wd, decoupled (multiplies p by 1 - lr·wd), applied to all parameters.
    ///   - groups: the ranges stepped and their learning-rate scales (nil: the whole arena at lr).
    public init(for arena: ParameterArena, betas: (Float, Float) = (0.9, 0.999), epsilon: Float = 1e-8, weightDecay: Float = 1e-2,
                groups: [ParameterGroup]? = nil) {
        precondition(arena.isSealed, "AdamW: seal the parameter arena before building the optimizer")
        precondition((0..<1).contains(betas.0) && (0..<1).contains(betas.1), "AdamW: betas must lie in [0, 1), got \(betas)")
        precondition(epsilon >= 0 && weightDecay >= 0, "AdamW: epsilon and weightDecay must be >= 0")
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.count = arena.count
        self.segments = arena.segments(groups: groups ?? ParameterGroup.all(arena))
        self.firstMoment = Tensor(zeros: [arena.count])
        self.secondMoment = Tensor(zeros: [arena.count])
    }

    public var stateBuffers: [(name: String, tensor: Tensor)] {
        [(name: "first_moment", tensor: firstMoment), (name: "second_moment", tensor: secondMoment)]
    }

    public func step(_ arena: ParameterArena, learningRate: Float) {
        checkArena(arena, stateCount: count)
        stepCount += 1
        for (range, decays, scale) in segments {
            let o = range.lowerBound
            Kernels.adamW(parameters: arena.parameters.data + o, gradients: arena.gradients.data + o,
                          firstMoment: firstMoment.data + o, secondMoment: secondMoment.data + o, count: range.count,
                          learningRate: scale == 1 ? learningRate : learningRate * scale, beta1: betas.0, beta2: betas.1, epsilon: epsilon,
                          weightDecay: decays ? weightDecay : 0, step: stepCount)
        }
    }
}
