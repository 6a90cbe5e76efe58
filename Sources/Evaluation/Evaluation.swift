import RunFiles
import NN
import Data
import Distributed
import Foundation
import Tensor

/// Evaluation of representations on un-augmented samples.
public enum Evaluation {
    /// kNN test accuracy with `train` as the memory, the classifier a training run logs
    /// (`knnAccuracy(memory:queries:...)`: k = eval.knn_k, votes exp(similarity / eval.knn_temperature)),
    /// on the model's representations h, or on the inputs themselves without a model (the
    /// raw-features baseline). Both splits need labels in 0..<256.
    public static func knnAccuracy(model: ContrastiveModel?, train: SampleRows, test: SampleRows, k: Int, temperature: Float,
                                   progress: EvaluationProgress? = nil) throws -> Double {
        guard let memoryLabels = classes(train.labels), let queryLabels = classes(test.labels) else {
            let split = classes(train.labels) == nil ? "train" : "test"
            throw RunDirectory.Failure(description: "the \(split) split has no labels in 0..<256; kNN needs class labels 0, 1, 2, ... on both splits "
                                   + "(prepare the data set with labels)")
        }
        func features(_ rows: SampleRows, _ what: String) -> Tensor {
            guard let model else { return inputs(rows) }
            return representations(model: model, rows: rows, progress: progress, what: what)
        }
        let memory = LabelledRepresentations(features: features(train, "training samples"), labels: memoryLabels)
        return knnAccuracy(memory: memory, queries: features(test, "test samples"), queryLabels: queryLabels, k: k, temperature: temperature,
                           consumingMemory: true, progress: progress)
    }

    static func inputs(_ rows: SampleRows) -> Tensor {
        let out = Tensor(zeros: [rows.count, rows.featureWidth])
        rows.writeInputs(rows.held, into: out.data)
        return out
    }

    /// h for `samples` (all held ones by default) of `rows` (count x R), computed in chunks.
    /// With `progress`, says every so often how many of the samples (`what`) are embedded.
    public static func representations(model: ContrastiveModel, rows: SampleRows, samples: Range<Int>? = nil,
                                       chunk: Int = 1024, progress: EvaluationProgress? = nil, what: String = "samples") -> Tensor {
        let samples = samples ?? rows.held
        let out = Tensor(zeros: [samples.count, model.representationWidth])
        let inputs = Tensor(zeros: [chunk, rows.featureWidth])
        var start = samples.lowerBound
        while start < samples.upperBound {
            let count = min(chunk, samples.upperBound - start)
            rows.writeInputs(start..<(start + count), into: inputs.data)
            model.representations(of: inputs.data, count: count,
                                  into: out.data + (start - samples.lowerBound) * model.representationWidth, batch: count)
            start += count
            progress?.note("embedded \(start - samples.lowerBound) of \(samples.count) \(what)")
        }
        return out
    }

    /// Labels as kNN classes: nil unless every label is in 0..<256.
    public static func classes(_ labels: [Int64]?) -> [UInt8]? {
        guard let labels, labels.allSatisfy({ $0 >= 0 && $0 < 256 }) else { return nil }
        return labels.map { UInt8($0) }
    }

    /// Representations of a whole labelled training set with their labels (kNN's memory, the
    /// linear probe's training set).
    public struct LabelledRepresentations {
        public var features: Tensor
        public var labels: [UInt8]
    }

    /// The training set's representations, each rank embedding the samples it evaluates
    /// (`evaluated`, disjoint across ranks, together the data set) and all of them gathered on
    /// rank `root` alone: N x R floats that no other rank needs. Collective. nil on the other
    /// ranks, and on every rank when some rank's labels are missing or not in 0..<256.
    public static func gatherRepresentations(model: ContrastiveModel, train: SampleRows, evaluated: Range<Int>,
                                             communicator: Communicator, root: Int = 0,
                                             progress: EvaluationProgress? = nil) throws -> LabelledRepresentations? {
        // Whether the labels are usable is decided together, so no rank leaves the collectives early.
        let first = evaluated.isEmpty ? 0 : train.row(evaluated.lowerBound)
        let ownLabels = classes(train.labels.map { Array($0[first ..< first + evaluated.count]) })
        // Not embedded when the labels are unusable: the memory would be dropped.
        let own = ownLabels == nil ? nil : representations(model: model, rows: train, samples: evaluated, progress: progress,
                                                           what: "training samples of rank \(communicator.rank)")
        return try gatherRepresentations(model: model, own: own, ownLabels: ownLabels, communicator: communicator, root: root)
    }

