import Tensor

/// 2-D convolution, PyTorch's `nn.Conv2d` (square kernel, one stride and padding for both axes),
/// computed as im2col followed by one GEMM per group of images, or, per direction where the layer's
/// shape says so (`backends`, `ConvolutionBackends.chosen`), by oneDNN's blocked direct convolution
/// (`OneDNNConvolution`, reorders from and to these NCHW rows included). With `activationBlock` the
/// layer's x, y and gradients are in oneDNN's blocked layout instead (the CNN keeps its activations
/// so) and every direction runs in oneDNN without reordering them. The im2col path is the oneDNN
/// path's test oracle, and the NCHW layers the blocked ones'.
///
/// Shapes: B batch, C input channels, O output channels, H x W input size, K kernel size,
/// P x Q output size with P = (H + 2 pad - K) / stride + 1 (Q likewise). Rows are NCHW-flattened:
/// x: B x (C H W), y: B x (O P Q), W: O x (C K K) (PyTorch's [O, C, K, K]), b: O.
///
/// Images go through the GEMMs G at a time (G P Q about `groupColumns`, the column matrix within
/// `columnBudget`), their column matrices side by side: one image's P Q columns make a thin GEMM
/// (O = 16 rows, 49 columns at 7 x 7) that runs far below the machine's rate, G of them one that does not. The GEMM's O x (G P Q) output
/// is then copied into the G images' NCHW rows (and dy gathered the other way in backward); for
/// G = 1 (the CNN's first stage) it is the image's row, so the GEMM reads and writes the rows in place.
///
/// im2col and col2im run in C (`Kernels.im2col`, `Kernels.col2im`), all of a group's images in one
/// call; the Swift `im2colReference` and `col2imReference` below are their test oracles.
///
/// Memory: one group's column matrix, (C K K) x (G P Q) floats, reused for every group; backward
/// rebuilds it per group rather than keeping B of them (im2col is a small fraction of the GEMMs,
/// and B copies would be 231 MB for C = 16, K = 3, 28 x 28, B = 512).
public final class Conv2d: Layer {
    public let inChannels: Int, outChannels: Int
    public let kernel: Int, stride: Int, padding: Int
    public let height: Int, width: Int
    public let outputHeight: Int, outputImageWidth: Int
    public var inputWidth: Int { inChannels * height * width }
    public var outputWidth: Int { outChannels * outputHeight * outputImageWidth }
    public let weight: ParameterSlice
    public let bias: ParameterSlice?
    public var computesInputGradient = true
    /// What the forward, dW and dX GEMMs multiply in (see `Linear.computePrecision`).
    public var computePrecision: GEMMPrecision = .fp32
    private let arena: ParameterArena

    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()
    private let columns = ScratchBuffer()          // (C K K) x (G P Q), one group of images
    private let columnGradient = ScratchBuffer()   // (C K K) x (G P Q)
    private let groupOutput = ScratchBuffer()      // O x (G P Q): the GEMM's output, dy gathered in backward
    /// Columns per GEMM the image groups aim at: wide enough for OpenBLAS's kernels to run at rate.
    public static let groupColumns = 2048
    private var savedInput: UnsafePointer<Float>?
    /// Where each direction runs; set at build from the layer's shape (`ConvolutionBackends.chosen`),
    /// so every rank and every run of a model makes the same choice. bf16 compute runs im2col.
    public var backends: ConvolutionBackends {
        get {
            // Blocked activations: only oneDNN reads them (in fp32 whatever `computePrecision` says).
            if activationBlock > 0 { return ConvolutionBackends(forward: .onednn, backwardData: .onednn, backwardWeights: .onednn) }
            // The probe last: a model that chose im2col everywhere never starts oneDNN.
            guard chosenBackends != .im2col, computePrecision == .fp32, OneDNNConvolution.unavailableReason == nil else { return .im2col }
            return chosenBackends
        }
        set { chosenBackends = newValue }
    }
    private var chosenBackends: ConvolutionBackends
    /// oneDNN primitives per batch size (only for directions that run in oneDNN).
    private var convolutions: [Int: OneDNNConvolution] = [:]
    /// The batch sizes oneDNN primitives were made for (tests: the oneDNN path really ran).
    var oneDNNBatches: [Int] { convolutions.keys.sorted() }
    /// The geometry the C im2col / col2im kernels take.
    public let geometry: Kernels.ConvolutionShape
    /// 0: x, y and their gradients are NCHW rows. 8 or 16 (`OneDNNConvolution.blockedActivationBlock`):
    /// they are in oneDNN's blocked layout nChw8c / nChw16c, and every direction runs in oneDNN's
    /// direct kernels without reordering them (an encoder that keeps its activations blocked; bf16
    /// compute then leaves this layer in fp32: im2col cannot read the blocked layout).
    public let activationBlock: Int
    /// The layout of x and dx when it is not `activationBlock`'s: 0 for an encoder's first convolution,
    /// which reads NCHW images and writes blocked maps (the encoder's one layout edge, inside oneDNN's kernel).
    public let inputBlock: Int

