import Contrastive
import Distributed
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// train.gradient_cache_chunk: the chunked step (Objectives/GradientCache.swift) computes the loss
/// and the update of the ordinary step, in one process and across ranks, and is bit for bit the
/// chunked algorithm written out by hand.
@Suite struct GradientCacheTests {
    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    struct Outcome {
        var loss: Double
        var parameters: [Float]
        var gradients: [Float]
        var result: TrainingStep.Result
        /// The step ran its model passes through GradientCache.
        var cached: Bool
    }

    /// A fresh TrainingStep (one process) with a fixed pseudo-random batch of B samples, not yet
    /// stepped. Features I = 20; clip (and loss.sides pairs) adds pairs W = 12; supcon labels every other
    /// sample (classes 0...2), loss.mask_duplicates every sample (its pair id; -1 is an id too). `forcedChunk` caches in chunks of that many rows whatever the config says.
    func freshStep(_ overrides: [String], samples b: Int = 16, forcedChunk: Int? = nil) throws -> TrainingStep {
        let config = try smokeConfig(Self.sgd + overrides)
        let clip = config.loss.usesPairTower, supcon = config.loss.kind == .supcon || config.loss.maskDuplicates
        let step = try TrainingStep(config: config, communicator: SingleProcessCommunicator(), inputWidth: 20, pairWidth: clip ? 12 : 0,
                                    imageShape: nil, samplesPerStep: b, totalSteps: 1, gradientCacheChunk: forcedChunk)
        var random = RandomStream(seed: 7, stream: 1)
        let values = clip ? b * (20 + 12) : 2 * b * 20
        for i in 0..<values { step.batch[i] = random.nextUniform(-1, 1) }
        if supcon { for i in 0..<b { step.batch[values + i] = i % 2 == 0 ? Float(i % 3) : -1 } }
        return step
    }

    /// One step of `freshStep`.
    func step(_ overrides: [String], samples b: Int = 16, forcedChunk: Int? = nil) throws -> Outcome {
        let step = try freshStep(overrides, samples: b, forcedChunk: forcedChunk)
        let result = try step.step(0, input: step.batch.data)
        #expect(result.applied)
        let arena = step.model.arena
        return Outcome(loss: result.loss, parameters: arena.parameters.array, gradients: arena.gradients.array, result: result,
                       cached: step.objective.passes is GradientCache)
    }

