import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import Contrastive
@testable import NN
@testable import Tensor
@testable import Training

/// SupCon's kNN pseudo-labels (loss.pseudo_labels) on known embeddings, and the config's checks.
@Suite struct PseudoLabelTests {
    /// The vote of one sample from its two views, by the definition (Double, every labeled row, top k).
    static func referenceVote(views: [[Double]], keys: [[Double]], keyLabels: [Int], k: Int, temperature: Double, classes: Int) -> [Double] {
        var votes = [Double](repeating: 0, count: classes)
        for view in views {
            let similarities = keys.map { key in zip(view, key).map(*).reduce(0, +) }
            let order = similarities.indices.sorted { similarities[$0] > similarities[$1] }
            for j in order.prefix(k) { votes[keyLabels[j]] += exp(similarities[j] / temperature) }
        }
        return votes
    }

    /// Four samples of one batch (rows 0-3 first views, 4-7 second views) in two dimensions:
    /// sample 0 of class 0 on the x axis, sample 1 of class 1 on the y axis, unlabeled sample 2
    /// close to class 0, unlabeled sample 3 on the diagonal between them.
    static func batch() -> (embeddings: [Float], labels: [Int32], partners: [Int32]) {
        let angles: [Double] = [0, .pi / 2, 0, .pi / 4, 0, .pi / 2, 0.1, .pi / 4]
        let embeddings = angles.flatMap { [Float(cos($0)), Float(sin($0))] }
        return (embeddings, [0, 1, -1, -1, 0, 1, -1, -1], KNNPseudoLabeler.partners(ranks: 1, samplesPerRank: 4))
    }

    @Test func partnersPairTheViewsOfEachRank() {
        #expect(KNNPseudoLabeler.partners(ranks: 2, samplesPerRank: 2) == [2, 3, 0, 1, 6, 7, 4, 5])
    }

    @Test func knownEmbeddingsGiveKnownLabelsAndConfidences() {
        let (embeddings, initial, partners) = Self.batch()
        let labeler = KNNPseudoLabeler(k: 4, temperature: 0.1, threshold: 0.9)
        var labels = initial
        let result = embeddings.withUnsafeBufferPointer { z in
            labels.withUnsafeMutableBufferPointer { y in
                partners.withUnsafeBufferPointer { labeler.assign(embeddings: z.baseAddress!, count: 8, dimension: 2,
                                                                  labels: y.baseAddress!, partner: $0.baseAddress!) }
            }
        }
        // Sample 2 is confidently class 0; sample 3 splits the vote evenly and stays unlabeled.
        #expect(labels == [0, 1, 0, -1, 0, 1, 0, -1])
        #expect(result == KNNPseudoLabeler.Result(unlabeled: 2, assigned: 1) && result.fraction == 0.5)
        let keys: [[Double]] = [[1, 0], [0, 1], [1, 0], [0, 1]], keyLabels = [0, 1, 0, 1]
        let vote = Self.referenceVote(views: [[1, 0], [cos(0.1), sin(0.1)]], keys: keys, keyLabels: keyLabels, k: 4,
                                      temperature: 0.1, classes: 2)
        let expected = vote.max()! / vote.reduce(0, +)
        #expect(abs(Double(labeler.confidences[2]) - expected) <= 1e-6 && labeler.confidences[6] == labeler.confidences[2])
        #expect(expected > 0.999 && expected < 1)
        #expect(abs(labeler.confidences[3] - 0.5) <= 1e-6 && labeler.confidences[7] == labeler.confidences[3])
        #expect(labeler.confidences[0] == 1 && labeler.confidences[5] == 1)

        // k = 1: each view's nearest labeled row alone votes. Sample 2: both views vote class 0.
        let nearest = KNNPseudoLabeler(k: 1, temperature: 0.1, threshold: 0.9)
        labels = initial
        _ = embeddings.withUnsafeBufferPointer { z in
            labels.withUnsafeMutableBufferPointer { y in
                partners.withUnsafeBufferPointer { nearest.assign(embeddings: z.baseAddress!, count: 8, dimension: 2,
                                                                  labels: y.baseAddress!, partner: $0.baseAddress!) }
            }
        }
        #expect(labels[2] == 0 && nearest.confidences[2] == 1)
    }

