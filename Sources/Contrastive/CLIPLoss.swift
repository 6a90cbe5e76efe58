import Foundation
import Tensor

/// Symmetric CLIP loss, two-tower InfoNCE over the global batch (Radford et al. 2021).
///
/// Shapes: A local pairs, N pairs in the global batch, D embedding width. Two modalities a
/// (e.g. image) and b (e.g. caption) with L2-normalised rows: this rank holds A_loc, B_loc
/// (A x D); the gathered batch is A_all, B_all (N x D, rank-major, this rank's rows start at
/// `offset` = o). Pair i's positive is the other modality's row o + i; nothing is excluded:
///
///     S_ab = A_loc B_all^T / tau,   S_ba = B_loc A_all^T / tau          (A x N each)
///     loss = 1/2 [ (1 / M) sum_i CE(S_ab[i], o + i) + (1 / M) sum_i CE(S_ba[i], o + i) ]
///     CE(s, p) = logsumexp_j s_j - s_p
///
/// M (`normalization`) is the number of pairs in the global batch, N. Each direction is one
/// NTXentLoss call with selfIndex = -1 and positive o + i, so its gradients follow from
/// NTXentLoss's formulas:
///
///     dL/dA_loc, dL/dB_all  from a -> b        dL/dB_loc, dL/dA_all  from b -> a
///
/// The 1/2 is applied by giving each call normalization 2M rather than M: 1/(2M) is exactly
/// half of 1/M in binary floating point and everything downstream of it (softmax scaling,
/// GEMMs) is linear, so the result is bit-for-bit half the M result, without a pass over
/// the four gradients to scale them.
///
/// The loss knows nothing of ranks. In one process (o = 0, A = N, local rows = all rows) the
/// caller adds dL/dA_loc + dL/dA_all (and likewise for b); across ranks it reduce-scatters
/// dL/dA_all, dL/dB_all and adds its own N-row share's slice o..<o + A to the local gradients.
///
/// A learnable temperature's gradient dL/dtheta is the sum of both directions' (NTXentLoss).
public final class CLIPLoss {
    /// tau of both directions; settable between calls (a scheduled or learned temperature).
    public var temperature: Float {
        didSet { contrastive.temperature = temperature }
    }
    public let logitChunk: Int
    private let contrastive: NTXentLoss
    /// selfIndex (all -1) and positiveIndex (o + i) of the local pairs, rebuilt when A or o change.
    private var noSelf: [Int32] = []
    private var positive: [Int32] = []
    private var cachedOffset = -1

    /// Bytes of the logits workspace both directions share (A x N floats, or A x C + 3 A chunked).
    public var workspaceBytes: Int { contrastive.workspaceBytes }

    /// - Parameters:
    ///   - temperature: tau, the softmax temperature of both directions.
    ///   - logitChunk: candidate columns per chunk for the streaming path (0: the whole A x N matrix),
    ///     as in NTXentLoss.
    public init(temperature: Float, logitChunk: Int = 0) {
        self.temperature = temperature
        self.logitChunk = logitChunk
        contrastive = NTXentLoss(temperature: temperature, logitChunk: logitChunk)
    }

    public struct Result: Sendable {
        /// This rank's share of the loss: sum over its pairs of both directions / (2 normalization).
        public var loss: Double
        /// Local pairs whose b is the most similar row of B_all to their a (a -> b retrieval).
        public var aToBTop1: Int
        /// Local pairs whose a is the most similar row of A_all to their b (b -> a retrieval).
        public var bToATop1: Int
        /// dL/dtheta of this rank's pairs, both directions, for a learnable temperature theta = log(1/tau).
        public var logitScaleGradient: Double
    }

