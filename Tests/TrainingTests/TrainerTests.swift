import Foundation
import Contrastive
import Testing
@testable import Data
@testable import NN
@testable import Tensor
@testable import Training

@Suite struct TrainerTests {
    /// The smoke workload end to end: it learns (loss falls, kNN well above chance) and the
    /// run directory holds the resolved config, the log, one JSON object per metrics line and
    /// the weights, which `eval` reads back to the same accuracy.
    @Test func smokeRunLearnsAndWritesItsRunDirectory() throws {
        let config = try smokeConfig()
        let trainer = try Trainer(config: config)
        let summary = try trainer.run()
        #expect(summary.steps == trainer.totalSteps)
        #expect(summary.knnAccuracy > 0.6)        // chance is 0.1; measured about 0.71

        let directory = URL(fileURLWithPath: config.runDirectory)
        let resolved = try ConfigLoader.load(file: directory.appendingPathComponent("config.yaml").path, overrides: [])
        #expect(resolved == config)
        let log = try String(contentsOf: directory.appendingPathComponent("train.log"), encoding: .utf8)
        #expect(log.contains("kNN accuracy"))
        let lines = try String(contentsOf: directory.appendingPathComponent("metrics/rank-0.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let records = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let losses = records.compactMap { $0["loss"] as? Double }
        #expect(losses.count == summary.steps)
        let firstLosses = losses.prefix(8).reduce(0, +) / 8, lastLosses = losses.suffix(8).reduce(0, +) / 8
        #expect(lastLosses < firstLosses - 0.2)
        #expect(records.contains { $0["knn_accuracy"] != nil })

        let model = trainer.step.model
        let reloaded = ContrastiveModel(inputWidth: 784, hidden: config.model.hidden, representation: config.model.representation,
                                        projection: config.model.projection, activation: .relu)
        try WeightsFile.read(into: reloaded.arena, from: directory.appendingPathComponent("weights.bin"))
        #expect(reloaded.arena.parameters.array == model.arena.parameters.array)
    }

    /// Views made ahead on a background thread train the very same model as views made in the loop.
    @Test func prefetchingChangesNothingButTheTiming() throws {
        func weights(_ prefetch: Int) throws -> [UInt32] {
            let config = try smokeConfig(["data.prefetch=\(prefetch)", "train.max_steps=40", "eval.knn_every_epochs=0"])
            let trainer = try Trainer(config: config)
            _ = try trainer.run()
            return trainer.step.model.arena.parameters.array.map(\.bitPattern)
        }
        #expect(try weights(0) == weights(2))
    }

    @Test func refusesToOverwriteAnExistingRun() throws {
        let config = try smokeConfig(["train.max_steps=1"])
        try FileManager.default.createDirectory(atPath: config.runDirectory, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: config.runDirectory).appendingPathComponent("train.log"))
        #expect(throws: RunFiles.Failure.self) { try Trainer(config: config) }
    }

    @Test func missingDataSetNamesTheFileAndTheFix() throws {
        let config = try smokeConfig(["data.path=/nonexistent/fashion"])
        do {
            _ = try Trainer(config: config)
            Issue.record("expected an error")
        } catch {
            let message = "\(error)"
            #expect(message.contains("/nonexistent/fashion"))
            #expect(message.contains("data.path"))
        }
    }
}

/// Each rank keeps only its shards of Fashion-MNIST, and they are the samples the whole data set
/// holds at those indices: P = 1's batches, cut by rank, are what the ranks make.
@Suite struct RankDataTests {
    @Test func eachRankHoldsOnlyItsShards() throws {
        let config = try smokeConfig(["data.virtual_shards=8"])
        let whole = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        #expect(whole.train.held == 0..<2048)
        for (p, expected) in [(2, [0..<1024, 1024..<2048]), (4, [0..<512, 512..<1024, 1024..<1536, 1536..<2048])] {
            for rank in 0..<p {
                let data = try TrainingData(config: config, rank: rank, worldSize: p, loadTest: false)
                #expect(data.train.held == expected[rank] && data.train.totalCount == 2048)
                #expect(data.shards == (rank * 8 / p)..<((rank + 1) * 8 / p))
                #expect(data.summary.contains("holds shards \(data.shards.lowerBound)..<\(data.shards.upperBound) (\(expected[rank].count) samples)"))
                let samples = Array(data.train.held)
                var mine = [Float](repeating: -1, count: samples.count * 784), all = [Float](repeating: -2, count: samples.count * 784)
                data.train.writeInputs(samples, into: &mine)
                whole.train.writeInputs(samples, into: &all)
                #expect(mine == all)
                #expect(data.train.labels! == Array(whole.train.labels![samples.first!...samples.last!]))
            }
        }
        // P = 3 does not divide S = 4 (48 samples of each shard in a global batch of 192): the
        // shards straddling two ranks are held by both.
        let four = try smokeConfig(["data.virtual_shards=4"])
        let ranges = try (0..<3).map { try TrainingData(config: four, rank: $0, worldSize: 3, loadTest: false).train.held }
        #expect(ranges == [0..<1024, 512..<1536, 1024..<2048])
    }
}

/// Same seed, same data, same steps: bit-identical parameters. A different seed differs.
@Suite struct DeterminismTests {
    func parameters(seed: Int, steps: Int) throws -> [Float] {
        let config = try smokeConfig(["seed=\(seed)"])
        // As the trainer does: OpenBLAS's own default (one thread per core) sums some GEMMs in
        // another order, and other tests in this process set it to 1 at any moment.
        BLASThreads.set(config.train.blasThreads)
        let data = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        let step = try TrainingStep(config: config, inputWidth: 784, samplesPerStep: config.data.batchPerRank, totalSteps: steps)
        let order = try data.sampler.order(epoch: 0)
        for i in 0..<steps {
            data.maker.makeBatch(samples: order.batch(i), epoch: 0, into: step.batch.data)
            _ = try step.step(i, input: step.batch.data)
        }
        return step.model.arena.parameters.array
    }

