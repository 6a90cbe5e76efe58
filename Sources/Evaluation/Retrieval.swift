import Foundation
import Tensor

/// Ranking and correlation metrics for text and cross-modal evaluation, as pure functions of
/// embeddings and relevance (the definitions of sentence-transformers' InformationRetrievalEvaluator
/// and EmbeddingSimilarityEvaluator; BEIR's for nDCG).
///
/// Shapes: Q queries, N documents, D the embedding width.
public enum RankingMetrics {
    /// How a query scores a document.
    public enum Similarity: String, Sendable {
        /// Cosine of the two embeddings (each normalised; a zero vector scores 0).
        case cosine
        /// Their dot product.
        case dot
    }

    /// Mean metrics over the queries.
    public struct Scores: Sendable, Equatable {
        /// The cut-offs of `recall`, `hitRate`, e.g. [1, 5, 10].
        public var ks: [Int]
        /// Recall@k: the fraction of a query's relevant documents among its k best, averaged over queries.
        public var recall: [Double]
        /// Hit rate@k (sentence-transformers' accuracy@k): the fraction of queries with a relevant
        /// document among their k best. With one relevant document per query it equals recall@k.
        public var hitRate: [Double]
        /// MRR@cutoff: 1 / rank of the first relevant document if it is within `cutoff`, else 0.
        public var meanReciprocalRank: Double
        /// nDCG@cutoff with binary relevance: sum over the ranks r ≤ cutoff holding a relevant
        /// document of 1 / log2(r + 1), over the same sum for the ideal order.
        public var normalizedDCG: Double
        public var cutoff: Int
        public var queries: Int
    }

    /// Ranks the N documents for each query by similarity, best first, ties to the lower
    /// document index, and scores the ranking against `relevant[q]` (the indices of query q's
    /// relevant documents, at least one each).
    /// - Parameters:
    ///   - queries: [Q, D] row-major.
    ///   - documents: [N, D] row-major.
    ///   - ks: recall and hit-rate cut-offs.
    ///   - cutoff: the cut-off of MRR and nDCG (10: MRR@10, nDCG@10).
    public static func retrieval(queries: [Float], documents: [Float], width: Int, relevant: [[Int]], ks: [Int] = [1, 5, 10],
                                 cutoff: Int = 10, similarity: Similarity = .cosine, chunk: Int = 256) -> Scores {
        precondition(width > 0 && queries.count % width == 0 && documents.count % width == 0, "embeddings must be [rows, width]")
        let queryCount = queries.count / width, documentCount = documents.count / width
        precondition(relevant.count == queryCount, "one relevance list per query")
        precondition(relevant.allSatisfy { !$0.isEmpty && $0.allSatisfy { (0..<documentCount).contains($0) } },
                     "every query needs at least one relevant document, each an index below \(documentCount)")
        // Similarities in float64, so the order does not hang on float32 rounding of near-ties.
        let q = rows(queries, width: width, normalised: similarity == .cosine)
        let d = rows(documents, width: width, normalised: similarity == .cosine)
        let depth = min(documentCount, max(cutoff, ks.max() ?? 0))
        var recall = [Double](repeating: 0, count: ks.count), hits = [Double](repeating: 0, count: ks.count)
        var reciprocal = 0.0, dcg = 0.0
        var scores = [Double](repeating: 0, count: min(chunk, max(queryCount, 1)) * documentCount)
        var start = 0
        while start < queryCount {
            let count = min(chunk, queryCount - start)
            q.withUnsafeBufferPointer { q in
                d.withUnsafeBufferPointer { d in
                    scores.withUnsafeMutableBufferPointer { s in
                        gemm(transposeA: false, transposeB: true, m: count, n: documentCount, k: width, a: q.baseAddress! + start * width,
                             lda: width, b: d.baseAddress!, ldb: width, c: s.baseAddress!, ldc: documentCount)
                    }
                }
            }
            for row in 0..<count {
                let ranked = scores.withUnsafeBufferPointer { topIndices(UnsafeBufferPointer(rebasing: $0[(row * documentCount)..<((row + 1) * documentCount)]), depth) }
                let wanted = Set(relevant[start + row])
                for (index, k) in ks.enumerated() {
                    let found = ranked.prefix(k).count { wanted.contains($0) }
                    recall[index] += Double(found) / Double(wanted.count)
                    hits[index] += found > 0 ? 1 : 0
                }
                if let first = ranked.prefix(cutoff).firstIndex(where: { wanted.contains($0) }) { reciprocal += 1 / Double(first + 1) }
                var gain = 0.0, ideal = 0.0
                for (position, document) in ranked.prefix(cutoff).enumerated() where wanted.contains(document) { gain += 1 / log2(Double(position + 2)) }
                for position in 0..<min(wanted.count, cutoff) { ideal += 1 / log2(Double(position + 2)) }
                dcg += gain / ideal
            }
            start += count
        }
        let n = Double(max(queryCount, 1))
        return Scores(ks: ks, recall: recall.map { $0 / n }, hitRate: hits.map { $0 / n }, meanReciprocalRank: reciprocal / n,
                      normalizedDCG: dcg / n, cutoff: cutoff, queries: queryCount)
    }

