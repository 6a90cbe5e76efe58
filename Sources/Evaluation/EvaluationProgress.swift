import Tensor

/// Progress lines of a long evaluation: `note` prints its line only when `interval` seconds
/// have passed since the last line, so minutes of embedding, classifying or fitting never leave
/// the terminal silent. Time decides only whether a line is printed, never what is computed.
/// Not thread-safe: one evaluation loop owns it.
public final class EvaluationProgress {
    public let interval: Double
    let report: (String) -> Void
    var last = monotonicSeconds()

    /// Prints through `report` (standard error for `contrast eval`, the run log in training).
    public init(every interval: Double = EvaluationProgress.defaultInterval, _ report: @escaping (String) -> Void) {
        self.interval = interval
        self.report = report
    }

    /// The longest silence of an evaluation.
    public static let defaultInterval = 10.0

    /// Prints `line` when the last line is `interval` seconds old; the line is built only then.
    public func note(_ line: @autoclosure () -> String) {
        let now = monotonicSeconds()
        guard now - last >= interval else { return }
        last = now
        report(line())
    }

    /// Prints `line` now (a step finished) and starts the silence over.
    public func say(_ line: String) {
        last = monotonicSeconds()
        report(line)
    }
}
