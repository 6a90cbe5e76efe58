import Training
import Evaluation
import Config
import Data
import Distributed
import Foundation
import NN
import Tensor

/// `contrast bench`: where speed figures come from (never from timed tests).
/// Reported figures are medians over repeats, so one noisy repeat does not move them.
public enum Bench {
    /// The benchmarks step on batches of held samples: `data.hold: stream` is benchmarked as
    /// `memory` (the same shapes and step; its own reading is measured by
    /// benchmarks/stream_memory.py and the loader wait of a training run's step records).
    static func held(_ config: TrainingConfig) -> TrainingConfig {
        var config = config
        if config.data.hold == .stream { config.data.hold = .memory }
        return config
    }

    /// One GEMM of a training step: op(A) is M x K, op(B) K x N.
    public struct GEMMShape: Sendable, CustomStringConvertible {
        public var name: String
        public var m: Int, n: Int, k: Int
        public var transposeA: Bool, transposeB: Bool
        public var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
        public var description: String { "\(name) \(m)x\(n)x\(k)\(transposeA ? " A^T" : "")\(transposeB ? " B^T" : "")" }
    }

    /// The GEMMs of one step of the MLP widths on V rows: forward Y = X W^T, backward
    /// dW = dY^T X and (except the first layer) dX = dY W.
    public static func mlpShapes(widths: [[Int]], rows v: Int) -> [GEMMShape] {
        var shapes: [GEMMShape] = []
        var first = true
        for network in widths {
            for (i, o) in zip(network, network.dropFirst()) {
                let label = "\(i)->\(o)"
                shapes.append(GEMMShape(name: "fwd \(label)", m: v, n: o, k: i, transposeA: false, transposeB: true))
                shapes.append(GEMMShape(name: "dW \(label)", m: o, n: i, k: v, transposeA: true, transposeB: false))
                if !first { shapes.append(GEMMShape(name: "dX \(label)", m: v, n: i, k: o, transposeA: false, transposeB: false)) }
                first = false
            }
        }
        return shapes
    }

    /// The three GEMMs of NT-Xent over V views of width E: logits, dZ_a, dZ.
    public static func lossShapes(rows v: Int, width e: Int) -> [GEMMShape] {
        [GEMMShape(name: "logits", m: v, n: v, k: e, transposeA: false, transposeB: true),
         GEMMShape(name: "dZ_a", m: v, n: e, k: v, transposeA: false, transposeB: false),
         GEMMShape(name: "dZ", m: v, n: e, k: v, transposeA: true, transposeB: false)]
    }

    /// Median seconds of one call of each shape over `repeats` (after one warm-up call).
    public static func timeGEMMs(_ shapes: [GEMMShape], repeats: Int) -> [Double] {
        timeGEMMs(shapes.map { GEMMCall(m: $0.m, n: $0.n, k: $0.k, transposeA: $0.transposeA, transposeB: $0.transposeB) }, repeats: repeats)
            .map(\.median)
    }

    /// Each call's shape timed alone on packed operands (beta 1 where it accumulates): median
    /// of `repeats` after one warm-up call.
    public static func timeGEMMs(_ calls: [GEMMCall], repeats: Int) -> [Measurement] {
        calls.map { s in
            let a = Tensor(shape: [s.m * s.k], repeating: 0.01)
            let b = Tensor(shape: [s.k * s.n], repeating: 0.02)
            let c = Tensor(zeros: [s.m * s.n])
            let lda = s.transposeA ? s.m : s.k, ldb = s.transposeB ? s.k : s.n
            return measure(repeats: repeats, warmup: 1) {
                gemm(transposeA: s.transposeA, transposeB: s.transposeB, m: s.m, n: s.n, k: s.k,
                     a: a.data, lda: lda, b: b.data, ldb: ldb, beta: s.accumulates ? 1 : 0, c: c.data, ldc: s.n)
            }
        }
    }

    /// The median of `values`, NaN when there are none.
    public static func median(_ values: [Double]) -> Double { Statistics.median(values) ?? .nan }

