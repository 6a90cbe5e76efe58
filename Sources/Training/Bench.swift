import Data
import Distributed
import Foundation
import NN
import Tensor

/// `contrast bench`: where speed figures come from (never from timed tests).
/// Reported figures are medians over repeats, so one noisy repeat does not move them.
public enum Bench {
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
        shapes.map { s in
            let a = Tensor(shape: [s.m * s.k], repeating: 0.01)
            let b = Tensor(shape: [s.k * s.n], repeating: 0.02)
            let c = Tensor(zeros: [s.m * s.n])
            let lda = s.transposeA ? s.m : s.k, ldb = s.transposeB ? s.k : s.n
            var times: [Double] = []
            for r in 0...repeats {
                let t0 = monotonicSeconds()
                gemm(transposeA: s.transposeA, transposeB: s.transposeB, m: s.m, n: s.n, k: s.k,
                     a: a.data, lda: lda, b: b.data, ldb: ldb, c: c.data, ldc: s.n)
                if r > 0 { times.append(monotonicSeconds() - t0) }
            }
            return median(times)
        }
    }

    public static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// `bench gemm`: sgemm GFLOP/s at the model's shapes, and the Linear layers' forward +
    /// backward as a fraction of the GEMM-only time.
    public static func gemmReport(config: TrainingConfig, repeats: Int, threads: Int) -> String {
        BLASThreads.set(threads)
        let m = config.model, v = 2 * config.data.batchPerRank
        let encoderWidths = [784] + m.hidden + [m.representation], headWidths = [m.representation] + m.projection
        let shapes = mlpShapes(widths: [encoderWidths, headWidths], rows: v)
        let times = timeGEMMs(shapes, repeats: repeats)
        var lines = ["sgemm at the step's shapes (\(v) rows, \(threads) BLAS thread(s), \(BLASThreads.configuration), kernels \(Kernels.instructionSet)); median of \(repeats):"]
        for (s, t) in zip(shapes, times) {
            lines.append(String(format: "  %-28@ %8.3f ms  %7.1f GFLOP/s", s.description as NSString, t * 1e3, s.flops / t / 1e9))
        }
        let gemmTotal = times.reduce(0, +), flops = shapes.reduce(0) { $0 + $1.flops }
        lines.append(String(format: "  all MLP GEMMs of a step       %8.3f ms  %7.1f GFLOP/s", gemmTotal * 1e3, flops / gemmTotal / 1e9))
        let loss = lossShapes(rows: v, width: m.projection.last!)
        for (s, t) in zip(loss, timeGEMMs(loss, repeats: repeats)) {
            lines.append("  " + s.description.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%8.3f ms  %7.1f GFLOP/s", t * 1e3, s.flops / t / 1e9))
        }

        // The same work through the layers (bias, fused ReLU, bias gradients included).
        let model = ContrastiveModel(inputWidth: 784, hidden: m.hidden, representation: m.representation,
                                     projection: m.projection, activation: .relu)
        model.initialise(seed: 0)
        let input = Tensor(shape: [v, 784], repeating: 0.5)
        let gradient = Tensor(zeros: [v, m.representation])
        let headGradient = Tensor(zeros: [v, m.projection.last!])
        var layerTimes: [Double] = []
        for r in 0...repeats {
            for i in 0..<gradient.count { gradient[i] = 1e-3 }
            for i in 0..<headGradient.count { headGradient[i] = 1e-3 }
            let t0 = monotonicSeconds()
            let h = model.encoder.forward(input.data, batch: v)
            _ = (model.head.layers[0] as! Sequential).forward(h, batch: v)
            model.arena.zeroGradients()
            let dh = (model.head.layers[0] as! Sequential).backward(headGradient.data, batch: v)!
            Kernels.axpy(gradient.data, alpha: 1, x: dh, count: gradient.count)
            _ = model.encoder.backward(gradient.data, batch: v)
            if r > 0 { layerTimes.append(monotonicSeconds() - t0) }
        }
        let layerTime = median(layerTimes)
        lines.append(String(format: "Linear layers forward+backward %8.3f ms  %7.1f GFLOP/s = %.1f%% of the GEMM-only rate",
                            layerTime * 1e3, flops / layerTime / 1e9, gemmTotal / layerTime * 100))
        return lines.joined(separator: "\n")
    }

    public struct StepFigures: Sendable {
        public var imagesPerSecondStep: Double
        public var imagesPerSecondEndToEnd: Double
        public var median: StepTimes
        public var gemmSeconds: Double
        /// Resident set of rank 0 before the TrainingStep is made, and its peak over the steps (bytes).
        public var residentBeforeBytes: Int
        public var residentPeakBytes: Int
    }

    /// `bench step`: the training step of `config` on real images, `repeats` timed steps after
    /// `warmup`, on every rank of `communicator`; medians of each phase (rank 0's clock: the
    /// collectives keep ranks in step), and the step's GEMM time measured in the same process.
    public static func step(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator(),
                            repeats: Int, warmup: Int) throws -> (StepFigures, String) {
        BLASThreads.set(config.train.blasThreads)
        let p = communicator.size
        let data = try TrainingData(config: config, rank: communicator.rank, worldSize: p, loadTest: false)
        let sampler = data.sampler
        let b = config.data.batchPerRank, v = 2 * b
        let residentBefore = ResidentMemory.current()
        ResidentMemory.resetPeak()
        let step = try TrainingStep(config: config, communicator: communicator, inputWidth: data.train.featureWidth,
                                    pairWidth: data.train.pairWidth, imageShape: data.imageShape, samplesPerStep: b, totalSteps: warmup + repeats)
        let order = try sampler.order(epoch: 0, rank: communicator.rank, worldSize: p)
        var all: [StepTimes] = []
        for i in 0..<(warmup + repeats) {
            let t0 = monotonicSeconds()
            data.maker.makeBatch(samples: order.batch(i % sampler.batchesPerEpoch), epoch: 0, into: step.batch.data)
            let augmentation = monotonicSeconds() - t0
            var result = try step.step(learningRate: config.optimizer.lr)
            result.times.augmentation = augmentation
            if i >= warmup { all.append(result.times) }
        }
        // Before the GEMM timing below allocates its own operands.
        let residentPeak = ResidentMemory.peak()
        func med(_ f: (StepTimes) -> Double) -> Double { median(all.map(f)) }
        var m = StepTimes()
        m.augmentation = med { $0.augmentation }; m.forward = med { $0.forward }; m.gather = med { $0.gather }
        m.loss = med { $0.loss }; m.backward = med { $0.backward }; m.communication = med { $0.communication }
        m.optimizer = med { $0.optimizer }
        let stepOnly = med { $0.compute }, endToEnd = med { $0.total }
        let globalImages = Double(b * p)

        let mc = config.model, e = mc.projection.last!
        let tower = [[mc.representation] + mc.projection]
        let shapes: [GEMMShape]
        if step.clipLoss != nil {
            // Two towers of B rows each; per direction the logits B x N and the two gradients.
            let n = p * b
            shapes = mlpShapes(widths: [[data.train.featureWidth] + mc.hidden + [mc.representation]] + tower, rows: b)
                + mlpShapes(widths: [[data.train.pairWidth] + mc.pairHidden + [mc.representation]] + tower, rows: b)
                + (0..<2).flatMap { direction in
                    [GEMMShape(name: "logits \(direction)", m: b, n: n, k: e, transposeA: false, transposeB: true),
                     GEMMShape(name: "dZ_a \(direction)", m: b, n: e, k: n, transposeA: false, transposeB: false),
                     GEMMShape(name: "dZ \(direction)", m: n, n: e, k: b, transposeA: true, transposeB: false)]
                }
        } else {
            shapes = mlpShapes(widths: [[data.train.featureWidth] + mc.hidden + [mc.representation]] + tower, rows: v)
                + [GEMMShape(name: "logits", m: v, n: p * v, k: e, transposeA: false, transposeB: true),
                   GEMMShape(name: "dZ_a", m: v, n: e, k: p * v, transposeA: false, transposeB: false),
                   GEMMShape(name: "dZ", m: p * v, n: e, k: v, transposeA: true, transposeB: false)]
        }
        let gemmSeconds = timeGEMMs(shapes, repeats: max(repeats, 5)).reduce(0, +)
        let figures = StepFigures(imagesPerSecondStep: globalImages / stepOnly, imagesPerSecondEndToEnd: globalImages / endToEnd,
                                  median: m, gemmSeconds: gemmSeconds, residentBeforeBytes: residentBefore, residentPeakBytes: residentPeak)
        let report = [
            "training step, \(b) samples (\(step.clipLoss != nil ? "\(b) pairs" : "\(v) views")) per rank, \(p) rank(s), \(config.train.blasThreads) BLAS thread(s) each, gradients as \(step.reducer.precision.rawValue); median of \(repeats) after \(warmup) warm-up (rank 0's clock):",
            String(format: "  augmentation %7.2f ms", m.augmentation * 1e3),
            String(format: "  forward      %7.2f ms", m.forward * 1e3),
            String(format: "  all-gather + reduce-scatter %7.2f ms", m.gather * 1e3),
            String(format: "  loss         %7.2f ms", m.loss * 1e3),
            String(format: "  backward     %7.2f ms", m.backward * 1e3),
            String(format: "  gradient all-reduce (exposed) %7.2f ms", m.communication * 1e3),
            String(format: "  optimizer    %7.2f ms", m.optimizer * 1e3),
            String(format: "  step (augmentation excluded) %7.2f ms = %6.0f images/s (all ranks)", stepOnly * 1e3, figures.imagesPerSecondStep),
            String(format: "  end to end (included)        %7.2f ms = %6.0f images/s (all ranks)", endToEnd * 1e3, figures.imagesPerSecondEndToEnd),
            String(format: "  one rank's GEMMs alone       %7.2f ms; step / GEMM = %.3f", gemmSeconds * 1e3, stepOnly / gemmSeconds),
            String(format: "  resident memory (rank 0): %.1f MB before the step, peak %.1f MB while stepping (+%.1f MB)%@",
                   Double(residentBefore) / 1e6, Double(residentPeak) / 1e6, Double(residentPeak - residentBefore) / 1e6,
                   config.train.gradientCacheChunk > 0 ? " with train.gradient_cache_chunk=\(config.train.gradientCacheChunk)" as NSString : "" as NSString),
        ].joined(separator: "\n")
        return (figures, report)
    }
}

