import Training
import Foundation
import NN
import Tensor

extension Bench {
    /// `bench kernels`: the step's memory-bound kernels as GB/s beside a copy of the same size.
    ///
    /// For each size n (floats per operand) and kernel: bandwidth = (bytes the kernel must read +
    /// write, each operand once) / median time, and its ratio to memcpy's bandwidth of n floats
    /// (8n bytes moved: n x 4 read + n x 4 written), measured in the same run. A ratio near 1 is
    /// what a single streaming pass can reach; far below 1 is compute-bound or badly vectorised.
    /// n x 4 bytes below the L2 size is the in-cache figure, far above the L3 the DRAM one.
    /// Shapes: the row kernels use R = n / C rows of C columns (C = 1024 for bias + ReLU, E = 128
    /// for L2 normalisation as the embeddings, W = 256 for LayerNorm); GroupNorm uses G = 8 groups
    /// of C = 32 channels over 14 x 14 pixels, as the CNN encoder's second stage.
    public static func kernels(elements sizes: [Int], repeats: Int, warmup: Int) -> BenchOutput {
        let out = BenchOutput(bench: "kernels")
        out.line("memory-bound kernels, one thread, kernels \(Kernels.instructionSet); GB/s = (bytes read + written) / median of \(repeats) after \(warmup) warm-up; copy = memcpy of the same n floats")
        out.line("  n floats  kernel                        bytes/call     ms      GB/s  copy GB/s  ratio")
        for n in sizes {
            let a = Tensor(shape: [n], repeating: 0.25), b = Tensor(shape: [n], repeating: 0.5)
            let c = Tensor(shape: [n], repeating: 0.125), d = Tensor(shape: [n], repeating: 1e-3)
            let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
            defer { halves.deallocate() }
            halves.update(repeating: 0x3C00, count: n)
            for i in 0..<n { a[i] = Float(i % 97) * 0.01 - 0.4 }   // mixed signs: ReLU masks about half

            let copy = measure(repeats: repeats, warmup: warmup) { b.data.update(from: a.data, count: n) }
            let copyBandwidth = Double(8 * n) / copy.median
            var rows: [(String, Int, Measurement)] = [("memcpy", 8 * n, copy)]
            func time(_ name: String, bytes: Int, _ body: () -> Void) { rows.append((name, bytes, measure(repeats: repeats, warmup: warmup, body))) }

            // Element-wise (fp32 operands: 4n bytes each).
            let columns = min(1024, n), biasRows = n / columns
            time("bias+relu forward", bytes: 8 * n + 4 * columns) {
                Kernels.addBiasReLURows(b.data, bias: d.data, rows: biasRows, columns: columns)
            }
            time("bias+relu backward", bytes: 12 * n + 8 * columns) {
                Kernels.reluBiasBackward(c.data, output: a.data, biasGradient: d.data, rows: biasRows, columns: columns)
            }
            time("adamw update", bytes: 28 * n) {
                Kernels.adamW(parameters: a.data, gradients: d.data, firstMoment: b.data, secondMoment: c.data, count: n,
                              learningRate: 1e-6, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0, step: 10)
            }
            time("softmax max", bytes: 4 * n) { _ = Kernels.maximum(a.data, count: n) }
            time("softmax exp (+sum)", bytes: 8 * n) { _ = Kernels.expSum(b.data, input: a.data, count: n, shift: 1) }

            // Normalisation, forward and backward.
            let e = min(128, n), embeddingRows = n / e
            let norms = Tensor(zeros: [embeddingRows])
            time("l2normalize forward", bytes: 8 * n) {
                Kernels.l2NormalizeRows(b.data, norms: norms.data, input: a.data, rows: embeddingRows, columns: e)
            }
            time("l2normalize backward", bytes: 16 * n) {
                Kernels.l2NormalizeRowsBackward(inputGradient: c.data, outputGradient: d.data, output: b.data, norms: norms.data,
                                                rows: embeddingRows, columns: e)
            }
            let w = min(256, n), arena = ParameterArena()
            let layerNorm = LayerNorm(width: w, name: "ln", arena: arena)
            let groupWidth = 32 * 14 * 14     // C H W of one sample; at least one sample fits in n
            let groupNorm = n >= groupWidth ? GroupNorm(groups: 8, channels: 32, height: 14, width: 14, name: "gn", arena: arena) : nil
            arena.seal()
            layerNorm.initialise(); groupNorm?.initialise()
            // Forward writes y and the saved x-hat; backward reads dy and x-hat, writes dx.
            time("layernorm forward", bytes: 12 * n) { _ = layerNorm.forward(a.data, batch: n / w) }
            time("layernorm backward", bytes: 12 * n) { _ = layerNorm.backward(d.data, batch: n / w) }
            if let groupNorm {
                let batch = n / groupWidth
                // Forward reads x, writes y; backward reads the saved x and dy, writes dx.
                time("groupnorm forward", bytes: 8 * batch * groupWidth) { _ = groupNorm.forward(a.data, batch: batch) }
                time("groupnorm backward", bytes: 12 * batch * groupWidth) { _ = groupNorm.backward(d.data, batch: batch) }
            }

            // Precision conversion: 4n bytes one side, 2n the other.
            time("fp32 -> fp16", bytes: 6 * n) { HalfPrecision.floatToHalf(a.data, halves, count: n) }
            time("fp16 -> fp32", bytes: 6 * n) { HalfPrecision.halfToFloat(halves, b.data, count: n) }
            time("fp32 -> bf16", bytes: 6 * n) { HalfPrecision.floatToBFloat(a.data, halves, count: n) }
            time("bf16 -> fp32", bytes: 6 * n) { HalfPrecision.bfloatToFloat(halves, b.data, count: n) }

            for (name, bytes, m) in rows {
                let bandwidth = Double(bytes) / m.median
                out.line(String(format: "%10d  ", n) + padded(name, 26) + String(format: "  %12d  %7.3f  %7.2f  %9.2f  %5.2f", bytes,
                                m.median * 1e3, bandwidth / 1e9, copyBandwidth / 1e9, bandwidth / copyBandwidth))
                out.record(["kernel": name, "elements": n, "bytes": bytes, "gb_per_s": bandwidth / 1e9,
                            "copy_gb_per_s": copyBandwidth / 1e9, "ratio_to_copy": bandwidth / copyBandwidth], m)
            }
        }
        return out
    }
}