    /// `bench gemm`: GFLOP/s at the model's shapes of OpenBLAS's sgemm and, where it has one for
    /// this CPU, oneDNN's fp32 matmul (the two libraries `train.gemm_library` chooses from), and the
    /// Linear layers' forward + backward, in the config's library, as a fraction of the GEMM-only time.
    public static func gemmReport(config: TrainingConfig, repeats: Int, warmup: Int = 1, threads: Int) throws -> BenchOutput {
        BLASThreads.set(threads)
        let out = BenchOutput(bench: "gemm")
        let m = config.model, v = 2 * config.data.batchPerRank
        let encoderWidths = [784] + m.hidden + [m.representation], headWidths = [m.representation] + m.projection
        let shapes = mlpShapes(widths: [encoderWidths, headWidths], rows: v)
        let chosen = try config.train.gemmLibrary.resolved()
        let withOneDNN = OneDNNGEMM.fp32UnavailableReason == nil
        /// Each shape in OpenBLAS, then (where available) in oneDNN.
        func time(_ shapes: [GEMMShape]) -> [(openblas: Double, onednn: Double?)] {
            defer { FP32GEMM.library = chosen }
            return shapes.map { shape in
                FP32GEMM.library = .openblas
                let blas = timeGEMMs([shape], repeats: repeats)[0]
                guard withOneDNN else { return (blas, nil) }
                FP32GEMM.library = .onednn
                return (blas, timeGEMMs([shape], repeats: repeats)[0])
            }
        }
        let times = time(shapes)
        out.line("fp32 GEMMs at the step's shapes (\(v) rows, \(threads) thread(s), \(BLASThreads.configuration), kernels \(Kernels.instructionSet)"
                 + (withOneDNN ? ", oneDNN \(OneDNNGEMM.fp32Implementation ?? "")" : "") + "); median of \(repeats):")
        out.line("  " + padded("shape", 36) + "  OpenBLAS sgemm" + (withOneDNN ? "                 oneDNN f32                 OpenBLAS / oneDNN" : ""))
        func shapeRecord(_ s: GEMMShape, _ t: (openblas: Double, onednn: Double?), group: String) {
            var fields: [String: Any] = ["shape": s.name, "group": group, "m": s.m, "n": s.n, "k": s.k, "transpose_a": s.transposeA,
                                         "transpose_b": s.transposeB, "threads": threads, "gflop_per_s": s.flops / t.openblas / 1e9,
                                         "repeats": repeats, "warmup": 1, "median_ms": t.openblas * 1e3]
            if let d = t.onednn { fields["onednn_median_ms"] = d * 1e3; fields["onednn_gflop_per_s"] = s.flops / d / 1e9 }
            out.record(fields)
        }
        func row(_ name: String, flops: Double, _ t: (openblas: Double, onednn: Double?)) -> String {
            var line = "  " + padded(name, 36) + String(format: " %8.3f ms  %7.1f GFLOP/s", t.openblas * 1e3, flops / t.openblas / 1e9)
            if let d = t.onednn { line += String(format: "   %8.3f ms  %7.1f GFLOP/s   %.3fx", d * 1e3, flops / d / 1e9, t.openblas / d) }
            return line
        }
        for (s, t) in zip(shapes, times) {
            out.line(row(s.description, flops: s.flops, t))
            shapeRecord(s, t, group: "mlp")
        }
        let flops = shapes.reduce(0) { $0 + $1.flops }
        let blasTotal = times.reduce(0) { $0 + $1.openblas }
        let dnnlTotal: Double? = withOneDNN ? times.reduce(0) { $0 + ($1.onednn ?? 0) } : nil
        out.line(row("all MLP GEMMs of a step", flops: flops, (blasTotal, dnnlTotal)))
        var total: [String: Any] = ["shape": "all MLP GEMMs", "group": "mlp_total", "threads": threads, "gflop_per_s": flops / blasTotal / 1e9,
                                    "repeats": repeats, "warmup": 1, "median_ms": blasTotal * 1e3]
        if let dnnlTotal { total["onednn_median_ms"] = dnnlTotal * 1e3; total["onednn_gflop_per_s"] = flops / dnnlTotal / 1e9 }
        out.record(total)
        let loss = lossShapes(rows: v, width: m.projection.last!)
        for (s, t) in zip(loss, time(loss)) {
            out.line(row(s.description, flops: s.flops, t))
            shapeRecord(s, t, group: "loss")
        }
        let gemmTotal = chosen == .onednn ? dnnlTotal ?? blasTotal : blasTotal

        // The same work through the layers (bias, fused ReLU, bias gradients included).
        let model = ContrastiveModel(inputWidth: 784, hidden: m.hidden, representation: m.representation,
                                     projection: m.projection, activation: .relu)
        model.initialise(seed: 0)
        let input = Tensor(shape: [v, 784], repeating: 0.5)
        let gradient = Tensor(zeros: [v, m.representation])
        let headGradient = Tensor(zeros: [v, m.projection.last!])
        let layers = measureEach(repeats: repeats, warmup: warmup) { () -> Double in
            for i in 0..<gradient.count { gradient[i] = 1e-3 }
            for i in 0..<headGradient.count { headGradient[i] = 1e-3 }
            let t0 = monotonicSeconds()
            let h = model.encoder.forward(input.data, batch: v)
            _ = (model.head.layers[0] as! Sequential).forward(h, batch: v)
            model.arena.zeroGradients()
            let dh = (model.head.layers[0] as! Sequential).backward(headGradient.data, batch: v)!
            Kernels.axpy(gradient.data, alpha: 1, x: dh, count: gradient.count)
            _ = model.encoder.backward(gradient.data, batch: v)
            return monotonicSeconds() - t0
        }
        let layerTime = layers.median
        out.line(String(format: "Linear layers forward+backward %8.3f ms  %7.1f GFLOP/s = %.1f%% of the GEMM-only rate (%@)",
                        layerTime * 1e3, flops / layerTime / 1e9, gemmTotal / layerTime * 100, FP32GEMM.description))
        out.record(["shape": "Linear layers forward+backward", "group": "layers", "threads": threads, "gflop_per_s": flops / layerTime / 1e9,
                    "fraction_of_gemm_rate": gemmTotal / layerTime, "library": chosen.rawValue], layers)
        return out
    }

