import Tensor

/// One Transformer encoder block: multi-head self-attention and a GELU MLP, each with a residual
/// connection and a layer normalisation, the norms placed either way:
/// - `.pre` (ViT, GPT-2; Xiong et al. 2020): u = x + proj(attn(qkv(LN1(x)))), y = u + fc2(gelu(fc1(LN2(u)))).
///   The residual stream is never normalised, so the encoder ends with one more LayerNorm.
/// - `.post` (the original Transformer, BERT): u = LN1(x + proj(attn(qkv(x)))), y = LN2(u + fc2(gelu(fc1(u)))).
///
/// Regularisation (training only, from the model's `DropoutKey`; off by default): dropout of rate
/// `dropout` on the attention's output projection and after the MLP's GELU and fc2 (timm's proj_drop,
/// drop1, drop2; BERT's hidden dropout is the first and last only: `hiddenDropout` 0), then drop-path of rate `dropPath` on each residual branch:
/// u = x + DP(attention branch), y = u + DP(MLP branch). `attentionDropout` drops attention
/// probabilities (`SelfAttention`).
///
/// Shapes: B batch, T tokens, D width, M MLP width. x, y: B x (T D), token-major, so every
/// token-wise layer (the norms, the projections, the MLP) runs as one GEMM over B T rows.
/// Parameters (PyTorch layouts, timm's names under `name`): norm1, attn.qkv (3D x D: the q, k and v
/// rows stacked), attn.proj (D x D), norm2, mlp.fc1 (M x D), mlp.fc2 (D x M).
public final class TransformerBlock: Layer {
    public enum NormPlacement: String, Sendable { case pre, post }

    public let tokens: Int, width: Int
    public let placement: NormPlacement
    public let norm1: LayerNorm, norm2: LayerNorm
    public let queryKeyValue: Linear, projection: Linear
    public let attention: SelfAttention
    public let expand: Linear, contract: Linear
    private let activation: GELU
    /// Dropout of the attention branch's output, the MLP's hidden layer and its output; drop-path of each branch.
    public let projectionDropout: Dropout, hiddenDropout: Dropout, feedForwardDropout: Dropout
    public let attentionDropPath: DropPath, feedForwardDropPath: DropPath
    public var inputWidth: Int { tokens * width }
    public var outputWidth: Int { tokens * width }

    private let residual = ScratchBuffer()          // pre: u = x + attention; post: x + attention (LN1's input)
    private let output = ScratchBuffer()            // pre: y
    private let residualGradient = ScratchBuffer()  // dL/du
    private let inputGradient = ScratchBuffer()     // dL/dx

    /// The only layer whose dL/d(input) the block's own dL/dx needs besides the residual path.
    public var computesInputGradient: Bool {
        get { placement == .pre ? norm1.computesInputGradient : queryKeyValue.computesInputGradient }
        set { if placement == .pre { norm1.computesInputGradient = newValue } else { queryKeyValue.computesInputGradient = newValue } }
    }

    /// Key mask of the attention (B x T, nonzero = real token; nil = all real); see `SelfAttention.keyMask`.
    public var keyMask: UnsafePointer<UInt8>? {
        get { attention.keyMask }
        set { attention.keyMask = newValue }
    }

    public init(tokens: Int, width: Int, heads: Int, mlpWidth: Int, placement: NormPlacement = .pre,
                attention mode: SelfAttention.Mode = .plain, epsilon: Float = 1e-5, dropout: Float = 0, hiddenDropout: Float? = nil,
                attentionDropout: Float = 0, dropPath: Float = 0, key: DropoutKey = DropoutKey(), name: String, arena: ParameterArena) {
        self.tokens = tokens
        self.width = width
        self.placement = placement
        norm1 = LayerNorm(width: width, epsilon: epsilon, name: "\(name).norm1", arena: arena)
        queryKeyValue = Linear(inputDimensions: width, outputDimensions: 3 * width, name: "\(name).attn.qkv", arena: arena)
        attention = SelfAttention(tokens: tokens, width: width, heads: heads, mode: mode, dropout: attentionDropout, key: key)
        projection = Linear(inputDimensions: width, outputDimensions: width, name: "\(name).attn.proj", arena: arena)
        norm2 = LayerNorm(width: width, epsilon: epsilon, name: "\(name).norm2", arena: arena)
        expand = Linear(inputDimensions: width, outputDimensions: mlpWidth, name: "\(name).mlp.fc1", arena: arena)
        activation = GELU(width: mlpWidth)
        contract = Linear(inputDimensions: mlpWidth, outputDimensions: width, name: "\(name).mlp.fc2", arena: arena)
        // They see B rows of T tokens: a mask is drawn per sample, whatever the token count.
        projectionDropout = Dropout(width: tokens * width, probability: dropout, key: key)
        self.hiddenDropout = Dropout(width: tokens * mlpWidth, probability: hiddenDropout ?? dropout, key: key)
        feedForwardDropout = Dropout(width: tokens * width, probability: dropout, key: key)
        attentionDropPath = DropPath(width: tokens * width, probability: dropPath, key: key)
        feedForwardDropPath = DropPath(width: tokens * width, probability: dropPath, key: key)
    }

    /// The block's Linear layers in forward order.
    public var linears: [Linear] { [queryKeyValue, projection, expand, contract] }

    /// The standard deviation of BERT's initialisation (`BertPreTrainedModel._init_weights`: weights
    /// N(0, std^2), biases 0); nil: PyTorch's default, as timm's ViT here.
    public var initialStandardDeviation: Float?