    @Test func sameSeedGivesBitIdenticalParameters() throws {
        let a = try parameters(seed: 3, steps: 6), b = try parameters(seed: 3, steps: 6)
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
        let c = try parameters(seed: 4, steps: 6)
        #expect(a != c)
    }
}

@Suite struct ScheduleWiringTests {
    @Test func configChoosesTheSchedule() throws {
        var o = TrainingConfig().optimizer
        #expect(Schedules.learningRate(o, totalSteps: 100) == .constant(o.lr))
        o.warmupSteps = 10
        #expect(Schedules.learningRate(o, totalSteps: 100).learningRate(atStep: 4) == o.lr * 0.5)
        #expect(Schedules.learningRate(o, totalSteps: 100).learningRate(atStep: 60) == o.lr)
        o.schedule = .cosine
        o.finalLR = 1e-5
        #expect(Schedules.learningRate(o, totalSteps: 100).learningRate(atStep: 100) == 1e-5)
    }
}

/// The whole network and loss together against finite differences: catches wiring mistakes
/// (which gradient goes where) that per-layer checks cannot.
@Suite struct ModelGradientTests {
    @Test func modelAndNTXentGradientMatchesFiniteDifferences() {
        let b = 3, v = 2 * b
        let model = ContrastiveModel(inputWidth: 6, hidden: [8], representation: 5, projection: [5, 4], activation: .gelu)
        model.initialise(seed: 1)
        let loss = NTXentLoss(temperature: 0.5)
        var rng = RandomStream(seed: 2, stream: 3)
        let input = Tensor(zeros: [v, 6])
        for i in 0..<input.count { input[i] = rng.nextUniform(-1, 1) }
        var selfIndex = [Int32](repeating: 0, count: v), positive = [Int32](repeating: 0, count: v)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positive, samples: b, offset: 0)
        let ga = Tensor(zeros: [v, 4]), gc = Tensor(zeros: [v, 4])

        func evaluate() -> Double {
            let (_, z) = model.forward(input.data, batch: v)
            return loss.forwardBackward(anchors: z, anchorCount: v, candidates: z, candidateCount: v, dimension: 4,
                                        selfIndex: selfIndex, positiveIndex: positive, normalization: v,
                                        anchorGradient: ga.data, candidateGradient: gc.data).loss
        }
        _ = evaluate()
        Kernels.axpy(ga.data, alpha: 1, x: gc.data, count: ga.count)
        model.arena.zeroGradients()
        model.backward(ga.data, batch: v)
        let analytic = model.arena.gradients.array
        let indices = model.arena.slices.flatMap { Array($0.range) }
        let numerical = GradientCheck.numericalGradient(of: evaluate, at: model.arena.parameters.data, indices: indices, step: 1e-2)
        let error = GradientCheck.maxRelativeError(analytic: indices.map { Double(analytic[$0]) }, numerical: numerical)
        #expect(error < 2e-2)
    }
}

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

@Suite struct WeightsFileTests {
    func arena() -> ParameterArena {
        let arena = ParameterArena()
        _ = arena.allocate(name: "w", shape: [3, 5], kind: .weight)
        arena.seal()
        for i in 0..<arena.count { arena.parameters[i] = Float(i) * 0.25 }
        return arena
    }

    @Test func roundTripsAndDetectsDamage() throws {
        let url = temporaryDirectory("weights").appendingPathComponent("weights.bin")
        let original = arena()
        try WeightsFile.write(original, to: url)
        let copy = arena()
        copy.parameters.zero()
        try WeightsFile.read(into: copy, from: url)
        #expect(copy.parameters.array == original.parameters.array)

        var bytes = try Data(contentsOf: url)
        bytes[30] ^= 0x40
        try bytes.write(to: url)
        #expect(throws: RunFiles.Failure.self) { try WeightsFile.read(into: copy, from: url) }
        try bytes.prefix(40).write(to: url)
        #expect(throws: RunFiles.Failure.self) { try WeightsFile.read(into: copy, from: url) }
    }
}