    public struct StepFigures: Sendable {
        public var imagesPerSecondStep: Double
        public var imagesPerSecondEndToEnd: Double
        public var median: StepTimes
        /// The step-only (augmentation excluded) time and how it was taken.
        public var stepTime: Measurement
        /// Sum over the step's recorded GEMMs of each timed alone (`gemmAccount`).
        public var gemmSeconds: Double
        public var gemmAccount: GEMMAccount
        public var memory: MemoryAccount
        /// Resident set of rank 0 before the TrainingStep is made, and its peak over the steps (bytes).
        public var residentBeforeBytes: Int
        public var residentPeakBytes: Int
        /// The largest peak over ranks (bytes).
        public var residentPeakMaxBytes: Int
        /// Gradient all-reduce of the timed steps (rank 0): medians of the seconds in flight while
        /// backward computed (hidden) and waited for after it (exposed); hidden share of the sums.
        public var communicationHidden: Double
        public var communicationExposed: Double
        public var communicationHiddenFraction: Double
    }

    /// `bench step`: the training step of `config` on real images, `repeats` timed steps after
    /// `warmup`, on every rank of `communicator`; medians of each phase (rank 0's clock: the
    /// collectives keep ranks in step). Then one more step with its GEMMs recorded, each timed
    /// alone at one BLAS thread (`GEMMAccount`), and the memory account of its buffers against
    /// the peak resident set (`MemoryAccount`).
    ///
    /// `syntheticImages` [channels, height, width]: instead of the config's data set, every step
    /// trains on one fixed batch of uniform random pixels of that shape (no data set is read and
    /// no augmentation runs): for inputs no prepared data set holds yet, such as 3-channel 32 x 32
    /// images. The step's work does not depend on the pixel values. SimCLR views only (loss.kind ntxent).
    public static func step(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator(),
                            repeats: Int, warmup: Int, syntheticImages: [Int]? = nil,
                            syntheticText: Bool = false) throws -> (StepFigures, BenchOutput) {
        BLASThreads.set(config.train.blasThreads)
        let p = communicator.size
        let b = config.data.batchPerRank, v = 2 * b
        let data: TrainingData?, inputWidth: Int, pairWidth: Int, imageShape: [Int]?
        if syntheticText {
            // `syntheticText`: the text encoder on one fixed batch of random token ids (`fillTokens`), no data read.
            guard config.model.encoder == .bert, !config.loss.usesPairTower else {
                throw ConfigError(key: "model.encoder", problem: "bench step --synthetic-text steps the text encoder through one tower, "
                                  + "but config key 'model.encoder' is \(config.model.encoder.rawValue)"
                                  + (config.loss.usesPairTower ? " with two towers (loss.kind clip or loss.sides pairs)" : ""),
                                  hint: "use a bert config with loss.sides views (configs/bench-bert-mini.yaml)")
            }
            data = nil
            inputWidth = 3 * config.model.bert.maxLength
            pairWidth = 0
            imageShape = nil
        } else if let synthetic = syntheticImages {
            precondition(synthetic.count == 3 && synthetic.allSatisfy { $0 >= 1 }, "syntheticImages is [channels, height, width], got \(synthetic)")
            guard config.loss.kind == .ntxent else {
                throw ConfigError(key: "loss.kind", problem: "bench step --synthetic-images makes the two views of SimCLR only, but "
                                  + "config key 'loss.kind' is \(config.loss.kind.rawValue)",
                                  hint: "use --set loss.kind=ntxent, or leave out --synthetic-images to step on the config's data")
            }
            data = nil
            inputWidth = synthetic.reduce(1, *)
            pairWidth = 0
            imageShape = synthetic[0] == 1 ? Array(synthetic.dropFirst()) : synthetic   // grey images are [height, width], as data sets give them
        } else {
            let real = try TrainingData(config: Bench.held(config), rank: communicator.rank, worldSize: p, loadTest: false)
            data = real
            inputWidth = real.train.featureWidth
            pairWidth = real.train.pairWidth
            imageShape = real.imageShape
        }
        let residentBefore = ResidentMemory.current(), scratchBefore = ScratchBuffer.liveBytes
        ResidentMemory.resetPeak()
        let step = try TrainingStep(config: config, communicator: communicator, inputWidth: inputWidth,
                                    pairWidth: pairWidth, imageShape: imageShape, samplesPerStep: b, totalSteps: warmup + repeats + 1,
                                    layout: data?.viewsLayout ?? ViewsLayout())
        // One forward before the first step: the scratch it grows are the forward's buffers (the activations
        // backward reads, and the forward's workspace); what the step grows after them is backward's and the loss's.
        // Gradient caching forwards in chunks, and CLIP's batch is not views: their split is not measured.
        var forwardBytes: Int? = nil
        if config.train.gradientCacheChunk == 0 && !config.loss.usesPairTower {
            let scratchMade = ScratchBuffer.liveBytes
            if data == nil { fillSynthetic(step.batch, config: config, text: syntheticText, rank: communicator.rank) }
            _ = step.model.forward(step.batch.data, batch: v)
            forwardBytes = ScratchBuffer.liveBytes - scratchMade
        }
        var stepIndex = 0
        let oneStep: () throws -> TrainingStep.Result
        if let data {
            let sampler = data.sampler
            let order = try sampler.order(epoch: 0, rank: communicator.rank, worldSize: p)
            oneStep = {
                let t0 = monotonicSeconds()
                data.maker.makeBatch(samples: order.batch(stepIndex % sampler.batchesPerEpoch), epoch: 0, into: step.batch.data)
                stepIndex += 1
                let augmentation = monotonicSeconds() - t0
                var result = try step.step(stepIndex - 1, input: step.batch.data)
                result.times.dataWait = augmentation
                return result
            }
        } else {
            fillSynthetic(step.batch, config: config, text: syntheticText, rank: communicator.rank)
            oneStep = {
                stepIndex += 1
                return try step.step(stepIndex - 1, input: step.batch.data)
            }
        }
        // Each step's time in oneDNN's layout reorders (the convolutions' NCHW <-> blocked copies).
        let timed = try afterWarmup(repeats: repeats, warmup: warmup) { _ -> (TrainingStep.Result, OneDNNConvolution.ReorderClock) in
            let before = OneDNNConvolution.reorderClock
            let result = try oneStep()
            let after = OneDNNConvolution.reorderClock
            return (result, .init(activations: after.activations - before.activations, weights: after.weights - before.weights))
        }
        let results = timed.map(\.0)
        let reorders = OneDNNConvolution.ReorderClock(activations: median(timed.map(\.1.activations)), weights: median(timed.map(\.1.weights)))
        let all = results.map(\.times)
        // Before the GEMM timing below allocates its own operands.
        let residentPeak = ResidentMemory.peak(), residentParts = ResidentMemory.parts()
        var peaks = [Double(residentPeak)]
        try communicator.allReduceMax(&peaks)
        let memory = MemoryAccount(step: step, scratchBytesBefore: scratchBefore, forwardBytes: forwardBytes)
        let recorded = try GEMMRecording.record { try oneStep() }.calls
        let gemmAccount = GEMMAccount(recorded, repeats: max(repeats, 5))
        BLASThreads.set(config.train.blasThreads)

        func med(_ f: (StepTimes) -> Double) -> Double { median(all.map(f)) }
        var m = StepTimes()
        m.dataWait = med { $0.dataWait }; m.forward = med { $0.forward }; m.gather = med { $0.gather }
        m.loss = med { $0.loss }; m.backward = med { $0.backward }; m.communication = med { $0.communication }
        m.optimizer = med { $0.optimizer }
        let stepTime = Measurement(seconds: all.map(\.compute), warmup: warmup), endToEnd = med { $0.total }
        let stepOnly = stepTime.median
        let globalImages = Double(b * p)
        let hidden = results.reduce(0) { $0 + $1.communication.hidden }, exposed = results.reduce(0) { $0 + $1.communication.exposed }
        let figures = StepFigures(imagesPerSecondStep: globalImages / stepOnly, imagesPerSecondEndToEnd: globalImages / endToEnd,
                                  median: m, stepTime: stepTime, gemmSeconds: gemmAccount.totalSeconds, gemmAccount: gemmAccount, memory: memory,
                                  residentBeforeBytes: residentBefore, residentPeakBytes: residentPeak, residentPeakMaxBytes: Int(peaks[0]),
                                  communicationHidden: median(results.map(\.communication.hidden)),
                                  communicationExposed: median(results.map(\.communication.exposed)),
                                  communicationHiddenFraction: hidden + exposed > 0 ? hidden / (hidden + exposed) : .nan)

        let out = BenchOutput(bench: "step")
        for line in [
            (syntheticImages.map { "synthetic input: one fixed batch of random \($0.map(String.init).joined(separator: " x ")) images, no data set, no augmentation" } ?? "input: \(config.data.dataset.rawValue) at \(config.data.path)"),
            "training step, \(b) samples (\(config.loss.usesPairTower ? "\(b) pairs" : "\(v) views")) per rank, \(p) rank(s), \(config.train.blasThreads) BLAS thread(s) each, gradients as \(step.reducer.precision.rawValue); median of \(repeats) after \(warmup) warm-up (rank 0's clock):",
            String(format: "  augmentation %7.2f ms", m.dataWait * 1e3),
            String(format: "  forward      %7.2f ms", m.forward * 1e3),
            String(format: "  all-gather + reduce-scatter %7.2f ms", m.gather * 1e3),
            String(format: "  loss         %7.2f ms", m.loss * 1e3),
            String(format: "  backward     %7.2f ms", m.backward * 1e3),
            String(format: "  gradient all-reduce (exposed) %7.2f ms", m.communication * 1e3),
            String(format: "  optimizer    %7.2f ms", m.optimizer * 1e3),
            String(format: "  step (augmentation excluded) %7.2f ms = %6.0f images/s (all ranks)", stepOnly * 1e3, figures.imagesPerSecondStep),
            String(format: "  end to end (included)        %7.2f ms = %6.0f images/s (all ranks)", endToEnd * 1e3, figures.imagesPerSecondEndToEnd),
        ] { out.line(line) }
        if p > 1 {
            out.line(String(format: "  gradient all-reduce: %.2f ms hidden behind backward, %.2f ms exposed (medians); %.1f%% hidden over the timed steps",
                            figures.communicationHidden * 1e3, figures.communicationExposed * 1e3, figures.communicationHiddenFraction * 100))
        }
        if reorders.activations + reorders.weights > 0 {
            out.line(String(format: "  of the step, oneDNN convolutions' layout reorders (NCHW <-> blocked): activations %.2f ms, weights %.2f ms (medians)",
                            reorders.activations * 1e3, reorders.weights * 1e3))
        }
        out.line("GEMM account: the \(recorded.count) fp32 GEMM calls of one step (\(FP32GEMM.description); a oneDNN convolution counts as the im2col GEMMs it replaces), \(gemmAccount.entries.count) shapes, each timed alone at one thread (median of \(max(repeats, 5))):")
        for entry in gemmAccount.entries {
            out.line("  " + padded(entry.call.description, 32) + String(format: " x%-3d %8.3f ms each  %7.1f GFLOP/s", entry.count,
                            entry.time.median * 1e3, entry.call.flops / entry.time.median / 1e9))
        }
        // The MLP's target is issue 9's; encoders with convolutions, norms and attention between
        // their GEMMs have issue 20's looser one.
        let target = config.model.encoder == .mlp ? "1.1" : "1.3"
        out.line(String(format: "  sum %.2f ms (%.2f GFLOP at %.1f GFLOP/s); step / GEMM sum = %.3f",
                        gemmAccount.totalSeconds * 1e3, gemmAccount.totalFlops / 1e9, gemmAccount.totalFlops / gemmAccount.totalSeconds / 1e9,
                        stepOnly / gemmAccount.totalSeconds) + " (target <= \(target) for the \(config.model.encoder.rawValue) encoder)")
        out.line("memory account (rank 0, bytes of the step's own buffers):")
        let labelWidth = memory.parts.map(\.0.count).max() ?? 42
        for (name, bytes) in memory.parts {
            out.line("  " + padded(name, labelWidth) + String(format: " %9.2f MB", Double(bytes) / 1e6))
        }
        out.line("  " + padded("sum", labelWidth) + String(format: " %9.2f MB", Double(memory.total) / 1e6))
        out.line(String(format: "  peak resident (VmHWM) %.1f MB on rank 0, %.1f MB the largest over ranks = %.2fx the sum (target <= 1.5)",
                        Double(residentPeak) / 1e6, peaks[0] / 1e6, peaks[0] / Double(memory.total)))
        out.line(String(format: "  resident before the step was made %.1f MB (program, libraries, the data set: %.1f MB of samples in memory); growth to the peak %.1f MB = %.2fx the sum%@",
                        Double(residentBefore) / 1e6, Double(data.map(MemoryAccount.dataSetBytes) ?? 0) / 1e6, Double(residentPeak - residentBefore) / 1e6,
                        Double(residentPeak - residentBefore) / Double(memory.total),
                        config.train.gradientCacheChunk > 0 ? " with train.gradient_cache_chunk=\(config.train.gradientCacheChunk)" as NSString : "" as NSString))

        out.line(String(format: "  resident after the timed steps: %.1f MB anonymous (the heap: the account's buffers, the data set, allocator slack), "
                        + "%.1f MB shared memory (Open MPI's shared-memory transport maps its segments here), %.1f MB of files (program, libraries)",
                        Double(residentParts.anonymous) / 1e6, Double(residentParts.shared) / 1e6, Double(residentParts.file) / 1e6))

        var record: [String: Any] = [
            "ranks": p, "images_per_second_step": figures.imagesPerSecondStep, "images_per_second_end_to_end": figures.imagesPerSecondEndToEnd,
            "augmentation_ms": m.dataWait * 1e3, "forward_ms": m.forward * 1e3, "gather_ms": m.gather * 1e3, "loss_ms": m.loss * 1e3,
            "backward_ms": m.backward * 1e3, "communication_ms": m.communication * 1e3, "optimizer_ms": m.optimizer * 1e3,
            "end_to_end_ms": endToEnd * 1e3, "reorder_activations_ms": reorders.activations * 1e3, "reorder_weights_ms": reorders.weights * 1e3, "gemm_ms": gemmAccount.totalSeconds * 1e3, "gemm_library": FP32GEMM.library.rawValue, "step_over_gemm": stepOnly / gemmAccount.totalSeconds,
            "gemm_calls": recorded.count, "gemm_gflop": gemmAccount.totalFlops / 1e9,
            "gemm_account": gemmAccount.entries.map { e -> [String: Any] in
                ["m": e.call.m, "n": e.call.n, "k": e.call.k, "transpose_a": e.call.transposeA, "transpose_b": e.call.transposeB,
                 "accumulates": e.call.accumulates, "count": e.count, "median_ms": e.time.median * 1e3]
            },
            "memory": memory.fields, "resident_before_mb": Double(residentBefore) / 1e6, "resident_peak_mb": Double(residentPeak) / 1e6,
            "resident_peak_max_rank_mb": peaks[0] / 1e6, "resident_peak_over_memory_sum": peaks[0] / Double(memory.total),
            "resident_anonymous_mb": Double(residentParts.anonymous) / 1e6, "resident_shared_mb": Double(residentParts.shared) / 1e6,
            "resident_file_mb": Double(residentParts.file) / 1e6, "synthetic_images": syntheticImages ?? [],
            "wire_precision": step.reducer.precision.rawValue, "blas_threads": config.train.blasThreads, "transport": transport,
        ]
        if p > 1 {
            record["communication_hidden_ms"] = figures.communicationHidden * 1e3
            record["communication_exposed_ms"] = figures.communicationExposed * 1e3
            record["communication_hidden_fraction"] = figures.communicationHiddenFraction
        }
        out.record(record, stepTime)
        return (figures, out)
    }
}

