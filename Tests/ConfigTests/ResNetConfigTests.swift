import Foundation
import TestSupport
@testable import Config
@testable import Evaluation
@testable import NN
import Testing

/// `model.encoder: resnet` and the `model.resnet` keys: the preset, overrides, and the shapes refused with
/// one line naming the key and the fix, before any run directory exists.
@Suite struct ResNetConfigTests: ConfigErrorChecks {
    func load(_ overrides: [String]) throws -> TrainingConfig {
        try ConfigLoader.load(file: nil, overrides: ["model.encoder=resnet"] + overrides)
    }

    @Test func resnet18PresetAndOverrides() throws {
        let preset = try load(["model.resnet.preset=resnet18"]).model.resnet
        #expect(preset.resolvedStages == [[64, 2, 1], [128, 2, 2], [256, 2, 2], [512, 2, 2]])
        #expect(preset.resolvedStem == .imagenet && preset.downsampling == 32)
        let small = try load(["model.resnet.preset=resnet18", "model.resnet.stem=small"]).model.resnet
        #expect(small.resolvedStem == .small && small.downsampling == 8)
        let own = try load(["model.resnet.stages=[[8, 1, 1], [16, 2, 3]]"]).model.resnet
        #expect(own.resolvedStages == [[8, 1, 1], [16, 2, 3]] && own.resolvedStem == .small && own.downsampling == 3)
    }

    @Test func unknownPresetNamesTheChoices() throws {
        let failure = try #require(error { _ = try load(["model.resnet.preset=resnet1000"]) })
        #expect(failure.key == "model.resnet.preset")
        #expect(failure.description.contains("resnet18") && !failure.description.contains("\n"), "\(failure)")
    }

    @Test func badStageListsNameTheKeyAndTheFix() throws {
        let empty = try #require(error { _ = try load([]) })
        #expect(empty.key == "model.resnet.stages" && empty.description.contains("preset") && empty.description.contains("resnet18"), "\(empty)")
        let short = try #require(error { _ = try load(["model.resnet.stages=[[8, 1, 1], [16, 2]]"]) })
        #expect(short.key == "model.resnet.stages" && short.description.contains("stage 2") && short.description.contains("[channels, blocks, stride]"),
                "\(short)")
        let zero = try #require(error { _ = try load(["model.resnet.stages=[[8, 0, 1]]"]) })
        #expect(zero.key == "model.resnet.stages" && zero.description.contains("stage 1"), "\(zero)")
        #expect(error { _ = try load(["model.resnet.stages=[[8, 1, 1]]", "model.pool_stages=2"]) }?.key == "model.pool_stages")
        #expect(error { _ = try load(["model.resnet.stages=[[8, 1, 1]]", "model.resnet.expansion=0"]) }?.key == "model.resnet.expansion")
        #expect(error { _ = try load(["model.resnet.stages=[[8, 1, 1]]", "model.dropout=0.1"]) }?.key == "model.dropout")
        for failure in [empty, short, zero] { #expect(!failure.description.contains("\n")) }
    }

    @Test func theStemAndStridesMustDivideTheImages() throws {
        var config = try load(["model.resnet.preset=resnet18"])
        let failure = try #require(error { try config.validateModel(imageShape: [28, 28]) })
        #expect(failure.key == "model.resnet.stages" && failure.description.contains("28 x 28") && failure.description.contains("32"), "\(failure)")
        #expect(failure.description.contains("32, 64, 96") && failure.description.contains("stem small"), "\(failure)")
        try config.validateModel(imageShape: [32, 64])
        config.model.resnet.stem = .small
        try config.validateModel(imageShape: [96, 96])
        #expect(error { try config.validateModel(imageShape: [28, 28]) }?.description.contains("8, 16, 24") == true)
        config.model.poolCells = 5
        #expect(error { try config.validateModel(imageShape: [32, 32]) }?.key == "model.pool_cells")
        let features = try #require(error { try config.validateModel(imageShape: nil, features: "float32 [32]") })
        #expect(features.key == "model.encoder" && features.description.contains("resnet") && features.description.contains("use mlp"))
    }

    /// The config builds the network it describes: torchvision's names, h the pooled maps at representation 0.
    @Test func theConfigBuildsTheResNet() throws {
        let config = try load(["model.resnet.stages=[[4, 1, 1], [6, 2, 2]]", "model.resnet.block=bottleneck", "model.resnet.expansion=2",
                               "model.resnet.stem=imagenet", "model.representation=0", "model.pool_stages=2"])
        try config.validateModel(imageShape: [32, 32])
        let model = ContrastiveModel(config.model, inputWidth: 1024, imageShape: [32, 32])
        #expect(model.representationWidth == 8 + 12)
        let arena = model.arena
        #expect(arena.slice(named: "encoder.conv1.weight")?.shape == [4, 1, 7, 7])
        #expect(arena.slice(named: "encoder.layer2.1.conv3.weight")?.shape == [12, 6, 1, 1])
        #expect(arena.slice(named: "encoder.layer2.0.projection.weight")?.shape == [12, 8, 1, 1])
        #expect(arena.slice(named: "encoder.fc.weight") == nil)
        #expect(model.encoder.flattened.contains { $0 is MaxPool2d })
    }
}

