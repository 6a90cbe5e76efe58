import Evaluation
import RunFiles
import Checkpoint
import Contrastive
import Distributed
import Foundation
import NN
import Tensor

/// MoCo's momentum (key) encoder and its queue of past keys (He et al. 2020), an option of
/// NT-Xent (`loss.moco_queue` K > 0).
///
/// The key model is a second ContrastiveModel of the same config, its own arena, started at the
/// query model's parameters and after every applied update moved towards them:
///
///     theta_k <- m theta_k + (1 - m) theta_q
///
/// It is never trained and never communicated: every rank holds the same theta_q after an update,
/// so every rank computes the same theta_k. Each step it embeds the rank's V views (forward only),
/// the keys are all-gathered to N rows (rank-major, as the other objectives' embeddings), and the queries
/// (the V online embeddings) are scored against [N keys, then the queue's filled rows]. Afterwards
/// the N keys enter the queue, a FIFO ring of K rows: oldest overwritten, K need not divide by N.
/// They enter in the one-process order of the global batch (view 0 of global samples 0..<P B,
/// then view 1), not the rank-major order they are gathered in: when only some of a step's keys
/// are evicted, the same ones go at every rank count, and the ring's rows are laid out alike, so
/// a checkpoint's queue continues on any P. The queue is the same on every rank.
///
/// Shapes: B samples per rank, V = 2B local views, P ranks, N = P V global views, K queue rows,
/// E embedding width.
/// Memory: the key model's parameters and activations, plus (N + K) x E candidates. The loss
/// computes no candidate gradient for them (keys get none): a third of its GEMM work, a quarter
/// when chunked.
public final class MomentumQueue {
    /// The key encoder and head.
    public let model: ContrastiveModel
    /// m of the update.
    public let momentum: Float
    /// K, rows of the ring.
    public let capacity: Int
    /// N = 2 P B, keys that enter per step.
    public let keysPerStep: Int
    /// B and P of the rank-major gathered keys.
    public let samplesPerRank: Int
    public let ranks: Int
    /// (N + K) x E: rows 0..<N the step's gathered keys, then the K rows of the ring.
    public let candidates: Tensor
    /// Ring row the next key is written to.
    public private(set) var writePosition = 0
    /// Rows of the ring that hold a key (K once it has wrapped); they are rows 0..<filled.
    public private(set) var filled = 0

    public init(model: ContrastiveModel, momentum: Float, capacity: Int, samplesPerRank: Int, ranks: Int) {
        precondition(capacity >= 1 && samplesPerRank >= 1 && ranks >= 1 && momentum >= 0 && momentum < 1, "MomentumQueue: bad settings")
        self.model = model
        self.momentum = momentum
        self.capacity = capacity
        self.samplesPerRank = samplesPerRank
        self.ranks = ranks
        let keysPerStep = 2 * samplesPerRank * ranks
        self.keysPerStep = keysPerStep
        candidates = Tensor(zeros: [keysPerStep + capacity, model.embeddingWidth])
    }

    /// Rows of `candidates` the loss scores: the N keys and the filled part of the ring.
    public var candidateCount: Int { keysPerStep + filled }

    /// The K x E ring, after the N keys in `candidates`.
    var ring: UnsafeMutablePointer<Float> { candidates.data + keysPerStep * model.embeddingWidth }

    /// theta_k <- theta_q: the start, after the query model's broadcast.
    public func copyParameters(from query: ParameterArena) {
        precondition(query.count == model.arena.count, "MomentumQueue: the key model's arena differs from the query model's")
        model.arena.parameters.data.update(from: query.parameters.data, count: query.count)
    }

    /// theta_k <- m theta_k + (1 - m) theta_q over the whole arena (after every applied update).
    public func follow(_ query: ParameterArena) {
        precondition(query.count == model.arena.count, "MomentumQueue: the key model's arena differs from the query model's")
        Self.momentumUpdate(key: model.arena.parameters.data, query: query.parameters.data, count: query.count, momentum: momentum)
    }

