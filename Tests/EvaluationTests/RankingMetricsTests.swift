import Foundation
import Testing
import TestSupport
@testable import Evaluation

/// Why the numpy / scipy reference cannot run here, or nil.
private let scipyUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "\(verifyPython.path) does not exist (launch/verify-python.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    guard let outcome = try? runProcess(verifyPython, ["-c", "import numpy, scipy.stats"], timeout: 120), outcome.status == 0 else {
        return "\(verifyPython.path) cannot import numpy and scipy"
    }
    return nil
}()

/// The same metrics written with numpy (a stable argsort of the negated scores breaks ties by
/// index) and scipy.stats.spearmanr, on the problems in IN; prints one JSON object per problem.
private let reference = """
import json, sys
import numpy as np
from scipy.stats import spearmanr
out = []
for p in json.load(open(sys.argv[1])):
    q = np.array(p["queries"], dtype=np.float64).reshape(-1, p["width"])
    d = np.array(p["documents"], dtype=np.float64).reshape(-1, p["width"])
    if p["similarity"] == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
    s = q @ d.T
    recall = {k: [] for k in p["ks"]}; hits = {k: [] for k in p["ks"]}; mrr = []; ndcg = []
    for row, wanted in enumerate(p["relevant"]):
        order = np.argsort(-s[row], kind="stable")
        wanted = set(wanted)
        for k in p["ks"]:
            found = sum(1 for i in order[:k] if i in wanted)
            recall[k].append(found / len(wanted)); hits[k].append(1.0 if found else 0.0)
        ranks = [r for r, i in enumerate(order[:10]) if i in wanted]
        mrr.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
        dcg = sum(1.0 / np.log2(r + 2) for r in ranks)
        ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(wanted), 10)))
        ndcg.append(dcg / ideal)
    out.append({"recall": [float(np.mean(recall[k])) for k in p["ks"]], "hits": [float(np.mean(hits[k])) for k in p["ks"]],
                "mrr": float(np.mean(mrr)), "ndcg": float(np.mean(ndcg)),
                "spearman": float(spearmanr(p["x"], p["y"]).correlation)})
print(json.dumps(out))
"""

@Suite struct RankingMetricsTests {
    /// One query [1, 0] against five documents by dot product: scores 0, 1, 2, 1, -1, so the
    /// ranking is d2, d1, d3 (tied with d1, later index), d0, d4; relevant d3 and d4 sit at ranks 3 and 5.
    @Test func handWorkedRanking() {
        let scores = RankingMetrics.retrieval(queries: [1, 0], documents: [0, 1, 1, 0, 2, 0, 1, 0, -1, 0], width: 2,
                                              relevant: [[3, 4]], ks: [1, 3, 5], similarity: .dot)
        #expect(scores.recall == [0, 0.5, 1])
        #expect(scores.hitRate == [0, 1, 1])
        #expect(abs(scores.meanReciprocalRank - 1.0 / 3) < 1e-15)
        let expected = (1 / log2(4.0) + 1 / log2(6.0)) / (1 + 1 / log2(3.0))
        #expect(abs(scores.normalizedDCG - expected) < 1e-15)
        // A cut-off of 4 loses d4 from MRR's and nDCG's view, not from recall@5.
        let short = RankingMetrics.retrieval(queries: [1, 0], documents: [0, 1, 1, 0, 2, 0, 1, 0, -1, 0], width: 2,
                                             relevant: [[3, 4]], ks: [5], cutoff: 4, similarity: .dot)
        #expect(short.recall == [1] && abs(short.normalizedDCG - (1 / log2(4.0)) / (1 + 1 / log2(3.0))) < 1e-15)
    }

