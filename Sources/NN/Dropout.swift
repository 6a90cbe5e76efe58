import Tensor

/// The key every dropout and drop-path mask of a forward is drawn under: the run's seed, the step,
/// the layer, and the row's sample and view in the *global* batch (issue 20 item 4).
///
/// Masks are a pure function of that key (Philox, counter-based; no generator state is carried
/// between calls), which gives three properties a stateful generator would not:
/// - a step is reproducible, also after a resume (the step index is part of the key);
/// - P ranks draw what one process with the global batch draws: row i of rank r is sample
///   r B + i mod B, view i / B, the row it is in the one-process batch (`Sampler.slots`);
/// - gradient caching's second forward of a chunk draws the masks of its first (`rowOffset`).
///
/// The mask of element j of row (sample s, view v) in layer l at step t is draw j of
/// `RandomStream(seed, .dropout (l, s, v), position: t 2^32)`: a row has fewer than 2^32 elements.
///
/// One key is shared by the layers of a model; it is in training mode only while a training step
/// runs (`train(step:)` .. `infer()`), so evaluation, `contrast embed` and every other forward see
/// the identity.
public final class DropoutKey {
    /// The step whose masks forwards draw; nil: inference, dropout and drop-path are the identity.
    public private(set) var step: Int?
    public private(set) var seed: UInt64 = 0
    /// B of the global-batch layout: rows 0 ..< B of a local batch are view 0 of samples
    /// `firstSample` ..< `firstSample` + B, rows B ..< 2B view 1 of the same. nil: row i is sample i.
    public var rows: (firstSample: Int, samplesPerView: Int)?
    /// The local row the next forward's first row is (gradient caching's chunks start there).
    public var rowOffset = 0
    /// Layers registered so far: each gets its own stream coordinate.
    public private(set) var layerCount = 0

    public init() {}

    /// Forwards draw step `step`'s masks under `seed` until `infer()`.
    public func train(seed: UInt64, step: Int) {
        precondition(step >= 0 && UInt64(step) < 1 << 32, "DropoutKey: step \(step) out of range")
        self.seed = seed
        self.step = step
    }

    /// Forwards are the identity again (no masks).
    public func infer() { step = nil }

    /// A new layer's coordinate in the stream id.
    func register() -> Int {
        defer { layerCount += 1 }
        precondition(layerCount < 1 << 16, "DropoutKey: more than 65536 dropout layers")
        return layerCount
    }

    /// The random stream of `row` in `layer` at the current step.
    func stream(layer: Int, row: Int) -> RandomStream {
        frame()!.stream(layer: layer, row: row)
    }

    /// The key as it is now, for a layer that draws its masks again in backward (`SelfAttention`):
    /// gradient caching moves `rowOffset` between a chunk's forward and its backward. nil in inference.
    func frame() -> Frame? {
        step.map { Frame(seed: seed, step: $0, rows: rows, rowOffset: rowOffset) }
    }

    /// The coordinates a forward drew under.
    struct Frame {
        let seed: UInt64, step: Int
        let rows: (firstSample: Int, samplesPerView: Int)?
        let rowOffset: Int

        func stream(layer: Int, row: Int) -> RandomStream {
            let i = rowOffset + row
            let (sample, view) = rows.map { ($0.firstSample + i % $0.samplesPerView, i / $0.samplesPerView) } ?? (i, 0)
            return RandomStream(seed: seed, stream: RandomStream.id(.dropout, UInt64(layer), UInt64(sample), UInt64(view)),
                                position: UInt64(step) << 32)
        }
    }

    /// A draw below this drops: p 2^32, so P(drop) = p to 2^-32.
    static func threshold(_ probability: Float) -> UInt32 {
        UInt32(min(Double(probability) * 4_294_967_296, 4_294_967_295))
    }
}

