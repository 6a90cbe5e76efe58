import Tensor

/// Layer-wise Adaptive Rate Scaling (You et al. 2017) as in SimCLR's `lars_optimizer.py`
/// (classic momentum), per parameter tensor (arena slice):
///
///     g' ← g + wd·p                                   (weights only)
///     trust ← η ‖p‖ / ‖g'‖  if ‖p‖ > 0 and ‖g'‖ > 0, else 1   (weights only; 1 otherwise)
///     s ← lr · trust
///     v ← μ v + s g'
///     u ← μ v + s g'  (Nesterov)   or   u ← v
///     p ← p - u
///
/// Slices whose kind `isExcludedFromDecay` (biases, norm parameters) get neither decay nor
/// adaptation: g' = g and trust = 1. Norms are accumulated in Double.
public final class LARS: Optimizer {
    public let momentum: Float
    public let weightDecay: Float
    /// η, the trust coefficient ("eeta" in SimCLR).
    public let trustCoefficient: Float
    public let nesterov: Bool
    public var stepCount = 0

    /// Momentum v, starting at zero (no first-step special case, as in TensorFlow's slots).
    private let velocity: Tensor
    private let count: Int
    private let groups: [ParameterGroup]

    /// - Parameters:
    ///   - arena: the sealed arena the optimizer will step; state buffers get its length.
    ///   - momentum: μ.
    ///   - weightDecay: wd, added to the gradient of weights only.
    ///   - trustCoefficient: η.
    ///   - nesterov: use the Nesterov look-ahead update.
    ///   - groups: the ranges stepped and their learning-rate scales (nil: the whole arena at lr).
    public init(for arena: ParameterArena, momentum: Float = 0.9, weightDecay: Float = 0,
                trustCoefficient: Float = 0.001, nesterov: Bool = false, groups: [ParameterGroup]? = nil) {
        self.groups = groups ?? ParameterGroup.all(arena)
        precondition(arena.isSealed, "LARS: seal the parameter arena before building the optimizer")
        precondition(momentum >= 0 && weightDecay >= 0 && trustCoefficient > 0,
                     "LARS: momentum and weightDecay must be >= 0 and trustCoefficient > 0")
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.trustCoefficient = trustCoefficient
        self.nesterov = nesterov
        self.count = arena.count
        self.velocity = Tensor(zeros: [arena.count])
    }

    public var stateBuffers: [(name: String, tensor: Tensor)] { [(name: "velocity", tensor: velocity)] }

    public func step(_ arena: ParameterArena, learningRate: Float) {
        checkArena(arena, stateCount: count)
        stepCount += 1
        for slice in arena.slices {
            guard let scale = arena.learningRateScale(at: slice.offset, groups: groups) else { continue }
            let learningRate = scale == 1 ? learningRate : learningRate * scale
            let p = arena.parameters(slice), g = arena.gradients(slice), v = velocity.data + slice.offset
            let n = slice.count
            let adapt = !slice.kind.isExcludedFromDecay
            let wd: Float = adapt ? weightDecay : 0
            var scaledRate = learningRate
            if adapt {
                let parameterNorm = Kernels.sumOfSquares(p, count: n).squareRoot()
                var sum = 0.0
                for i in 0..<n {
                    let d = Double(g[i] + wd * p[i])  // the same Float g' the update uses
                    sum += d * d
                }
                let gradientNorm = sum.squareRoot()
                if parameterNorm > 0 && gradientNorm > 0 {
                    scaledRate = Float(Double(learningRate) * Double(trustCoefficient) * parameterNorm / gradientNorm)
                }
            }
            let mu = momentum
            for i in 0..<n {
                let d = g[i] + wd * p[i]
                let vi = mu * v[i] + scaledRate * d
                v[i] = vi
                p[i] -= nesterov ? mu * vi + scaledRate * d : vi
            }
        }
    }
}