    /// Computes this rank's share of the loss of `localCount` pairs against the `allCount`
    /// gathered pairs and *writes* dL/d(localA), dL/d(localB) (A x D) and dL/d(allA),
    /// dL/d(allB) (N x D). Gradient buffers must not alias the inputs or each other.
    /// - Parameters:
    ///   - localA, localB: this rank's rows of each modality, A x D.
    ///   - allA, allB: the gathered global batch, N x D; rows offset..<offset + A are this rank's.
    ///   - normalization: M, the number of pairs in the global batch.
    public func forwardBackward(
        localA: UnsafePointer<Float>, localB: UnsafePointer<Float>, localCount: Int,
        allA: UnsafePointer<Float>, allB: UnsafePointer<Float>, allCount: Int, dimension: Int,
        offset: Int, normalization: Int,
        localAGradient: UnsafeMutablePointer<Float>, localBGradient: UnsafeMutablePointer<Float>,
        allAGradient: UnsafeMutablePointer<Float>, allBGradient: UnsafeMutablePointer<Float>
    ) -> Result {
        precondition(localCount > 0, "CLIP needs at least one local pair, got \(localCount)")
        precondition(offset >= 0 && offset + localCount <= allCount,
                     "CLIP local pairs \(offset)..<\(offset + localCount) must lie within the \(allCount) gathered pairs")
        precondition(normalization > 0, "CLIP normalization must be positive, got \(normalization)")
        updateIndices(count: localCount, offset: offset)
        return noSelf.withUnsafeBufferPointer { noSelf in
            positive.withUnsafeBufferPointer { positive in
                let aToB = contrastive.forwardBackward(
                    anchors: localA, anchorCount: localCount, candidates: allB, candidateCount: allCount,
                    dimension: dimension, selfIndex: noSelf.baseAddress!, positiveIndex: positive.baseAddress!,
                    normalization: 2 * normalization, anchorGradient: localAGradient, candidateGradient: allBGradient)
                let bToA = contrastive.forwardBackward(
                    anchors: localB, anchorCount: localCount, candidates: allA, candidateCount: allCount,
                    dimension: dimension, selfIndex: noSelf.baseAddress!, positiveIndex: positive.baseAddress!,
                    normalization: 2 * normalization, anchorGradient: localBGradient, candidateGradient: allAGradient)
                return Result(loss: aToB.loss + bToA.loss, aToBTop1: aToB.positiveTop1, bToATop1: bToA.positiveTop1,
                              logitScaleGradient: aToB.logitScaleGradient + bToA.logitScaleGradient)
            }
        }
    }

    /// Rebuilds the index tables only when the local block changes, so steady-state calls allocate nothing.
    private func updateIndices(count: Int, offset: Int) {
        guard count != positive.count || offset != cachedOffset else { return }
        noSelf = [Int32](repeating: -1, count: count)
        positive = (0..<count).map { Int32(offset + $0) }
        cachedOffset = offset
    }

    /// Plain Double-precision reference of the loss alone (for tests), the formula above term by term.
    public static func lossReference(localA: [Float], localB: [Float], allA: [Float], allB: [Float], dimension d: Int,
                                     offset: Int, normalization: Int, temperature: Float) -> Double {
        let a = localA.count / d, n = allA.count / d
        /// CE of anchor row i of `anchors` against all rows of `candidates`, positive offset + i.
        func crossEntropy(_ anchors: [Float], _ candidates: [Float], _ i: Int) -> Double {
            let logits = (0..<n).map { j in
                (0..<d).reduce(0.0) { $0 + Double(anchors[i * d + $1]) * Double(candidates[j * d + $1]) } / Double(temperature)
            }
            let maximum = logits.max()!
            return maximum + Foundation.log(logits.map { Foundation.exp($0 - maximum) }.reduce(0, +)) - logits[offset + i]
        }
        var aToB = 0.0, bToA = 0.0
        for i in 0..<a {
            aToB += crossEntropy(localA, allB, i)
            bToA += crossEntropy(localB, allA, i)
        }
        return 0.5 * (aToB / Double(normalization) + bToA / Double(normalization))
    }
}
