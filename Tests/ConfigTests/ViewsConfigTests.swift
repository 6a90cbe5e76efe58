import Foundation
import Testing
@testable import Config

@Suite struct ViewsConfigTests {
    @Test func simclrPresetSetsTheRecipe() throws {
        let views = try ConfigLoader.load(file: nil, overrides: ["views.preset=simclr"]).views
        #expect(views.cropArea == [0.08, 1.0] && views.flip == 0.5 && views.jitter == 0.8 && views.saturation == 0.8 && views.hue == 0.2)
        #expect(views.jitterProbability == 0.8 && views.jitterOrder == .random && views.grayscaleProbability == 0.2)
        #expect(views.blurProbability == 0.5 && views.blurKernel == 0 && views.blurSigma == [0.1, 2.0])
        #expect(views.solarizeProbability == 0 && views.noise == 0)
    }

    @Test func explicitKeysOverrideThePreset() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("contrast-views-\(UUID().uuidString).yaml")
        try "views:\n  preset: simclr\n  blur_p: 0.0\n  crop_area: [0.2, 1.0]\n".write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        // A key set to the default's own value still counts as given (noise 0.05 is the default, not simclr's 0).
        let views = try ConfigLoader.load(file: url.path, overrides: ["views.solarize_p=0.2", "views.noise=0.05"]).views
        #expect(views.blurProbability == 0 && views.cropArea == [0.2, 1.0] && views.solarizeProbability == 0.2 && views.noise == 0.05)
        #expect(views.saturation == 0.8 && views.grayscaleProbability == 0.2)   // the rest from the preset
    }

    @Test func resolvedConfigLoadsBackEqual() throws {
        // The run directory's config.yaml holds every key, so reloading it gives the same views.
        let config = try ConfigLoader.load(file: nil, overrides: ["views.preset=simclr", "views.hue=0.1"])
        #expect(try ConfigLoader.load(yaml: config.yaml(), source: "config.yaml") == config)
    }

    @Test func withoutPresetTheDefaultsAreTheGreyViews() throws {
        let views = try ConfigLoader.load(file: nil, overrides: []).views
        #expect(views == ViewsSection() && views.preset == .none && views.saturation == 0 && views.blurProbability == 0)
    }

    @Test(arguments: [
        ("views.saturation=1.5", "must be in [0, 1]"), ("views.hue=0.6", "must be in [0, 0.5] turns"),
        ("views.grayscale_p=2", "views.grayscale_p"), ("views.blur_p=-1", "views.blur_p"),
        ("views.blur_kernel=4", "must be 0 (10 % of the image side) or an odd number of pixels"),
        ("views.blur_sigma=[0, 1]", "two numbers [lo, hi] with 0 < lo <= hi"), ("views.solarize_p=1.1", "views.solarize_p"),
        ("views.preset=byol", "expects one of none, simclr"), ("views.jitter_order=shuffled", "expects one of fixed, random"),
    ])
    func badValuesNameTheKeyAndTheFix(override: String, message: String) throws {
        do {
            _ = try ConfigLoader.load(file: nil, overrides: [override])
            Issue.record("\(override) was accepted")
        } catch let error as ConfigError {
            #expect(error.key == String(override.prefix { $0 != "=" }))
            #expect(error.description.contains(message), "\(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }
}
