import Tensor

/// Group normalisation (Wu & He 2018), PyTorch's `nn.GroupNorm`: the C channels of each sample
/// are split into G groups of C/G channels; each (sample, group) is normalised over its
/// (C/G) H W values, y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c], var biased.
/// gamma = 1, beta = 0 at init.
///
/// With `activation: .relu` the ReLU that follows is fused: y = max(GN(x), 0), the bits of this
/// layer then a `ReLU` layer, one pass each way instead of three (the ReLU's copy, its backward
/// mask). The residual block fuses its own add + ReLU after its last normalisation the same way
/// (`forward(_:addingReLU:into:batch:)`).
///
/// Shapes: B batch, C channels, G groups, H x W image. x, y: B x (C H W); gamma, beta: C;
/// mean and 1/std saved per (B, G).
public final class GroupNorm: Layer {
    public let groups: Int, channels: Int, height: Int, width: Int
    public let epsilon: Float
    /// The fused activation after the normalisation (no parameters: exports write it as its own ReLU).
    public let activation: Linear.Activation
    /// 0: x and y are NCHW rows; 8 or 16: oneDNN's blocked layout nChw8c / nChw16c (the blocked
    /// kernels, equal to the NCHW ones to rounding).
    public let block: Int
    public var inputWidth: Int { channels * height * width }
    public var outputWidth: Int { inputWidth }
    public let scale: ParameterSlice
    public let shift: ParameterSlice
    public var computesInputGradient = true
    private let arena: ParameterArena
    /// Internal, not private: finite-difference tests read the fused ReLU's sides (y > 0) from it.
    let output = ScratchBuffer()
    private let means = ScratchBuffer()         // B x G
    private let inverseStd = ScratchBuffer()    // B x G
    private let inputGradient = ScratchBuffer()
    private var savedInput: UnsafePointer<Float>?

    /// Registers gamma and beta (C) in `arena` as `<name>.weight` and `<name>.bias`.
    public init(groups: Int, channels: Int, height: Int, width: Int, epsilon: Float = 1e-5, activation: Linear.Activation = .identity,
                block: Int = 0, name: String, arena: ParameterArena) {
        precondition(groups >= 1 && channels % groups == 0,
                     "GroupNorm \(name): \(channels) channels do not split into \(groups) groups")
        precondition(block == 0 || ((block == 8 || block == 16) && channels % block == 0),
                     "GroupNorm \(name): \(channels) channels do not fill blocks of \(block)")
        self.block = block
        self.groups = groups
        self.channels = channels
        self.height = height
        self.width = width
        self.epsilon = epsilon
        self.activation = activation
        self.arena = arena
        self.scale = arena.allocate(name: "\(name).weight", shape: [channels], kind: .normScale)
        self.shift = arena.allocate(name: "\(name).bias", shape: [channels], kind: .normShift)
    }

    public func initialise() {
        arena.parameters(scale).update(repeating: 1, count: channels)
        arena.parameters(shift).update(repeating: 0, count: channels)
    }