    /// The threshold is inclusive: 0.5 labels the even split (ties go to the lower class), 1
    /// labels only a unanimous vote of exactly 1.
    @Test func thresholdDecidesWhichSamplesAreLabeled() {
        let (embeddings, initial, partners) = Self.batch()
        func labels(threshold: Float) -> ([Int32], KNNPseudoLabeler.Result) {
            let labeler = KNNPseudoLabeler(k: 4, temperature: 0.1, threshold: threshold)
            var labels = initial
            let result = embeddings.withUnsafeBufferPointer { z in
                labels.withUnsafeMutableBufferPointer { y in
                    partners.withUnsafeBufferPointer { labeler.assign(embeddings: z.baseAddress!, count: 8, dimension: 2,
                                                                      labels: y.baseAddress!, partner: $0.baseAddress!) }
                }
            }
            return (labels, result)
        }
        #expect(labels(threshold: 0.5).0 == [0, 1, 0, 0, 0, 1, 0, 0])
        #expect(labels(threshold: 0.5).1.fraction == 1)
        #expect(labels(threshold: 1).0 == initial)
        #expect(labels(threshold: 1).1 == KNNPseudoLabeler.Result(unlabeled: 2, assigned: 0))
    }

    @Test func noLabeledRowsAssignNothing() {
        let (embeddings, _, partners) = Self.batch()
        var labels = [Int32](repeating: -1, count: 8)
        let labeler = KNNPseudoLabeler(k: 3, temperature: 0.1, threshold: 0.1)
        let result = embeddings.withUnsafeBufferPointer { z in
            labels.withUnsafeMutableBufferPointer { y in
                partners.withUnsafeBufferPointer { labeler.assign(embeddings: z.baseAddress!, count: 8, dimension: 2,
                                                                  labels: y.baseAddress!, partner: $0.baseAddress!) }
            }
        }
        #expect(labels.allSatisfy { $0 == -1 } && result == KNNPseudoLabeler.Result(unlabeled: 4, assigned: 0))
    }

    @Test func configChecksThePseudoLabelKeys() throws {
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.pseudo_labels=knn"]) }   // ntxent
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.kind=supcon", "loss.pseudo_labels=knn", "loss.pseudo_label_threshold=0"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.kind=supcon", "loss.pseudo_label_threshold=1.5"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.kind=supcon", "loss.pseudo_label_k=0"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.pseudo_label_temperature=0"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.pseudo_labels=vote"]) }
        let config = try smokeConfig(["loss.kind=supcon", "loss.pseudo_labels=knn"])
        #expect(config.loss.pseudoLabelThreshold == 0.9 && config.loss.pseudoLabelK == 10 && config.loss.pseudoLabelTemperature == 0.1)
    }
}