extension Bench {
    /// Fills `batch` with uniform random pixels in [0, 1) (`bench step --synthetic-images`), a stream per rank.
    /// The synthetic batch: uniform random pixels, or (`text`) BERT rows of random token ids
    /// (every position real: mask 1, types 0; ids above the special tokens, as torch_bert_step.py
    /// draws them) for the V views, and after them the pair ids 0 ..< B when the batch carries some.
    static func fillSynthetic(_ batch: Tensor, config: TrainingConfig, text: Bool, rank: Int) {
        guard text else { return fillSynthetic(batch, seed: UInt64(config.seed), rank: rank) }
        let t = config.model.bert.maxLength, rows = 2 * config.data.batchPerRank, width = 3 * t
        let vocabulary = max(config.model.bert.vocabSize, 6)
        var random = RandomStream(seed: UInt64(config.seed), stream: UInt64(rank))
        for row in 0..<rows {
            let out = batch.data + row * width
            for k in 0..<t { out[k] = Float(min(1000, vocabulary / 2) + random.nextInt(below: vocabulary - min(1000, vocabulary / 2))) }
            (out + t).update(repeating: 1, count: t)
            (out + 2 * t).update(repeating: 0, count: t)
        }
        for i in 0..<(batch.count - rows * width) { batch[rows * width + i] = Float(rank * config.data.batchPerRank + i) }
    }