    /// Linears get PyTorch's default draws (or BERT's, `initialStandardDeviation`) from streams `firstStream`, ...
    /// (qkv, proj, fc1, fc2); norms 1 and 0. Returns the next unused stream.
    public func initialise(seed: UInt64, firstStream: UInt64) -> UInt64 {
        norm1.initialise()
        norm2.initialise()
        for (i, linear) in linears.enumerated() {
            if let deviation = initialStandardDeviation {
                linear.initialiseNormal(seed: seed, stream: firstStream + UInt64(i), standardDeviation: deviation)
            } else {
                linear.initialise(seed: seed, stream: firstStream + UInt64(i))
            }
        }
        return firstStream + UInt64(linears.count)
    }

    /// The attention branch from x (B T x D rows): DP(drop(proj(attn(qkv(x))))).
    private func attend(_ x: UnsafePointer<Float>, rows: Int, batch: Int) -> UnsafeMutablePointer<Float> {
        let a = projection.forward(attention.forward(queryKeyValue.forward(x, batch: rows), batch: batch), batch: rows)
        return attentionDropPath.forward(projectionDropout.forward(a, batch: batch), batch: batch)
    }

    /// The MLP branch: DP(drop(fc2(drop(gelu(fc1(x)))))).
    private func feedForward(_ x: UnsafePointer<Float>, rows: Int, batch: Int) -> UnsafeMutablePointer<Float> {
        let h = hiddenDropout.forward(activation.forward(expand.forward(x, batch: rows), batch: rows), batch: batch)
        return feedForwardDropPath.forward(feedForwardDropout.forward(contract.forward(h, batch: rows), batch: batch), batch: batch)
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let rows = batch * tokens, n = rows * width
        let u = residual.pointer(count: n)
        switch placement {
        case .pre:
            let a = attend(norm1.forward(input, batch: rows), rows: rows, batch: batch)
            for i in 0..<n { u[i] = input[i] + a[i] }
            let m = feedForward(norm2.forward(u, batch: rows), rows: rows, batch: batch)
            let y = output.pointer(count: n)
            for i in 0..<n { y[i] = u[i] + m[i] }
            return y
        case .post:
            let a = attend(input, rows: rows, batch: batch)
            for i in 0..<n { u[i] = input[i] + a[i] }
            let normalised = norm1.forward(u, batch: rows)
            let m = feedForward(normalised, rows: rows, batch: batch)
            // LN2's input: u is free again (LN1 keeps x-hat, not its input).
            for i in 0..<n { u[i] = normalised[i] + m[i] }
            return norm2.forward(u, batch: rows)
        }
    }

    /// Through the MLP, then the attention, each gradient also taking its residual's short path.
    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let rows = batch * tokens, n = rows * width
        let du = residualGradient.pointer(count: n)
        switch placement {
        case .pre:
            du.update(from: outputGradient, count: n)
            let dm = feedForwardBackward(outputGradient, rows: rows, batch: batch)
            Kernels.axpy(du, alpha: 1, x: norm2.backward(dm, batch: rows)!, count: n)
            guard computesInputGradient else {
                _ = norm1.backward(attendBackward(du, rows: rows, batch: batch), batch: rows)
                return nil
            }
            let dx = inputGradient.pointer(count: n)
            dx.update(from: du, count: n)
            Kernels.axpy(dx, alpha: 1, x: norm1.backward(attendBackward(du, rows: rows, batch: batch), batch: rows)!, count: n)
            return dx
        case .post:
            let ds2 = norm2.backward(outputGradient, batch: rows)!
            du.update(from: ds2, count: n)
            Kernels.axpy(du, alpha: 1, x: feedForwardBackward(ds2, rows: rows, batch: batch), count: n)
            let ds1 = norm1.backward(du, batch: rows)!
            let dx = inputGradient.pointer(count: n)
            dx.update(from: ds1, count: n)
            let dProjection = projectionDropout.backward(attentionDropPath.backward(ds1, batch: batch)!, batch: batch)!
            guard let da = queryKeyValue.backward(attention.backward(projection.backward(dProjection, batch: rows)!, batch: batch)!,
                                                  batch: rows) else { return nil }
            Kernels.axpy(dx, alpha: 1, x: da, count: n)
            return dx
        }
    }

    /// dL/d(input of the MLP) from dL/d(its branch's output) (consumed).
    private func feedForwardBackward(_ dy: UnsafeMutablePointer<Float>, rows: Int, batch: Int) -> UnsafeMutablePointer<Float> {
        let dm = feedForwardDropout.backward(feedForwardDropPath.backward(dy, batch: batch)!, batch: batch)!
        let dg = hiddenDropout.backward(contract.backward(dm, batch: rows)!, batch: batch)!
        let dh = activation.backward(dg, batch: rows)!
        return expand.backward(dh, batch: rows)!
    }

    /// dL/d(input of qkv) from dL/d(the attention branch's output) (consumed).
    private func attendBackward(_ dy: UnsafeMutablePointer<Float>, rows: Int, batch: Int) -> UnsafeMutablePointer<Float> {
        let da = projectionDropout.backward(attentionDropPath.backward(dy, batch: batch)!, batch: batch)!
        let dOut = projection.backward(da, batch: rows)!
        return queryKeyValue.backward(attention.backward(dOut, batch: batch)!, batch: rows)!
    }
}
