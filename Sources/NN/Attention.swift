import Foundation
import Tensor

/// Multi-head scaled dot-product self-attention (Vaswani et al. 2017), the parameter-free core
/// between a Transformer block's QKV projection and its output projection:
/// o_h = softmax(q_h k_h^T / sqrt(E) + mask) v_h for each head h, the heads side by side.
///
/// Shapes: B batch, T tokens, D width, H heads, E = D / H head width. Rows are token-major:
/// input qkv: B x (T 3D), each token's row [q | k | v] with head h at columns h E ..< (h + 1) E of
/// each third (one GEMM of the block makes all three); output o: B x (T D), head h at columns h E.
///
/// `keyMask` (B x T, nonzero = a real token) hides padded keys from every query: their logits
/// are -inf before the softmax (BERT's attention mask). Padded queries still get an output
/// (over the real keys), which a pooling that ignores them never reads. A sample with no real
/// key gets o = 0.
///
/// Two ways to compute the same function:
/// - `.plain`: per (sample, head) one call of the C attention kernel (`Kernels.attentionForward`):
///   S = q k^T / sqrt(E) register-tiled, the softmax (mask, row maximum subtracted, exp, normalised)
///   fused over each row, o = P v; P (B H T T) is kept for backward, which is one kernel call too.
/// - `.tiled(tile)`: FlashAttention's streaming softmax (Dao et al. 2022, Algorithm 1): query and
///   key tiles of `tile` tokens; each query row keeps a running maximum m and sum l, and its
///   accumulated output is rescaled by exp(m_old - m_new) when a key tile raises the maximum.
///   Only the log-sum-exp m + log l (B H T) is kept; backward recomputes each tile's P from it.
///   No matrix larger than tile x tile is ever held.
///
/// Attention dropout (`dropout` p > 0, training only; timm's `attn_drop`): o = (P * M) v with M_ij = 0
/// or 1 / (1 - p), drawn from the `DropoutKey` at position (h T + i) T + j of the sample's stream in
/// this layer. The softmax's normaliser is over the undropped P, so both paths can still stream it,
/// and backward draws M again from the key the forward used (nothing T x T is kept for it):
/// dv = (P * M)^T dO, dP = (dO v^T) * M, dS = P (dP - rowsum(dO o)) as without dropout.
public final class SelfAttention: Layer {
    public enum Mode: Sendable, Equatable {
        case plain
        /// Query and key tiles of this many tokens (at least 1).
        case tiled(Int)
    }

    public let tokens: Int, width: Int, heads: Int
    public var headWidth: Int { width / heads }
    public var inputWidth: Int { tokens * 3 * width }
    public var outputWidth: Int { tokens * width }
    public var computesInputGradient = true
    public var mode: Mode
    /// B x T, nonzero where the token is real; nil: every token is. Read by forward and backward,
    /// so it must stay valid and unchanged between them.
    public var keyMask: UnsafePointer<UInt8>?
    /// Dropout rate of the attention probabilities (0: none).
    public let dropout: Float
    private let key: DropoutKey
    private let layer: Int
    /// The key the last forward drew its masks under; nil when it dropped nothing.
    private var drawn: DropoutKey.Frame?

    private let output = ScratchBuffer()          // o, B x (T D)
    private let probabilities = ScratchBuffer()   // plain: P, B H T T
    private let logSumExp = ScratchBuffer()       // tiled: m + log l, B H T
    private let tileScores = ScratchBuffer()      // tiled: S/P tile
    private let tileGradient = ScratchBuffer()    // tiled: dP tile; plain: M
    private let kernelScratch = ScratchBuffer()   // plain: the attention kernels' k^T or v^T, dP, P * M
    private let tileMask = ScratchBuffer()        // tiled with dropout: M, then P * M
    private let rowDots = ScratchBuffer()         // tiled: sum_e dO o per row, T
    private let runningStatistics = ScratchBuffer()  // tiled forward: m and l of a query tile, 2 x tile
    private let inputGradient = ScratchBuffer()   // dqkv, B x (T 3D)
    private var savedInput: UnsafePointer<Float>?