    /// The cached step of `freshStep` written out by hand from the model's and the losses' own
    /// calls, none of the objectives' or GradientCache's code (P = 1, fp32 on the wire, SGD
    /// without momentum or decay): z of each chunk of C rows, the loss of all V views against
    /// their copy, dL/dz through anchors plus through candidates, then per chunk forward again
    /// and backward with its rows of dL/dz; theta -= lr g.
    func handCachedStep(_ overrides: [String], chunk c: Int, samples b: Int = 16) throws -> (loss: Double, gradients: [Float], parameters: [Float]) {
        let step = try freshStep(overrides, samples: b)
        let config = step.config, model = step.model, arena = model.arena, input = step.batch.data
        let v = 2 * b, e = model.embeddingWidth, width = model.inputWidth, l = config.loss
        let z = Tensor(zeros: [v, e]), candidates = Tensor(zeros: [v, e])
        let anchorGradient = Tensor(zeros: [v, e]), candidateGradient = Tensor(zeros: [v, e])
        func chunks(_ body: (_ start: Int, _ count: Int) -> Void) {
            for start in stride(from: 0, to: v, by: c) { body(start, min(c, v - start)) }
        }
        chunks { start, count in (z.data + start * e).update(from: model.forward(input + start * width, batch: count).embedding, count: count * e) }
        candidates.copy(from: z)
        var selfIndex = [Int32](repeating: 0, count: v), positiveIndex = [Int32](repeating: 0, count: v)
        TwoViewPairs.fill(selfIndex: &selfIndex, positiveIndex: &positiveIndex, samples: b, offset: 0)
        let loss: Double
        switch l.kind {
        case .ntxent:
            loss = NTXentLoss(temperature: l.temperature, logitChunk: l.logitChunk).forwardBackward(
                anchors: z.data, anchorCount: v, candidates: candidates.data, candidateCount: v, dimension: e,
                selfIndex: selfIndex, positiveIndex: positiveIndex, normalization: v,
                anchorGradient: anchorGradient.data, candidateGradient: candidateGradient.data).loss
        case .supcon:
            let labels = (0..<v).map { Int32(input[v * width + $0 % b]) }
            loss = SupConLoss(temperature: l.temperature, logitChunk: l.logitChunk).forwardBackward(
                anchors: z.data, anchorCount: v, candidates: candidates.data, candidateCount: v, dimension: e,
                selfIndex: selfIndex, positiveIndex: positiveIndex, anchorLabels: labels, candidateLabels: labels, normalization: v,
                anchorGradient: anchorGradient.data, candidateGradient: candidateGradient.data).loss
        case .clip, .siglip, .pairs:
            preconditionFailure("handCachedStep: two-view objectives only")
        }
        Kernels.axpy(anchorGradient.data, alpha: 1, x: candidateGradient.data, count: v * e)
        arena.zeroGradients()
        chunks { start, count in
            _ = model.forward(input + start * width, batch: count)
            model.backward(anchorGradient.data + start * e, batch: count)
        }
        let gradients = arena.gradients.array
        SGD(for: arena, groups: model.parameterGroups(encoderLearningRateScale: config.optimizer.encoderLRScale))
            .step(arena, learningRate: config.optimizer.lr)
        return (loss, gradients, arena.parameters.array)
    }

    /// max_i |a_i - b_i| / max_i |b_i|: relative to the largest element, as summation order moves
    /// every element by a few ulps of the largest.
    func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max() ?? 0
        return (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / max(scale, 1e-30)
    }

