import Tensor

/// ViT's patch embedding (Dosovitskiy et al. 2021): the image cut into non-overlapping p x p
/// patches, each mapped to a D-wide token by one Linear, which is `nn.Conv2d(C, D, p, stride=p)`
/// followed by flatten(2).transpose(1, 2). With stride = kernel the convolution's im2col is a
/// reshape, so the layer gathers the patches into rows and runs one GEMM.
///
/// Shapes: B batch, C channels, H x W image, p patch, N = (H/p)(W/p) patches (row-major over the
/// patch grid), D width. x: B x (C H W) NCHW, y: B x (N D); W: D x (C p p) (PyTorch's [D, C, p, p]), b: D.
public final class PatchEmbedding: Layer {
    public let channels: Int, height: Int, imageWidth: Int, patch: Int, width: Int
    public var patchCount: Int { (height / patch) * (imageWidth / patch) }
    public var inputWidth: Int { channels * height * imageWidth }
    public var outputWidth: Int { patchCount * width }
    public let weight: ParameterSlice
    public let bias: ParameterSlice
    public var computesInputGradient = true
    public var computePrecision: GEMMPrecision = .fp32
    private let arena: ParameterArena
    private let patches = ScratchBuffer()       // (B N) x (C p p)
    private let patchGradient = ScratchBuffer() // (B N) x (C p p)
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    /// Registers `<name>.proj.weight` (D x C x p x p) and `<name>.proj.bias` (D).
    public init(channels: Int, height: Int, width imageWidth: Int, patch: Int, width: Int, name: String, arena: ParameterArena) {
        precondition(patch >= 1 && height % patch == 0 && imageWidth % patch == 0,
                     "PatchEmbedding \(name): patch \(patch) must divide the \(height) x \(imageWidth) image")
        self.channels = channels
        self.height = height
        self.imageWidth = imageWidth
        self.patch = patch
        self.width = width
        self.arena = arena
        weight = arena.allocate(name: "\(name).proj.weight", shape: [width, channels, patch, patch], kind: .weight)
        bias = arena.allocate(name: "\(name).proj.bias", shape: [width], kind: .bias)
    }

    /// Conv2d's PyTorch default: W, b ~ U(-1/sqrt(C p p), 1/sqrt(C p p)), weights then bias from stream `stream`.
    public func initialise(seed: UInt64, stream: UInt64) {
        var random = RandomStream(seed: seed, stream: RandomStream.id(.initialisation, stream))
        let bound = 1 / Float(channels * patch * patch).squareRoot()
        let w = arena.parameters(weight), b = arena.parameters(bias)
        for i in 0..<weight.count { w[i] = random.nextUniform(-bound, bound) }
        for i in 0..<bias.count { b[i] = random.nextUniform(-bound, bound) }
    }

    /// Visits every patch line: `body(offset in the images, offset in the patch rows)`, one for each
    /// of the p pixels a line of a patch has. Row (b, n) of the patch matrix holds patch n's C p p
    /// pixels in [C, p, p] order (the weight's).
    @inline(__always)
    private func forEachPatchLine(batch: Int, _ body: (Int, Int) -> Void) {
        let p = patch, columnsOfPatches = imageWidth / p, pixels = height * imageWidth, n = patchCount
        for b in 0..<batch {
            for patchIndex in 0..<n {
                let top = (patchIndex / columnsOfPatches) * p, left = (patchIndex % columnsOfPatches) * p
                var row = (b * n + patchIndex) * channels * p * p
                for c in 0..<channels {
                    for u in 0..<p {
                        body(b * channels * pixels + c * pixels + (top + u) * imageWidth + left, row)
                        row += p
                    }
                }
            }
        }
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let k = channels * patch * patch, rows = batch * patchCount
        let columns = patches.pointer(count: rows * k)
        forEachPatchLine(batch: batch) { pixel, row in (columns + row).update(from: input + pixel, count: patch) }
        let y = output.pointer(count: rows * width)
        gemm(transposeA: false, transposeB: true, m: rows, n: width, k: k, a: columns, lda: k,
             b: arena.parameters(weight), ldb: k, c: y, ldc: width, precision: computePrecision)
        Kernels.addBiasRows(y, bias: arena.parameters(bias), rows: rows, columns: width)
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let k = channels * patch * patch, rows = batch * patchCount
        let dy = outputGradient
        Kernels.biasGradient(arena.gradients(bias), outputGradient: dy, rows: rows, columns: width)
        gemm(transposeA: true, transposeB: false, m: width, n: k, k: rows, a: dy, lda: width, b: patches.tensor.data, ldb: k,
             beta: 1, c: arena.gradients(weight), ldc: k, precision: computePrecision)
        guard computesInputGradient else { return nil }
        let dColumns = patchGradient.pointer(count: rows * k)
        gemm(transposeA: false, transposeB: false, m: rows, n: k, k: width, a: dy, lda: width, b: arena.parameters(weight), ldb: k,
             c: dColumns, ldc: k, precision: computePrecision)
        let dx = inputGradient.pointer(count: batch * inputWidth)
        // Patches do not overlap (stride = patch): each pixel gets exactly one patch's gradient.
        forEachPatchLine(batch: batch) { pixel, row in (dx + pixel).update(from: dColumns + row, count: patch) }
        return dx
    }
}