    public init(tokens: Int, width: Int, heads: Int, mode: Mode = .plain, dropout: Float = 0, key: DropoutKey = DropoutKey()) {
        precondition(dropout >= 0 && dropout < 1, "SelfAttention: dropout \(dropout) is not in [0, 1)")
        precondition(tokens >= 1 && heads >= 1 && width % heads == 0,
                     "SelfAttention: \(heads) heads must divide the width \(width)")
        if case .tiled(let tile) = mode { precondition(tile >= 1, "SelfAttention: tile must be at least 1, got \(tile)") }
        self.tokens = tokens
        self.width = width
        self.heads = heads
        self.mode = mode
        self.dropout = dropout
        self.key = key
        layer = key.register()
    }

    /// M of queries i0 ..< i0 + rows and keys j0 ..< j0 + columns of (sample, head) under `frame`
    /// into `factors` (leading dimension `columns`).
    private func fillMask(_ factors: UnsafeMutablePointer<Float>, _ frame: DropoutKey.Frame, sample: Int, head: Int,
                          firstQuery i0: Int, rows: Int, firstKey j0: Int, columns: Int) {
        let threshold = DropoutKey.threshold(dropout), kept = 1 / (1 - dropout), t = tokens
        let start = frame.stream(layer: layer, row: sample)
        // Whole rows: the tile is draws (head t + i0) t ... of the stream, one run.
        if j0 == 0 && columns == t {
            Kernels.dropoutMask(factors, seed: start.seed, stream: start.stream, position: start.position + UInt64((head * t + i0) * t),
                                count: rows * t, threshold: threshold, kept: kept)
            return
        }
        for r in 0..<rows {
            Kernels.dropoutMask(factors + r * columns, seed: start.seed, stream: start.stream,
                                position: start.position + UInt64((head * t + i0 + r) * t + j0), count: columns,
                                threshold: threshold, kept: kept)
        }
    }

    var scale: Float { 1 / Float(headWidth).squareRoot() }

    /// Sets the logits of masked keys of `columns` keys from `firstKey` on, in `rows` rows of `scores`
    /// (leading dimension `ld`), to -inf.
    @inline(__always)
    private func maskKeys(_ scores: UnsafeMutablePointer<Float>, rows: Int, columns: Int, ld: Int, sample: Int, firstKey: Int) {
        guard let keyMask else { return }
        let mask = keyMask + sample * tokens + firstKey
        for j in 0..<columns where mask[j] == 0 {
            for r in 0..<rows { scores[r * ld + j] = -.infinity }
        }
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        savedInput = input
        drawn = dropout > 0 ? key.frame() : nil
        let o = output.pointer(count: batch * tokens * width)
        switch mode {
        case .plain: plainForward(o, input, batch: batch)
        case .tiled(let tile): tiledForward(o, input, batch: batch, tile: min(tile, tokens))
        }
        return o
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        guard let qkv = savedInput else { preconditionFailure("SelfAttention.backward before forward") }
        let dqkv = inputGradient.pointer(count: batch * inputWidth)
        switch mode {
        case .plain: plainBackward(dqkv, outputGradient, qkv, batch: batch)
        case .tiled(let tile): tiledBackward(dqkv, outputGradient, qkv, batch: batch, tile: min(tile, tokens))
        }
        return dqkv
    }

    // MARK: Plain: the whole T x T matrix per (sample, head)

    private func plainForward(_ o: UnsafeMutablePointer<Float>, _ qkv: UnsafePointer<Float>, batch: Int) {
        let t = tokens, d = width, e = headWidth
        let p = probabilities.pointer(count: batch * heads * t * t)
        let scratch = kernelScratch.pointer(count: Kernels.attentionScratch(tokens: t, headWidth: e))
        let factors = drawn == nil ? nil : tileGradient.pointer(count: t * t)
        for b in 0..<batch {
            for h in 0..<heads {
                let q = qkv + b * t * 3 * d + h * e
                if let drawn, let factors {
                    fillMask(factors, drawn, sample: b, head: h, firstQuery: 0, rows: t, firstKey: 0, columns: t)
                }
                // P stays for backward; P * M goes into the product.
                Kernels.attentionForward(q: q, k: q + d, v: q + 2 * d, ld: 3 * d, keyMask: keyMask.map { $0 + b * t },
                                         drop: factors.map { UnsafePointer($0) }, scale: scale,
                                         probabilities: p + (b * heads + h) * t * t, output: o + b * t * d + h * e, ldo: d,
                                         tokens: t, headWidth: e, scratch: scratch)
            }
        }
    }