/// The hybrid objective's decoder and reconstruction loss (loss.reconstruction_weight).
@Suite struct ReconstructionTests {
    func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int, stream: UInt64, scale: Float = 1) {
        var rng = RandomStream(seed: 5, stream: stream)
        for i in 0..<n { p[i] = rng.nextUniform(-scale, scale) }
    }

    /// L = sum(c * z) + w sum (d(h) - x)^2 / (N I) through the whole model: its backward (decoder
    /// first, the two dL/dh summed) against finite differences for parameters of the encoder, the
    /// head and the decoder, and the decoder's dL/dh alone against finite differences in h.
    @Test func decoderAndReconstructionGradientsMatchFiniteDifferences() throws {
        let b = 3, i = 12, n = 5, weight: Float = 0.7
        let model = ContrastiveModel(inputWidth: i, hidden: [10], representation: 6, projection: [5, 4], activation: .gelu,
                                     decoderHidden: [7])
        model.initialise(seed: 9)
        let decoder = try #require(model.decoder)
        #expect(model.arena.slices.last!.name.hasPrefix("decoder"))
        let x = Tensor(zeros: [b, i]), c = Tensor(zeros: [b, 4]), g = Tensor(zeros: [b, i]), dz = Tensor(zeros: [b, 4])
        fill(x.data, x.count, stream: 1)
        fill(c.data, c.count, stream: 2)

        func loss() -> Double {
            let (h, z) = model.forward(x.data, batch: b)
            var sum = 0.0
            for k in 0..<c.count { sum += Double(c[k]) * Double(z[k]) }
            let share = ReconstructionLoss.forwardBackward(prediction: model.reconstruct(h, batch: b), target: x.data, rows: b, width: i,
                                                           normalization: n, weight: weight, gradient: g.data)
            return sum + Double(weight) * share
        }
        _ = loss()
        model.arena.zeroGradients()
        dz.copy(from: c)
        model.backward(dz.data, batch: b, reconstructionGradient: g.data)
        let analytic = model.arena.gradients.array
        var rng = RandomStream(seed: 3, stream: 4)
        for name in ["encoder.0.weight", "encoder.1.weight", "projection.0.weight", "decoder.0.weight", "decoder.1.weight", "decoder.1.bias"] {
            let slice = try #require(model.arena.slice(named: name))
            let indices = (0..<8).map { _ in slice.offset + rng.nextInt(below: slice.count) }
            let numerical = GradientCheck.numericalGradient(of: loss, at: model.arena.parameters.data, indices: indices)
            let error = GradientCheck.maxRelativeError(analytic: indices.map { Double(analytic[$0]) }, numerical: numerical)
            #expect(error < 2e-2, "\(name): analytic \(indices.map { analytic[$0] }) numerical \(numerical)")
        }

        // dL/dh of the reconstruction term alone, h a free input.
        let h = Tensor(zeros: [b, 6])
        fill(h.data, h.count, stream: 3)
        func reconstructionLoss() -> Double {
            Double(weight) * ReconstructionLoss.forwardBackward(prediction: model.reconstruct(h.data, batch: b), target: x.data, rows: b,
                                                                width: i, normalization: n, weight: weight, gradient: g.data)
        }
        _ = reconstructionLoss()
        let dh = try #require(decoder.backward(g.data, batch: b, afterLayer: nil))
        let analyticH = (0..<h.count).map { Double(dh[$0]) }
        let numericalH = GradientCheck.numericalGradient(of: reconstructionLoss, at: h.data, indices: Array(0..<h.count))
        #expect(GradientCheck.maxRelativeError(analytic: analyticH, numerical: numericalH) < 2e-2)
    }

    /// The loss share and its gradient by the definition, in Double.
    @Test func reconstructionLossMatchesItsDefinition() {
        let prediction: [Float] = [0.5, -1, 2, 0], target: [Float] = [0, 1, 2, -0.5]
        var gradient = [Float](repeating: 0, count: 4)
        let share = ReconstructionLoss.forwardBackward(prediction: prediction, target: target, rows: 2, width: 2,
                                                       normalization: 4, weight: 3, gradient: &gradient)
        #expect(abs(share - (0.25 + 4 + 0 + 0.25) / 8) <= 1e-12)
        #expect(zip(gradient, [0.5, -2, 0, 0.5].map { Float(2 * 3 * $0 / 8) }).allSatisfy { abs($0 - $1) <= 1e-7 })
    }

    /// Weight 0 (the default) allocates no decoder, whatever model.decoder says, and steps exactly as
    /// the plain objective does; a positive weight puts the decoder after the head, the logit scale last.
    @Test func zeroWeightLeavesTheStepAsBefore() throws {
        let plain = try smokeConfig(["optimizer.kind=sgd", "optimizer.lr=0.1"])
        let off = try smokeConfig(["optimizer.kind=sgd", "optimizer.lr=0.1", "loss.reconstruction_weight=0", "model.decoder=[32]"])
        let a = try TrainingStep(config: plain, inputWidth: 784, samplesPerStep: 8, totalSteps: 4)
        let b = try TrainingStep(config: off, inputWidth: 784, samplesPerStep: 8, totalSteps: 4)
        #expect(b.model.decoder == nil && (b.objective as? SimCLR)?.views.reconstruction == nil && b.statistics.count == 4)
        #expect(a.model.arena.slices == b.model.arena.slices)
        fill(a.batch.data, a.batch.count, stream: 7)
        b.batch.copy(from: a.batch)
        for index in 0..<2 {
            let ra = try a.step(index, input: a.batch.data), rb = try b.step(index, input: b.batch.data)
            #expect(ra.loss == rb.loss && rb.reconstructionLoss == nil && rb.pseudoLabelFraction == nil)
        }
        #expect(a.model.arena.parameters.array == b.model.arena.parameters.array)

        let on = try TrainingStep(config: try smokeConfig(["optimizer.lr=0.1", "loss.reconstruction_weight=0.5", "model.decoder=[32]",
                                                            "loss.temperature_mode=learnable"]),
                                  inputWidth: 784, samplesPerStep: 8, totalSteps: 4)
        let names = on.model.arena.slices.map(\.name)
        #expect(names.last == "logit_scale" && names.dropLast().last == "decoder.1.bias")
        #expect(names.firstIndex(of: "decoder.0.weight")! > names.lastIndex { $0.hasPrefix("projection") }!)
        #expect(on.statistics.count == 5)
        fill(on.batch.data, on.batch.count, stream: 7)
        let result = try on.step(0, input: on.batch.data)
        #expect((result.reconstructionLoss ?? 0) > 0)
    }

    @Test func configChecksTheReconstructionKeys() throws {
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.reconstruction_weight=-1"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["model.decoder=[0]"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["loss.reconstruction_weight=1", "train.gradient_cache_chunk=16"]) }
        do {
            _ = try smokeConfig(["loss.kind=clip", "loss.reconstruction_weight=1"])
            Issue.record("clip with a reconstruction weight was accepted")
        } catch let error as ConfigError {
            #expect(error.key == "loss.reconstruction_weight")
        }
        #expect(try smokeConfig(["model.decoder=[]", "loss.reconstruction_weight=1"]).model.decoder == [])
    }
}