    static func fillSynthetic(_ batch: Tensor, seed: UInt64, rank: Int) {
        var random = RandomStream(seed: seed, stream: UInt64(rank))
        for i in 0..<batch.count { batch[i] = random.nextUniform() }
    }
}

extension Bench {
    /// `bench data`: the data pipeline alone against what the step consumes, one process.
    /// Times (1) opening and reading this rank's part of the data set (every checksum; for
    /// `prepared` the shard files, for `fashion-mnist` the IDX files), (2) making batches
    /// (decoded samples to augmented views) on one thread, and (3) the training step on the
    /// same batches; reports samples/s of each and the producer's margin over the consumer.
    public static func data(config: TrainingConfig, repeats: Int, warmup: Int = 3) throws -> BenchOutput {
        BLASThreads.set(config.train.blasThreads)
        let t0 = monotonicSeconds()
        let data = try TrainingData(config: Bench.held(config), rank: 0, worldSize: 1, loadTest: false)
        let readSeconds = monotonicSeconds() - t0
        var fileBytes = 0
        if config.data.dataset == .prepared {
            let manifest = try ShardedDataset.readManifest(directory: ShardedDataset.splits(of: config.data.path).train)
            fileBytes = data.shards.reduce(0) { $0 + manifest.shards[$1].bytes }
        } else {
            for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
                let attributes = try? FileManager.default.attributesOfItem(atPath: config.data.path + "/" + name)
                fileBytes += (attributes?[.size] as? Int) ?? 0
            }
        }
        let b = config.data.batchPerRank
        let step = try TrainingStep(config: config, inputWidth: data.train.featureWidth, pairWidth: data.train.pairWidth, imageShape: data.imageShape,
                                    samplesPerStep: b, totalSteps: warmup + repeats, layout: data.viewsLayout)
        let order = try data.sampler.order(epoch: 0)
        let timed = try afterWarmup(repeats: repeats, warmup: warmup) { i -> (make: Double, step: Double) in
            let t1 = monotonicSeconds()
            data.maker.makeBatch(samples: order.batch(i % data.sampler.batchesPerEpoch), epoch: 0, into: step.batch.data)
            let t2 = monotonicSeconds()
            _ = try step.step(i, input: step.batch.data)
            return (t2 - t1, monotonicSeconds() - t2)
        }
        let makeTime = Measurement(seconds: timed.map(\.make), warmup: warmup), stepTime = Measurement(seconds: timed.map(\.step), warmup: warmup)
        let make = makeTime.median, consume = stepTime.median
        let decodedBytes = data.train.count * (data.train.featureWidth * (data.train.features.dtype == .uint8 ? 1 : 4) + data.train.pairWidth * 4 + 8)
        let out = BenchOutput(bench: "data")
        out.line("data pipeline, one process, \(config.data.dataset.rawValue) at \(config.data.path) (\(TrainingData.describe(data.maker))):")
        out.line(String(format: "  read + check %d samples: %.3f s = %.0f samples/s, %.1f MB/s of files, %.1f MB/s decoded",
                        data.train.count, readSeconds, Double(data.train.count) / readSeconds, Double(fileBytes) / readSeconds / 1e6,
                        Double(decodedBytes) / readSeconds / 1e6))
        out.line(String(format: "  batches of %d samples made on one thread: %.2f ms = %.0f samples/s (median of %d)",
                        b, make * 1e3, Double(b) / make, repeats))
        out.line(String(format: "  training step on them: %.2f ms = %.0f samples/s consumed", consume * 1e3, Double(b) / consume))
        out.line(String(format: "  producer / consumer: %.1fx (one producer thread keeps up while > 1)", consume / make))
        let dataset = config.data.dataset.rawValue
        // Reading happens once: its one measurement is the median of one.
        out.record(["stage": "read", "dataset": dataset, "samples": data.train.count, "samples_per_second": Double(data.train.count) / readSeconds,
                    "file_mb_per_s": Double(fileBytes) / readSeconds / 1e6, "decoded_mb_per_s": Double(decodedBytes) / readSeconds / 1e6],
                   Measurement(seconds: [readSeconds], warmup: 0))
        out.record(["stage": "make_batch", "dataset": dataset, "samples": b, "samples_per_second": Double(b) / make], makeTime)
        out.record(["stage": "step", "dataset": dataset, "samples": b, "samples_per_second": Double(b) / consume,
                    "producer_over_consumer": consume / make], stepTime)
        return out
    }
}

