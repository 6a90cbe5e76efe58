import Foundation
import TestSupport
import Testing
@testable import Tensor
@testable import Evaluation
import RunFiles

@Suite struct KNNTests {
    @Test func topKKeepsTheLargestValues() {
        var rng = RandomStream(seed: 1, stream: 1)
        let values = (0..<1000).map { _ in rng.nextUniform() }
        var heap = TopK(capacity: 37)
        for (i, v) in values.enumerated() { heap.offer(v, index: Int32(i)) }
        var kept: [Float] = []
        heap.forEach { value, index in kept.append(value); #expect(values[Int(index)] == value) }
        #expect(kept.sorted() == Array(values.sorted().suffix(37)))
    }

    /// Normalising the memory in place predicts exactly what the copy does, over query chunks
    /// (the similarity block holds fewer queries when the memory is large), and leaves unit rows.
    /// m memory and q query rows of width d, normal draws, and m labels in 0..<classes.
    static func problem(seed: UInt64, stream: UInt64, m: Int, q: Int, d: Int, classes: Int) -> (memory: Tensor, queries: Tensor, labels: [UInt8]) {
        var rng = RandomStream(seed: seed, stream: stream)
        let memory = Tensor(zeros: [m, d]), queries = Tensor(zeros: [q, d])
        for i in 0..<memory.count { memory[i] = rng.nextNormal() }
        for i in 0..<queries.count { queries[i] = rng.nextNormal() }
        return (memory, queries, (0..<m).map { _ in UInt8(rng.nextInt(below: classes)) })
    }

    @Test func inPlaceNormalisationPredictsTheSame() {
        let d = 8
        let (memory, queries, labels) = Self.problem(seed: 9, stream: 4, m: 20_000, q: 300, d: d, classes: 5)
        let classifier = KNNClassifier(k: 20, temperature: 0.1, classes: 5)
        let raw = Array(UnsafeBufferPointer(start: memory.data, count: memory.count))
        let copied = classifier.predict(memory: memory, memoryLabels: labels, queries: queries)
        #expect(Array(UnsafeBufferPointer(start: memory.data, count: memory.count)) == raw, "the copying path changed the memory")
        let inPlace = classifier.predict(memory: memory, memoryLabels: labels, queries: queries, normalisingMemoryInPlace: true)
        #expect(inPlace == copied)
        let norm = (0..<d).reduce(Float(0)) { $0 + memory[$1] * memory[$1] }.squareRoot()
        #expect(abs(norm - 1) < 1e-6 && memory[0] != raw[0])
    }

    @Test func weightedVotesMatchABruteForceReference() {
        // Memory: 40 random points in 3 classes; predictions against an exhaustive sort.
        let m = 40, q = 15, d = 4
        let (memory, queries, labels) = Self.problem(seed: 5, stream: 2, m: m, q: q, d: d, classes: 3)
        let classifier = KNNClassifier(k: 7, temperature: 0.1, classes: 3)
        let predictions = classifier.predict(memory: memory, memoryLabels: labels, queries: queries)
        func unit(_ t: Tensor, _ r: Int) -> [Double] {
            let row = (0..<d).map { Double(t[r * d + $0]) }
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return row.map { $0 / norm }
        }
        for i in 0..<q {
            let qi = unit(queries, i)
            let similarities = (0..<m).map { j in zip(qi, unit(memory, j)).reduce(0) { $0 + $1.0 * $1.1 } }
            let nearest = similarities.indices.sorted { similarities[$0] > similarities[$1] }.prefix(7)
            var votes = [Double](repeating: 0, count: 3)
            for j in nearest { votes[Int(labels[j])] += exp(similarities[j] / 0.1) }
            #expect(predictions[i] == votes.indices.max { votes[$0] < votes[$1] }!)
        }
    }
}
