import Tensor

/// Stochastic gradient descent with momentum, torch.optim.SGD semantics.
///
///     d ← g + wd·p
///     b ← d                            on the first step
///     b ← μ b + (1 - dampening) d      afterwards
///     u ← d + μ b   (Nesterov)   or   u ← b
///     p ← p - lr·u
///
/// Like PyTorch, weight decay (an L2 term added to the gradient) applies to every parameter,
/// biases and norm parameters included; only the logit scale (`Kind.isNeverDecayed`) is spared. With μ = 0 there is no state and u = d.
public final class SGD: Optimizer {
    public let momentum: Float
    public let dampening: Float
    public let nesterov: Bool
    public let weightDecay: Float
    public var stepCount = 0

    /// Momentum buffer b (absent when μ = 0).
    private let momentumBuffer: Tensor?
    private let count: Int
    /// Ranges of the arena it steps, whether weight decay applies to them, and their learning-rate scale.
    private let segments: [(range: Range<Int>, decays: Bool, learningRateScale: Float)]

    /// - Parameters:
    ///   - arena: the sealed arena the optimizer will step; state buffers get its length.
    ///   - momentum: μ; 0 turns momentum off.
    ///   - dampening: scales the new gradient in the momentum average (not on the first step).
    ///   - nesterov: use the Nesterov look-ahead update; needs μ > 0 and dampening 0, as in PyTorch.
    ///   - weightDecay: L2 coefficient wd, applied to all parameters.
    ///   - groups: the ranges stepped and their learning-rate scales (nil: the whole arena at lr).
    public init(for arena: ParameterArena, momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false, weightDecay: Float = 0,
                groups: [ParameterGroup]? = nil) {
        precondition(arena.isSealed, "SGD: seal the parameter arena before building the optimizer")
        precondition(momentum >= 0 && weightDecay >= 0, "SGD: momentum and weightDecay must be >= 0")
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum needs momentum > 0 and dampening 0")
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.count = arena.count
        self.segments = arena.segments(groups: groups ?? ParameterGroup.all(arena))
        self.momentumBuffer = momentum != 0 ? Tensor(zeros: [arena.count]) : nil
    }

    public var stateBuffers: [(name: String, tensor: Tensor)] {
        momentumBuffer.map { [(name: "momentum", tensor: $0)] } ?? []
    }

    public func step(_ arena: ParameterArena, learningRate: Float) {
        checkArena(arena, stateCount: count)
        stepCount += 1
        let p = arena.parameters.data, g = arena.gradients.data
        let mu = momentum
        for (range, decays, scale) in segments {
            let lr = scale == 1 ? learningRate : learningRate * scale
            let wd = decays ? weightDecay : 0
            guard let b = momentumBuffer?.data else {
                for i in range { p[i] -= lr * (g[i] + wd * p[i]) }
                continue
            }
            let isFirst = stepCount == 1
            let keep = 1 - dampening
            for i in range {
                let d = g[i] + wd * p[i]
                let bi = isFirst ? d : mu * b[i] + keep * d
                b[i] = bi
                let update = nesterov ? d + mu * bi : bi
                p[i] -= lr * update
            }
        }
    }
}