/// Inverted dropout (Srivastava et al. 2014): in training y = x m / (1 - p), m ~ Bernoulli(1 - p)
/// per element, from the `DropoutKey`; in inference (or p = 0) y = x, the input itself.
///
/// Shapes: B rows (samples: the key's rows), D elements a row. x, y: B x D. The mask is kept as
/// the factor m / (1 - p) (B x D), so backward is dx = dy m / (1 - p), in place.
public final class Dropout: Layer {
    public let width: Int
    public let probability: Float
    public var inputWidth: Int { width }
    public var outputWidth: Int { width }
    public var computesInputGradient = true
    let key: DropoutKey
    let layer: Int
    private let output = ScratchBuffer()
    /// m / (1 - p) of the last training forward.
    private let factors = ScratchBuffer()
    /// Whether the last forward applied a mask (training, p > 0).
    private var masked = false

    public init(width: Int, probability: Float, key: DropoutKey) {
        precondition(probability >= 0 && probability < 1, "Dropout: probability \(probability) is not in [0, 1)")
        self.width = width
        self.probability = probability
        self.key = key
        layer = key.register()
    }

    /// Whether a forward now would drop anything.
    var active: Bool { probability > 0 && key.step != nil }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        masked = active
        guard masked else { return UnsafeMutablePointer(mutating: input) }
        let n = batch * width, y = output.pointer(count: n), m = factors.pointer(count: n)
        let threshold = DropoutKey.threshold(probability), kept = 1 / (1 - probability)
        for b in 0..<batch {
            let random = key.stream(layer: layer, row: b)
            Kernels.dropoutMask(m + b * width, seed: random.seed, stream: random.stream, position: random.position, count: width,
                                threshold: threshold, kept: kept, input: input + b * width, output: y + b * width)
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        if masked {
            let m = factors.tensor.data
            for i in 0..<(batch * width) { outputGradient[i] *= m[i] }
        }
        return outputGradient
    }
}

/// Stochastic depth (Huang et al. 2016) as drop-path (timm's `DropPath`): a residual branch's
/// output f(x) of a whole sample is dropped with probability p and scaled by 1 / (1 - p) otherwise,
/// in training; the block computes x + y. In inference (or p = 0) y = f(x), the input itself.
///
/// Shapes: B samples, D elements a sample (a block's T D). The factor of sample b is the first
/// draw of its stream in this layer (`DropoutKey`).
public final class DropPath: Layer {
    public let width: Int
    public let probability: Float
    public var inputWidth: Int { width }
    public var outputWidth: Int { width }
    public var computesInputGradient = true
    let key: DropoutKey
    let layer: Int
    private let output = ScratchBuffer()
    /// 0 or 1 / (1 - p) per sample of the last training forward; empty when it masked nothing.
    private(set) var factors: [Float] = []

    public init(width: Int, probability: Float, key: DropoutKey) {
        precondition(probability >= 0 && probability < 1, "DropPath: probability \(probability) is not in [0, 1)")
        self.width = width
        self.probability = probability
        self.key = key
        layer = key.register()
    }

    /// Whether a forward now would drop anything (a rate above 0 in a training step; otherwise y is x).
    var active: Bool { probability > 0 && key.step != nil }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        factors.removeAll(keepingCapacity: true)
        guard active else { return UnsafeMutablePointer(mutating: input) }
        let threshold = DropoutKey.threshold(probability), kept = 1 / (1 - probability)
        let y = output.pointer(count: batch * width)
        for b in 0..<batch {
            var random = key.stream(layer: layer, row: b)
            let factor: Float = random.nextUInt32() >= threshold ? kept : 0
            factors.append(factor)
            for j in 0..<width { y[b * width + j] = input[b * width + j] * factor }
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        for (b, factor) in factors.enumerated() { Kernels.scale(outputGradient + b * width, by: factor, count: width) }
        return outputGradient
    }

    /// Rates rising linearly with depth, 0 for the first of `count` blocks and `rate` for the last
    /// (timm's `torch.linspace(0, drop_path_rate, depth)`): early blocks compute features every later
    /// one needs, so they are dropped least (Huang et al. 2016, "linear decay").
    public static func rates(_ rate: Float, count: Int) -> [Float] {
        count == 1 ? [0] : (0..<count).map { rate * Float($0) / Float(count - 1) }
    }
}