    /// dP = dO v^T; dv = P^T dO; dS = P (dP - rowsum(P dP)); dq = dS k / sqrt(E); dk = dS^T q / sqrt(E).
    private func plainBackward(_ dqkv: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ qkv: UnsafePointer<Float>, batch: Int) {
        let t = tokens, d = width, e = headWidth
        let p = probabilities.tensor.data
        let scratch = kernelScratch.pointer(count: Kernels.attentionScratch(tokens: t, headWidth: e))
        let factors = drawn == nil ? nil : tileGradient.pointer(count: t * t)
        for b in 0..<batch {
            for h in 0..<heads {
                let q = qkv + b * t * 3 * d + h * e, dq = dqkv + b * t * 3 * d + h * e
                if let drawn, let factors {
                    fillMask(factors, drawn, sample: b, head: h, firstQuery: 0, rows: t, firstKey: 0, columns: t)
                }
                Kernels.attentionBackward(q: q, k: q + d, v: q + 2 * d, ld: 3 * d, probabilities: p + (b * heads + h) * t * t,
                                          drop: factors.map { UnsafePointer($0) }, outputGradient: dy + b * t * d + h * e, ldo: d,
                                          scale: scale, dq: dq, dk: dq + d, dv: dq + 2 * d, tokens: t, headWidth: e, scratch: scratch)
            }
        }
    }

    // MARK: Tiled: streaming softmax over key tiles

    private func tiledForward(_ o: UnsafeMutablePointer<Float>, _ qkv: UnsafePointer<Float>, batch: Int, tile: Int) {
        let t = tokens, d = width, e = headWidth
        let lse = logSumExp.pointer(count: batch * heads * t)
        let s = tileScores.pointer(count: tile * tile)
        // Per query row of the tile: running maximum m and sum l.
        let m = runningStatistics.pointer(count: 2 * tile), l = m + tile
        for b in 0..<batch {
            for h in 0..<heads {
                let q = qkv + b * t * 3 * d + h * e, k = q + d, v = q + 2 * d
                let ob = o + b * t * d + h * e
                for i0 in stride(from: 0, to: t, by: tile) {
                    let rows = min(tile, t - i0)
                    let oi = ob + i0 * d
                    for r in 0..<rows { (oi + r * d).update(repeating: 0, count: e) }
                    m.update(repeating: -.infinity, count: rows)
                    l.update(repeating: 0, count: rows)
                    for j0 in stride(from: 0, to: t, by: tile) {
                        let columns = min(tile, t - j0)
                        gemm(transposeA: false, transposeB: true, m: rows, n: columns, k: e, alpha: scale,
                             a: q + i0 * 3 * d, lda: 3 * d, b: k + j0 * 3 * d, ldb: 3 * d, c: s, ldc: columns)
                        maskKeys(s, rows: rows, columns: columns, ld: columns, sample: b, firstKey: j0)
                        for r in 0..<rows {
                            let row = s + r * columns
                            let newMaximum = max(m[r], Kernels.maximum(row, count: columns))
                            guard newMaximum > -.infinity else { row.update(repeating: 0, count: columns); continue }
                            // exp(-inf) = 0 on the first tile: nothing accumulated yet.
                            let correction = exp(m[r] - newMaximum)
                            l[r] = l[r] * correction + Kernels.expSum(row, input: row, count: columns, shift: newMaximum)
                            if correction != 1 { Kernels.scale(oi + r * d, by: correction, count: e) }
                            m[r] = newMaximum
                        }
                        // l summed the undropped exponentials: the softmax is normalised before dropout.
                        if let drawn {
                            let factors = tileMask.pointer(count: tile * tile)
                            fillMask(factors, drawn, sample: b, head: h, firstQuery: i0, rows: rows, firstKey: j0, columns: columns)
                            for i in 0..<(rows * columns) { s[i] *= factors[i] }
                        }
                        gemm(transposeA: false, transposeB: false, m: rows, n: e, k: columns, a: s, lda: columns,
                             b: v + j0 * 3 * d, ldb: 3 * d, beta: 1, c: oi, ldc: d)
                    }
                    let rowLSE = lse + (b * heads + h) * t + i0
                    for r in 0..<rows {
                        if l[r] > 0 {
                            Kernels.scale(oi + r * d, by: 1 / l[r], count: e)
                            rowLSE[r] = m[r] + log(l[r])
                        } else {
                            rowLSE[r] = -.infinity
                        }
                    }
                }
            }
        }
    }