    /// Paired rows (row i of `a` belongs with row i of `b`, e.g. a caption and its image):
    /// retrieval a → b and b → a, each row's own pair its one relevant document.
    public static func pairedRetrieval(_ a: [Float], _ b: [Float], width: Int, ks: [Int] = [1, 5, 10], cutoff: Int = 10,
                                       similarity: Similarity = .cosine) -> (forward: Scores, backward: Scores) {
        let relevant = (0..<(a.count / width)).map { [$0] }
        return (retrieval(queries: a, documents: b, width: width, relevant: relevant, ks: ks, cutoff: cutoff, similarity: similarity),
                retrieval(queries: b, documents: a, width: width, relevant: relevant, ks: ks, cutoff: cutoff, similarity: similarity))
    }

    /// The indices of the `depth` largest scores, largest first, equal scores in index order
    /// (NaN ranks last). One pass with a small sorted buffer: O(N depth) at worst.
    static func topIndices(_ scores: UnsafeBufferPointer<Double>, _ depth: Int) -> [Int] {
        guard depth > 0 else { return [] }
        var best: [(score: Double, index: Int)] = []
        best.reserveCapacity(depth + 1)
        for (index, raw) in scores.enumerated() {
            let score = raw.isNaN ? -Double.infinity : raw
            // Strictly better than the worst kept: an equal score comes later in index order, so it loses.
            if best.count == depth, score <= best[depth - 1].score { continue }
            var position = best.count
            while position > 0 && best[position - 1].score < score { position -= 1 }
            best.insert((score, index), at: position)
            if best.count > depth { best.removeLast() }
        }
        return best.map(\.index)
    }

    private static func rows(_ values: [Float], width: Int, normalised: Bool) -> [Double] {
        var out = values.map(Double.init)
        guard normalised else { return out }
        for start in stride(from: 0, to: out.count, by: width) {
            var sum = 0.0
            for index in start..<(start + width) { sum += out[index] * out[index] }
            let scale = sum > 0 ? 1 / sum.squareRoot() : 0
            for index in start..<(start + width) { out[index] *= scale }
        }
        return out
    }

    /// Spearman's rank correlation of paired values (e.g. cosine similarity against a human
    /// score, as in STS): Pearson's correlation of their ranks, tied values given the mean of
    /// the ranks they span. NaN when either side is constant or there are fewer than 2 pairs.
    public static func spearman(_ x: [Double], _ y: [Double]) -> Double {
        precondition(x.count == y.count, "spearman needs paired values")
        guard x.count >= 2 else { return .nan }
        return pearson(averageRanks(x), averageRanks(y))
    }

    /// Ranks 1...n, ties the mean of their positions (scipy.stats.rankdata's "average").
    static func averageRanks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] != values[$1] ? values[$0] < values[$1] : $0 < $1 }
        var ranks = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && values[order[end]] == values[order[start]] { end += 1 }
            let rank = Double(start + end + 1) / 2   // mean of start + 1 ... end
            for position in start..<end { ranks[order[position]] = rank }
            start = end
        }
        return ranks
    }

    static func pearson(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        let meanX = x.reduce(0, +) / n, meanY = y.reduce(0, +) / n
        var covariance = 0.0, varianceX = 0.0, varianceY = 0.0
        for (a, b) in zip(x, y) {
            covariance += (a - meanX) * (b - meanY)
            varianceX += (a - meanX) * (a - meanX)
            varianceY += (b - meanY) * (b - meanY)
        }
        guard varianceX > 0 && varianceY > 0 else { return .nan }
        return covariance / (varianceX * varianceY).squareRoot()
    }
}