    /// Registers W (O x C x K x K) and b (O) in `arena` as `<name>.weight` and `<name>.bias`.
    public init(inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                height: Int, width: Int, bias: Bool = true, activationBlock: Int = 0, inputBlock: Int? = nil, name: String, arena: ParameterArena) {
        let inputBlock = inputBlock ?? activationBlock
        precondition((activationBlock == 0 && inputBlock == 0)
                     || (activationBlock > 0 && OneDNNConvolution.unavailableReason == nil && outChannels % activationBlock == 0
                         && (inputBlock == 0 || inChannels % inputBlock == 0)),
                     "Conv2d \(name): blocked activations (blocks \(activationBlock), input \(inputBlock)) need oneDNN and channels a multiple of the block")
        self.activationBlock = activationBlock
        self.inputBlock = inputBlock
        precondition(inChannels >= 1 && outChannels >= 1 && kernel >= 1 && stride >= 1 && padding >= 0,
                     "Conv2d \(name): channels, kernel and stride must be at least 1, padding at least 0")
        precondition(height + 2 * padding >= kernel && width + 2 * padding >= kernel,
                     "Conv2d \(name): kernel \(kernel) larger than the padded \(height) x \(width) input")
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.height = height
        self.width = width
        self.outputHeight = (height + 2 * padding - kernel) / stride + 1
        self.outputImageWidth = (width + 2 * padding - kernel) / stride + 1
        self.arena = arena
        self.geometry = Kernels.ConvolutionShape(channels: inChannels, height: height, width: width,
                                              kernel: kernel, stride: stride, padding: padding)
        self.chosenBackends = ConvolutionBackends.chosen(inChannels: inChannels, outChannels: outChannels, kernel: kernel, stride: stride,
                                                         padding: padding, height: height, width: width)
        self.weight = arena.allocate(name: "\(name).weight", shape: [outChannels, inChannels, kernel, kernel], kind: .weight)
        self.bias = bias ? arena.allocate(name: "\(name).bias", shape: [outChannels], kind: .bias) : nil
    }

    /// PyTorch's default: W, b ~ U(-1/sqrt(C K K), 1/sqrt(C K K)) (kaiming_uniform with a = sqrt(5)).
    /// Draws come from the counter RNG stream (seed, initialisation, `stream`): weights first, then bias.
    public func initialise(seed: UInt64, stream: UInt64) {
        var random = RandomStream(seed: seed, stream: RandomStream.id(.initialisation, stream))
        let bound = 1 / Float(inChannels * kernel * kernel).squareRoot()
        let w = arena.parameters(weight)
        for i in 0..<weight.count { w[i] = random.nextUniform(-bound, bound) }
        if let bias {
            let b = arena.parameters(bias)
            for i in 0..<bias.count { b[i] = random.nextUniform(-bound, bound) }
        }
    }

    /// Multiply-adds of one forward per image (the backward does twice as many, once without dX).
    public var multiplyAddsPerImage: Int { outChannels * inChannels * kernel * kernel * outputHeight * outputImageWidth }

    /// Floats of column matrix one group may fill: 512 KB, so im2col's output is still in a 1 MB L2
    /// when the GEMM reads it (and W^T dY's when col2im reads it). Unbounded, the CNN's first stage
    /// wrote 0.9 MB column matrices that went out to L3 between the two; measured on the AMD EPYC
    /// (Zen 4, 1 MB L2) of docs/benchmarks.md, 512 KB took less CPU time a step than 256 KB or no bound.
    public static let columnBudget = 131_072

