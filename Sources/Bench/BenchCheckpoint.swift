import Training
import Config
import Checkpoint
import Data
import Distributed
import Foundation
import Tensor

extension Bench {
    /// `bench checkpoint`: save and load time of the benchmark model's full state (parameters
    /// and AdamW moments, after a few real steps so the moments look like training), per rank,
    /// and the compression of plain and byte-shuffled zstd at levels 1 and 3.
    public static func checkpoint(config: TrainingConfig, communicator: Communicator = SingleProcessCommunicator(),
                                  repeats: Int, warmup: Int = 1) throws -> BenchOutput {
        BLASThreads.set(config.train.blasThreads)
        let p = communicator.size
        let data = try TrainingData(config: Bench.held(config), rank: communicator.rank, worldSize: p, loadTest: false)
        let sampler = data.sampler
        let step = try TrainingStep(config: config, communicator: communicator, inputWidth: data.train.featureWidth,
                                    pairWidth: data.train.pairWidth, imageShape: data.imageShape, samplesPerStep: config.data.batchPerRank, totalSteps: 10,
                                    layout: data.viewsLayout)
        let order = try sampler.order(epoch: 0, rank: communicator.rank, worldSize: p)
        var stepTimes: [Double] = []
        for i in 0..<5 {
            data.maker.makeBatch(samples: order.batch(i), epoch: 0, into: step.batch.data)
            stepTimes.append(try step.step(i, input: step.batch.data).times.total)
        }
        let buffers = step.checkpointBuffers
        let rawBytes = Double(buffers.reduce(0) { $0 + $1.count } * 4)
        let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("contrast-bench-checkpoint-\(getpid())")
        let directory = URL(fileURLWithPath: try communicator.broadcast(scratch.path))   // rank 0's pid names it
        defer { if communicator.rank == 0 { try? FileManager.default.removeItem(at: directory) } }

        let out = BenchOutput(bench: "checkpoint")
        out.line(String(format: "checkpoint of the full state: %d buffers, %.1f MB raw, %d rank(s); median of %d after %d warm-up:",
                        buffers.count, rawBytes / 1e6, p, repeats, warmup))
        for (setting, (level, shuffle)) in [(Int32(1), false), (1, true), (3, false), (3, true)].enumerated() {
            var stored = 0
            let timed = try afterWarmup(repeats: repeats, warmup: warmup) { r -> (save: Double, load: Double, verify: Double) in
                try communicator.barrier()
                let t0 = monotonicSeconds()
                let saved = try CheckpointStore.save(runDirectory: directory, step: setting * 1000 + r + 1, buffers: buffers, state: Data("{}".utf8),
                                                     communicator: communicator, settings: CheckpointSettings(level: level, shuffle: shuffle))
                let save = monotonicSeconds() - t0
                try communicator.barrier()
                let t1 = monotonicSeconds()
                _ = try CheckpointStore.load(saved, into: buffers)
                let load = monotonicSeconds() - t1
                let t2 = monotonicSeconds()
                if communicator.rank == 0 { try CheckpointStore.verify(saved) }
                let verify = monotonicSeconds() - t2
                stored = try CheckpointStore.manifest(at: saved).shards.reduce(0) { $0 + $1.bytes }
                try communicator.barrier()      // every rank is done with it before it may be pruned
                if communicator.rank == 0 { try CheckpointStore.prune(runDirectory: directory, keepLast: 1, keepEvery: 0) }
                return (save, load, verify)
            }
            let saveTime = Measurement(seconds: timed.map(\.save), warmup: warmup), loadTime = Measurement(seconds: timed.map(\.load), warmup: warmup)
            let verifyTime = Measurement(seconds: timed.map(\.verify), warmup: warmup)
            let save = saveTime.median, load = loadTime.median, verify = verifyTime.median
            out.line(String(format: "  zstd level %d %@: %6.2f MB stored (ratio %.2f)  save %6.3f s (%5.0f MB/s per rank)  load %6.3f s (%5.0f MB/s)  verify %6.3f s",
                            level, (shuffle ? "shuffled" : "plain   ") as NSString, Double(stored) / 1e6, rawBytes / Double(stored),
                            save, rawBytes / Double(p) / save / 1e6, load, rawBytes / load / 1e6, verify))
            let stepTime = median(stepTimes)
            let common: [String: Any] = ["zstd_level": Int(level), "shuffle": shuffle, "ranks": p, "raw_bytes": Int(rawBytes), "stored_bytes": stored,
                                         "compression_ratio": rawBytes / Double(stored)]
            out.record(common.merging(["operation": "save", "mb_per_s_per_rank": rawBytes / Double(p) / save / 1e6,
                                       "fraction_of_training_every_100_steps": save / (100 * stepTime + save)]) { a, _ in a }, saveTime)
            out.record(common.merging(["operation": "load", "mb_per_s": rawBytes / load / 1e6]) { a, _ in a }, loadTime)
            out.record(common.merging(["operation": "verify", "mb_per_s": rawBytes / verify / 1e6]) { a, _ in a }, verifyTime)
            if level == 3 && shuffle {
                out.line(String(format: "  with the default (level 3, shuffled) every 100 steps of %.1f ms: %.2f%% of training time",
                                stepTime * 1e3, save / (100 * stepTime + save) * 100))
            }
        }
        return out
    }
}