extension Bench {
    /// `bench data`: the data pipeline alone against what the step consumes, one process.
    /// Times (1) opening and reading this rank's part of the data set (every checksum; for
    /// `prepared` the shard files, for `fashion-mnist` the IDX files), (2) making batches
    /// (decoded samples to augmented views) on one thread, and (3) the training step on the
    /// same batches; reports samples/s of each and the producer's margin over the consumer.
    public static func data(config: TrainingConfig, repeats: Int, warmup: Int = 3) throws -> String {
        BLASThreads.set(config.train.blasThreads)
        let t0 = monotonicSeconds()
        let data = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        let readSeconds = monotonicSeconds() - t0
        var fileBytes = 0
        if config.data.dataset == .prepared {
            let manifest = try ShardedDataset.readManifest(directory: TrainingData.splits(of: config.data.path).train)
            fileBytes = data.shards.reduce(0) { $0 + manifest.shards[$1].bytes }
        } else {
            for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
                let attributes = try? FileManager.default.attributesOfItem(atPath: config.data.path + "/" + name)
                fileBytes += (attributes?[.size] as? Int) ?? 0
            }
        }
        let b = config.data.batchPerRank
        let step = try TrainingStep(config: config, inputWidth: data.train.featureWidth, pairWidth: data.train.pairWidth, imageShape: data.imageShape,
                                    samplesPerStep: b, totalSteps: warmup + repeats)
        let order = try data.sampler.order(epoch: 0)
        var makeTimes: [Double] = [], stepTimes: [Double] = []
        for i in 0..<(warmup + repeats) {
            let t1 = monotonicSeconds()
            data.maker.makeBatch(samples: order.batch(i % data.sampler.batchesPerEpoch), epoch: 0, into: step.batch.data)
            let t2 = monotonicSeconds()
            _ = try step.step(learningRate: config.optimizer.lr)
            let t3 = monotonicSeconds()
            if i >= warmup { makeTimes.append(t2 - t1); stepTimes.append(t3 - t2) }
        }
        let make = median(makeTimes), consume = median(stepTimes)
        let decodedBytes = data.train.count * (data.train.featureWidth * (data.train.features.dtype == .uint8 ? 1 : 4) + data.train.pairWidth * 4 + 8)
        return [
            "data pipeline, one process, \(config.data.dataset.rawValue) at \(config.data.path) (\(TrainingData.describe(data.maker))):",
            String(format: "  read + check %d samples: %.3f s = %.0f samples/s, %.1f MB/s of files, %.1f MB/s decoded",
                   data.train.count, readSeconds, Double(data.train.count) / readSeconds, Double(fileBytes) / readSeconds / 1e6,
                   Double(decodedBytes) / readSeconds / 1e6),
            String(format: "  batches of %d samples made on one thread: %.2f ms = %.0f samples/s (median of %d)",
                   b, make * 1e3, Double(b) / make, repeats),
            String(format: "  training step on them: %.2f ms = %.0f samples/s consumed", consume * 1e3, Double(b) / consume),
            String(format: "  producer / consumer: %.1fx (one producer thread keeps up while > 1)", consume / make),
        ].joined(separator: "\n")
    }
}

/// This process's resident memory from /proc/self/status (Linux; 0 elsewhere).
public enum ResidentMemory {
    /// VmRSS: resident now, in bytes.
    public static func current() -> Int { field("VmRSS:") }

    /// VmHWM: the peak resident set since the process started or since `resetPeak`, in bytes.
    public static func peak() -> Int { field("VmHWM:") }

    /// Starts VmHWM again from the current resident set (writing 5 to /proc/self/clear_refs).
    public static func resetPeak() {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return }
        try? handle.write(contentsOf: Data("5".utf8))
        try? handle.close()
    }

    static func field(_ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kilobytes = Int(line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") else { return 0 }
        return kilobytes * 1024
    }
}