    /// G, the images per GEMM for a batch of `batch`.
    func groupSize(batch: Int) -> Int {
        let pq = outputHeight * outputImageWidth, ckk = inChannels * kernel * kernel
        return max(1, min(batch, Self.groupColumns / pq, Self.columnBudget / (ckk * pq)))
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        savedInput = input
        let y = output.pointer(count: batch * outputWidth)
        let w = arena.parameters(weight)
        if backends.forward == .onednn {
            GEMMRecording.note(im2colGEMMs(batch: batch, forward: true))
            convolution(batch: batch).forward(output: y, input: input, weight: w, bias: bias.map { UnsafePointer(arena.parameters($0)) })
            return y
        }
        let ckk = inChannels * kernel * kernel, pq = outputHeight * outputImageWidth, group = groupSize(batch: batch)
        let cols = columns.pointer(count: ckk * group * pq)
        let yGroup = groupOutput.pointer(count: outChannels * group * pq)
        for first in Swift.stride(from: 0, to: batch, by: group) {
            let g = min(group, batch - first), ld = g * pq
            Kernels.im2col(cols, images: input + first * inputWidth, count: g, columnStride: ld, shape: geometry)
            // Y (O x G PQ) = W (O x CKK) cols (CKK x G PQ), then image i's rows are Y's columns i PQ ..< (i + 1) PQ.
            // For one image Y is its NCHW row already: the GEMM writes there, no copy.
            gemm(transposeA: false, transposeB: false, m: outChannels, n: ld, k: ckk,
                 a: w, lda: ckk, b: cols, ldb: ld, c: g == 1 ? y + first * outputWidth : yGroup, ldc: ld, precision: computePrecision)
            if g > 1 {
                for i in 0..<g {
                    for o in 0..<outChannels {
                        (y + (first + i) * outputWidth + o * pq).update(from: yGroup + o * ld + i * pq, count: pq)
                    }
                }
            }
        }
        if let bias {
            let bv = arena.parameters(bias)
            for b in 0..<batch {
                for o in 0..<outChannels {
                    let row = y + b * outputWidth + o * pq, v = bv[o]
                    for i in 0..<pq { row[i] += v }
                }
            }
        }
        return y
    }

