import CKernels
import Foundation

// Plain attention of one (sample, head) in one C call each way (CKernels/attention.c): the
// products register-tiled in L1 instead of ~6 tiny sgemm calls, the softmax fused over each row.
// Shapes: T tokens, E head width. q, k, v: T x E with row stride `ld` (slices of token-major
// [q | k | v] rows); o, dO: T x E with row stride `ldo`; P: T x T (row stride T); keyMask: T bytes,
// nonzero = a real key (nil: all real); drop: T x T dropout factors (nil: none).
extension Kernels {
    /// Floats of scratch `attentionForward` and `attentionBackward` need.
    public static func attentionScratch(tokens: Int, headWidth: Int) -> Int { ck_attention_scratch(tokens, headWidth) }

    /// P = softmax(scale q k^T with masked keys -inf; row maximum subtracted; a row with no real
    /// key is 0); o = (P * drop) v.
    @inline(__always)
    public static func attentionForward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int,
                                        keyMask: UnsafePointer<UInt8>?, drop: UnsafePointer<Float>?, scale: Float,
                                        probabilities p: UnsafeMutablePointer<Float>, output o: UnsafeMutablePointer<Float>, ldo: Int,
                                        tokens: Int, headWidth: Int, scratch: UnsafeMutablePointer<Float>) {
        ck_attention_forward(q, k, v, ld, keyMask, drop, scale, p, o, ldo, tokens, headWidth, scratch)
    }

    /// dv = (P * drop)^T dO, dP = (dO v^T) * drop, dS = P (dP - rowsum(P dP)), dq = scale dS k,
    /// dk = scale dS^T q; dq, dk, dv (row stride `ld`) overwritten.
    @inline(__always)
    public static func attentionBackward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int,
                                         probabilities p: UnsafePointer<Float>, drop: UnsafePointer<Float>?,
                                         outputGradient dO: UnsafePointer<Float>, ldo: Int, scale: Float,
                                         dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                         tokens: Int, headWidth: Int, scratch: UnsafeMutablePointer<Float>) {
        ck_attention_backward(q, k, v, ld, p, drop, dO, ldo, scale, dq, dk, dv, tokens, headWidth, scratch)
    }

    /// `attentionForward` as plain loops (Double sums, Foundation's exp).
    public static func attentionForwardReference(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int,
                                                 keyMask: UnsafePointer<UInt8>?, drop: UnsafePointer<Float>?, scale: Float,
                                                 probabilities p: UnsafeMutablePointer<Float>, output o: UnsafeMutablePointer<Float>, ldo: Int,
                                                 tokens t: Int, headWidth e: Int) {
        for i in 0..<t {
            let row = p + i * t
            for j in 0..<t {
                var dot = 0.0
                for c in 0..<e { dot += Double(q[i * ld + c]) * Double(k[j * ld + c]) }
                row[j] = keyMask.map { $0[j] == 0 } ?? false ? -.infinity : scale * Float(dot)
            }
            let maximum = (0..<t).map { row[$0] }.max()!
            guard maximum > -.infinity else { row.update(repeating: 0, count: t); continue }
            var sum = 0.0
            for j in 0..<t { row[j] = exp(row[j] - maximum); sum += Double(row[j]) }
            for j in 0..<t { row[j] = Float(Double(row[j]) / sum) }
        }
        for i in 0..<t {
            for c in 0..<e {
                var sum = 0.0
                for j in 0..<t { sum += Double(p[i * t + j] * (drop?[i * t + j] ?? 1)) * Double(v[j * ld + c]) }
                o[i * ldo + c] = Float(sum)
            }
        }
    }

    /// `attentionBackward` as plain loops (Double sums).
    public static func attentionBackwardReference(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ld: Int,
                                                  probabilities p: UnsafePointer<Float>, drop: UnsafePointer<Float>?,
                                                  outputGradient dO: UnsafePointer<Float>, ldo: Int, scale: Float,
                                                  dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                                  tokens t: Int, headWidth e: Int) {
        var ds = [Double](repeating: 0, count: t * t)
        for i in 0..<t {
            var dp = [Double](repeating: 0, count: t)
            for j in 0..<t {
                var dot = 0.0
                for c in 0..<e { dot += Double(dO[i * ldo + c]) * Double(v[j * ld + c]) }
                dp[j] = dot * Double(drop?[i * t + j] ?? 1)
            }
            var rowDot = 0.0
            for j in 0..<t { rowDot += Double(p[i * t + j]) * dp[j] }
            for j in 0..<t { ds[i * t + j] = Double(p[i * t + j]) * (dp[j] - rowDot) }
        }
        for j in 0..<t {
            for c in 0..<e {
                var value = 0.0, query = 0.0, key = 0.0
                for i in 0..<t {
                    value += Double(p[i * t + j] * (drop?[i * t + j] ?? 1)) * Double(dO[i * ldo + c])
                    query += ds[j * t + i] * Double(k[i * ld + c])
                    key += ds[i * t + j] * Double(q[i * ld + c])
                }
                dv[j * ld + c] = Float(value)
                dq[j * ld + c] = Float(Double(scale) * query)
                dk[j * ld + c] = Float(Double(scale) * key)
            }
        }
    }
}
