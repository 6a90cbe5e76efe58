import Checkpoint
import Contrastive
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// loss.moco_queue: the config's checks, the momentum update, the ring, and the loss against
/// [keys, queue] in one process.
@Suite struct MomentumQueueTests {
    @Test func configChecksTheQueue() throws {
        let config = try smokeConfig(["loss.moco_queue=256"])
        #expect(config.loss.mocoQueue == 256 && config.loss.mocoMomentum == 0.99)
        for (overrides, key) in [(["loss.moco_queue=-1"], "loss.moco_queue"), (["loss.moco_queue=64", "loss.moco_momentum=1"], "loss.moco_momentum"),
                                 (["loss.moco_momentum=-0.1"], "loss.moco_momentum"),
                                 (["loss.moco_queue=64", "loss.kind=supcon"], "loss.moco_queue"),
                                 (["loss.moco_queue=64", "loss.kind=clip"], "loss.moco_queue")] {
            #expect(throws: ConfigError.self) { try smokeConfig(overrides) }
            do { _ = try smokeConfig(overrides) } catch let error as ConfigError {
                #expect(error.key == key, "\(overrides)")
            }
        }
    }

    @Test func momentumUpdateMovesKeysTowardsQueries() {
        var key: [Float] = [1, -2, 0.5, 3], query: [Float] = [0, 2, 0.5, -1]
        MomentumQueue.momentumUpdate(key: &key, query: query, count: 4, momentum: 0.75)
        #expect(key == [0.75, -1, 0.5, 2])
        MomentumQueue.momentumUpdate(key: &key, query: query, count: 4, momentum: 0)
        #expect(key == query)
    }

    /// The key model starts at the query model's parameters, and each applied step moves it by
    /// theta_k <- m theta_k + (1 - m) theta_q with the new theta_q, bit for bit.
    @Test func stepUpdatesTheKeyModelAfterTheQueryModel() throws {
        let config = try smokeConfig(["loss.moco_queue=40", "loss.moco_momentum=0.9", "optimizer.lr=0.01"])
        let step = try TrainingStep(config: config, inputWidth: 784, imageShape: [28, 28], samplesPerStep: 8, totalSteps: 10)
        let queue = try #require((step.objective as? MoCo)?.queue)
        #expect(queue.model.arena.parameters.array == step.model.arena.parameters.array)
        fillBatch(step, seed: 1)
        for index in 0..<2 {
            var expected = queue.model.arena.parameters.array
            let result = try step.step(index, input: step.batch.data)
            #expect(result.applied)
            let query = step.model.arena.parameters.array
            MomentumQueue.momentumUpdate(key: &expected, query: query, count: query.count, momentum: 0.9)
            #expect(queue.model.arena.parameters.array == expected)
            #expect(expected != query)
        }
    }

    func fillBatch(_ step: TrainingStep, seed: UInt64) {
        var rng = RandomStream(seed: seed, stream: 3)
        for i in 0..<step.batch.count { step.batch[i] = rng.nextUniform() }
    }

