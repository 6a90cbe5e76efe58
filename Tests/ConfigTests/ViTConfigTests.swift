import Foundation
import TestSupport
@testable import Config
@testable import Evaluation
@testable import NN
import Testing

/// `model.encoder: vit` and the `model.vit` keys: presets, overrides, and the shapes refused with one line
/// naming the key and the fix.
@Suite struct ViTConfigTests: ConfigErrorChecks {
    func load(_ overrides: [String]) throws -> TrainingConfig {
        try ConfigLoader.load(file: nil, overrides: ["model.encoder=vit"] + overrides)
    }

    @Test func presetsGiveTheirShapesAndKeysOverrideThem() throws {
        let small = try load([]).model.vit
        #expect(small.preset == .vitSmall28)
        #expect(small.resolved == (patch: 4, dim: 128, depth: 6, heads: 4, mlpRatio: 4))
        let tiny = try load(["model.vit.preset=vit-tiny"]).model.vit
        #expect(tiny.resolved == (patch: 4, dim: 192, depth: 12, heads: 3, mlpRatio: 4))
        let overridden = try load(["model.vit.preset=vit-tiny", "model.vit.depth=2", "model.vit.patch=7"]).model.vit
        #expect(overridden.resolved == (patch: 7, dim: 192, depth: 2, heads: 3, mlpRatio: 4))
        let explicit = try load(["model.vit.preset=none", "model.vit.patch=7", "model.vit.dim=16", "model.vit.depth=1",
                                 "model.vit.heads=2", "model.vit.mlp_ratio=3"]).model.vit
        #expect(explicit.resolved == (patch: 7, dim: 16, depth: 1, heads: 2, mlpRatio: 3))
    }

    @Test func unknownPresetNamesTheChoices() throws {
        let failure = try #require(error { _ = try load(["model.vit.preset=vit-huge"]) })
        #expect(failure.key == "model.vit.preset")
        #expect(failure.description.contains("vit-small-28") && failure.description.contains("vit-tiny"), "\(failure)")
        #expect(!failure.description.contains("\n"))
    }

    @Test func headsMustDivideTheWidth() throws {
        let failure = try #require(error { _ = try load(["model.vit.dim=130"]) })
        #expect(failure.key == "model.vit.heads")
        #expect(failure.description.contains("4") && failure.description.contains("130") && failure.description.contains("divisor"), "\(failure)")
    }

    @Test func withoutAPresetEveryShapeKeyIsNeeded() throws {
        let failure = try #require(error { _ = try load(["model.vit.preset=none", "model.vit.patch=7", "model.vit.dim=16"]) })
        #expect(failure.key == "model.vit.depth" && failure.description.contains("set model.vit.depth"), "\(failure)")
        #expect(error { _ = try load(["model.vit.depth=-1"]) }?.key == "model.vit.depth")
        #expect(error { _ = try load(["model.vit.attention_tile=-2"]) }?.key == "model.vit.attention_tile")
    }

    @Test func patchMustDivideTheImagesWhichMustBeImages() throws {
        var config = try load(["model.vit.patch=5"])
        let failure = try #require(error { try config.validateModel(imageShape: [28, 28]) })
        #expect(failure.key == "model.vit.patch" && failure.description.contains("28 x 28"), "\(failure)")
        #expect(failure.description.contains("use one of 1, 2, 4, 7, 14, 28"), "\(failure)")
        config.model.vit.patch = 7
        try config.validateModel(imageShape: [28, 28])
        #expect(error { try config.validateModel(imageShape: [28, 30]) }?.description.contains("1, 2") == true)
        let features = try #require(error { try config.validateModel(imageShape: nil, features: "float32 [32]") })
        #expect(features.key == "model.encoder" && features.description.contains("vit") && features.description.contains("use mlp"))
    }

    /// The config builds the encoder it describes: timm's names, h the pooled token at representation 0.
    @Test func theConfigBuildsTheViT() throws {
        let config = try load(["model.vit.preset=none", "model.vit.patch=7", "model.vit.dim=16", "model.vit.depth=2",
                               "model.vit.heads=2", "model.vit.mlp_ratio=3", "model.vit.pool=mean", "model.representation=0"])
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        #expect(model.representationWidth == 16)
        let arena = model.arena
        #expect(arena.slice(named: "encoder.patch_embed.proj.weight")?.shape == [16, 1, 7, 7])
        #expect(arena.slice(named: "encoder.pos_embed")?.shape == [1, 16, 16])
        #expect(arena.slice(named: "encoder.cls_token") == nil)
        #expect(arena.slice(named: "encoder.blocks.1.attn.qkv.weight")?.shape == [48, 16])
        #expect(arena.slice(named: "encoder.blocks.1.mlp.fc1.weight")?.shape == [48, 16])
        #expect(arena.slice(named: "encoder.blocks.2.norm1.weight") == nil)
        #expect(arena.slice(named: "encoder.norm.weight")?.shape == [16])
        #expect(arena.slice(named: "encoder.fc.weight") == nil)
        #expect(model.encoderRange.upperBound == arena.slice(named: "projection.0.weight")?.offset)
        let withClassToken = ContrastiveModel(try load(["model.vit.attention_tile=16"]).model, inputWidth: 784, imageShape: [28, 28])
        #expect(withClassToken.arena.slice(named: "encoder.pos_embed")?.shape == [1, 50, 128])
        #expect(withClassToken.arena.slice(named: "encoder.fc.weight")?.shape == [256, 128])
        let block = try #require(withClassToken.encoder.layers.compactMap { $0 as? TransformerBlock }.first)
        #expect(block.attention.mode == .tiled(16))
    }
}

/// configs/fmnist-simclr-vit.yaml is a valid vit-small-28 run on 28 x 28 images.
@Suite struct ViTConfigFileTests {
    @Test func theViTConfigLoadsAndBuildsVitSmall28() throws {
        let config = try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/fmnist-simclr-vit.yaml").path, overrides: [])
        try config.validateModel(imageShape: [28, 28])
        #expect(config.model.encoder == .vit && config.model.vit.preset == .vitSmall28)
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        #expect(model.representationWidth == 128)
        #expect(model.encoder.layers.compactMap { $0 as? TransformerBlock }.count == 6)
        // Patch embedding 16 x 128 + 128, [CLS] 128, positions 50 x 128, final norm 2 x 128, and per block
        // qkv 128 x 384 + 384, proj 128 x 128 + 128, fc1 128 x 512 + 512, fc2 512 x 128 + 128, two norms 4 x 128.
        let block = 128 * 384 + 384 + 128 * 128 + 128 + 128 * 512 + 512 + 512 * 128 + 128 + 4 * 128
        let encoder = model.arena.slices.filter { $0.name.hasPrefix("encoder.") }.reduce(0) { $0 + $1.count }
        #expect(encoder == 16 * 128 + 128 + 128 + 50 * 128 + 2 * 128 + 6 * block)
    }
}
