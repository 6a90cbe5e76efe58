import Training
import Data
import Foundation
import NN
import Tensor

extension Bench {
    /// The fp32 GEMM calls of one training step (recorded by `GEMMRecording`), grouped by shape
    /// in the order first called, each shape timed alone on packed operands at one thread, in the
    /// library the step runs them in (`FP32GEMM.library`).
    ///
    ///     gemm sum = sum over shapes of (calls of the shape) x (median seconds of one call)
    ///
    /// step time / gemm sum is then how far the step is from its GEMMs at the machine's
    /// single-thread GEMM rate (the targets: at most 1.1 for the MLP, issue 9; 1.3 for the
    /// convolutional and Transformer encoders, issue 20).
    public struct GEMMAccount: Sendable {
        public struct Entry: Sendable {
            public var call: GEMMCall
            public var count: Int
            public var time: Measurement
        }
        public var entries: [Entry]

        public var totalSeconds: Double { entries.reduce(0) { $0 + Double($1.count) * $1.time.median } }
        public var totalFlops: Double { entries.reduce(0) { $0 + Double($1.count) * $1.call.flops } }

        /// Groups `calls` and times each shape (`repeats` after one warm-up). Leaves OpenBLAS at one thread.
        public init(_ calls: [GEMMCall], repeats: Int) {
            var order: [GEMMCall] = [], counts: [GEMMCall: Int] = [:]
            for call in calls {
                if counts[call] == nil { order.append(call) }
                counts[call, default: 0] += 1
            }
            BLASThreads.set(1)
            let times = Bench.timeGEMMs(order, repeats: repeats)
            entries = zip(order, times).map { Entry(call: $0, count: counts[$0]!, time: $1) }
        }
    }

    /// The bytes of a training step's own buffers, by what they hold (issue 9's memory target:
    /// peak resident set per rank at most 1.5x their sum).
    ///
    /// - parameters, gradients: the arena's two flat buffers (padding included), 4 x arena count each.
    /// - optimizer state: every state buffer of the optimizer (AdamW: m and v; SGD / LARS: momentum).
    /// - activations: every scratch buffer the step made (`ScratchBuffer.liveBytes` after a step minus
    ///   before the step was built: the layers' outputs, saved inputs and gradients), less the
    ///   loss workspace below, plus the input batch. Other losses' workspaces (SupCon, hard negatives)
    ///   are scratch buffers too and are counted here. Where `bench step` could measure it (one
    ///   forward before the first step), split into the forward's buffers (each layer's output and
    ///   saved statistics, which backward reads, and forward workspace such as a convolution's
    ///   im2col columns) and what the step adds (each layer's input gradient, backward workspace
    ///   such as column gradients and attention's dP, and the loss's workspaces). Every layer owns
    ///   its buffers (DESIGN.md decision 2), so the two parts are resident together.
    /// - logits: the loss's workspace: NT-Xent's and CLIP's A x N floats (A x C + 3 A with loss.logit_chunk C),
    ///   SigLIP's ring B x B logits and two [y, dy] blocks (4 B E), pairs' B x N.
    /// - embedding exchange: the gathered embeddings and both embedding gradients (2 N + 2 V) x E floats.
    /// - momentum queue (loss.moco_queue > 0): the key encoder's parameters and gradients and the
    ///   queue of keys with its gradient.
    /// - communication: the reducer's 16-bit wire copies (all gradients x 2 bytes for bf16 / fp16; fp32
    ///   is reduced in place and needs none).
    public struct MemoryAccount: Sendable {
        public var parameters: Int
        public var gradients: Int
        public var optimizerState: Int
        public var activations: Int
        /// The part of `activations` one forward of the V views grows (nil: not measured).
        public var forwardActivations: Int?
        public var inputBatch: Int
        public var logits: Int
        public var embeddingExchange: Int
        public var momentumQueue: Int
        public var communication: Int

        public var total: Int {
            parameters + gradients + optimizerState + activations + inputBatch + logits + embeddingExchange + momentumQueue + communication
        }

        /// The account of `step` after at least one step; `scratchBytesBefore` is `ScratchBuffer.liveBytes` before it was
        /// made, `forwardBytes` what one forward grew it by right after (nil: not measured).
        init(step: TrainingStep, scratchBytesBefore: Int, forwardBytes: Int? = nil) {
            let float = MemoryLayout<Float>.stride
            parameters = step.model.arena.count * float
            gradients = step.model.arena.count * float
            optimizerState = step.optimizer.stateBuffers.reduce(0) { $0 + $1.tensor.count } * float
            let objective = step.objectiveMemory
            logits = objective.logits
            activations = max(0, ScratchBuffer.liveBytes - scratchBytesBefore - logits)
            let measuredActivations = activations
            forwardActivations = forwardBytes.map { min($0, measuredActivations) }
            inputBatch = step.batch.count * float
            embeddingExchange = objective.embeddingExchange
            momentumQueue = objective.momentumQueue
            let r = step.reducer
            communication = r.precision == .fp32 ? 0 : r.buckets.reduce(0) { $0 + $1.count } * r.precision.stride
        }

        /// (label, bytes) in the order the table prints them.
        public var parts: [(String, Int)] {
            let layers: [(String, Int)] = forwardActivations.map {
                [("activations: forward (outputs and statistics backward reads, forward workspace)", $0),
                 ("activations: backward (input gradients, backward workspace)", activations - $0)]
            } ?? [("activations (layer buffers)", activations)]
            return [("parameters", parameters), ("gradients", gradients), ("optimizer state", optimizerState)] + layers
                + [("input batch", inputBatch), ("logits (loss workspace)", logits),
                   ("embedding exchange (gathered + gradients)", embeddingExchange), ("momentum encoder and queue", momentumQueue),
                   ("communication buffers (wire)", communication)]
        }

        public var fields: [String: Any] {
            ["parameters_bytes": parameters, "gradients_bytes": gradients, "optimizer_state_bytes": optimizerState,
             "activations_bytes": activations, "forward_activations_bytes": forwardActivations ?? -1, "input_batch_bytes": inputBatch, "logits_bytes": logits,
             "embedding_exchange_bytes": embeddingExchange, "momentum_queue_bytes": momentumQueue, "communication_bytes": communication,
             "total_bytes": total]
        }

        /// Bytes of the decoded training samples this rank holds in memory (not part of the
        /// step's account); 0 when they are on disk (`data.hold: disk`).
        public static func dataSetBytes(_ data: TrainingData) -> Int {
            data.train.disk != nil ? 0 : data.train.count * (data.train.featureWidth * (data.train.features.dtype == .uint8 ? 1 : 4) + data.train.pairWidth * 4)
        }
    }
}
