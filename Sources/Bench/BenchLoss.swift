import Training
import Contrastive
import Foundation
import Tensor

extension Bench {
    /// `bench loss`: NT-Xent forward + backward of A local anchors against N candidates (the
    /// global batch of views), unchunked and in chunks of C candidate columns.
    ///
    /// Shapes: A anchors (the local views, rows 0 ..< A of the candidates as on rank 0), N
    /// candidates, D embedding width, C logit chunk. Time: median of the call. Working memory:
    /// the loss's own buffers after the call (`NTXentLoss.workspaceBytes`: A N floats of logits
    /// unchunked, A C + 3 A chunked), and the growth of the peak resident set over the call
    /// (VmHWM after minus VmRSS before, freed heap returned to the system first), which also
    /// sees what OpenBLAS allocates. The caller's embeddings and gradients (N x D) are not the
    /// loss's and are allocated before.
    ///
    /// The memory sweep repeats the measurement at N = `sweep` (the 1,024 ... 16,384)
    /// for the flatness check: chunked, the working memory should not grow with N. Each sweep
    /// result carries `chunked_spread` = max / min - 1 of the chunked workspace over the sweep.
    public static func loss(anchors a: Int, candidates: [Int], sweep: [Int], chunk: Int, dimension d: Int,
                            temperature: Float, repeats: Int, warmup: Int) -> BenchOutput {
        let out = BenchOutput(bench: "loss")
        out.line("NT-Xent forward + backward, \(a) anchors x N candidates, width \(d), tau \(temperature), one thread; median of \(repeats) after \(warmup) warm-up")
        out.line("  candidates  chunk       ms   GFLOP/s   workspace MB   peak RSS growth MB")
        for n in candidates {
            for c in [0, chunk] {
                let m = lossCase(anchors: a, candidates: n, chunk: c, dimension: d, temperature: temperature, repeats: repeats, warmup: warmup)
                // Unchunked: three GEMMs of 2 A N D flops; chunked recomputes the logits (four).
                let flops = Double((c > 0 && c < n) ? 4 : 3) * 2 * Double(a) * Double(n) * Double(d)
                out.line(String(format: "  %10d  %5d  %7.2f  %8.1f  %13.3f  %19.3f", n, c, m.time.median * 1e3, flops / m.time.median / 1e9,
                                Double(m.workspace) / 1e6, Double(m.residentGrowth) / 1e6))
                out.record(["kind": "time", "anchors": a, "candidates": n, "chunk": c, "dimension": d, "gflop_per_s": flops / m.time.median / 1e9,
                            "workspace_bytes": m.workspace, "peak_rss_growth_bytes": m.residentGrowth], m.time)
            }
        }
        guard !sweep.isEmpty else { return out }
        out.line("memory sweep at \(a) anchors (one call each after one warm-up): workspace bytes of the loss")
        out.line("  candidates   unchunked MB   chunk \(chunk) MB   chunked RSS growth MB")
        let cases = sweep.map { n in
            (n: n, plain: lossCase(anchors: a, candidates: n, chunk: 0, dimension: d, temperature: temperature, repeats: 1, warmup: 1),
             chunked: lossCase(anchors: a, candidates: n, chunk: chunk, dimension: d, temperature: temperature, repeats: 1, warmup: 1))
        }
        let workspaces = cases.map(\.chunked.workspace)
        let spread = Double(workspaces.max()!) / Double(workspaces.min()!) - 1
        for c in cases {
            out.line(String(format: "  %10d  %13.3f  %13.3f  %21.3f", c.n, Double(c.plain.workspace) / 1e6, Double(c.chunked.workspace) / 1e6,
                            Double(c.chunked.residentGrowth) / 1e6))
            // Timed as a by-product (one call): the chunked case's time.
            out.record(["kind": "memory", "anchors": a, "candidates": c.n, "chunk": chunk, "dimension": d,
                        "workspace_bytes_unchunked": c.plain.workspace, "workspace_bytes_chunked": c.chunked.workspace,
                        "peak_rss_growth_bytes_unchunked": c.plain.residentGrowth, "peak_rss_growth_bytes_chunked": c.chunked.residentGrowth,
                        "chunked_spread": spread, "candidates_from": sweep.first!, "candidates_to": sweep.last!], c.chunked.time)
        }
        out.line(String(format: "  chunked workspace from N = %d to %d: max / min - 1 = %.1f%% (target: within 10%%)",
                        sweep.first!, sweep.last!, spread * 100))
        return out
    }

    /// One (N, C) case on fresh buffers: its time, the loss's buffers, and the resident growth.
    static func lossCase(anchors a: Int, candidates n: Int, chunk: Int, dimension d: Int, temperature: Float,
                         repeats: Int, warmup: Int) -> (time: Measurement, workspace: Int, residentGrowth: Int) {
        precondition(a % 2 == 0 && a <= n, "bench loss: anchors must be even and at most the candidates")
        var rng = RandomStream(seed: 11, stream: UInt64(n))
        let candidates = Tensor(zeros: [n, d])
        for i in 0..<candidates.count { candidates[i] = rng.nextUniform() - 0.5 }
        let norms = Tensor(zeros: [n])
        Kernels.l2NormalizeRows(candidates.data, norms: norms.data, input: candidates.data, rows: n, columns: d)
        let anchorGradient = Tensor(zeros: [a, d]), candidateGradient = Tensor(zeros: [n, d])
        var selfIndex = [Int32](repeating: 0, count: a), positiveIndex = [Int32](repeating: 0, count: a)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positiveIndex, samples: a / 2, offset: 0)
        ResidentMemory.returnFreedHeap()   // so the growth below is this case's own
        let before = ResidentMemory.current()
        ResidentMemory.resetPeak()
        let loss = NTXentLoss(temperature: temperature, logitChunk: chunk)
        let time = measure(repeats: repeats, warmup: warmup) {
            _ = loss.forwardBackward(anchors: candidates.data, anchorCount: a, candidates: candidates.data, candidateCount: n,
                                     dimension: d, selfIndex: selfIndex, positiveIndex: positiveIndex, normalization: n,
                                     anchorGradient: anchorGradient.data, candidateGradient: candidateGradient.data)
        }
        return (time, loss.workspaceBytes, max(0, ResidentMemory.peak() - before))
    }
}