    private var kernelActivation: Kernels.GroupNormActivation { activation == .relu ? .relu : .none }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let y = output.pointer(count: batch * inputWidth)
        forward(input, activation: kernelActivation, residual: nil, into: y, batch: batch)
        return y
    }

    /// y = max(GN(x) + skip, 0) into `y` (the residual block's output; B x (C H W) as `skip`): the
    /// block's last normalisation, its add and its ReLU in one pass. Backward with
    /// `backward(_:throughAddReLU:batch:)`. The layer's own activation is not applied.
    func forward(_ input: UnsafePointer<Float>, addingReLU skip: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
        forward(input, activation: .addReLU, residual: skip, into: y, batch: batch)
    }

    private func forward(_ input: UnsafePointer<Float>, activation: Kernels.GroupNormActivation, residual: UnsafePointer<Float>?,
                         into y: UnsafeMutablePointer<Float>, batch: Int) {
        savedInput = input
        if block > 0 {
            Kernels.groupNormForwardBlocked(y, mean: means.pointer(count: batch * groups), inverseStd: inverseStd.pointer(count: batch * groups),
                                            input: input, gamma: arena.parameters(scale), beta: arena.parameters(shift),
                                            activation: activation, residual: residual,
                                            batch: batch, channels: channels, groups: groups, pixels: height * width, epsilon: epsilon, block: block)
            return
        }
        Kernels.groupNormForward(y, mean: means.pointer(count: batch * groups), inverseStd: inverseStd.pointer(count: batch * groups),
                                 input: input, gamma: arena.parameters(scale), beta: arena.parameters(shift),
                                 activation: activation, residual: residual,
                                 batch: batch, channels: channels, groups: groups, pixels: height * width, epsilon: epsilon)
    }

    /// With x-hat = (x - mean) s and dxh = dy gamma[c], over each (sample, group) of N values:
    /// dgamma[c] += sum dy x-hat; dbeta[c] += sum dy; dx = s/N (N dxh - sum(dxh) - x-hat sum(dxh x-hat)).
    /// With the fused ReLU, dy is first zeroed where y = 0 (in the same pass).
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        backward(outputGradient, activation: kernelActivation, output: nil, batch: batch)
    }

    /// The backward of `forward(_:addingReLU:into:batch:)` given dL/dy and that y: masks dy in place
    /// where y = 0 (leaving the skip path's gradient in `outputGradient`) and returns dL/dx.
    func backward(_ outputGradient: UnsafeMutablePointer<Float>, throughAddReLU y: UnsafePointer<Float>,
                  batch: Int) -> UnsafeMutablePointer<Float>? {
        backward(outputGradient, activation: .addReLU, output: y, batch: batch)
    }

    private func backward(_ outputGradient: UnsafeMutablePointer<Float>, activation: Kernels.GroupNormActivation,
                          output y: UnsafePointer<Float>?, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard let input = savedInput else { preconditionFailure("GroupNorm.backward before forward") }
        let dx: UnsafeMutablePointer<Float>? = computesInputGradient ? inputGradient.pointer(count: batch * inputWidth) : nil
        if block > 0 {
            Kernels.groupNormBackwardBlocked(inputGradient: dx, scaleGradient: arena.gradients(scale), shiftGradient: arena.gradients(shift),
                                             outputGradient: outputGradient, input: input, mean: means.tensor.data, inverseStd: inverseStd.tensor.data,
                                             gamma: arena.parameters(scale), beta: arena.parameters(shift), activation: activation, output: y,
                                             batch: batch, channels: channels, groups: groups, pixels: height * width, block: block)
            return dx
        }
        Kernels.groupNormBackward(inputGradient: dx, scaleGradient: arena.gradients(scale), shiftGradient: arena.gradients(shift),
                                  outputGradient: outputGradient, input: input, mean: means.tensor.data, inverseStd: inverseStd.tensor.data,
                                  gamma: arena.parameters(scale), beta: arena.parameters(shift), activation: activation, output: y,
                                  batch: batch, channels: channels, groups: groups, pixels: height * width)
        return dx
    }
}

extension GroupNorm {
    /// The plain Swift forward the C kernel (`Kernels.groupNormForward`) is tested against: sequential
    /// double sums, so it agrees with the kernel to rounding, not bit for bit.
    public static func forwardReference(
        output y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, inverseStd inv: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
        batch: Int, channels: Int, groups: Int, pixels hw: Int, epsilon: Float
    ) {
        let perGroup = channels / groups, n = perGroup * hw, inputWidth = channels * hw
        for b in 0..<batch {
            for g in 0..<groups {
                let start = b * inputWidth + g * n
                let x = input + start
                var sum = 0.0
                for i in 0..<n { sum += Double(x[i]) }
                let m = Float(sum / Double(n))
                var squares = 0.0
                for i in 0..<n { let d = Double(x[i] - m); squares += d * d }
                let s = 1 / (Float(squares / Double(n)) + epsilon).squareRoot()
                mean[b * groups + g] = m
                inv[b * groups + g] = s
                for cc in 0..<perGroup {
                    let c = g * perGroup + cc
                    let a = s * gamma[c], shiftValue = beta[c] - m * a
                    let xc = x + cc * hw, yc = y + start + cc * hw
                    for i in 0..<hw { yc[i] = xc[i] * a + shiftValue }
                }
            }
        }
    }