    /// Same loss (1e-6 relative), gradients and parameters after one SGD step (1e-5 relative) as the
    /// uncached step, for chunks that divide V = 32 and ones that do not, with every objective.
    @Test(arguments: ["ntxent", "supcon", "clip", "siglip", "siglip sides=pairs", "pairs", "pairs sides=pairs",
                      "pairs symmetric=false mask_duplicates=true"], [1, 5, 8, 13, 31])
    func cachedStepEqualsTheUncachedStep(kind: String, chunk: Int) throws {
        // "kind key=value ...": loss.kind and further loss keys.
        let words = kind.split(separator: " ").map(String.init)
        let pairTower = kind == "clip" || words.contains("sides=pairs")
        let objective = ["loss.kind=\(words[0])"] + words.dropFirst().map { "loss.\($0)" } + (pairTower ? ["model.pair_hidden=[24]"] : [])
        let reference = try step(objective)
        let cached = try step(objective + ["train.gradient_cache_chunk=\(chunk)"])
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss), "\(kind) C=\(chunk)")
        #expect(relativeDifference(cached.gradients, reference.gradients) <= 1e-5, "\(kind) C=\(chunk)")
        #expect(relativeDifference(cached.parameters, reference.parameters) <= 1e-5, "\(kind) C=\(chunk)")
        #expect(cached.result.positiveAccuracy == reference.result.positiveAccuracy)
        #expect(cached.gradients.contains { $0 != 0 })
    }

    /// The learnable temperature's gradient comes from the loss, before the chunks: unchanged.
    @Test func cachedStepWithLearnableTemperature() throws {
        let learnable = ["loss.temperature_mode=learnable", "loss.temperature=0.2"]
        let reference = try step(learnable)
        let cached = try step(learnable + ["train.gradient_cache_chunk=6"])
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss))
        #expect(relativeDifference(cached.gradients, reference.gradients) <= 1e-5)
        #expect(cached.gradients.last! != 0 && abs(cached.gradients.last! - reference.gradients.last!) <= 1e-6 * abs(reference.gradients.last!))
    }

    /// SigLIP's theta and bias (the last two parameters) likewise: their gradients come from the ring.
    @Test func cachedSigLIPWithLearnableScaleAndBias() throws {
        let learnable = ["loss.kind=siglip", "loss.temperature_mode=learnable", "loss.temperature=0.1"]
        let reference = try step(learnable)
        let cached = try step(learnable + ["train.gradient_cache_chunk=6"])
        #expect(abs(cached.loss - reference.loss) <= 1e-6 * abs(reference.loss))
        #expect(relativeDifference(cached.gradients, reference.gradients) <= 1e-5)
        let step = try freshStep(learnable)
        let theta = step.model.logitScale!, bias = step.model.logitBias!
        #expect(step.model.arena.parameters(theta)[0] == log(10) && step.model.arena.parameters(bias)[0] == -10)
        for slice in [theta, bias] {
            let g = cached.gradients[slice.offset], r = reference.gradients[slice.offset]
            #expect(g != 0 && abs(g - r) <= 1e-6 * abs(r), "\(slice.name): \(g) vs \(r)")
        }
    }

    /// The cached step reproduces the chunked algorithm written out by hand (`handCachedStep`),
    /// bit for bit: loss, gradients and parameters, with chunks of 7, 7, 7, 7 and 4 of V = 32.
    @Test(arguments: ["ntxent", "supcon"])
    func cachedStepIsReproducible(kind: String) throws {
        let overrides = ["loss.kind=\(kind)", "communication.precision=fp32"]
        let cached = try step(overrides + ["train.gradient_cache_chunk=7"])
        let reference = try handCachedStep(overrides, chunk: 7)
        #expect(cached.cached)
        #expect(cached.loss.bitPattern == reference.loss.bitPattern)
        #expect(cached.gradients.map(\.bitPattern) == reference.gradients.map(\.bitPattern))
        #expect(cached.parameters.map(\.bitPattern) == reference.parameters.map(\.bitPattern))
    }

    /// One chunk of all V views through the cache (embed, keep z, replay the forward, backward)
    /// is the ordinary step bit for bit: the replay rebuilds exactly the activations backward
    /// needs. The config's rule skips the cache for such a chunk (it would only cost a second
    /// forward), so the test forces it.
    @Test func chunkOfAllViewsIsTheOrdinaryStep() throws {
        let reference = try step([])
        let whole = try step([], forcedChunk: 32)
        #expect(whole.cached && !reference.cached)
        #expect(try !step(["train.gradient_cache_chunk=32"]).cached)
        #expect(whole.loss.bitPattern == reference.loss.bitPattern)
        #expect(whole.gradients.map(\.bitPattern) == reference.gradients.map(\.bitPattern))
        #expect(whole.parameters.map(\.bitPattern) == reference.parameters.map(\.bitPattern))
    }

    /// MoCo caches its queries like the other objectives (the key model runs forward only): two
    /// steps, so the second scores the first's keys in the queue.
    @Test(arguments: [5, 13])
    func cachedMoCoEqualsTheUncachedMoCo(chunk: Int) throws {
        func twoSteps(_ overrides: [String]) throws -> (losses: [Double], parameters: [Float]) {
            let step = try freshStep(["loss.moco_queue=48", "loss.moco_momentum=0.9"] + overrides)
            let losses = try (0..<2).map { try step.step($0, input: step.batch.data).loss }
            #expect(step.objective is MoCo && (step.objective.passes is GradientCache) == !overrides.isEmpty)
            return (losses, step.model.arena.parameters.array)
        }
        let reference = try twoSteps([]), cached = try twoSteps(["train.gradient_cache_chunk=\(chunk)"])
        for (a, b) in zip(cached.losses, reference.losses) { #expect(abs(a - b) <= 1e-6 * abs(b)) }
        #expect(relativeDifference(cached.parameters, reference.parameters) <= 1e-5)
    }

    /// Only the last chunk's backward reports finished gradients (an earlier report would start an
    /// all-reduce bucket on a partial sum): the reports of one uncached backward, not one set per chunk.
    @Test func onlyTheLastChunkReportsFinishedGradients() throws {
        let config = try smokeConfig(["train.gradient_cache_chunk=5"])
        let step = try TrainingStep(config: config, inputWidth: 20, samplesPerStep: 8, totalSteps: 1)
        let v = 16, e = step.model.embeddingWidth
        for i in 0..<step.batch.count { step.batch[i] = Float(i % 7) * 0.1 }
        let gradient = Tensor(shape: [v * e], repeating: 0.01)
        var uncachedReports: [Int] = []
        _ = step.model.forward(step.batch.data, batch: v)
        step.model.backward(Tensor(shape: [v * e], repeating: 0.01).data, batch: v) { uncachedReports.append($0) }
        var reports: [Int] = []
        let cache = GradientCache(model: step.model, chunk: 5)
        cache.backward(.first, step.batch.data, rows: v, embeddingGradient: gradient.data) { reports.append($0) }
        #expect(!uncachedReports.isEmpty && reports == uncachedReports)
        #expect(cache.replaySeconds > 0)
        #expect(step.objective.passes is GradientCache)
        #expect(GradientCache.chunk(config.train.gradientCacheChunk, rows: v) == 5 && GradientCache.chunk(5, rows: 5) == nil)
    }

    @Test func negativeChunkIsAConfigError() throws {
        #expect {
            try smokeConfig(["train.gradient_cache_chunk=-4"])
        } throws: { error in
            (error as? ConfigError)?.key == "train.gradient_cache_chunk"
        }
        #expect(try smokeConfig([]).train.gradientCacheChunk == 0)
    }
}

