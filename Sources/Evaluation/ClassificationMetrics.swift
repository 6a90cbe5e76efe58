import NN
/// Per-class counts and rates of a classifier's predictions on a labelled test set.
///
/// With TP_c the samples of class c predicted as c:
///   precision_c = TP_c / (samples predicted as c)   (0 when nothing is predicted as c),
///   recall_c    = TP_c / (samples of class c)       (the per-class accuracy; 0 for an absent class),
///   accuracy    = sum_c TP_c / N.
/// Shapes: N samples, C classes.
public struct ClassificationMetrics: Sendable, Equatable, Codable {
    public let classes: Int
    /// confusion[t * C + p]: samples of true class t predicted as p (C x C).
    public let confusion: [Int]

    public init(predictions: [Int], labels: [Int], classes: Int) {
        precondition(predictions.count == labels.count, "ClassificationMetrics: \(predictions.count) predictions, \(labels.count) labels")
        var confusion = [Int](repeating: 0, count: classes * classes)
        for (predicted, label) in zip(predictions, labels) {
            precondition(predicted >= 0 && predicted < classes && label >= 0 && label < classes,
                         "ClassificationMetrics: class outside 0..<\(classes)")
            confusion[label * classes + predicted] += 1
        }
        self.classes = classes
        self.confusion = confusion
    }

    public var count: Int { confusion.reduce(0, +) }
    /// Samples of each class (C).
    public var support: [Int] { (0..<classes).map { t in (0..<classes).reduce(0) { $0 + confusion[t * classes + $1] } } }
    /// Samples predicted as each class (C).
    public var predicted: [Int] { (0..<classes).map { p in (0..<classes).reduce(0) { $0 + confusion[$1 * classes + p] } } }
    public var accuracy: Double {
        Double((0..<classes).reduce(0) { $0 + confusion[$1 * classes + $1] }) / Double(max(1, count))
    }
    public var precision: [Double] {
        zip(0..<classes, predicted).map { c, total in total == 0 ? 0 : Double(confusion[c * classes + c]) / Double(total) }
    }
    /// Per-class accuracy.
    public var recall: [Double] {
        zip(0..<classes, support).map { c, total in total == 0 ? 0 : Double(confusion[c * classes + c]) / Double(total) }
    }

    /// Expected calibration error (Naeini et al. 2015; Guo et al. 2017) of class probabilities
    /// (N x C, row-major): each sample's confidence is its largest probability, its prediction
    /// that class (the lower index on a tie); samples fall into `bins` equal-width bins
    /// B_b = (b / M, (b + 1) / M] of confidence, and
    ///
    ///     ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|
    ///
    /// with acc and conf the bin's accuracy and mean confidence (empty bins add nothing).
    public static func expectedCalibrationError(probabilities: [Double], labels: [Int], classes: Int, bins: Int = 15) -> Double {
        let n = labels.count
        precondition(probabilities.count == n * classes, "expectedCalibrationError: \(probabilities.count) probabilities are not \(n) x \(classes)")
        var counts = [Int](repeating: 0, count: bins)
        var correct = [Int](repeating: 0, count: bins), confidence = [Double](repeating: 0, count: bins)
        for i in 0..<n {
            var best = 0
            for c in 1..<classes where probabilities[i * classes + c] > probabilities[i * classes + best] { best = c }
            let p = probabilities[i * classes + best]
            let bin = min(bins - 1, max(0, Int((p * Double(bins)).rounded(.up)) - 1))
            counts[bin] += 1
            confidence[bin] += p
            if best == labels[i] { correct[bin] += 1 }
        }
        var error = 0.0
        for b in 0..<bins where counts[b] > 0 {
            error += abs(Double(correct[b]) - confidence[b]) / Double(n)
        }
        return error
    }
}