    /// db += sum over (B, P, Q) of dy; dW += dy_b cols_b^T; dx_b = col2im(W^T dy_b). Each of
    /// backward-weights (with db) and backward-data runs in its own backend (`backends`).
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard let x = savedInput else { preconditionFailure("Conv2d.backward before forward") }
        let dx: UnsafeMutablePointer<Float>? = computesInputGradient ? inputGradient.pointer(count: batch * inputWidth) : nil
        let weightsByIm2col = backends.backwardWeights == .im2col, dataByIm2col = backends.backwardData == .im2col
        if weightsByIm2col || (dataByIm2col && dx != nil) {
            backwardIm2col(outputGradient, input: x, batch: batch, weights: weightsByIm2col, inputGradient: dataByIm2col ? dx : nil)
        }
        GEMMRecording.note(im2colGEMMs(batch: batch, backwardWeights: !weightsByIm2col, backwardData: !dataByIm2col && dx != nil))
        if !weightsByIm2col {
            // Both directions in oneDNN: one call, so dy is reordered to the blocked layout once.
            convolution(batch: batch).backward(inputGradient: dataByIm2col ? nil : dx, weightGradient: arena.gradients(weight),
                                               biasGradient: bias.map { arena.gradients($0) }, outputGradient: outputGradient,
                                               input: x, weight: arena.parameters(weight))
        } else if let dx, !dataByIm2col {
            convolution(batch: batch).backwardData(inputGradient: dx, outputGradient: outputGradient, weight: arena.parameters(weight))
        }
        return dx
    }

    /// The im2col + GEMM backward: with `weights`, db and dW (dW += dY cols^T); with `dx`, dx = col2im(W^T dY).
    /// One pass over the image groups serves both (dy is gathered once per group). Public for `contrast bench conv`.
    public func backwardIm2col(_ outputGradient: UnsafePointer<Float>, input x: UnsafePointer<Float>, batch: Int,
                        weights: Bool, inputGradient dx: UnsafeMutablePointer<Float>?) {
        let ckk = inChannels * kernel * kernel, pq = outputHeight * outputImageWidth
        if weights, let bias {
            let db = arena.gradients(bias)
            for b in 0..<batch {
                for o in 0..<outChannels {
                    let row = outputGradient + b * outputWidth + o * pq
                    var sum: Float = 0
                    for i in 0..<pq { sum += row[i] }
                    db[o] += sum
                }
            }
        }
        let group = groupSize(batch: batch)
        let cols: UnsafeMutablePointer<Float>? = weights ? columns.pointer(count: ckk * group * pq) : nil
        let dyGroup = groupOutput.pointer(count: outChannels * group * pq)
        let dcols: UnsafeMutablePointer<Float>? = dx != nil ? columnGradient.pointer(count: ckk * group * pq) : nil
        let w = arena.parameters(weight), dw = arena.gradients(weight)
        for first in Swift.stride(from: 0, to: batch, by: group) {
            let g = min(group, batch - first), ld = g * pq
            // One image's dy row is dY (O x PQ) already: no gathering copy.
            let dY = g == 1 ? UnsafePointer(outputGradient + first * outputWidth) : UnsafePointer(dyGroup)
            if g > 1 {
                for i in 0..<g {
                    for o in 0..<outChannels {
                        (dyGroup + o * ld + i * pq).update(from: outputGradient + (first + i) * outputWidth + o * pq, count: pq)
                    }
                }
            }
            if let cols {
                Kernels.im2col(cols, images: x + first * inputWidth, count: g, columnStride: ld, shape: geometry)
                // dW (O x CKK) += dY (O x G PQ) cols^T (G PQ x CKK)
                gemm(transposeA: false, transposeB: true, m: outChannels, n: ckk, k: ld,
                     a: dY, lda: ld, b: cols, ldb: ld, beta: 1, c: dw, ldc: ckk, precision: computePrecision)
            }
            guard let dcols, let dx else { continue }
            // dcols (CKK x G PQ) = W^T (CKK x O) dY (O x G PQ)
            gemm(transposeA: true, transposeB: false, m: ckk, n: ld, k: outChannels,
                 a: w, lda: ckk, b: dY, ldb: ld, c: dcols, ldc: ld, precision: computePrecision)
            let images = dx + first * inputWidth
            images.update(repeating: 0, count: g * inputWidth)
            Kernels.col2im(images, columns: dcols, count: g, columnStride: ld, shape: geometry)
        }
    }

    /// The GEMMs the im2col path would call for the directions oneDNN runs instead (per image
    /// group, as `forward` and `backwardIm2col` split them), for `bench step`'s GEMM account.
    func im2colGEMMs(batch: Int, forward: Bool = false, backwardWeights: Bool = false, backwardData: Bool = false) -> [GEMMCall] {
        let ckk = inChannels * kernel * kernel, pq = outputHeight * outputImageWidth, group = groupSize(batch: batch)
        var calls: [GEMMCall] = []
        for first in Swift.stride(from: 0, to: batch, by: group) {
            let ld = min(group, batch - first) * pq
            if forward { calls.append(GEMMCall(m: outChannels, n: ld, k: ckk, transposeA: false, transposeB: false)) }
            if backwardWeights {
                calls.append(GEMMCall(m: outChannels, n: ckk, k: ld, transposeA: false, transposeB: true, accumulates: true))
            }
            if backwardData { calls.append(GEMMCall(m: ckk, n: ld, k: outChannels, transposeA: true, transposeB: false)) }
        }
        return calls
    }

    /// This layer's oneDNN primitives for batches of `batch` (created on a batch's first call, then kept:
    /// a run sees the training batch and at most a few evaluation batch sizes). Blocked layout: oneDNN's
    /// direct kernels on nChw16c (8c on AVX2) with reorders from and to the layer's NCHW rows; on plain
    /// NCHW oneDNN only has its own im2col + GEMM, slower than this file's (`contrast bench conv`).
    func convolution(batch: Int) -> OneDNNConvolution {
        if let made = convolutions[batch] { return made }
        let shape = OneDNNConvolution.Shape(batch: batch, inChannels: inChannels, outChannels: outChannels, height: height, width: width,
                                            kernel: kernel, stride: stride, padding: padding, bias: bias != nil)
        do {
            let made = try OneDNNConvolution(shape, layout: .blocked, activationBlock: activationBlock, inputBlock: inputBlock)
            convolutions[batch] = made
            return made
        } catch {
            preconditionFailure("Conv2d: \(error) (oneDNN was chosen for this layer because OneDNNConvolution.unavailableReason was nil)")
        }
    }

    /// The output columns q whose input column v = q stride - pad + j lies inside the image:
    /// q in [lower, upper), so the inner loops of im2col and col2im need no bounds test.
    @inline(__always)
    func validColumns(kernelColumn j: Int) -> (lower: Int, upper: Int) {
        // v >= 0  <=>  q >= ceil((pad - j) / stride);  v < W  <=>  q <= floor((W - 1 + pad - j) / stride).
        let lowerNumerator = padding - j
        let lower = lowerNumerator <= 0 ? 0 : (lowerNumerator + stride - 1) / stride
        let upperNumerator = width - 1 + padding - j
        let upper = upperNumerator < 0 ? 0 : min(outputImageWidth, upperNumerator / stride + 1)
        return (lower, max(lower, upper))
    }

    /// cols[(c K + i) K + j, p Q + q] = x[c, p stride - pad + i, q stride - pad + j], 0 outside the image;
    /// rows of `columnStride` floats (P Q for one image, G P Q when images sit side by side).
    /// The plain Swift oracle of `Kernels.im2col` (the layer runs the C kernel, tested equal to this bit for bit).
    func im2colReference(_ cols: UnsafeMutablePointer<Float>, image x: UnsafePointer<Float>, columnStride: Int) {
        let pCount = outputHeight, qCount = outputImageWidth, pq = columnStride
        var row = 0
        for c in 0..<inChannels {
            let channel = x + c * height * width
            for i in 0..<kernel {
                for j in 0..<kernel {
                    let out = cols + row * pq
                    let (lower, upper) = validColumns(kernelColumn: j)
                    for p in 0..<pCount {
                        let h = p * stride - padding + i
                        let line = out + p * qCount
                        guard h >= 0 && h < height else { line.update(repeating: 0, count: qCount); continue }
                        if lower > 0 { line.update(repeating: 0, count: lower) }
                        if upper < qCount { (line + upper).update(repeating: 0, count: qCount - upper) }
                        guard upper > lower else { continue }
                        let source = channel + h * width + lower * stride - padding + j
                        if stride == 1 {
                            (line + lower).update(from: source, count: upper - lower)
                        } else {
                            for q in 0..<(upper - lower) { line[lower + q] = source[q * stride] }
                        }
                    }
                    row += 1
                }
            }
        }
    }

    /// The adjoint of im2col: adds every column entry back into the pixel it was copied from.
    /// The plain Swift oracle of `Kernels.col2im`.
    func col2imReference(_ x: UnsafeMutablePointer<Float>, columns cols: UnsafePointer<Float>, columnStride: Int) {
        let pCount = outputHeight, qCount = outputImageWidth, pq = columnStride
        var row = 0
        for c in 0..<inChannels {
            let channel = x + c * height * width
            for i in 0..<kernel {
                for j in 0..<kernel {
                    let from = cols + row * pq
                    let (lower, upper) = validColumns(kernelColumn: j)
                    for p in 0..<pCount {
                        let h = p * stride - padding + i
                        guard h >= 0 && h < height && upper > lower else { continue }
                        let target = channel + h * width + lower * stride - padding + j, line = from + p * qCount + lower
                        if stride == 1 {
                            for q in 0..<(upper - lower) { target[q] += line[q] }
                        } else {
                            for q in 0..<(upper - lower) { target[q * stride] += line[q] }
                        }
                    }
                    row += 1
                }
            }
        }
    }
}

