import TestSupport
@testable import Config
import Testing

/// model.dropout and model.drop_path: off by default, rates in [0, 1), and only where the encoder has
/// a place for them (a rate it would ignore is refused, naming the key that does apply).
@Suite struct DropoutConfigTests {
    func failure(_ overrides: [String]) -> ConfigError? {
        do {
            _ = try ConfigLoader.load(file: nil, overrides: overrides)
            Issue.record("expected a ConfigError for \(overrides)")
        } catch let error as ConfigError {
            #expect(!error.description.contains("\n"))
            return error
        } catch {
            Issue.record("expected a ConfigError, got \(error)")
        }
        return nil
    }

    @Test func offByDefaultAndReadFromTheirKeys() throws {
        let defaults = try ConfigLoader.load(file: nil, overrides: [])
        #expect(defaults.model.dropout == 0 && defaults.model.dropPath == 0)
        let set = try ConfigLoader.load(file: nil, overrides: ["model.encoder=vit", "model.dropout=0.1", "model.drop_path=0.25",
                                                               "model.attention_dropout=0.05"])
        #expect(set.model.dropout == 0.1 && set.model.dropPath == 0.25 && set.model.attentionDropout == 0.05)
        #expect(defaults.model.attentionDropout == 0)
        #expect(try ConfigLoader.load(file: nil, overrides: ["model.encoder=cnn", "model.drop_path=0.99"]).model.dropPath == 0.99)
    }

    @Test func ratesOutsideZeroToOneAreRefused() {
        for (key, value) in [("model.dropout", "1"), ("model.dropout", "-0.1"), ("model.drop_path", "1.5"), ("model.attention_dropout", "1")] {
            let error = failure(["model.encoder=vit", "\(key)=\(value)"])
            #expect(error?.key == key && error?.description.contains("[0, 1)") == true, "\(String(describing: error))")
        }
    }

    @Test func aRateTheEncoderWouldIgnoreIsRefused() {
        let cnn = failure(["model.encoder=cnn", "model.dropout=0.1"])
        #expect(cnn?.key == "model.dropout" && cnn?.description.contains("model.drop_path") == true, "\(String(describing: cnn))")
        let attention = failure(["model.encoder=cnn", "model.attention_dropout=0.1"])
        #expect(attention?.key == "model.attention_dropout" && attention?.description.contains("vit") == true, "\(String(describing: attention))")
        let mlp = failure(["model.drop_path=0.1"])
        #expect(mlp?.key == "model.drop_path" && mlp?.description.contains("model.dropout") == true, "\(String(describing: mlp))")
    }
}
