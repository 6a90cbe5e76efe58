import CKernels
import Foundation

// LayerNorm over rows in C (vectorised row sums; CKernels/kernels.c), with the plain loops it
// replaced beside it as the tests' reference. Shapes: R rows of width W, row-major; gamma, beta: W.
extension Kernels {
    /// inverseStd[r] = 1/sqrt(var_r + eps) (biased variance), xhat = (x - mean) inverseStd, y = xhat gamma + beta.
    @inline(__always)
    public static func layerNorm(_ y: UnsafeMutablePointer<Float>, normalised xhat: UnsafeMutablePointer<Float>,
                                 inverseStd: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, rows: Int, width: Int, epsilon: Float) {
        ck_layer_norm(y, xhat, inverseStd, x, gamma, beta, rows, width, epsilon)
    }

    public static func layerNormReference(_ y: UnsafeMutablePointer<Float>, normalised xhat: UnsafeMutablePointer<Float>,
                                          inverseStd: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                                          gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, rows: Int, width w: Int, epsilon: Float) {
        for r in 0..<rows {
            let x = input + r * w
            var mean: Float = 0
            for c in 0..<w { mean += x[c] }
            mean /= Float(w)
            var variance: Float = 0
            for c in 0..<w { let d = x[c] - mean; variance += d * d }
            variance /= Float(w)
            let s = 1 / (variance + epsilon).squareRoot()
            inverseStd[r] = s
            for c in 0..<w {
                let n = (x[c] - mean) * s
                xhat[r * w + c] = n
                y[r * w + c] = n * gamma[c] + beta[c]
            }
        }
    }

    /// dgamma += sum_r dy xhat; dbeta += sum_r dy; dx (when not nil) = s/W (W dxh - sum(dxh) - xhat sum(dxh xhat)), dxh = dy gamma.
    @inline(__always)
    public static func layerNormBackward(inputGradient dx: UnsafeMutablePointer<Float>?, scaleGradient dgamma: UnsafeMutablePointer<Float>,
                                         shiftGradient dbeta: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                                         normalised xhat: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
                                         gamma: UnsafePointer<Float>, rows: Int, width: Int) {
        ck_layer_norm_backward(dx, dgamma, dbeta, dy, xhat, inverseStd, gamma, rows, width)
    }

    public static func layerNormBackwardReference(inputGradient dx: UnsafeMutablePointer<Float>?, scaleGradient dgamma: UnsafeMutablePointer<Float>,
                                                  shiftGradient dbeta: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                                                  normalised xhat: UnsafePointer<Float>, inverseStd inv: UnsafePointer<Float>,
                                                  gamma: UnsafePointer<Float>, rows: Int, width w: Int) {
        for r in 0..<rows {
            let dy = outputGradient + r * w, xh = xhat + r * w
            var sumDxh: Float = 0, sumDxhXh: Float = 0
            for c in 0..<w {
                dgamma[c] += dy[c] * xh[c]
                dbeta[c] += dy[c]
                let dxh = dy[c] * gamma[c]
                sumDxh += dxh
                sumDxhXh += dxh * xh[c]
            }
            guard let dx else { continue }
            let s = inv[r] / Float(w)
            for c in 0..<w {
                let dxh = dy[c] * gamma[c]
                dx[r * w + c] = s * (Float(w) * dxh - sumDxh - xh[c] * sumDxhXh)
            }
        }
    }
}
