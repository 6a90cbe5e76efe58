import Data
import Foundation
import Tensor
import TestSupport
@testable import Config
@testable import RunFiles
@testable import Evaluation
@testable import NN
import Testing
@testable import Training

/// The linear probe, its metrics, the evaluation suite's report and `contrast eval full`.
@Suite struct EvaluationSuiteTests {
    /// N x D features from a Gaussian stream, and labels 0..<C from the same stream.
    func randomProblem(n: Int, d: Int, classes: Int, seed: UInt64 = 1) -> (Tensor, [Int]) {
        var random = RandomStream(seed: seed, stream: 0)
        let x = Tensor(zeros: [n, d])
        for i in 0..<(n * d) { x[i] = 2 * random.nextNormal() + 0.5 }
        return (x, (0..<n).map { _ in random.nextInt(below: classes) })
    }

    func objective(_ x: Tensor, _ labels: [Int], classes: Int, lambda: Double = 0.01, chunk: Int = 7) -> ProbeObjective {
        let (mean, inverseStd) = LinearProbe.standardisation(x)
        var objective = ProbeObjective(features: x, labels: labels, classes: classes, mean: mean, inverseStd: inverseStd, lambda: lambda)
        objective.chunk = chunk
        return objective
    }

    @Test func gradientMatchesFiniteDifferences() {
        let (x, labels) = randomProblem(n: 23, d: 5, classes: 4)
        let f = objective(x, labels, classes: 4)
        var random = RandomStream(seed: 2, stream: 0)
        let theta = (0..<f.parameterCount).map { _ in Double(random.nextNormal()) * 0.5 }
        var gradient = [Double](repeating: 0, count: f.parameterCount), unused = gradient
        _ = f.evaluate(theta, gradient: &gradient)
        let h = 1e-6
        for i in 0..<f.parameterCount {
            var plus = theta, minus = theta
            plus[i] += h; minus[i] -= h
            let numeric = (f.evaluate(plus, gradient: &unused) - f.evaluate(minus, gradient: &unused)) / (2 * h)
            #expect(abs(numeric - gradient[i]) < 1e-7, "parameter \(i): finite difference \(numeric), gradient \(gradient[i])")
        }
    }