    /// FIFO with K not a multiple of N, and with N > K: the ring holds the K newest keys, key
    /// number g (counting from the run's start, in the one-process order of each step's global
    /// batch: view 0 of every sample, then view 1) in row g mod K.
    @Test(arguments: [(7, 1, 2), (12, 3, 2), (13, 2, 3), (2, 1, 3), (5, 2, 2)])
    func ringKeepsTheNewestKeys(capacity: Int, samplesPerRank b: Int, ranks p: Int) throws {
        let model = ContrastiveModel(try smokeConfig().model, inputWidth: 784)
        let queue = MomentumQueue(model: model, momentum: 0.5, capacity: capacity, samplesPerRank: b, ranks: p)
        let e = model.embeddingWidth, keysPerStep = 2 * b * p
        #expect(queue.keysPerStep == keysPerStep)
        var written = 0
        for stepIndex in 0..<5 {
            // Gathered row r V + w B + i is key w P B + r B + i of the step.
            for r in 0..<p {
                for w in 0..<2 {
                    for i in 0..<b {
                        let row = r * 2 * b + w * b + i, ordinal = written + w * p * b + r * b + i
                        for k in 0..<e { queue.candidates[row * e + k] = Float(ordinal * 1000 + k) }
                    }
                }
            }
            #expect(queue.candidateCount == keysPerStep + min(capacity, written))
            queue.enqueue()
            written += keysPerStep
            #expect(queue.filled == min(capacity, written), "step \(stepIndex)")
            #expect(queue.writePosition == written % capacity)
            for g in max(0, written - capacity)..<written {
                let row = keysPerStep + g % capacity
                #expect(queue.candidates[row * e] == Float(g * 1000) && queue.candidates[row * e + e - 1] == Float(g * 1000 + e - 1),
                        "key \(g) after step \(stepIndex)")
            }
        }
    }

    /// One process: the step's loss is NT-Xent of the online embeddings against [this step's
    /// keys, the filled queue] (Double reference), with the other view's key positive and the
    /// own view's key excluded; the queue fills and wraps (K = 40, N = 16).
    @Test func lossScoresQueriesAgainstKeysAndQueue() throws {
        let config = try smokeConfig(["loss.moco_queue=40", "loss.moco_momentum=0.9", "loss.temperature=0.3", "optimizer.lr=0.01"])
        let b = 8, n = 2 * b
        let step = try TrainingStep(config: config, inputWidth: 784, imageShape: [28, 28], samplesPerStep: b, totalSteps: 10)
        let queue = try #require((step.objective as? MoCo)?.queue)
        let e = step.model.embeddingWidth
        var selfIndex = [Int32](repeating: 0, count: n), positive = [Int32](repeating: 0, count: n)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        for stepIndex in 0..<5 {
            fillBatch(step, seed: UInt64(10 + stepIndex))
            let queries = Array(UnsafeBufferPointer(start: step.model.forward(step.batch.data, batch: n).embedding, count: n * e))
            let keys = Array(UnsafeBufferPointer(start: queue.model.forward(step.batch.data, batch: n).embedding, count: n * e))
            let ring = Array(UnsafeBufferPointer(start: queue.candidates.data + n * e, count: queue.filled * e))
            #expect(queue.filled == min(40, stepIndex * n))
            let reference = NTXentLoss.lossReference(anchors: queries, candidates: keys + ring, dimension: e,
                                                     selfIndex: selfIndex.map(Int.init), positiveIndex: positive.map(Int.init),
                                                     normalization: n, temperature: 0.3)
            let result = try step.step(stepIndex, input: step.batch.data)
            #expect(abs(result.loss - reference) <= 1e-5 * abs(reference), "step \(stepIndex): \(result.loss) vs \(reference)")
            // This step's keys are now the newest rows of the ring.
            for row in 0..<n {
                let slot = (stepIndex * n + row) % 40
                #expect(queue.candidates[(n + slot) * e] == keys[row * e])
            }
        }
    }
}

