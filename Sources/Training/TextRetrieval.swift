import Data
import Evaluation
import NN
import Tensor

/// Retrieval on a text set's test split, as sentence-transformers' InformationRetrievalEvaluator:
/// the queries are the Q test texts, the corpus the distinct test positives (equal texts are one
/// document), and a query's relevant documents are its own positive and every positive sharing
/// its pair id (the `group` field: a synset's other words, a headword's other translations).
/// Recall@1/5/10, MRR@10 and nDCG@10 by cosine (`RankingMetrics.retrieval`); with a `score` field,
/// Spearman's correlation between cos(text, positive) and the score (EmbeddingSimilarityEvaluator).
///
/// Shapes: Q queries, M documents (M <= Q), T tokens, E the representation's width.
public struct TextRetrieval: Sendable {
    /// The Q queries' BERT rows (Q x 3T) and the M documents' (M x 3T).
    let queries: SampleRows
    let documents: SampleRows
    /// The document of each query's own positive, and each query's relevant documents.
    let documentOf: [Int]
    let relevant: [[Int]]
    let scores: [Float]?

    public var queryCount: Int { queries.count }
    public var documentCount: Int { documents.count }

    public init(_ texts: TextSamples) {
        let n = texts.held.count, width = 3 * texts.tokens
        var first: [Int64: Int] = [:], documentOf: [Int] = [], corpus: [Int] = []
        for i in 0..<n {
            let key = texts.positiveKeys[i]
            if let document = first[key] { documentOf.append(document) } else {
                first[key] = corpus.count
                documentOf.append(corpus.count)
                corpus.append(i)
            }
        }
        var byId: [Int64: [Int]] = [:]
        for (document, i) in corpus.enumerated() { byId[texts.pairIds[i], default: []].append(document) }
        relevant = (0..<n).map { q in Array(Set((byId[texts.pairIds[q]] ?? []) + [documentOf[q]])).sorted() }
        self.documentOf = documentOf
        scores = texts.scores
        func rows(_ tokenized: TokenizedTexts, _ indices: [Int]) -> SampleRows {
            var values = [Float](repeating: 0, count: indices.count * width)
            values.withUnsafeMutableBufferPointer { out in
                for (row, index) in indices.enumerated() {
                    tokenized.writeRow(index, tokens: texts.tokens, padding: texts.paddingID, into: out.baseAddress! + row * width)
                }
            }
            return SampleRows(held: 0..<indices.count, totalCount: indices.count, featureShape: [width], features: .float32(values))
        }
        queries = rows(texts.anchors, Array(0..<n))
        documents = rows(texts.positives ?? texts.anchors, corpus)
    }

    public struct Result: Sendable {
        public var scores: RankingMetrics.Scores
        /// Spearman's rho of cos(text, positive) against the `score` field; nil without one.
        public var spearman: Double?
    }

    /// Embeds the queries and documents with `model` (evaluation mode) and scores the ranking.
    public func evaluate(model: ContrastiveModel, progress: EvaluationProgress? = nil) -> Result {
        let q = Evaluation.representations(model: model, rows: queries, progress: progress, what: "test texts")
        let d = Evaluation.representations(model: model, rows: documents, progress: progress, what: "test positives")
        let width = model.representationWidth
        let scores = RankingMetrics.retrieval(queries: q.array, documents: d.array, width: width, relevant: relevant)
        var spearman: Double? = nil
        if let given = self.scores {
            let cosines = (0..<queries.count).map { i in
                Self.cosine(q.data + i * width, d.data + documentOf[i] * width, width)
            }
            spearman = RankingMetrics.spearman(cosines, given.map(Double.init))
        }
        return Result(scores: scores, spearman: spearman)
    }

    static func cosine(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ width: Int) -> Double {
        var dot = 0.0, aa = 0.0, bb = 0.0
        for k in 0..<width {
            dot += Double(a[k]) * Double(b[k]); aa += Double(a[k]) * Double(a[k]); bb += Double(b[k]) * Double(b[k])
        }
        return aa > 0 && bb > 0 ? dot / (aa.squareRoot() * bb.squareRoot()) : 0
    }
}