    /// FlashAttention's backward (Algorithm 2): per tile P = exp(S - lse) from the saved log-sum-exp,
    /// dv += P^T dO, dP = dO v^T, dS = P (dP - rowsum(dO o)), dq += dS k / sqrt(E), dk += dS^T q / sqrt(E).
    private func tiledBackward(_ dqkv: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ qkv: UnsafePointer<Float>,
                               batch: Int, tile: Int) {
        let t = tokens, d = width, e = headWidth
        let o = output.tensor.data, lse = logSumExp.tensor.data
        let s = tileScores.pointer(count: tile * tile), dp = tileGradient.pointer(count: tile * tile)
        let dots = rowDots.pointer(count: t)
        dqkv.update(repeating: 0, count: batch * inputWidth)
        for b in 0..<batch {
            for h in 0..<heads {
                let q = qkv + b * t * 3 * d + h * e, k = q + d, v = q + 2 * d
                let dq = dqkv + b * t * 3 * d + h * e, dk = dq + d, dv = dq + 2 * d
                let dO = dy + b * t * d + h * e, ob = o + b * t * d + h * e
                let rowLSE = lse + (b * heads + h) * t
                // rowsum(dO o) = rowsum(P dP), the softmax's correction term.
                for i in 0..<t {
                    var dot: Float = 0
                    for c in 0..<e { dot += dO[i * d + c] * ob[i * d + c] }
                    dots[i] = dot
                }
                for i0 in stride(from: 0, to: t, by: tile) {
                    let rows = min(tile, t - i0)
                    for j0 in stride(from: 0, to: t, by: tile) {
                        let columns = min(tile, t - j0)
                        gemm(transposeA: false, transposeB: true, m: rows, n: columns, k: e, alpha: scale,
                             a: q + i0 * 3 * d, lda: 3 * d, b: k + j0 * 3 * d, ldb: 3 * d, c: s, ldc: columns)
                        maskKeys(s, rows: rows, columns: columns, ld: columns, sample: b, firstKey: j0)
                        for r in 0..<rows {
                            let row = s + r * columns
                            let shift = rowLSE[i0 + r]
                            if shift > -.infinity { _ = Kernels.expSum(row, input: row, count: columns, shift: shift) }
                            else { row.update(repeating: 0, count: columns) }
                        }
                        gemm(transposeA: false, transposeB: true, m: rows, n: columns, k: e, a: dO + i0 * d, lda: d,
                             b: v + j0 * 3 * d, ldb: 3 * d, c: dp, ldc: columns)
                        var weights = UnsafePointer(s)
                        if let drawn {
                            let dropped = tileMask.pointer(count: tile * tile)
                            fillMask(dropped, drawn, sample: b, head: h, firstQuery: i0, rows: rows, firstKey: j0, columns: columns)
                            for i in 0..<(rows * columns) {
                                dp[i] *= dropped[i]
                                dropped[i] *= s[i]
                            }
                            weights = UnsafePointer(dropped)
                        }
                        gemm(transposeA: true, transposeB: false, m: columns, n: e, k: rows, a: weights, lda: columns,
                             b: dO + i0 * d, ldb: d, beta: 1, c: dv + j0 * 3 * d, ldc: 3 * d)
                        for r in 0..<rows {
                            let pr = s + r * columns, dr = dp + r * columns, dot = dots[i0 + r]
                            for j in 0..<columns { dr[j] = pr[j] * (dr[j] - dot) }
                        }
                        gemm(transposeA: false, transposeB: false, m: rows, n: e, k: columns, alpha: scale, a: dp, lda: columns,
                             b: k + j0 * 3 * d, ldb: 3 * d, beta: 1, c: dq + i0 * 3 * d, ldc: 3 * d)
                        gemm(transposeA: true, transposeB: false, m: columns, n: e, k: rows, alpha: scale, a: dp, lda: columns,
                             b: q + i0 * 3 * d, ldb: 3 * d, beta: 1, c: dk + j0 * 3 * d, ldc: 3 * d)
                    }
                }
            }
        }
    }
}