    @Test func pairedRetrievalGoesBothWays() {
        // a0 is closest to b1 and a1 to b1; b0 is closest to a0, b1 to a1 (cosine).
        let a: [Float] = [1, 0.2, 0.1, 1], b: [Float] = [0.3, -1, 0.6, 1]
        let (forward, backward) = RankingMetrics.pairedRetrieval(a, b, width: 2, ks: [1, 2])
        #expect(forward.recall == [0.5, 1] && forward.meanReciprocalRank == 0.75)
        #expect(backward.recall == [1, 1] && backward.meanReciprocalRank == 1)
    }

    @Test func spearmanAveragesTiedRanks() {
        // Ranks of y: 1, 2, 3.5, 5, 3.5; covariance of ranks 8, variances 10 and 9.5.
        #expect(abs(RankingMetrics.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) - 8 / (10 * 9.5).squareRoot()) < 1e-15)
        #expect(RankingMetrics.averageRanks([3, 1, 3, 3, 0]) == [4, 2, 4, 4, 1])
        #expect(RankingMetrics.spearman([1, 2, 3], [3, 2, 1]) == -1)
        #expect(RankingMetrics.spearman([1, 1, 1], [1, 2, 3]).isNaN)
    }

    /// Random problems, with and without ties (integer embeddings by dot product tie often),
    /// against numpy and scipy.
    @Test(.enabled(if: scipyUnavailable == nil, "python-verify: skipped: \(scipyUnavailable ?? "")"))
    func matchesNumpyAndScipy() throws {
        var state: UInt64 = 42
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        var problems: [[String: Any]] = []
        var ours: [(RankingMetrics.Scores, Double)] = []
        for (index, similarity) in [RankingMetrics.Similarity.dot, .cosine, .cosine, .dot].enumerated() {
            let width = 3 + index, queries = 40 + 7 * index, documents = 120 + 13 * index
            let integer = similarity == .dot
            func value() -> Float { integer ? Float(Int(next() * 5) - 2) : Float(next() * 2 - 1) }
            let q = (0..<(queries * width)).map { _ in value() }
            var d = (0..<(documents * width)).map { _ in value() }
            if !integer { for j in 0..<width { d[j] += 3 } }   // no zero rows for cosine
            let relevant = (0..<queries).map { _ in Array(Set((0..<(1 + Int(next() * 3))).map { _ in Int(next() * Double(documents)) }).sorted()) }
            let x = (0..<200).map { _ in (next() * 10).rounded() }, y = (0..<200).map { _ in (next() * 6).rounded() }
            let ks = [1, 5, 10]
            problems.append(["queries": q, "documents": d, "width": width, "relevant": relevant, "ks": ks,
                             "similarity": similarity.rawValue, "x": x, "y": y])
            ours.append((RankingMetrics.retrieval(queries: q, documents: d, width: width, relevant: relevant, ks: ks, similarity: similarity),
                         RankingMetrics.spearman(x, y)))
        }
        let directory = temporaryDirectory("ranking")
        let input = directory.appendingPathComponent("problems.json")
        try JSONSerialization.data(withJSONObject: problems).write(to: input)
        let outcome = try runProcess(verifyPython, ["-c", reference, input.path], timeout: 300)
        try #require(outcome.status == 0, "\(outcome.error)")
        print("python-verify: ran the numpy / scipy ranking reference")
        let theirs = try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as! [[String: Any]]
        for ((scores, rho), reference) in zip(ours, theirs) {
            let close = { (a: Double, b: Double) in abs(a - b) <= 1e-12 }
            #expect(zip(scores.recall, reference["recall"] as! [Double]).allSatisfy(close), "\(scores.recall) \(reference["recall"]!)")
            #expect(zip(scores.hitRate, reference["hits"] as! [Double]).allSatisfy(close))
            #expect(close(scores.meanReciprocalRank, reference["mrr"] as! Double), "\(scores.meanReciprocalRank) \(reference["mrr"]!)")
            #expect(close(scores.normalizedDCG, reference["ndcg"] as! Double), "\(scores.normalizedDCG) \(reference["ndcg"]!)")
            #expect(close(rho, reference["spearman"] as! Double), "\(rho) \(reference["spearman"]!)")
        }
    }
}
