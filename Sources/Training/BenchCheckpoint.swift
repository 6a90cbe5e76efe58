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
                                  repeats: Int) throws -> String {
        BLASThreads.set(config.train.blasThreads)
        let p = communicator.size
        let data = try TrainingData(config: config, rank: communicator.rank, worldSize: p, loadTest: false)
        let sampler = data.sampler
        let step = try TrainingStep(config: config, communicator: communicator, inputWidth: data.train.featureWidth,
                                    pairWidth: data.train.pairWidth, imageShape: data.imageShape, samplesPerStep: config.data.batchPerRank, totalSteps: 10)
        let order = try sampler.order(epoch: 0, rank: communicator.rank, worldSize: p)
        var stepTimes: [Double] = []
        for i in 0..<5 {
            data.maker.makeBatch(samples: order.batch(i), epoch: 0, into: step.batch.data)
            stepTimes.append(try step.step(learningRate: config.optimizer.lr).times.total)
        }
        let buffers = step.checkpointBuffers
        let rawBytes = Double(buffers.reduce(0) { $0 + $1.count } * 4)
        let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("contrast-bench-checkpoint-\(getpid())")
        let directory = URL(fileURLWithPath: try communicator.broadcast(scratch.path))   // rank 0's pid names it
        defer { if communicator.rank == 0 { try? FileManager.default.removeItem(at: directory) } }

        var lines = [String(format: "checkpoint of the full state: %d buffers, %.1f MB raw, %d rank(s); median of %d:",
                            buffers.count, rawBytes / 1e6, p, repeats)]
        for (setting, (level, shuffle)) in [(Int32(1), false), (1, true), (3, false), (3, true)].enumerated() {
            var saves: [Double] = [], loads: [Double] = []
            var stored = 0
            for r in 0..<repeats {
                try communicator.barrier()
                let t0 = monotonicSeconds()
                let saved = try CheckpointStore.save(runDirectory: directory, step: setting * 1000 + r + 1, buffers: buffers, state: Data("{}".utf8),
                                                     communicator: communicator, settings: CheckpointSettings(level: level, shuffle: shuffle))
                saves.append(monotonicSeconds() - t0)
                try communicator.barrier()
                let t1 = monotonicSeconds()
                _ = try CheckpointStore.load(saved, into: buffers)
                loads.append(monotonicSeconds() - t1)
                stored = try CheckpointStore.manifest(at: saved).shards.reduce(0) { $0 + $1.bytes }
                try communicator.barrier()      // every rank is done with it before it may be pruned
                if communicator.rank == 0 { try CheckpointStore.prune(runDirectory: directory, keepLast: 1, keepEvery: 0) }
            }
            let save = median(saves), load = median(loads)
            lines.append(String(format: "  zstd level %d %@: %6.2f MB stored (ratio %.2f)  save %6.3f s (%5.0f MB/s per rank)  load %6.3f s (%5.0f MB/s)",
                                level, (shuffle ? "shuffled" : "plain   ") as NSString, Double(stored) / 1e6, rawBytes / Double(stored),
                                save, rawBytes / Double(p) / save / 1e6, load, rawBytes / load / 1e6))
            if level == 3 && shuffle {
                let stepTime = median(stepTimes)
                lines.append(String(format: "  with the default (level 3, shuffled) every 100 steps of %.1f ms: %.2f%% of training time",
                                    stepTime * 1e3, save / (100 * stepTime + save) * 100))
            }
        }
        return lines.joined(separator: "\n")
    }
}