    /// The plain Swift backward the C kernel (`Kernels.groupNormBackward`) is tested against.
    public static func backwardReference(
        inputGradient dx: UnsafeMutablePointer<Float>?, scaleGradient dgamma: UnsafeMutablePointer<Float>,
        shiftGradient dbeta: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, inverseStd inv: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
        batch: Int, channels: Int, groups: Int, pixels hw: Int
    ) {
        let perGroup = channels / groups, n = perGroup * hw, inputWidth = channels * hw
        for b in 0..<batch {
            for g in 0..<groups {
                let start = b * inputWidth + g * n
                let m = mean[b * groups + g], s = inv[b * groups + g]
                var sumDxh: Float = 0, sumDxhXh: Float = 0
                for cc in 0..<perGroup {
                    let c = g * perGroup + cc
                    let xc = input + start + cc * hw, dyc = outputGradient + start + cc * hw
                    var sumDy: Float = 0, sumDyXh: Float = 0
                    for i in 0..<hw {
                        let xh = (xc[i] - m) * s
                        sumDy += dyc[i]
                        sumDyXh += dyc[i] * xh
                    }
                    dgamma[c] += sumDyXh
                    dbeta[c] += sumDy
                    sumDxh += sumDy * gamma[c]
                    sumDxhXh += sumDyXh * gamma[c]
                }
                guard let dx else { continue }
                let factor = s / Float(n)
                for cc in 0..<perGroup {
                    let c = g * perGroup + cc
                    let xc = input + start + cc * hw, dyc = outputGradient + start + cc * hw, dxc = dx + start + cc * hw
                    for i in 0..<hw {
                        let xh = (xc[i] - m) * s
                        dxc[i] = factor * (Float(n) * dyc[i] * gamma[c] - sumDxh - xh * sumDxhXh)
                    }
                }
            }
        }
    }
}

/// Mean over each channel's H x W pixels. Shapes: x: B x (C H W), y: B x C.
public final class GlobalAveragePool: Layer {
    public let channels: Int, height: Int, width: Int
    public var inputWidth: Int { channels * height * width }
    public var outputWidth: Int { channels }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    /// 0: x is NCHW rows; 8 or 16: oneDNN's blocked layout (nChw8c / nChw16c). y is B x C either way,
    /// each channel summed in the same order, so both layouts give the same bits.
    public let block: Int

    public init(channels: Int, height: Int, width: Int, block: Int = 0) {
        precondition(block == 0 || channels % block == 0, "GlobalAveragePool: \(channels) channels do not fill blocks of \(block)")
        self.channels = channels
        self.height = height
        self.width = width
        self.block = block
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let hw = height * width, scale = 1 / Float(hw), step = Swift.max(block, 1)
        let y = output.pointer(count: batch * channels)
        for r in 0..<(batch * channels) {
            let x = input + (r / channels) * inputWidth + channelOffset(r % channels, block: block, pixels: hw)
            var sum: Float = 0
            for i in 0..<hw { sum += x[i * step] }
            y[r] = sum * scale
        }
        return y
    }

    /// dx[b, c, h, w] = dy[b, c] / (H W).
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let hw = height * width, scale = 1 / Float(hw), step = Swift.max(block, 1)
        let dx = inputGradient.pointer(count: batch * inputWidth)
        for r in 0..<(batch * channels) {
            let d = dx + (r / channels) * inputWidth + channelOffset(r % channels, block: block, pixels: hw), v = outputGradient[r] * scale
            for i in 0..<hw { d[i * step] = v }
        }
        return dx
    }
}

/// PyTorch's `nn.AdaptiveAvgPool2d((G, G))`: each channel's H x W pixels averaged over a G x G
/// grid of cells, cell (u, v) covering rows [floor(u H / G), ceil((u + 1) H / G)) and columns
/// likewise (cells overlap when G does not divide H). Keeps where a feature is, which a linear
/// probe on the pooled features can use; G = 1 is the global average pool.
/// Shapes: x: B x (C H W), y: B x (C G G), flattened [C, G, G] as PyTorch's `flatten(1)`.
public final class AdaptiveAveragePool: Layer {
    public let channels: Int, height: Int, width: Int, cells: Int
    public var inputWidth: Int { channels * height * width }
    public var outputWidth: Int { channels * cells * cells }
    public var computesInputGradient = true
    /// Row and column ranges of the cells (public: the ONNX export writes them as a pooling matrix).
    public let rows: [Range<Int>], columns: [Range<Int>]
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    /// 0: x is NCHW rows; 8 or 16: oneDNN's blocked layout (nChw8c / nChw16c). y is B x (C G G) either
    /// way, each cell summed in the same order, so both layouts give the same bits.
    public let block: Int