extension Conv2d {
    /// The plain six-loop convolution the im2col path is tested against (accumulates in Double).
    /// Shapes as for `Conv2d`; `bias` may be nil.
    public static func forwardReference(
        output y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
        weight w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int,
        kernel: Int, stride: Int, padding: Int
    ) {
        let pCount = (height + 2 * padding - kernel) / stride + 1, qCount = (width + 2 * padding - kernel) / stride + 1
        for b in 0..<batch {
            for o in 0..<outChannels {
                for p in 0..<pCount {
                    for q in 0..<qCount {
                        var sum = Double(bias?[o] ?? 0)
                        for c in 0..<inChannels {
                            for i in 0..<kernel {
                                for j in 0..<kernel {
                                    let h = p * stride - padding + i, v = q * stride - padding + j
                                    guard h >= 0 && h < height && v >= 0 && v < width else { continue }
                                    sum += Double(x[((b * inChannels + c) * height + h) * width + v])
                                        * Double(w[((o * inChannels + c) * kernel + i) * kernel + j])
                                }
                            }
                        }
                        y[((b * outChannels + o) * pCount + p) * qCount + q] = Float(sum)
                    }
                }
            }
        }
    }

    /// The plain backward of `forwardReference`: adds into dx, dw and db (db may be nil).
    public static func backwardReference(
        inputGradient dx: UnsafeMutablePointer<Float>, weightGradient dw: UnsafeMutablePointer<Float>,
        biasGradient db: UnsafeMutablePointer<Float>?, outputGradient dy: UnsafePointer<Float>,
        input x: UnsafePointer<Float>, weight w: UnsafePointer<Float>,
        batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int,
        kernel: Int, stride: Int, padding: Int
    ) {
        let pCount = (height + 2 * padding - kernel) / stride + 1, qCount = (width + 2 * padding - kernel) / stride + 1
        for b in 0..<batch {
            for o in 0..<outChannels {
                for p in 0..<pCount {
                    for q in 0..<qCount {
                        let g = dy[((b * outChannels + o) * pCount + p) * qCount + q]
                        db?[o] += g
                        for c in 0..<inChannels {
                            for i in 0..<kernel {
                                for j in 0..<kernel {
                                    let h = p * stride - padding + i, v = q * stride - padding + j
                                    guard h >= 0 && h < height && v >= 0 && v < width else { continue }
                                    let xi = ((b * inChannels + c) * height + h) * width + v
                                    let wi = ((o * inChannels + c) * kernel + i) * kernel + j
                                    dw[wi] += g * x[xi]
                                    dx[xi] += g * w[wi]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Which implementation runs a convolution direction: contrast's im2col + GEMM (`Conv2d`) or
/// oneDNN's blocked direct convolution, reordering from and to the layer's NCHW rows (`OneDNNConvolution`).
public enum ConvolutionBackend: String, Sendable, CaseIterable {
    case im2col, onednn
}

/// The backend of each direction of one convolution layer.
public struct ConvolutionBackends: Equatable, Sendable, CustomStringConvertible {
    public var forward: ConvolutionBackend
    public var backwardData: ConvolutionBackend
    public var backwardWeights: ConvolutionBackend

    public init(forward: ConvolutionBackend, backwardData: ConvolutionBackend, backwardWeights: ConvolutionBackend) {
        (self.forward, self.backwardData, self.backwardWeights) = (forward, backwardData, backwardWeights)
    }

    public static let im2col = ConvolutionBackends(forward: .im2col, backwardData: .im2col, backwardWeights: .im2col)
    public static let onednn = ConvolutionBackends(forward: .onednn, backwardData: .onednn, backwardWeights: .onednn)

    public var description: String { "forward \(forward.rawValue), backward-data \(backwardData.rawValue), backward-weights \(backwardWeights.rawValue)" }

    /// The backends a layer of this shape uses: a fixed rule from `contrast bench conv`'s figures
    /// (docs/benchmarks.md, "CNN step speed"), never a timing at run time, so every rank and every
    /// run (and a resumed one) computes the same way. oneDNN's blocked direct kernels, reorders
    /// included, beat im2col + GEMM on AVX-512 and AVX2 for
    /// - 3x3 with at least 16 input channels, forward and backward-data (1.3-4x on AVX-512);
    /// - the same backward-weights up to 128 input channels (above, AVX2 falls back to oneDNN's
    ///   gemm kernel, 2-8x slower than im2col, and AVX-512 loses at 256 -> 512);
    /// - the 7x7 stem on 3 channels, forward and backward-weights (its backward-data is never run).
    /// 1x1 (the reorders cost more than the GEMM saves at 28x28 and 14x14) and the 3x3 stem on 1 or 3
    /// channels (AVX2's kernels for C < 8 are slower) stay on im2col, as does every shape not measured.
    public static func chosen(inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int,
                              height: Int, width: Int) -> ConvolutionBackends {
        if kernel == 3 && inChannels >= 16 {
            return ConvolutionBackends(forward: .onednn, backwardData: .onednn, backwardWeights: inChannels <= 128 ? .onednn : .im2col)
        }
        if kernel == 7 && inChannels == 3 && stride == 2 {
            return ConvolutionBackends(forward: .onednn, backwardData: .im2col, backwardWeights: .onednn)
        }
        return .im2col
    }
}
