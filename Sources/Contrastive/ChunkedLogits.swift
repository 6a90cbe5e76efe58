import Foundation
import Tensor

/// The two passes over candidate chunks that the chunked NT-Xent and SupCon share (see
/// `NTXentLoss`'s comment), so that the logit memory is A x C instead of A x N:
/// - pass 1 (`logSumExp`) keeps each row's online maximum and sum of exponentials;
/// - between the passes the loss turns them into its value and each row's log-sum-exp;
/// - pass 2 (`gradients`) recomputes each chunk's logits and makes dS = softmax / M of them.
///   The loss then subtracts its targets, and the chunk adds its share of both gradients.
///
/// Each loss sees every row of every chunk through a closure: NT-Xent its positive logit, SupCon
/// its positives' sums. The GEMMs, the self mask and the exponentials live here once.
/// Shapes: A anchors, N candidates, D embedding width, C chunk columns; s: A x C logits.
struct ChunkedLogits {
    let anchors: UnsafePointer<Float>, anchorCount: Int
    let candidates: UnsafePointer<Float>, candidateCount: Int, dimension: Int
    let chunk: Int
    let inverseTemperature: Float
    let selfIndex: UnsafePointer<Int32>
    /// A x C floats.
    let s: UnsafeMutablePointer<Float>

    /// Logits of candidates start ..< start + width into s (A x width, row stride width), self masked.
    func logits(_ start: Int, _ width: Int) {
        let a = anchorCount, d = dimension
        gemm(transposeA: false, transposeB: true, m: a, n: width, k: d, alpha: inverseTemperature,
             a: anchors, lda: d, b: candidates + start * d, ldb: d, c: s, ldc: width)
        for i in 0..<a {
            // self < 0 (nothing excluded) lands below every chunk, so it is never masked.
            let me = Int(selfIndex[i]) - start
            if me >= 0 && me < width { s[i * width + me] = -.infinity }
        }
    }

    /// Calls `body(start, width)` for each chunk of candidates, its logits in s.
    private func forEachChunk(_ body: (_ start: Int, _ width: Int) -> Void) {
        var start = 0
        while start < candidateCount {
            let width = min(chunk, candidateCount - start)
            logits(start, width)
            body(start, width)
            start += width
        }
    }

    /// dZ_a += dS_chunk Z_chunk / tau (written, not added, for the chunk at 0) and dZ_chunk =
    /// dS_chunk^T Z_a / tau (skipped when `candidateGradient` is nil), with dS_chunk in s.
    func addGradients(_ start: Int, _ width: Int, anchorGradient: UnsafeMutablePointer<Float>,
                      candidateGradient: UnsafeMutablePointer<Float>?) {
        let a = anchorCount, d = dimension
        gemm(transposeA: false, transposeB: false, m: a, n: d, k: width, alpha: inverseTemperature,
             a: s, lda: width, b: candidates + start * d, ldb: d, beta: start == 0 ? 0 : 1, c: anchorGradient, ldc: d)
        if let candidateGradient {
            gemm(transposeA: true, transposeB: false, m: width, n: d, k: a, alpha: inverseTemperature,
                 a: s, lda: width, b: anchors, ldb: d, c: candidateGradient + start * d, ldc: d)
        }
    }

    /// Pass 1: `maximum[i]` and `sum[i]` end as row i's maximum logit and sum of exp(S - maximum)
    /// over all candidates. `observe(i, row, start, width)` reads each row's chunk of logits first.
    func logSumExp(maximum: UnsafeMutablePointer<Float>, sum: UnsafeMutablePointer<Float>,
                   observe: (_ i: Int, _ row: UnsafePointer<Float>, _ start: Int, _ width: Int) -> Void) {
        let a = anchorCount
        maximum.update(repeating: -.infinity, count: a)
        sum.update(repeating: 0, count: a)
        forEachChunk { start, width in
            for i in 0..<a {
                let row = s + i * width
                observe(i, row, start, width)
                let chunkMaximum = Kernels.maximum(row, count: width)
                if chunkMaximum > maximum[i] {
                    sum[i] = sum[i] > 0 ? sum[i] * exp(maximum[i] - chunkMaximum) : 0
                    maximum[i] = chunkMaximum
                }
                if maximum[i] > -.infinity { sum[i] += Kernels.expSum(row, input: row, count: width, shift: maximum[i]) }
            }
        }
    }

    /// Pass 2: with `logSumExp[i]` each row's log-sum-exp, each chunk becomes dS = exp(S - lse) x
    /// `scale`; `subtractTargets(i, row, start, width)` then takes the loss's targets off each row.
    /// dZ_a = sum over chunks of dS Z_chunk / tau is written to `anchorGradient`, and dZ_chunk =
    /// dS^T Z_a / tau to `candidateGradient`'s rows of the chunk (skipped when it is nil).
    func gradients(logSumExp: UnsafePointer<Float>, scale: Float,
                   anchorGradient: UnsafeMutablePointer<Float>, candidateGradient: UnsafeMutablePointer<Float>?,
                   subtractTargets: (_ i: Int, _ row: UnsafeMutablePointer<Float>, _ start: Int, _ width: Int) -> Void) {
        forEachChunk { start, width in
            for i in 0..<anchorCount {
                let row = s + i * width
                _ = Kernels.expSum(row, input: row, count: width, shift: logSumExp[i])
                Kernels.scale(row, by: scale, count: width)
                subtractTargets(i, row, start, width)
            }
            addGradients(start, width, anchorGradient: anchorGradient, candidateGradient: candidateGradient)
        }
    }
}