/// Pseudo-labels and the reconstruction term through `contrast train`: one plain SGD step on
/// P = 2 ranks equals one process on the global batch, and each changes the step.
@Suite(.serialized) struct HybridObjectiveTrainingTests {
    struct Run {
        var parameters: [Float]
        var losses: [Double]
        var steps: [[String: Any]]
    }

    func train(ranks: Int, steps: Int = 1, globalBatch: Int = 64, _ overrides: [String]) throws -> Run {
        let run = try trainSmoke("hybrid", ranks: ranks, steps: steps, globalBatch: globalBatch, overrides)
        return Run(parameters: run.parameters, losses: run.losses, steps: run.steps)
    }

    func maxRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-3) -> Float {
        zip(a, b).map { abs($0 - $1) / max(abs($0), abs($1), floor) }.max() ?? 0
    }

    static let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]

    /// SupCon, half the samples labeled, kNN pseudo-labels: every rank derives the one process's
    /// labels from the gathered batch, so the step is the same; some samples were labeled and the
    /// loss differs from SupCon without them.
    @Test func supConWithPseudoLabelsStepEqualsOneProcessOnTheGlobalBatch() throws {
        let supcon = Self.sgd + ["loss.kind=supcon", "data.labeled_fraction=0.5"]
        let pseudo = supcon + ["loss.pseudo_labels=knn", "loss.pseudo_label_k=3", "loss.pseudo_label_threshold=0.6"]
        let reference = try train(ranks: 1, pseudo)
        let distributed = try train(ranks: 2, pseudo)
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
        let fraction = try #require(reference.steps.first?["pseudo_label_fraction"] as? Double)
        #expect(fraction > 0 && fraction < 1, "fraction \(fraction)")
        #expect(distributed.steps.first?["pseudo_label_fraction"] as? Double == fraction)
        let without = try train(ranks: 1, supcon)
        #expect(without.steps.first?["pseudo_label_fraction"] == nil)
        #expect(abs(without.losses[0] - reference.losses[0]) > 1e-4)
    }

    /// The hybrid objective (NT-Xent or SupCon plus the weighted reconstruction error): one plain SGD
    /// step on P = 2 equals one process, decoder included; the logged error is the global one, and
    /// the weight adds w times it to the loss.
    @Test(arguments: ["ntxent", "supcon"])
    func reconstructionStepEqualsOneProcessOnTheGlobalBatch(kind: String) throws {
        let base = Self.sgd + ["loss.kind=\(kind)", "data.labeled_fraction=0.5", "model.decoder=[64]"]
        let reference = try train(ranks: 1, base + ["loss.reconstruction_weight=2"])
        let distributed = try train(ranks: 2, base + ["loss.reconstruction_weight=2"])
        #expect(abs(distributed.losses[0] - reference.losses[0]) <= 1e-5 * abs(reference.losses[0]))
        #expect(maxRelativeDifference(distributed.parameters, reference.parameters) <= 1e-5)
        let error = try #require(reference.steps.first?["reconstruction_loss"] as? Double)
        let distributedError = try #require(distributed.steps.first?["reconstruction_loss"] as? Double)
        #expect(abs(distributedError - error) <= 1e-5 * error)
        let plain = try train(ranks: 1, base)
        #expect(plain.steps.first?["reconstruction_loss"] == nil)
        #expect(abs(reference.losses[0] - (plain.losses[0] + 2 * error)) <= 1e-5 * reference.losses[0])
    }

    /// Both features on, P = 2, killed right after the step-15 checkpoint committed, resumed: the
    /// decoder (parameters and AdamW moments) is checkpointed with the rest, so the weights and the
    /// step records of steps 16...30 (reconstruction error and pseudo-label fraction included) are
    /// bitwise those of an uninterrupted run.
    @Test func killedHybridRunResumesBitExactly() throws {
        let settings = ["loss.kind=supcon", "data.labeled_fraction=0.3", "loss.pseudo_labels=knn", "loss.pseudo_label_threshold=0.6",
                        "loss.reconstruction_weight=0.5", "model.decoder=[32]", "checkpoint.every_steps=15", "eval.knn_every_epochs=0",
                        "data.batch_per_rank=32", "train.max_steps=30", "data.test_limit=200"]
        func run(_ directory: String, crashAt: String? = nil) throws -> ProcessOutcome {
            try runContrast(ranks: 2, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(directory)"] + settings.flatMap { ["--set", $0] },
                            environment: crashAt.map { ["CONTRAST_CHECKPOINT_CRASH_AT": $0] } ?? [:])
        }
        func records(_ directory: String) throws -> [String] {
            try String(contentsOfFile: directory + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
                guard var record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      record["time_forward"] != nil, let step = record["step"] as? Int, step > 15 else { return nil }
                for key in record.keys where key.hasPrefix("time") || key == "images_per_second" { record.removeValue(forKey: key) }
                return String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self)
            }
        }
        let straight = temporaryDirectory("hybrid-straight").appendingPathComponent("run").path
        let killed = temporaryDirectory("hybrid-killed").appendingPathComponent("run").path
        #expect(try run(straight).status == 0)
        #expect(try run(killed, crashAt: "before-latest").status != 0)
        let resumed = try run(killed)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        #expect(try String(contentsOfFile: killed + "/train.log", encoding: .utf8).contains("resumed from checkpoint"))
        let weights = { (run: String) in try Data(contentsOf: URL(fileURLWithPath: run + "/weights.bin")) }
        #expect(try weights(killed) == weights(straight))
        let (a, b) = (try records(killed), try records(straight))
        #expect(a.count == 15 && a == b)
        #expect(a.allSatisfy { $0.contains("reconstruction_loss") && $0.contains("pseudo_label_fraction") })
    }
}
