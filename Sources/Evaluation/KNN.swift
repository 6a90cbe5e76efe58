import NN
import Foundation
import Tensor

/// Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018, as used
/// by SimCLR/MoCo monitors): cosine similarity to a memory of labelled training features,
/// the k most similar vote for their class with weight exp(similarity / T).
///
/// Shapes: M memory rows, Q query rows, D feature width. Features are L2-normalised here.
public struct KNNClassifier: Sendable {
    public var k: Int
    public var temperature: Float
    public var classes: Int

    public init(k: Int = 200, temperature: Float = 0.1, classes: Int = 10) {
        self.k = k
        self.temperature = temperature
        self.classes = classes
    }

    /// Fraction of queries whose predicted class equals their label.
    public func accuracy(memory: Tensor, memoryLabels: [UInt8], queries: Tensor, queryLabels: [UInt8],
                         normalisingMemoryInPlace: Bool = false, progress: EvaluationProgress? = nil) -> Double {
        let predictions = predict(memory: memory, memoryLabels: memoryLabels, queries: queries,
                                  normalisingMemoryInPlace: normalisingMemoryInPlace, progress: progress)
        let correct = zip(predictions, queryLabels).filter { Int($0) == Int($1) }.count
        return Double(correct) / Double(max(1, queryLabels.count))
    }

    /// Predicted class of every query row. With `normalisingMemoryInPlace` the memory's rows are
    /// L2-normalised where they are instead of in a copy (the same values; the caller no longer
    /// needs the raw ones): one memory's worth less at the peak, 1 GB a million rows of 256.
    /// With `progress`, says every so often how many queries are classified.
    public func predict(memory: Tensor, memoryLabels: [UInt8], queries: Tensor, normalisingMemoryInPlace: Bool = false,
                        progress: EvaluationProgress? = nil) -> [Int] {
        let d = memory.columns, m = memory.rows, q = queries.rows
        precondition(queries.columns == d, "kNN: memory has width \(d), queries \(queries.columns)")
        precondition(memoryLabels.count == m, "kNN: \(m) memory rows but \(memoryLabels.count) labels")
        let queryUnit = Self.normalised(queries)
        let memoryUnit: Tensor
        if normalisingMemoryInPlace {
            let norms = Tensor(zeros: [m])
            Kernels.l2NormalizeRows(memory.data, norms: norms.data, input: memory.data, rows: m, columns: d)
            memoryUnit = memory
        } else {
            memoryUnit = Self.normalised(memory)
        }
        let neighbours = min(k, m)
        // Queries a GEMM at a time: 256, fewer when the memory is large, so the similarity block
        // stays at 16 MB (a million-sample memory would otherwise take 1 GB of it).
        let chunk = max(1, min(256, (1 << 22) / max(m, 1)))
        let similarities = Tensor(zeros: [chunk, m])
        var predictions = [Int](repeating: 0, count: q)
        var heap = TopK(capacity: neighbours)
        var votes = [Double](repeating: 0, count: classes)
        var start = 0
        while start < q {
            let rows = min(chunk, q - start)
            gemm(transposeA: false, transposeB: true, m: rows, n: m, k: d,
                 a: queryUnit.data + start * d, lda: d, b: memoryUnit.data, ldb: d, c: similarities.data, ldc: m)
            for r in 0..<rows {
                heap.reset()
                let row = similarities.data + r * m
                for j in 0..<m { heap.offer(row[j], index: Int32(j)) }
                for c in 0..<classes { votes[c] = 0 }
                heap.forEach { similarity, index in
                    votes[Int(memoryLabels[Int(index)])] += exp(Double(similarity / temperature))
                }
                // Ties (vanishingly rare) go to the lower class index, deterministically.
                var best = 0
                for c in 1..<classes where votes[c] > votes[best] { best = c }
                predictions[start + r] = best
            }
            start += rows
            progress?.note("kNN: classified \(start) of \(q) queries against \(m) samples")
        }
        return predictions
    }

    static func normalised(_ x: Tensor) -> Tensor {
        let out = Tensor(zeros: [x.rows, x.columns])
        let norms = Tensor(zeros: [x.rows])
        Kernels.l2NormalizeRows(out.data, norms: norms.data, input: x.data, rows: x.rows, columns: x.columns)
        return out
    }
}

/// The k largest values seen, as a binary min-heap: each offer is one comparison against the
/// smallest kept value unless it enters.
/// Inlinable: kNN pseudo-labelling (Training) offers every candidate of every anchor.
public struct TopK {
    @usableFromInline var values: [Float]
    @usableFromInline var indices: [Int32]
    public var count: Int { filled }
    @usableFromInline var filled = 0
    public let capacity: Int

    public init(capacity: Int) {
        self.capacity = capacity
        values = [Float](repeating: 0, count: capacity)
        indices = [Int32](repeating: 0, count: capacity)
    }

    @inlinable public mutating func reset() { filled = 0 }

    @inlinable public mutating func offer(_ value: Float, index: Int32) {
        if filled < capacity {
            var i = filled
            filled += 1
            while i > 0 {
                let parent = (i - 1) / 2
                if values[parent] <= value { break }
                values[i] = values[parent]; indices[i] = indices[parent]
                i = parent
            }
            values[i] = value; indices[i] = index
        } else if value > values[0] {
            var i = 0
            while true {
                let left = 2 * i + 1
                if left >= capacity { break }
                var child = left
                if left + 1 < capacity && values[left + 1] < values[left] { child = left + 1 }
                if values[child] >= value { break }
                values[i] = values[child]; indices[i] = indices[child]
                i = child
            }
            values[i] = value; indices[i] = index
        }
    }

    @inlinable public func forEach(_ body: (Float, Int32) -> Void) {
        for i in 0..<count { body(values[i], indices[i]) }
    }
}
