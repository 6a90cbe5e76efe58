import Tensor

/// One step of a multi-scale representation: the pooled input beside what the next stage makes of it.
///
///     y = [ pool(x) | inner(stage(x)) ]        (per row, pooled input first)
///
/// `stage` is the next residual stage, `inner` pools its output (an `AdaptiveAveragePool`) or is
/// the next `MultiScalePool`, so nesting k - 1 of them concatenates the pooled maps of the last k
/// stages, shallowest first. Backward splits dy into its two parts; dx = d pool/dx + d stage/dx.
///
/// Shapes: x: B x (C H W) (the stage's input), y: B x (C G G + inner width).
public final class MultiScalePool: Layer {
    public let pool: AdaptiveAveragePool
    public let stage: Layer
    public let inner: Layer
    public var inputWidth: Int { stage.inputWidth }
    public var outputWidth: Int { pool.outputWidth + inner.outputWidth }
    private let output = ScratchBuffer()
    private let poolGradient = ScratchBuffer()
    private let innerGradient = ScratchBuffer()

    public var computesInputGradient: Bool {
        get { pool.computesInputGradient }
        set { pool.computesInputGradient = newValue; stage.computesInputGradient = newValue }
    }

    /// `pool` must read the stage's input and `inner` its output.
    public init(pool: AdaptiveAveragePool, stage: Layer, inner: Layer) {
        precondition(pool.inputWidth == stage.inputWidth && inner.inputWidth == stage.outputWidth,
                     "MultiScalePool: pool reads \(pool.inputWidth), stage \(stage.inputWidth) -> \(stage.outputWidth), inner reads \(inner.inputWidth)")
        self.pool = pool
        self.stage = stage
        self.inner = inner
        self.inner.computesInputGradient = true
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let a = pool.forward(input, batch: batch)
        let b = inner.forward(stage.forward(input, batch: batch), batch: batch)
        let wa = pool.outputWidth, wb = inner.outputWidth, w = wa + wb
        let y = output.pointer(count: batch * w)
        for r in 0..<batch {
            (y + r * w).update(from: a + r * wa, count: wa)
            (y + r * w + wa).update(from: b + r * wb, count: wb)
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let wa = pool.outputWidth, wb = inner.outputWidth, w = wa + wb
        let da = poolGradient.pointer(count: batch * wa), db = innerGradient.pointer(count: batch * wb)
        for r in 0..<batch {
            (da + r * wa).update(from: outputGradient + r * w, count: wa)
            (db + r * wb).update(from: outputGradient + r * w + wa, count: wb)
        }
        let dStageOutput = inner.backward(db, batch: batch)!
        let dStage = stage.backward(dStageOutput, batch: batch)
        guard computesInputGradient, let dStage, let dPool = pool.backward(da, batch: batch) else { return nil }
        // dx = dStage + dPool into dStage (the stage's gradient, ours to consume): no buffer of its own
        // to stream through. axpy with alpha 1 rounds as the plain sum does.
        Kernels.axpy(dStage, alpha: 1, x: dPool, count: batch * inputWidth)
        return dStage
    }
}
