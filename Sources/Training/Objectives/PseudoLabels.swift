import Evaluation
import Foundation
import Tensor

/// Pseudo-labels for SupCon with partial labels (loss.pseudo_labels knn): each unlabeled sample of
/// the global batch takes the class of a weighted kNN vote over the batch's labeled views, when
/// the vote is confident enough.
///
/// Shapes: N rows (the global batch's views), D embedding width, L labeled rows, k neighbours.
/// A sample has two rows (`partner` maps each row to the other). For each view v of an unlabeled
/// sample s, its k most cosine-similar labeled rows j vote with weight exp(cos(z_v, z_j) / T) for
/// their class (as `KNNClassifier` does); the two views' votes add:
///
///     vote_s(c) = sum_{v in s} sum_{j in topk(v)} [y_j = c] exp(cos(z_v, z_j) / T)
///     confidence_s = max_c vote_s(c) / sum_c vote_s(c)
///     y_s = argmax_c vote_s(c)   if confidence_s >= threshold, else unlabeled (-1)
///
/// Only labeled rows vote, so a sample never votes for itself. The labels are computed from
/// gathered data alone, so every rank derives the same ones; they are constants of the step
/// (no gradient flows through the vote). Ties go to the lower class.
public final class KNNPseudoLabeler {
    public let k: Int
    public let temperature: Float
    public let threshold: Float
    /// Confidence of each row's sample in the last `assign` (N): the winning share for unlabeled
    /// samples (0 when no labeled row voted), 1 for labeled rows.
    public private(set) var confidences: [Float] = []

    private let keys = ScratchBuffer()          // L x D, the labeled rows
    private let queries = ScratchBuffer()       // chunk x D, unlabeled rows
    private let similarities = ScratchBuffer()  // chunk x L
    private var keyLabels: [Int32] = []
    private var queryRows: [Int] = []
    private var votes: [Double] = []            // N x classes, filled for unlabeled rows
    private var heap: TopK
    static let chunk = 256

    public init(k: Int, temperature: Float, threshold: Float) {
        precondition(k >= 1 && temperature > 0 && threshold > 0 && threshold <= 1,
                     "KNNPseudoLabeler: k >= 1, temperature > 0, threshold in (0, 1]; got \(k), \(temperature), \(threshold)")
        self.k = k
        self.temperature = temperature
        self.threshold = threshold
        heap = TopK(capacity: k)
    }

    /// Samples that were unlabeled and those of them given a pseudo-label.
    public struct Result: Sendable, Equatable {
        public var unlabeled: Int
        public var assigned: Int
        /// assigned / unlabeled; 0 when every sample is labeled.
        public var fraction: Double { unlabeled > 0 ? Double(assigned) / Double(unlabeled) : 0 }
    }

    /// Gives the unlabeled rows of `labels` (N, -1 = unlabeled) the pseudo-label of their sample
    /// where its confidence reaches the threshold, in place.
    /// - Parameters:
    ///   - embeddings: N x D, L2-normalised rows (cosine = dot product).
    ///   - partner: N, the row of the same sample's other view.
    public func assign(embeddings: UnsafePointer<Float>, count n: Int, dimension d: Int,
                       labels: UnsafeMutablePointer<Int32>, partner: UnsafePointer<Int32>) -> Result {
        keyLabels.removeAll(keepingCapacity: true)
        queryRows.removeAll(keepingCapacity: true)
        var classes = 0
        for j in 0..<n {
            if labels[j] >= 0 { keyLabels.append(labels[j]); classes = max(classes, Int(labels[j]) + 1) } else { queryRows.append(j) }
        }
        if confidences.count != n { confidences = [Float](repeating: 0, count: n) }
        for j in 0..<n { confidences[j] = labels[j] >= 0 ? 1 : 0 }
        let l = keyLabels.count, u = queryRows.count
        guard u > 0 else { return Result(unlabeled: 0, assigned: 0) }
        guard l > 0 else { return Result(unlabeled: u / 2, assigned: 0) }

        let keyData = keys.pointer(count: l * d)
        var key = 0
        for j in 0..<n where labels[j] >= 0 {
            (keyData + key * d).update(from: embeddings + j * d, count: d)
            key += 1
        }
        if votes.count < n * classes { votes = [Double](repeating: 0, count: n * classes) }
        let neighbours = min(k, l)
        if heap.capacity != neighbours { heap = TopK(capacity: neighbours) }
        let queryData = queries.pointer(count: Self.chunk * d), s = similarities.pointer(count: Self.chunk * l)
        var start = 0
        while start < u {
            let rows = min(Self.chunk, u - start)
            for r in 0..<rows { (queryData + r * d).update(from: embeddings + queryRows[start + r] * d, count: d) }
            gemm(transposeA: false, transposeB: true, m: rows, n: l, k: d, a: queryData, lda: d, b: keyData, ldb: d, c: s, ldc: l)
            for r in 0..<rows {
                heap.reset()
                let row = s + r * l
                for j in 0..<l { heap.offer(row[j], index: Int32(j)) }
                let vote = queryRows[start + r] * classes
                for c in 0..<classes { votes[vote + c] = 0 }
                heap.forEach { similarity, index in
                    // exp((cos - 1) / T): the shares of exp(cos / T), without overflow at small T.
                    votes[vote + Int(keyLabels[Int(index)])] += exp(Double((similarity - 1) / temperature))
                }
            }
            start += rows
        }

        // Each sample once (from its lower row): both views' votes, then both rows' label.
        var assigned = 0, unlabeled = 0
        for row in queryRows {
            let other = Int(partner[row])
            guard row < other else { continue }
            unlabeled += 1
            var best = 0, total = 0.0, bestVote = -1.0
            for c in 0..<classes {
                let vote = votes[row * classes + c] + votes[other * classes + c]
                total += vote
                if vote > bestVote { best = c; bestVote = vote }
            }
            let confidence = Float(bestVote / total)
            confidences[row] = confidence; confidences[other] = confidence
            if confidence >= threshold {
                labels[row] = Int32(best); labels[other] = Int32(best)
                assigned += 1
            }
        }
        return Result(unlabeled: unlabeled, assigned: assigned)
    }

    /// The partner rows of the global batch's layout: rank r holds rows r V ..< (r + 1) V, its B
    /// samples' first views then their second views (V = 2B).
    public static func partners(ranks: Int, samplesPerRank b: Int) -> [Int32] {
        (0..<(ranks * 2 * b)).map { row in
            let base = row / (2 * b) * 2 * b, i = row - base
            return Int32(base + (i < b ? i + b : i - b))
        }
    }
}