    public init(channels: Int, height: Int, width: Int, cells: Int, block: Int = 0) {
        precondition(cells >= 1 && cells <= height && cells <= width, "AdaptiveAveragePool: \(cells) cells for \(height) x \(width)")
        precondition(block == 0 || channels % block == 0, "AdaptiveAveragePool: \(channels) channels do not fill blocks of \(block)")
        self.block = block
        self.channels = channels
        self.height = height
        self.width = width
        self.cells = cells
        func ranges(_ size: Int) -> [Range<Int>] {
            (0..<cells).map { u in (u * size / cells)..<(((u + 1) * size + cells - 1) / cells) }
        }
        rows = ranges(height)
        columns = ranges(width)
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let hw = height * width, gg = cells * cells, step = Swift.max(block, 1)
        let y = output.pointer(count: batch * outputWidth)
        if block > 0 {
            forwardBlocked(input, into: y, batch: batch)
            return y
        }
        for r in 0..<(batch * channels) {
            let x = input + (r / channels) * inputWidth + channelOffset(r % channels, block: block, pixels: hw), out = y + r * gg
            for u in 0..<cells {
                for v in 0..<cells {
                    var sum: Float = 0
                    for h in rows[u] {
                        for w in columns[v] { sum += x[(h * width + w) * step] }
                    }
                    out[u * cells + v] = sum / Float(rows[u].count * columns[v].count)
                }
            }
        }
        return y
    }

    /// dx[b, c, h, w] = sum over the cells (u, v) covering (h, w) of dy[b, c, u, v] / |cell|.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let hw = height * width, gg = cells * cells, step = Swift.max(block, 1)
        let dx = inputGradient.pointer(count: batch * inputWidth)
        dx.update(repeating: 0, count: batch * inputWidth)
        if block > 0 {
            backwardBlocked(outputGradient, into: dx, batch: batch)
            return dx
        }
        for r in 0..<(batch * channels) {
            let d = dx + (r / channels) * inputWidth + channelOffset(r % channels, block: block, pixels: hw), dy = outputGradient + r * gg
            for u in 0..<cells {
                for v in 0..<cells {
                    let g = dy[u * cells + v] / Float(rows[u].count * columns[v].count)
                    for h in rows[u] {
                        for w in columns[v] { d[(h * width + w) * step] += g }
                    }
                }
            }
        }
        return dx
    }
}

extension AdaptiveAveragePool {
    /// The blocked forward: a block's `block` channels side by side, so each pixel's channels are one
    /// contiguous run (a vector) instead of `block` strided reads. Each cell's sum runs over the same
    /// pixels in the same order as the NCHW loop: the same bits.
    func forwardBlocked(_ input: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, batch: Int) {
        let k = block, hw = height * width, gg = cells * cells
        withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { sums in
            for b in 0..<batch {
                for cb in 0..<(channels / k) {
                    let x = input + b * inputWidth + cb * hw * k, out = y + (b * channels + cb * k) * gg
                    for u in 0..<cells {
                        for v in 0..<cells {
                            for l in 0..<k { sums[l] = 0 }
                            for h in rows[u] {
                                for w in columns[v] {
                                    let pixel = x + (h * width + w) * k
                                    for l in 0..<k { sums[l] += pixel[l] }
                                }
                            }
                            let count = Float(rows[u].count * columns[v].count)
                            for l in 0..<k { out[l * gg + u * cells + v] = sums[l] / count }
                        }
                    }
                }
            }
        }
    }

    /// The blocked backward (dx zeroed by the caller): each pixel gets its cells' shares in the NCHW loop's order.
    func backwardBlocked(_ outputGradient: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, batch: Int) {
        let k = block, hw = height * width, gg = cells * cells
        withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { shares in
            for b in 0..<batch {
                for cb in 0..<(channels / k) {
                    let d = dx + b * inputWidth + cb * hw * k, dy = outputGradient + (b * channels + cb * k) * gg
                    for u in 0..<cells {
                        for v in 0..<cells {
                            let count = Float(rows[u].count * columns[v].count)
                            for l in 0..<k { shares[l] = dy[l * gg + u * cells + v] / count }
                            for h in rows[u] {
                                for w in columns[v] {
                                    let pixel = d + (h * width + w) * k
                                    for l in 0..<k { pixel[l] += shares[l] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where channel c's first pixel sits in one sample of C x `pixels` values: c `pixels` in NCHW
/// (`block` 0, pixels 1 apart), (c / k) `pixels` k + c % k in oneDNN's nChw{k}c (`block` k, pixels k apart).
@inline(__always)
func channelOffset(_ c: Int, block: Int, pixels: Int) -> Int {
    block == 0 ? c * pixels : (c / block) * pixels * block + c % block
}