/// A learned [CLS] token put before the N tokens (optional), and a learned position embedding
/// added to every token: y_0 = cls + pos_0, y_{1+n} = x_n + pos_{1+n} (without [CLS]: y_n = x_n + pos_n).
///
/// Shapes: B batch, N tokens in, T = N + 1 (or N) out, D width. x: B x (N D), y: B x (T D);
/// cls: [1, 1, D], pos: [1, T, D] (timm's `cls_token` and `pos_embed`).
public final class PositionEmbedding: Layer {
    public let tokens: Int, width: Int
    public let classToken: ParameterSlice?
    public let positions: ParameterSlice
    public var inputWidth: Int { (tokens - (classToken == nil ? 0 : 1)) * width }
    public var outputWidth: Int { tokens * width }
    public var computesInputGradient = true
    private let arena: ParameterArena
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    /// `inputTokens` N; registers `<name>.cls_token` (when `classToken`) and `<name>.pos_embed`.
    public init(inputTokens: Int, width: Int, classToken: Bool, name: String, arena: ParameterArena) {
        self.tokens = inputTokens + (classToken ? 1 : 0)
        self.width = width
        self.arena = arena
        self.classToken = classToken ? arena.allocate(name: "\(name).cls_token", shape: [1, 1, width], kind: .embedding) : nil
        positions = arena.allocate(name: "\(name).pos_embed", shape: [1, tokens, width], kind: .embedding)
    }

    /// timm's initialisation: N(0, 0.02^2) for both (timm truncates at +-2, i.e. 100 standard deviations).
    public func initialise(seed: UInt64, stream: UInt64) {
        var random = RandomStream(seed: seed, stream: RandomStream.id(.initialisation, stream))
        for slice in [classToken, positions].compactMap({ $0 }) {
            let values = arena.parameters(slice)
            for i in 0..<slice.count { values[i] = 0.02 * random.nextNormal() }
        }
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let y = output.pointer(count: batch * outputWidth)
        let pos = arena.parameters(positions), first = classToken == nil ? 0 : 1
        for b in 0..<batch {
            let row = y + b * outputWidth
            if let classToken { row.update(from: arena.parameters(classToken), count: width) }
            (row + first * width).update(from: input + b * inputWidth, count: inputWidth)
            Kernels.axpy(row, alpha: 1, x: pos, count: outputWidth)
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let dPos = arena.gradients(positions)
        for b in 0..<batch {
            let row = outputGradient + b * outputWidth
            Kernels.axpy(dPos, alpha: 1, x: row, count: outputWidth)
            if let classToken { Kernels.axpy(arena.gradients(classToken), alpha: 1, x: row, count: width) }
        }
        guard computesInputGradient else { return nil }
        let dx = inputGradient.pointer(count: batch * inputWidth), first = classToken == nil ? 0 : 1
        for b in 0..<batch { (dx + b * inputWidth).update(from: outputGradient + b * outputWidth + first * width, count: inputWidth) }
        return dx
    }
}

/// A token-wise layer applied to each of T tokens: B x (T I) in, B x (T O) out, the inner layer
/// seeing B T rows (the encoder's final LayerNorm).
public final class PerToken: Layer {
    public let inner: Layer
    public let tokens: Int
    public var inputWidth: Int { tokens * inner.inputWidth }
    public var outputWidth: Int { tokens * inner.outputWidth }
    public var computesInputGradient: Bool {
        get { inner.computesInputGradient }
        set { inner.computesInputGradient = newValue }
    }