/// Images of several channels, [channels, height, width] (`bench step --synthetic-images`): resnet and vit take
/// them, with their sides checked as grey images' are; cnn, whose stem reads one channel, refuses them in one line.
@Suite struct MultiChannelImageTests: ConfigErrorChecks {

    @Test func resnetAndViTBuildForThreeChannels() throws {
        let resnet = try ConfigLoader.load(file: nil, overrides: ["model.encoder=resnet", "model.resnet.preset=resnet18", "model.representation=0"])
        try resnet.validateModel(imageShape: [3, 32, 32])
        let failure = try #require(error { try resnet.validateModel(imageShape: [3, 28, 28]) })
        #expect(failure.key == "model.resnet.stages" && failure.description.contains("28 x 28") && !failure.description.contains("3 x"), "\(failure)")
        let model = ContrastiveModel(resnet.model, inputWidth: 3 * 32 * 32, imageShape: [3, 32, 32])
        #expect(model.arena.slice(named: "encoder.conv1.weight")?.shape == [64, 3, 7, 7])
        #expect(ContrastiveModel(resnet.model, inputWidth: 32 * 32, imageShape: [32, 32]).arena.slice(named: "encoder.conv1.weight")?.shape
                == [64, 1, 7, 7])

        let vit = try ConfigLoader.load(file: nil, overrides: ["model.encoder=vit", "model.vit.preset=vit-tiny", "model.representation=0"])
        try vit.validateModel(imageShape: [3, 32, 32])
        #expect(error { try vit.validateModel(imageShape: [3, 30, 30]) }?.description.contains("30 x 30 images") == true)
        let transformer = ContrastiveModel(vit.model, inputWidth: 3 * 32 * 32, imageShape: [3, 32, 32])
        #expect(transformer.arena.slice(named: "encoder.patch_embed.proj.weight")?.shape == [192, 3, 4, 4])
    }

    @Test func cnnRefusesSeveralChannels() throws {
        let cnn = try ConfigLoader.load(file: nil, overrides: ["model.encoder=cnn", "model.representation=0"])
        let failure = try #require(error { try cnn.validateModel(imageShape: [3, 28, 28]) })
        #expect(failure.key == "model.encoder" && failure.description.contains("one-channel") && failure.description.contains("3 channels")
                && failure.description.contains("resnet or vit") && !failure.description.contains("\n"), "\(failure)")
        try cnn.validateModel(imageShape: [28, 28])
    }
}

/// configs/fmnist-simclr-resnet.yaml is a valid small ResNet on 28 x 28 images.
@Suite struct ResNetConfigFileTests {
    @Test func theResNetConfigLoadsAndBuilds() throws {
        let config = try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/fmnist-simclr-resnet.yaml").path, overrides: [])
        try config.validateModel(imageShape: [28, 28])
        #expect(config.model.encoder == .resnet)
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        #expect(model.representationWidth == 32 * 9 + 64 * 9)
    }

    /// configs/bench-resnet18-32.yaml: the resnet18 preset on 3 x 32 x 32 images, h = 512 (the global pool of the last stage).
    @Test func theBenchResNet18ConfigLoadsAndBuilds() throws {
        let config = try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/bench-resnet18-32.yaml").path, overrides: [])
        try config.validateModel(imageShape: [3, 32, 32])
        #expect(config.data.batchPerRank == 128 && config.model.resnet.preset == .resnet18)
        let model = ContrastiveModel(config.model, inputWidth: 3 * 32 * 32, imageShape: [3, 32, 32])
        #expect(model.representationWidth == 512)
    }
}

/// configs/fmnist-simclr-cnn-60min.yaml, the hour-long quality recipe (docs/benchmarks.md): h is every stage's
/// maps pooled over 4 x 4 (16 x 16 + 32 x 16 + 64 x 16 = 1,792 features), 20 epochs, kNN at k = 20.
@Suite struct QualityConfigFileTests {
    @Test func theHourRecipeLoadsAndBuilds() throws {
        let config = try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/fmnist-simclr-cnn-60min.yaml").path, overrides: [])
        try config.validate()
        try config.validateModel(imageShape: [28, 28])
        #expect(config.model.encoder == .cnn && config.train.epochs == 20 && config.eval.knnK == 20)
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        #expect(model.representationWidth == 16 * 16 + 32 * 16 + 64 * 16)
    }
}
