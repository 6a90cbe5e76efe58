/// A problem with the configuration, reported in one line that names the problem, where the offending value
/// came from, and how to fix it:
/// `config key 'optimizer.lr' expects a number, got "fast" (configs/x.yaml line 7)`.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Dotted key the problem is about (`optimizer.lr`), if it is about one key.
    public var key: String?
    /// What is wrong, without location or hint.
    public var problem: String
    /// Where the value came from: `configs/x.yaml line 7` or `--set optimizer.lr=fast`.
    public var location: String?
    /// How to fix it, when the problem alone does not say: `did you mean 'optimizer.lr'?`.
    public var hint: String?

    public init(key: String? = nil, problem: String, location: String? = nil, hint: String? = nil) {
        self.key = key
        self.problem = problem
        self.location = location
        self.hint = hint
    }

    public var description: String {
        var text = problem
        if let location { text += " (\(location))" }
        if let hint { text += "; \(hint)" }
        return text
    }
}