/// MoCo through `contrast train`: P ranks equal one process on the global batch, and a killed
/// run resumes to the same bits, key model and queue included.
@Suite(.serialized) struct MoCoTrainingTests {
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1",
                      "communication.precision=fp32"]
    /// Global batch 64 = N 128 keys a step; K = 320 fills in 3 steps (the third partly) and wraps.
    static let moco = ["loss.moco_queue=320", "loss.moco_momentum=0.9"]

    func arguments(_ runDirectory: String, ranks: Int, steps: Int, _ overrides: [String]) -> [String] {
        ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
         "--set", "data.batch_per_rank=\(64 / ranks)", "--set", "train.max_steps=\(steps)",
         "--set", "data.test_limit=200", "--set", "eval.knn_every_epochs=0"] + overrides.flatMap { ["--set", $0] }
    }

    struct Run {
        var buffers: [String: [Float]]
        var state: TrainingState
        var losses: [Double]
        var records: [String]
    }

    /// Trains, then reads the newest checkpoint (the end-of-training one) and the step records.
    func train(_ runDirectory: String? = nil, ranks: Int, transport: Transport = .sharedMemory, steps: Int, _ overrides: [String],
               crashAt: String? = nil) throws -> Run? {
        let run = runDirectory ?? temporaryDirectory("moco").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: ranks, transport: transport, arguments(run, ranks: ranks, steps: steps, overrides),
                                      environment: crashAt.map { ["CONTRAST_CHECKPOINT_CRASH_AT": $0] } ?? [:])
        if crashAt != nil {
            #expect(outcome.status != 0)
            return nil
        }
        #expect(outcome.status == 0, "P=\(ranks) \(transport): \(outcome.error.suffix(2000))")
        let newest = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first)
        let manifest = try CheckpointStore.manifest(at: newest)
        let storage = manifest.buffers.map { Tensor(zeros: [$0.count]) }
        let state = try JSONDecoder().decode(TrainingState.self, from: CheckpointStore.load(
            newest, into: zip(manifest.buffers, storage).map { CheckpointBuffer(name: $0.name, pointer: $1.data, count: $0.count) }))
        var buffers: [String: [Float]] = [:]
        for (buffer, values) in zip(manifest.buffers, storage) { buffers[buffer.name] = values.array }
        var losses: [Double] = [], records: [String] = []
        let text = try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8)
        for line in text.split(separator: "\n") {
            guard var record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], record["time_forward"] != nil else { continue }
            losses.append(record["loss"] as! Double)
            for key in record.keys where key.hasPrefix("time") || key == "images_per_second" { record.removeValue(forKey: key) }
            records.append(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
        }
        return Run(buffers: buffers, state: state, losses: losses, records: records)
    }

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    /// Six plain SGD steps at P = 2 (shared memory) and P = 4 (TCP) against one process on the
    /// global batch: every step's loss (the queue fills at step 3 and wraps after) to 1e-5, and
    /// the query parameters, key parameters and queue to 1e-4 (six steps of rounding differences
    /// compounding, each step's agreeing to 1e-5 as in DistributedTrainingTests).
    @Test(arguments: [(2, Transport.sharedMemory), (4, .tcp)])
    func stepsEqualOneProcessOnTheGlobalBatch(ranks: Int, transport: Transport) throws {
        let reference = try #require(try train(ranks: 1, steps: 6, Self.sgd + Self.moco))
        let distributed = try #require(try train(ranks: ranks, transport: transport, steps: 6, Self.sgd + Self.moco))
        #expect(reference.losses.count == 6 && distributed.losses.count == 6)
        for (index, (a, b)) in zip(distributed.losses, reference.losses).enumerated() {
            #expect(abs(a - b) <= 1e-5 * abs(b), "step \(index + 1): \(a) vs \(b)")
        }
        #expect(reference.state.momentumQueue == MomentumQueue.State(writePosition: 6 * 128 % 320, filled: 320, capacity: 320))
        #expect(distributed.state.momentumQueue == reference.state.momentumQueue)
        for name in ["parameters", "moco.parameters", "moco.queue"] {
            let a = try #require(distributed.buffers[name]), b = try #require(reference.buffers[name])
            #expect(maxRelativeDifference(a, b) <= 1e-4, "\(name)")
        }
        // The key model lags the query model; the queue holds keys (unit rows).
        #expect(reference.buffers["moco.parameters"] != reference.buffers["parameters"])
        let queue = reference.buffers["moco.queue"]!, e = 16
        for row in 0..<320 {
            let norm = (0..<e).reduce(Float(0)) { $0 + queue[row * e + $1] * queue[row * e + $1] }
            #expect(abs(norm - 1) <= 1e-4, "queue row \(row)")
        }
        // Step 1 (key model = query model, empty queue) is plain NT-Xent; from step 2 the queue's
        // negatives and the lagging keys change the loss.
        let plain = try #require(try train(ranks: 1, steps: 2, Self.sgd))
        #expect(abs(plain.losses[0] - reference.losses[0]) <= 1e-6 * abs(plain.losses[0]))
        #expect(abs(plain.losses[1] - reference.losses[1]) > 1e-3)
    }

    /// P = 2 with AdamW, killed after the step-5 checkpoint committed (before `latest` moved)
    /// and resumed: the step records of steps 6...12 and every buffer of the final checkpoint
    /// (parameters, moments, key parameters, queue) are bitwise those of a straight run, and so
    /// is the queue's position.
    @Test func killedRunResumesBitExactly() throws {
        let settings = Self.moco + ["checkpoint.every_steps=5"]
        let straight = try #require(try train(ranks: 2, steps: 12, settings))
        let killed = temporaryDirectory("moco-killed").appendingPathComponent("run").path
        _ = try train(killed, ranks: 2, steps: 12, settings, crashAt: "before-latest@step=5")
        let resumed = try #require(try train(killed, ranks: 2, steps: 12, settings))
        #expect(try String(contentsOfFile: killed + "/train.log", encoding: .utf8).contains("resumed from checkpoint"))
        #expect(Set(resumed.buffers.keys).isSuperset(of: ["parameters", "moco.parameters", "moco.queue"]))
        #expect(resumed.buffers.mapValues { $0.map(\.bitPattern) } == straight.buffers.mapValues { $0.map(\.bitPattern) })
        #expect(resumed.state.momentumQueue == straight.state.momentumQueue)
        #expect(resumed.state.momentumQueue == MomentumQueue.State(writePosition: 12 * 128 % 320, filled: 320, capacity: 320))
        #expect(Array(resumed.records.suffix(7)) == Array(straight.records.suffix(7)))
    }

    /// A checkpoint written by 2 ranks continues on 1 and on 4 (same global batch): the queue
    /// is in the one-process order, so the loss curve of steps 6...10 is the straight run's and
    /// the final queue and key model agree.
    @Test func checkpointOfTwoRanksContinuesOnOneAndFour() throws {
        let settings = Self.moco + ["communication.precision=fp32", "checkpoint.every_steps=5"]
        let straight = try #require(try train(ranks: 2, steps: 10, settings))
        let first = temporaryDirectory("moco-reshard").appendingPathComponent("run").path
        #expect(try train(first, ranks: 2, steps: 5, settings) != nil)
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: first)).first)
        for ranks in [1, 4] {
            let run = try #require(try train(ranks: ranks, steps: 10, settings + ["resume=\(checkpoint.path)"]))
            #expect(run.losses.count == 5)
            for (a, b) in zip(run.losses, straight.losses.suffix(5)) { #expect(abs(a - b) <= 1e-5 * abs(b), "P=\(ranks): \(a) vs \(b)") }
            #expect(run.state.momentumQueue == straight.state.momentumQueue)
            for name in ["moco.parameters", "moco.queue"] {
                #expect(maxRelativeDifference(run.buffers[name]!, straight.buffers[name]!) <= 1e-4, "P=\(ranks) \(name)")
            }
        }
    }

    /// A checkpoint of a run without the queue cannot continue as a MoCo run, nor one with
    /// another K: the config comparison refuses the change of loss.moco_queue, and with
    /// resume_config_changes=allow the checkpoint itself still does; each says how to go on.
    @Test func checkpointWithoutTheQueueIsRefused() throws {
        let run = temporaryDirectory("moco-missing").appendingPathComponent("run").path
        #expect(try train(run, ranks: 1, steps: 2, []) != nil)
        let refused = try runContrast(ranks: 1, arguments(run, ranks: 1, steps: 4, Self.moco))
        #expect(refused.status != 0)
        #expect(refused.error.contains("loss.moco_queue 0 -> 320") && refused.error.contains("resume_config_changes=allow"),
                "\(refused.error.suffix(1000))")
        let outcome = try runContrast(ranks: 1, arguments(run, ranks: 1, steps: 4, Self.moco + ["resume_config_changes=allow"]))
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("no MoCo momentum encoder and queue") && outcome.error.contains("loss.moco_queue=0"),
                "\(outcome.error.suffix(1000))")

        let mocoRun = temporaryDirectory("moco-size").appendingPathComponent("run").path
        #expect(try train(mocoRun, ranks: 1, steps: 2, Self.moco) != nil)
        let other = try runContrast(ranks: 1, arguments(mocoRun, ranks: 1, steps: 4, ["loss.moco_queue=256", "resume_config_changes=allow"]))
        #expect(other.status != 0)
        #expect(other.error.contains("loss.moco_queue=320"), "\(other.error.suffix(1000))")
    }
}
