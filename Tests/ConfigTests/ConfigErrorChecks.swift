@testable import Config
import Testing

/// The refusal check the encoder config suites share: `error { try load(...) }` is the
/// ConfigError the body throws, or nil with an issue recorded when it throws nothing or
/// something else.
protocol ConfigErrorChecks {}

extension ConfigErrorChecks {
    func error(_ body: () throws -> Void) -> ConfigError? {
        do {
            try body()
            Issue.record("expected a ConfigError")
        } catch let error as ConfigError {
            return error
        } catch {
            Issue.record("expected a ConfigError, got \(error)")
        }
        return nil
    }
}