/// P ranks with gradient caching train exactly the model one process trains without it on the
/// whole global batch, through `contrast train` under mpirun; small buckets, so a bucket started
/// before the last chunk would send a partial sum.
@Suite(.serialized) struct GradientCacheDistributedTests {
    func train(ranks: Int, _ overrides: [String]) throws -> (parameters: [Float], loss: Double) {
        let runDirectory = temporaryDirectory("gradcache").appendingPathComponent("run").path
        let arguments = ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                         "--set", "data.batch_per_rank=\(64 / ranks)", "--set", "train.max_steps=1",
                         "--set", "communication.precision=fp32", "--set", "communication.bucket_mb=0.002",
                         "--set", "data.test_limit=200", "--set", "eval.knn_every_epochs=0"]
            + (GradientCacheTests.sgd + overrides).flatMap { ["--set", $0] }
        let outcome = try runContrast(ranks: ranks, arguments)
        #expect(outcome.status == 0, "P=\(ranks): \(outcome.error.suffix(2000))")
        let config = try ConfigLoader.load(file: runDirectory + "/config.yaml", overrides: [])
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: runDirectory + "/weights.bin"))
        let records = try String(contentsOfFile: runDirectory + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["time_forward"] != nil }
        return (model.arena.parameters.array, try #require(records.first?["loss"] as? Double))
    }

    /// P = 2 ranks of V = 64 views, chunks of 24 (24 + 24 + 16), against one process uncached.
    @Test(arguments: ["ntxent", "supcon"])
    func cachedRanksEqualOneUncachedProcess(kind: String) throws {
        let objective = ["loss.kind=\(kind)"] + (kind == "supcon" ? ["data.labeled_fraction=0.5"] : [])
        let reference = try train(ranks: 1, objective)
        let distributed = try train(ranks: 2, objective + ["train.gradient_cache_chunk=24"])
        #expect(abs(distributed.loss - reference.loss) <= 1e-5 * abs(reference.loss))
        let worst = zip(distributed.parameters, reference.parameters).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 0
        #expect(worst <= 1e-5)
    }
}
