import NN
import Foundation

/// The evaluation suite's results (`contrast eval full`, docs/evaluation.md): for each encoder
/// (the raw inputs, the randomly initialised encoder, the trained one) kNN and linear-probe accuracy
/// and the probe's calibration on the clean test set, both accuracies on every corrupted test
/// set, per-class precision and recall of each probe, and how long each part took.
/// Accuracies, rates and ECE are fractions in [0, 1].
public struct EvaluationReport: Codable, Sendable {
    /// Accuracies on one corrupted test set.
    public struct Robustness: Codable, Sendable, Equatable {
        public var corruption: String
        public var knnAccuracy: Double
        public var probeAccuracy: Double
    }

    /// One class's precision and recall (= per-class accuracy) under a probe, on the clean test set.
    public struct ClassScores: Codable, Sendable, Equatable {
        public var label: Int
        public var name: String
        public var precision: Double
        public var recall: Double
        /// Test samples of the class.
        public var support: Int
    }

    public struct EncoderResult: Codable, Sendable {
        /// "raw pixels" (or "raw features"), "random init", "trained".
        public var name: String
        /// Width of its features (input width for pixels, representation width for encoders).
        public var width: Int
        public var knnAccuracy: Double
        public var probeAccuracy: Double
        /// Expected calibration error of the probe's probabilities (15 bins).
        public var probeCalibrationError: Double
        public var probe: LinearProbe.Summary
        /// One entry per corruption, in the report's order.
        public var robustness: [Robustness]
        public var perClass: [ClassScores]
    }

    public struct Timing: Codable, Sendable, Equatable {
        public var part: String
        public var seconds: Double
    }

    /// What was evaluated, e.g. "checkpoint runs/x/checkpoints/step-00000040 (step 40)".
    public var source: String
    public var trainSamples: Int
    public var testSamples: Int
    public var classes: Int
    public var knnK: Int
    public var knnTemperature: Double
    public var probeLambda: Double
    /// Training samples the probe was fitted on when they were a subset (eval.probe_labeled_fraction); nil: all.
    public var probeTrainSamples: Int?
    /// Seed of the corruptions' random streams.
    public var seed: Int
    public var corruptions: [String]
    public var encoders: [EncoderResult]
    public var timings: [Timing]
    public var totalSeconds: Double

    /// The report as one JSON object, snake_case keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        // Every number is finite (accuracies, rates, seconds), so encoding cannot fail.
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// Fixed-width text: the main table (one row per encoder), the trained encoder's per-class
    /// scores, the probes' fits and the timings.
    public func table() -> String {
        var lines: [String] = []
        lines.append("\(source): \(trainSamples) train / \(testSamples) test samples, \(classes) classes")
        lines.append(String(format: "kNN: k=%d, votes exp(cos/%.3g); probe: L-BFGS, lambda=%.0e, standardised features; corruption seed %d",
                            knnK, knnTemperature, probeLambda, seed)
                     + (probeTrainSamples.map { "; probe fitted on the \($0) labeled training samples of eval.probe_labeled_fraction" } ?? ""))
        lines.append("")
        let nameWidth = max(12, encoders.map(\.name.count).max() ?? 0)
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text : text + String(repeating: " ", count: width - text.count) }
        func right(_ text: String, _ width: Int) -> String { text.count >= width ? text : String(repeating: " ", count: width - text.count) + text }
        let cell = 7, pairWidth = max(15, (corruptions.map(\.count).max() ?? 0) + 1)
        var group = pad("", nameWidth) + " " + pad("clean", 3 * cell + 2)
        var header = pad("encoder", nameWidth) + " " + right("kNN", cell) + right("probe", cell) + right("ECE", cell) + "  "
        for name in corruptions {
            group += " | " + pad(name, pairWidth)
            header += " | " + pad(right("kNN", cell) + right("probe", cell), pairWidth)
        }
        lines.append(group)
        lines.append(header)
        lines.append(String(repeating: "-", count: header.count))
        for e in encoders {
            var line = pad(e.name, nameWidth) + " " + right(Self.number(e.knnAccuracy), cell) + right(Self.number(e.probeAccuracy), cell)
                + right(Self.number(e.probeCalibrationError), cell) + "  "
            for r in e.robustness {
                line += " | " + pad(right(Self.number(r.knnAccuracy), cell) + right(Self.number(r.probeAccuracy), cell), pairWidth)
            }
            lines.append(line)
        }
        if let trained = encoders.last {
            lines.append("")
            lines.append("per class, \(trained.name) probe (clean test set):")
            let labelWidth = max(12, trained.perClass.map(\.name.count).max() ?? 0)
            lines.append(pad("class", labelWidth) + right("precision", 10) + right("recall", 8) + right("support", 9))
            for c in trained.perClass {
                lines.append(pad(c.name, labelWidth) + right(Self.number(c.precision), 10) + right(Self.number(c.recall), 8)
                             + right("\(c.support)", 9))
            }
        }
        lines.append("")
        lines.append("probe fits:")
        for e in encoders {
            lines.append(String(format: "  %@ %4d iterations, loss %.5f, max |gradient| %.1e (%@)",
                                pad(e.name, nameWidth), e.probe.iterations, e.probe.loss, e.probe.gradientNorm, e.probe.stop.rawValue))
        }
        lines.append("")
        lines.append("time:")
        let partWidth = timings.map(\.part.count).max() ?? 0
        for t in timings { lines.append("  " + pad(t.part, partWidth) + String(format: " %7.1f s", t.seconds)) }
        lines.append("  " + pad("total", partWidth) + String(format: " %7.1f s", totalSeconds))
        return lines.joined(separator: "\n")
    }

    static func number(_ value: Double) -> String { String(format: "%.4f", value) }
}