    /// key[i] <- m key[i] + (1 - m) query[i], i < count.
    public static func momentumUpdate(key: UnsafeMutablePointer<Float>, query: UnsafePointer<Float>, count: Int, momentum m: Float) {
        let rest = 1 - m
        for i in 0..<count { key[i] = m * key[i] + rest * query[i] }
    }

    /// The N keys (candidate rows 0..<N) enter the ring in the one-process order, each at the
    /// write position, which then moves on (mod K): the ring always holds the K newest keys.
    /// Key j of that order (view w = j / (P B) of global sample g = j mod P B, which rank
    /// r = g / B holds as its sample i = g mod B) is gathered row r V + w B + i.
    public func enqueue() {
        let e = model.embeddingWidth, b = samplesPerRank, globalSamples = ranks * samplesPerRank, ring = self.ring
        // When N > K only the last K keys survive: skip the ones that would be overwritten.
        let first = max(0, keysPerStep - capacity)
        writePosition = (writePosition + first) % capacity
        for j in first..<keysPerStep {
            let view = j / globalSamples, sample = j % globalSamples
            let row = (sample / b) * 2 * b + view * b + sample % b
            (ring + writePosition * e).update(from: candidates.data + row * e, count: e)
            writePosition = writePosition + 1 == capacity ? 0 : writePosition + 1
        }
        filled = min(capacity, filled + keysPerStep)
    }

    /// What a checkpoint stores: the key model's parameters and the ring (identical on every
    /// rank, so each rank writes its share like any other buffer).
    public var checkpointBuffers: [CheckpointBuffer] {
        [CheckpointBuffer(name: "moco.parameters", pointer: model.arena.parameters.data, count: model.arena.count),
         CheckpointBuffer(name: "moco.queue", pointer: ring, count: capacity * model.embeddingWidth)]
    }

    /// The ring's position, kept in the checkpoint's training state.
    public struct State: Codable, Equatable, Sendable {
        public var writePosition: Int
        public var filled: Int
        public var capacity: Int
    }

    public var state: State { State(writePosition: writePosition, filled: filled, capacity: capacity) }

    /// Restores the ring's position from a checkpoint (its rows come back as a buffer).
    public func restore(_ saved: State) throws {
        guard saved.capacity == capacity, saved.filled >= 0, saved.filled <= capacity, saved.writePosition >= 0,
              saved.writePosition < capacity else {
            throw RunDirectory.Failure(description: "the checkpoint's MoCo queue (\(saved.capacity) keys, \(saved.filled) filled, "
                                   + "next row \(saved.writePosition)) does not fit loss.moco_queue=\(capacity); "
                                   + "resume with loss.moco_queue=\(saved.capacity)")
        }
        writePosition = saved.writePosition
        filled = saved.filled
    }
}

extension MomentumQueue {
    /// Before a resume: `checkpoint` must hold this queue's buffers with their sizes, else the
    /// error says which run it came from and how to continue.
    func checkResumable(from checkpoint: URL) throws {
        let held = Dictionary(try CheckpointStore.manifest(at: checkpoint).buffers.map { ($0.name, $0.count) }) { a, _ in a }
        let name = checkpoint.lastPathComponent, e = model.embeddingWidth
        guard let queueCount = held["moco.queue"], held["moco.parameters"] != nil else {
            throw RunDirectory.Failure(description: "checkpoint \(name) has no MoCo momentum encoder and queue (it was written with "
                                   + "loss.moco_queue=0), but this run sets loss.moco_queue=\(capacity); continue it with "
                                   + "--set loss.moco_queue=0, or start a new run (--set run_dir=...)")
        }
        guard queueCount == capacity * e else {
            throw RunDirectory.Failure(description: "checkpoint \(name) holds a MoCo queue of \(queueCount / max(1, e)) keys, but this run "
                                   + "sets loss.moco_queue=\(capacity); continue it with --set loss.moco_queue=\(queueCount / max(1, e))")
        }
    }
}