    public init(_ inner: Layer, tokens: Int) {
        self.inner = inner
        self.tokens = tokens
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        inner.forward(input, batch: batch * tokens)
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        inner.backward(outputGradient, batch: batch * tokens)
    }
}

/// The sequence's summary: the [CLS] token's row (token 0) or the mean over the tokens.
/// Shapes: B x (T D) in, B x D out.
public final class TokenPool: Layer {
    public enum Mode: String, Sendable { case classToken = "cls", mean }
    public let tokens: Int, width: Int
    public let mode: Mode
    public var inputWidth: Int { tokens * width }
    public var outputWidth: Int { width }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    public init(tokens: Int, width: Int, mode: Mode) {
        self.tokens = tokens
        self.width = width
        self.mode = mode
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let y = output.pointer(count: batch * width)
        for b in 0..<batch {
            let row = y + b * width, x = input + b * inputWidth
            switch mode {
            case .classToken: row.update(from: x, count: width)
            case .mean:
                row.update(repeating: 0, count: width)
                for t in 0..<tokens { Kernels.axpy(row, alpha: 1, x: x + t * width, count: width) }
                Kernels.scale(row, by: 1 / Float(tokens), count: width)
            }
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let dx = inputGradient.pointer(count: batch * inputWidth)
        for b in 0..<batch {
            let dy = outputGradient + b * width, row = dx + b * inputWidth
            switch mode {
            case .classToken:
                row.update(repeating: 0, count: inputWidth)
                row.update(from: dy, count: width)
            case .mean:
                let share = 1 / Float(tokens)
                for t in 0..<tokens { for c in 0..<width { row[t * width + c] = dy[c] * share } }
            }
        }
        return dx
    }
}

/// The Vision Transformer encoder.
public enum VisionTransformer {
    /// An encoder's shape: the image, the patches and the Transformer.
    public struct Shape: Sendable, Equatable {
        public var channels: Int, height: Int, width: Int
        public var patch: Int
        /// D, the token width.
        public var dim: Int
        /// Transformer blocks.
        public var depth: Int
        public var heads: Int
        /// The MLP's width is mlpRatio D.
        public var mlpRatio: Int
        public var pool: TokenPool.Mode
        public var attention: SelfAttention.Mode
        /// Dropout in every block (TransformerBlock), training only.
        public var dropout: Float
        /// Dropout of the attention probabilities in every block, training only.
        public var attentionDropout: Float
        /// Drop-path of the last block's branches, rising linearly from 0 at the first (`DropPath.rates`).
        public var dropPath: Float

        public init(channels: Int = 1, height: Int, width: Int, patch: Int, dim: Int, depth: Int, heads: Int, mlpRatio: Int = 4,
                    pool: TokenPool.Mode = .classToken, attention: SelfAttention.Mode = .plain, dropout: Float = 0,
                    attentionDropout: Float = 0, dropPath: Float = 0) {
            self.channels = channels
            self.height = height
            self.width = width
            self.patch = patch
            self.dim = dim
            self.depth = depth
            self.heads = heads
            self.mlpRatio = mlpRatio
            self.pool = pool
            self.attention = attention
            self.dropout = dropout
            self.attentionDropout = attentionDropout
            self.dropPath = dropPath
        }

        /// T: the patches, and the [CLS] token when pooling reads it.
        public var tokens: Int { (height / patch) * (width / patch) + (pool == .classToken ? 1 : 0) }
    }

    /// patch embedding -> [CLS] (pool cls) and position embedding -> `depth` pre-LN blocks -> LayerNorm
    /// -> pool ([CLS] or mean) -> Linear to `representation` (0: none, h is the pooled D-wide token).
    /// Names (timm's VisionTransformer under `name`): patch_embed.proj, cls_token, pos_embed,
    /// blocks.<i>.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, then fc.
    /// Input: B x (C H W), output: B x representation (or D).
    /// Dropout and drop-path masks are drawn under `key`.
    public static func make(_ shape: Shape, representation: Int, key: DropoutKey = DropoutKey(), name: String, arena: ParameterArena) -> Sequential {
        let d = shape.dim, t = shape.tokens
        let patches = PatchEmbedding(channels: shape.channels, height: shape.height, width: shape.width, patch: shape.patch, width: d,
                                     name: "\(name).patch_embed", arena: arena)
        var layers: [Layer] = [
            patches,
            PositionEmbedding(inputTokens: patches.patchCount, width: d, classToken: shape.pool == .classToken, name: name, arena: arena),
        ]
        let dropPaths = DropPath.rates(shape.dropPath, count: shape.depth)
        for i in 0..<shape.depth {
            layers.append(TransformerBlock(tokens: t, width: d, heads: shape.heads, mlpWidth: shape.mlpRatio * d, placement: .pre,
                                           attention: shape.attention, epsilon: 1e-6, dropout: shape.dropout,
                                           attentionDropout: shape.attentionDropout, dropPath: dropPaths[i],
                                           key: key, name: "\(name).blocks.\(i)", arena: arena))
        }
        layers.append(PerToken(LayerNorm(width: d, epsilon: 1e-6, name: "\(name).norm", arena: arena), tokens: t))
        layers.append(TokenPool(tokens: t, width: d, mode: shape.pool))
        if representation > 0 {
            layers.append(Linear(inputDimensions: d, outputDimensions: representation, name: "\(name).fc", arena: arena))
        }
        return Sequential(layers)
    }
}