/// This process's resident memory from /proc/self/status (Linux; 0 elsewhere).
public enum ResidentMemory {
    /// VmRSS: resident now, in bytes.
    public static func current() -> Int { field("VmRSS:") }

    /// The resident set now by kind, in bytes: anonymous (RssAnon: the heap), shared memory (RssShmem:
    /// e.g. Open MPI's shared-memory segments) and file-backed (RssFile: the program and its libraries).
    public static func parts() -> (anonymous: Int, shared: Int, file: Int) {
        (field("RssAnon:"), field("RssShmem:"), field("RssFile:"))
    }

    /// VmHWM: the peak resident set since the process started or since `resetPeak`, in bytes.
    public static func peak() -> Int { field("VmHWM:") }

    /// Starts VmHWM again from the current resident set (writing 5 to /proc/self/clear_refs).
    public static func resetPeak() {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return }
        try? handle.write(contentsOf: Data("5".utf8))
        try? handle.close()
    }

    /// Gives freed heap memory back to the system (glibc's malloc_trim, looked up at run time:
    /// Swift's Glibc module leaves malloc.h out; a no-op where it is missing), so that a later
    /// resident-set growth is not hidden by pages an earlier measurement freed but kept.
    public static func returnFreedHeap() {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        typealias Trim = @convention(c) (Int) -> Int32
        _ = unsafeBitCast(symbol, to: Trim.self)(0)
    }

    static func field(_ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kilobytes = Int(line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") else { return 0 }
        return kilobytes * 1024
    }
}