    @Test func chunkedLossMatchesTheReference() {
        let (x, labels) = randomProblem(n: 50, d: 9, classes: 3)
        let f = objective(x, labels, classes: 3, chunk: 16)
        var random = RandomStream(seed: 3, stream: 0)
        let theta = (0..<f.parameterCount).map { _ in Double(random.nextNormal()) }
        var fast = [Double](repeating: 0, count: f.parameterCount), slow = fast
        let a = f.evaluate(theta, gradient: &fast), b = f.evaluateReference(theta, gradient: &slow)
        #expect(abs(a - b) < 1e-12 * max(1, abs(b)))
        for i in 0..<fast.count { #expect(abs(fast[i] - slow[i]) < 1e-12) }
    }

    /// Three well separated clusters in 6 dimensions: every training and fresh sample right.
    @Test func separableClassesAreLearnedExactly() {
        func clusters(_ n: Int, seed: UInt64) -> (Tensor, [Int]) {
            var random = RandomStream(seed: seed, stream: 0)
            let x = Tensor(zeros: [n, 6])
            var labels: [Int] = []
            for i in 0..<n {
                let c = i % 3
                labels.append(c)
                for j in 0..<6 { x[i, j] = 0.3 * random.nextNormal() + (j == c ? 3 : 0) }
            }
            return (x, labels)
        }
        let (x, labels) = clusters(300, seed: 4)
        let probe = LinearProbe.fit(features: x, labels: labels, classes: 3)
        #expect(probe.summary.stop == .converged)
        #expect(probe.accuracy(features: x, labels: labels) == 1)
        let (fresh, freshLabels) = clusters(300, seed: 5)
        #expect(probe.accuracy(features: fresh, labels: freshLabels) == 1)
    }

    /// A constant feature carries nothing (it is dropped): the probabilities are the class
    /// frequencies, the loss their entropy.
    @Test func constantFeaturesGiveTheClassFrequencies() {
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
        let x = Tensor(shape: [10, 2], repeating: 0.7)
        let probe = LinearProbe.fit(features: x, labels: labels, classes: 3, tolerance: 1e-10)
        let probabilities = probe.predictProbabilities(x)
        let frequencies = [0.5, 0.3, 0.2]
        for i in 0..<10 { for c in 0..<3 { #expect(abs(probabilities[i * 3 + c] - frequencies[c]) < 1e-8) } }
        let entropy = -frequencies.reduce(0) { $0 + $1 * log($1) }
        #expect(abs(probe.summary.loss - entropy) < 1e-12)
    }

    /// Two classes, one feature at +-1: by symmetry W = (-w/2, w/2), b = 0, and w solves
    /// -(3/4) s(-w) + (1/4) s(w) + lambda w / 2 = 0 (s the logistic function), found by bisection.
    @Test func matchesTheOneDimensionalOptimum() {
        let lambda = 0.05
        let values: [Float] = [1, 1, 1, 1, -1, -1, -1, -1], labels = [1, 1, 1, 0, 0, 0, 0, 1]
        let x = Tensor(shape: [8, 1], values: values)
        let probe = LinearProbe.fit(features: x, labels: labels, classes: 2, lambda: lambda, tolerance: 1e-12)
        func sigmoid(_ t: Double) -> Double { 1 / (1 + exp(-t)) }
        var (low, high) = (0.0, 5.0)
        for _ in 0..<200 {
            let w = (low + high) / 2
            if -0.75 * sigmoid(-w) + 0.25 * sigmoid(w) + lambda * w / 2 < 0 { low = w } else { high = w }
        }
        let w = (low + high) / 2
        #expect(w < log(3.0) && w > 0.9)   // the penalty pulls it below the unpenalised log 3
        let p = probe.predictProbabilities(x)
        #expect(abs(p[1] - sigmoid(w)) < 1e-9, "P(1 | x = +1) = \(p[1]), expected \(sigmoid(w))")
        #expect(abs(p[4 * 2] - sigmoid(w)) < 1e-9)
        #expect(abs(probe.parameters[0] + w / 2) < 1e-8 && abs(probe.parameters[1] - w / 2) < 1e-8)
    }

    @Test func fitsAreDeterministic() {
        let (x, labels) = randomProblem(n: 400, d: 20, classes: 5)
        let a = LinearProbe.fit(features: x, labels: labels, classes: 5), b = LinearProbe.fit(features: x, labels: labels, classes: 5)
        #expect(a.parameters == b.parameters)
        #expect(a.summary.iterations == b.summary.iterations && a.summary.iterations > 0)
    }

    @Test func stopsAtTheIterationLimit() {
        let (x, labels) = randomProblem(n: 200, d: 30, classes: 5)
        let probe = LinearProbe.fit(features: x, labels: labels, classes: 5, tolerance: 0, maxIterations: 3)
        #expect(probe.summary.iterations == 3 && probe.summary.stop == .iterationLimit)
    }

    @Test func precisionAndRecallByHand() {
        let metrics = ClassificationMetrics(predictions: [0, 1, 1, 1, 0, 2, 1], labels: [0, 0, 1, 1, 2, 2, 3], classes: 4)
        #expect(metrics.support == [2, 2, 2, 1] && metrics.predicted == [2, 4, 1, 0])
        #expect(metrics.accuracy == 4.0 / 7)
        #expect(metrics.precision == [0.5, 0.5, 1, 0])   // class 3 is never predicted: 0
        #expect(metrics.recall == [0.5, 1, 0.5, 0])
    }

    /// Two samples at confidence 0.9 (bin 13), one right: |0.5 - 0.9| * 2/4. Two at 0.58 and
    /// 0.55 (bin 8), one right: |0.5 - 0.565| * 2/4. ECE = 0.2 + 0.0325.
    @Test func calibrationErrorByHand() {
        let probabilities = [0.9, 0.1, 0.9, 0.1, 0.42, 0.58, 0.55, 0.45]
        let ece = ClassificationMetrics.expectedCalibrationError(probabilities: probabilities, labels: [0, 1, 1, 1], classes: 2)
        #expect(abs(ece - 0.2325) < 1e-12)
        #expect(ClassificationMetrics.expectedCalibrationError(probabilities: [1, 0, 0, 1], labels: [0, 1], classes: 2) == 0)
        #expect(ClassificationMetrics.expectedCalibrationError(probabilities: [1, 0, 0, 1], labels: [1, 0], classes: 2) == 1)
        // Only the bin edges' right side belongs to a bin: confidence 1/2 of 2 classes falls in bin 7 = (7/15, 8/15].
        #expect(abs(ClassificationMetrics.expectedCalibrationError(probabilities: [0.5, 0.5], labels: [0], classes: 2) - 0.5) < 1e-12)
    }

    /// 8x8 images of three classes: class c brightens rows 2c and 2c + 1 (at random levels) over
    /// a dark random background: linearly separable, and kNN sees it too.
    func patternRows(_ n: Int, seed: UInt64, labelled: Bool = true) -> SampleRows {
        var random = RandomStream(seed: seed, stream: 0)
        var pixels = [UInt8](repeating: 0, count: n * 64)
        var labels: [Int64] = []
        for i in 0..<n {
            let c = i % 3
            labels.append(Int64(c))
            for p in 0..<64 { pixels[i * 64 + p] = UInt8(random.nextInt(below: 80)) }
            for p in (16 * c)..<(16 * c + 16) { pixels[i * 64 + p] = UInt8(150 + random.nextInt(below: 100)) }
        }
        return SampleRows(held: 0..<n, totalCount: n, featureShape: [8, 8], features: .uint8(pixels), labels: labelled ? labels : nil)
    }

    @Test func suiteReportsEveryEncoderAndCorruption() throws {
        let train = patternRows(300, seed: 1), test = patternRows(90, seed: 2)
        let model = ContrastiveModel(inputWidth: 64, hidden: [32], representation: 16, projection: [8], activation: .relu)
        model.initialise(seed: 3)
        let report = try Evaluation.suite(train: train, test: test, encoders: [.raw(width: 64, images: true), .model(model, name: "trained")],
                                          k: 10, temperature: 0.1, corruptions: Corruption.imageDefaults, seed: 0, source: "test")
        #expect(report.encoders.map(\.name) == ["raw pixels", "trained"])
        #expect(report.classes == 3 && report.trainSamples == 300 && report.testSamples == 90)
        for encoder in report.encoders {
            #expect(encoder.robustness.map(\.corruption) == Corruption.imageDefaults.map(\.description))
            let numbers = [encoder.knnAccuracy, encoder.probeAccuracy, encoder.probeCalibrationError]
                + encoder.robustness.flatMap { [$0.knnAccuracy, $0.probeAccuracy] } + encoder.perClass.flatMap { [$0.precision, $0.recall] }
            #expect(numbers.allSatisfy { $0 >= 0 && $0 <= 1 })
            #expect(encoder.perClass.map(\.support) == [30, 30, 30])
        }
        #expect(report.encoders[0].probeAccuracy > 0.9, "pixels separate these patterns linearly")
        // The JSON carries the same numbers under snake_case keys.
        let object = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        let encoders = object["encoders"] as! [[String: Any]]
        let probeAccuracy = (encoders[0]["probe_accuracy"] as? NSNumber)?.doubleValue ?? -1
        #expect(encoders.count == 2 && abs(probeAccuracy - report.encoders[0].probeAccuracy) < 1e-12)
        #expect((encoders[1]["robustness"] as! [Any]).count == 6)
        let table = report.table()
        for word in ["raw pixels", "trained", "noise 0.1", "occlusion 10", "blur 1.0", "contrast 0.5", "ECE", "precision"] {
            #expect(table.contains(word), "the table lacks \(word)")
        }
    }

    /// `probeLabels` fits the probe on that subset of the training samples only, and says so;
    /// kNN's memory keeps them all. A subset that keeps nothing is a clear error.
    @Test func probeOnALabeledSubset() throws {
        let train = patternRows(300, seed: 1), test = patternRows(90, seed: 2)
        let subset = LabelSubset(fraction: 0.2, seed: 5)
        let kept = (0..<300).filter { subset.isLabeled($0) }.count
        #expect(kept > 30 && kept < 100)
        let all = try Evaluation.suite(train: train, test: test, encoders: [.raw(width: 64, images: true)], k: 10, temperature: 0.1,
                                       corruptions: [], seed: 0, source: "test")
        let some = try Evaluation.suite(train: train, test: test, encoders: [.raw(width: 64, images: true)], k: 10, temperature: 0.1,
                                        corruptions: [], seed: 0, source: "test", probeLabels: subset)
        #expect(all.probeTrainSamples == nil && some.probeTrainSamples == kept)
        #expect(some.table().contains("probe fitted on the \(kept) labeled training samples"))
        #expect(some.encoders[0].knnAccuracy == all.encoders[0].knnAccuracy)
        #expect(some.encoders[0].probe.loss != all.encoders[0].probe.loss, "the probe saw other samples")
        #expect(throws: RunDirectory.Failure.self) {
            try Evaluation.suite(train: train, test: test, encoders: [.raw(width: 64, images: true)], k: 10, temperature: 0.1,
                                 corruptions: [], seed: 0, source: "test", probeLabels: LabelSubset(fraction: 1e-9, seed: 5))
        }
        #expect(throws: ConfigError.self) { try smokeConfig(["eval.probe_labeled_fraction=0"]) }
    }

    /// With progress due at every chance (interval 0) the suite says what it is doing inside
    /// each long part (embedding, kNN, the probe's iterations), and its numbers are those of the
    /// silent suite: the clock decides only whether a line is printed.
    @Test func progressLinesComeFromInsideTheLongParts() throws {
        let train = patternRows(300, seed: 1), test = patternRows(90, seed: 2)
        let model = ContrastiveModel(inputWidth: 64, hidden: [32], representation: 16, projection: [8], activation: .relu)
        model.initialise(seed: 3)
        func run(_ progress: ((String) -> Void)?, interval: Double) throws -> EvaluationReport {
            try Evaluation.suite(train: train, test: test, encoders: [.raw(width: 64, images: true), .model(model, name: "trained")],
                                 k: 10, temperature: 0.1, corruptions: Corruption.imageDefaults, seed: 0, source: "test",
                                 progress: progress, progressInterval: interval)
        }
        var lines: [String] = []
        let talking = try run({ lines.append($0) }, interval: 0)
        let silent = try run(nil, interval: 0)
        for part in ["kNN: classified 90 of 90 queries against 300 samples", "linear probe: ", "trained: embedding the 300 training samples"] {
            #expect(lines.contains { $0.contains(part) }, "no line with \(part): \(lines)")
        }
        #expect(talking.encoders.map(\.knnAccuracy) == silent.encoders.map(\.knnAccuracy))
        #expect(talking.encoders.map(\.probeAccuracy) == silent.encoders.map(\.probeAccuracy))
        var rare: [String] = []
        _ = try run({ rare.append($0) }, interval: 3600)
        #expect(!rare.contains { $0.contains("kNN: classified") }, "a line inside a part before its interval: \(rare)")
    }

    @Test func suiteNeedsLabels() {
        #expect(throws: (any Error).self) {
            _ = try Evaluation.suite(train: patternRows(30, seed: 1, labelled: false), test: patternRows(9, seed: 2), encoders: [.raw(width: 64, images: true)],
                                     k: 5, temperature: 0.1, corruptions: [], seed: 0, source: "test")
        }
    }

    @Test func periodicProbeAccuracy() {
        let model = ContrastiveModel(inputWidth: 64, hidden: [32], representation: 16, projection: [8], activation: .relu)
        model.initialise(seed: 3)
        let accuracy = Evaluation.linearProbeAccuracy(model: model, train: patternRows(300, seed: 1), test: patternRows(90, seed: 2))
        #expect(accuracy.map { $0 > 0.5 && $0 <= 1 } == true, "accuracy \(String(describing: accuracy))")
        #expect(Evaluation.linearProbeAccuracy(model: model, train: patternRows(30, seed: 1, labelled: false), test: patternRows(9, seed: 2)) == nil)
    }

    @Test func overridesOutsideDataAndEvalAreRefused() throws {
        let config = TrainingConfig()
        #expect(try Evaluation.evaluationConfig(config, overrides: ["data.test_limit=300", "eval.knn_k=5"]).data.testLimit == 300)
        #expect(throws: ConfigError.self) { try Evaluation.evaluationConfig(config, overrides: ["model.hidden=[8]"]) }
    }
}

/// `contrast eval full` on a tiny trained run.
@Suite(.serialized) struct EvalFullCommandTests {
    @Test func tableHasEveryEncoderAndColumn() throws {
        let run = temporaryDirectory("evalfull").appendingPathComponent("run").path
        let trained = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "train.max_steps=6", "--set", "monitor.progress=never"])
        #expect(trained.status == 0, "\(trained.error)")
        let outcome = try runContrast(ranks: 1, ["eval", "full", "--checkpoint", run, "--set", "data.test_limit=300", "--set", "data.train_limit=1000"])
        #expect(outcome.status == 0, "\(outcome.error)")
        let lines = outcome.output.split(separator: "\n").map(String.init)
        let header = try #require(lines.first { $0.hasPrefix("encoder") })
        #expect(header.components(separatedBy: "kNN").count - 1 == 7 && header.contains("ECE"))
        for name in ["noise 0.1", "noise 0.2", "noise 0.4", "occlusion 10", "blur 1.0", "contrast 0.5"] {
            #expect(outcome.output.contains(name), "no column \(name)")
        }
        var rows: [String: [Double]] = [:]
        for name in ["raw pixels", "random init", "trained"] {
            let line = try #require(lines.first { $0.hasPrefix(name + " ") }, "no row \(name)")
            let numbers = line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "|" }).compactMap { Double($0) }
            #expect(numbers.count == 3 + 2 * 6, "\(line)")
            #expect(numbers.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(line)")
            rows[name] = numbers
        }
        #expect((rows["raw pixels"]?[1] ?? 0) > 0.6, "the pixels' linear probe on 1000 Fashion-MNIST images should pass 60%")
        #expect(outcome.output.contains("per class") && outcome.output.contains("Ankle boot"))
        #expect(outcome.output.contains("total time:"))
    }

    @Test func aMissingCheckpointIsOneLine() throws {
        let outcome = try runContrast(ranks: 1, ["eval", "full", "--checkpoint", "/nonexistent/run"])
        #expect(outcome.status == 1 && outcome.error.split(separator: "\n").count == 1 && outcome.error.contains("/nonexistent/run"))
    }

    /// What a model takes is read from the manifest's features: a text set (format 1.1, no
    /// features) is the data-set error naming what it holds, not a crash on a missing key.
    @Test func modelInputsOfATextSetSayWhatItHolds() throws {
        let folder = temporaryDirectory("text-inputs").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let samples = SampleBlock(count: 2, features: nil, fields: ["text": .variable(VariableValues(strings: ["a", "b"]))])
        try ShardedDatasetWriter.write(samples, featureShape: nil, fields: [NamedField(name: "text", dtype: .utf8)], to: folder, layout: .count(1))
        let config = try smokeConfig(["data.dataset=prepared", "data.path=\(folder)"])
        let error = #expect(throws: DataError.self) { try Evaluation.modelInputs(of: config) }
        #expect(error == .noFeatures(path: folder, fields: [NamedField(name: "text", dtype: .utf8)]))
        #expect(error?.description.contains("and no features; it trains the text encoder (contrast train with model.encoder: bert and data.vocab") == true)
    }
}