    /// `gatherRepresentations` from this rank's representations and labels, made by the caller
    /// (`data.hold: stream` embeds its shards one at a time, holding none of them); `own` may
    /// be nil when `ownLabels` is (missing, or not classes). Collective.
    public static func gatherRepresentations(model: ContrastiveModel, own: Tensor?, ownLabels: [UInt8]?, communicator: Communicator,
                                             root: Int = 0) throws -> LabelledRepresentations? {
        let r = model.representationWidth, p = communicator.size
        var unusable: [Double] = [ownLabels == nil ? 1 : 0]
        try communicator.allReduceMax(&unusable)
        guard unusable[0] == 0, let ownLabels, let ownRepresentations = own else { return nil }
        precondition(ownRepresentations.count == ownLabels.count * r, "gatherRepresentations: one representation per label")
        // Counts of every rank, then the memory and its labels (labels travel as exact floats).
        var counts = [Int64](repeating: 0, count: p)
        var mine = Int64(ownLabels.count)
        try withUnsafeBytes(of: &mine) { own in
            try counts.withUnsafeMutableBytes { try communicator.allGatherBytes(own.baseAddress!, bytes: 8, into: $0.baseAddress!) }
        }
        let total = Int(counts.reduce(0, +)), isRoot = communicator.rank == root
        let memory = isRoot ? Tensor(zeros: [max(1, total), r]) : nil
        try communicator.gather(ownRepresentations.data, into: memory?.data, counts: counts.map { Int($0) * r }, root: root)
        var labelFloats = ownLabels.map { Float($0) } + [0]
        var allLabels = [Float](repeating: 0, count: isRoot ? total + 1 : 0)
        try labelFloats.withUnsafeMutableBufferPointer { own in
            try allLabels.withUnsafeMutableBufferPointer {
                try communicator.gather(own.baseAddress!, into: isRoot ? $0.baseAddress! : nil, counts: counts.map { Int($0) }, root: root)
            }
        }
        guard let memory else { return nil }
        return LabelledRepresentations(features: memory, labels: allLabels[0..<total].map { UInt8($0) })
    }

    /// kNN accuracy of `test` (its representations `queries`) against a gathered memory. With
    /// `consumingMemory` the memory's features are normalised in place (no copy of them); pass
    /// it only when nothing reads them afterwards.
    public static func knnAccuracy(memory: LabelledRepresentations, queries: Tensor, queryLabels: [UInt8],
                                   k: Int, temperature: Float, consumingMemory: Bool = false, progress: EvaluationProgress? = nil) -> Double {
        let classCount = Int(max(memory.labels.max() ?? 0, queryLabels.max() ?? 0)) + 1
        let classifier = KNNClassifier(k: k, temperature: temperature, classes: max(2, classCount))
        return classifier.accuracy(memory: memory.features, memoryLabels: memory.labels, queries: queries, queryLabels: queryLabels,
                                   normalisingMemoryInPlace: consumingMemory, progress: progress)
    }

    /// Cross-modal retrieval on paired rows: for each sample, the rank of its own pair among
    /// all pairs by cosine similarity of the embeddings z (and back). Recall@K is the fraction of
    /// samples whose pair ranks among the K most similar (ties count against it).
    public struct Retrieval: Sendable, Equatable {
        public var ks: [Int]
        /// Recall@K, features -> pairs, for each K.
        public var forward: [Double]
        /// Recall@K, pairs -> features, for each K.
        public var backward: [Double]
    }

    public static func retrieval(model: ContrastiveModel, rows: SampleRows, ks: [Int] = [1, 5], chunk: Int = 512) -> Retrieval {
        let n = rows.count, e = model.embeddingWidth
        let a = Tensor(zeros: [n, e]), b = Tensor(zeros: [n, e])
        do {
            let features = Tensor(zeros: [n, rows.featureWidth]), pairs = Tensor(zeros: [n, rows.pairWidth])
            rows.writeInputs(rows.held, into: features.data)
            rows.writePairs(rows.held, into: pairs.data)
            model.embeddings(of: features.data, count: n, into: a.data)
            model.embeddings(of: pairs.data, count: n, pair: true, into: b.data)
        }
        return retrieval(a, b, ks: ks, chunk: chunk)
    }

    /// Recall@K both ways between row i of `a` and row i of `b` (N x E each, unit rows: the dot
    /// product is the cosine), the similarities computed `chunk` queries at a time.
    public static func retrieval(_ a: Tensor, _ b: Tensor, ks: [Int] = [1, 5], chunk: Int = 512) -> Retrieval {
        precondition(a.shape == b.shape && a.shape.count == 2, "retrieval: the two sides differ in shape")
        let n = a.shape[0], e = a.shape[1]
        let similarities = Tensor(zeros: [chunk, n])
        func recall(_ queries: Tensor, _ keys: Tensor) -> [Double] {
            var hits = [Int](repeating: 0, count: ks.count)
            var start = 0
            while start < n {
                let count = min(chunk, n - start)
                gemm(transposeA: false, transposeB: true, m: count, n: n, k: e, a: queries.data + start * e, lda: e,
                     b: keys.data, ldb: e, c: similarities.data, ldc: n)
                for row in 0..<count {
                    let s = similarities.data + row * n, own = s[start + row]
                    var above = 0
                    for j in 0..<n where j != start + row && s[j] >= own { above += 1 }
                    for (index, k) in ks.enumerated() where above < k { hits[index] += 1 }
                }
                start += count
            }
            return hits.map { Double($0) / Double(max(1, n)) }
        }
        return Retrieval(ks: ks, forward: recall(a, b), backward: recall(b, a))
    }
}
