import Checkpoint
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing
@testable import NN
@testable import Tensor
@testable import Training

/// Fine-tuning (docs/fine-tuning.md): init_from copies exactly the pretrained encoder, bad paths and
/// shapes fail before the run directory exists, a frozen encoder stays bitwise fixed and off the
/// wire, P = 2 equals one process, and a resumed fine-tune continues bit-exactly without re-reading
/// the pretrain.
@Suite(.serialized) struct FineTuningTests {
    /// A smoke pretrain of `steps` AdamW steps (one process); returns its run directory.
    static func pretrain(steps: Int = 3) throws -> String {
        let run = temporaryDirectory("pretrain").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                  "--set", "train.max_steps=\(steps)", "--set", "data.test_limit=200",
                                                  "--set", "eval.knn_every_epochs=0"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        return run
    }

    /// The fine-tune settings of the tests: SupCon on 10% of the labels with an adapter.
    static func fineTune(_ pretrained: String, _ more: [String] = []) -> [String] {
        ["init_from=\(pretrained)", "loss.kind=supcon", "data.labeled_fraction=0.1", "model.adapter=8",
         "optimizer.weight_decay=0.1", "data.test_limit=200", "eval.knn_every_epochs=0"] + more
    }

    func pretrainedModel(_ run: String) throws -> ContrastiveModel {
        try TrainedModel.load(run).model
    }

    func values(_ arena: ParameterArena, _ name: String) throws -> [UInt32] {
        let slice = try #require(arena.slice(named: name))
        return Array(UnsafeBufferPointer(start: arena.parameters(slice), count: slice.count)).map(\.bitPattern)
    }

    /// The new run's encoder is the pretrained one bit for bit; its head and adapter are the seed's fresh
    /// initialisation (W_up = 0); the optimizer starts from zero state.
    @Test func initFromLoadsExactlyThePretrainedEncoder() throws {
        let pretrained = try Self.pretrain()
        let source = try pretrainedModel(pretrained)
        let trainer = try Trainer(config: try smokeConfig(Self.fineTune(pretrained)))
        let arena = trainer.step.model.arena
        let fresh = ContrastiveModel(trainer.config.model, inputWidth: 784, imageShape: [28, 28])
        fresh.initialise(seed: UInt64(trainer.config.seed))
        for slice in arena.slices {
            if slice.name.hasPrefix("encoder.") {
                #expect(try values(arena, slice.name) == values(source.arena, slice.name), "\(slice.name)")
            } else {
                #expect(try values(arena, slice.name) == values(fresh.arena, slice.name), "\(slice.name)")
                if slice.name.hasPrefix("projection.") {
                    #expect(try values(arena, slice.name) != values(source.arena, slice.name), "\(slice.name) must be fresh")
                }
            }
        }
        #expect(trainer.step.optimizer.stepCount == 0)
        #expect(trainer.step.optimizer.stateBuffers.allSatisfy { buffer in buffer.tensor.array.allSatisfy { $0 == 0 } })
        let log = try String(contentsOfFile: trainer.runDirectory.path + "/train.log", encoding: .utf8)
        #expect(log.contains("init_from: ") && log.contains(pretrained))

        // init_head copies the projection head too.
        let withHead = try Trainer(config: try smokeConfig(Self.fineTune(pretrained, ["init_head=true"])))
        for slice in withHead.step.model.arena.slices where slice.name.hasPrefix("projection.") {
            #expect(try values(withHead.step.model.arena, slice.name) == values(source.arena, slice.name))
        }
    }

    /// The adapted representation is the model's: representations(of:) is h' = adapter(f(x)) (the identity at
    /// initialisation, so f(x) itself), and export writes the adapter beside the encoder.
    @Test func representationGoesThroughTheAdapter() throws {
        let config = try smokeConfig(["model.adapter=4"])
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        model.initialise(seed: 3)
        let inputs = Tensor(zeros: [3, 784])
        for i in 0..<inputs.count { inputs[i] = Float(i % 17) / 17 }
        let out = Tensor(zeros: [3, model.representationWidth])
        model.representations(of: inputs.data, count: 3, into: out.data)
        let h = model.encoder.forward(inputs.data, batch: 3)
        #expect((0..<out.count).allSatisfy { out[$0] == h[$0] })
        let up = try #require(model.adapter).up
        for i in 0..<up.bias!.count { model.arena.parameters(up.bias!)[i] = 1 }
        model.representations(of: inputs.data, count: 3, into: out.data)
        let shifted = model.encoder.forward(inputs.data, batch: 3)
        #expect((0..<out.count).allSatisfy { out[$0] == shifted[$0] + 1 })
        let exported = try ModelExport.tensors(model, part: .encoder)
        #expect(exported.suffix(4).map(\.name) == ["adapter.down.weight", "adapter.down.bias", "adapter.up.weight", "adapter.up.bias"])
        #expect(exported.last?.values == [Float](repeating: 1, count: model.representationWidth))
    }

    /// A missing path and a shape mismatch are one ConfigError naming init_from (and the parameter and
    /// both shapes), raised before the run directory is created.
    @Test func badInitFromFailsBeforeTheRunDirectoryExists() throws {
        let missing = try smokeConfig(["init_from=/nonexistent/pretrain"])
        let error = #expect(throws: ConfigError.self) { try Trainer(config: missing) }
        #expect(error?.key == "init_from")
        #expect(error?.description.contains("/nonexistent/pretrain does not exist") == true)
        #expect(!FileManager.default.fileExists(atPath: missing.runDirectory))

        let pretrained = try Self.pretrain(steps: 1)
        let narrower = try smokeConfig(Self.fineTune(pretrained, ["model.hidden=[48]"]))
        let mismatch = #expect(throws: ConfigError.self) { try Trainer(config: narrower) }
        let text = mismatch?.description ?? ""
        #expect(text.contains("encoder.0.weight") && text.contains("[64, 784]") && text.contains("[48, 784]"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: narrower.runDirectory))

        let cnn = try smokeConfig(Self.fineTune(pretrained, ["model.encoder=cnn", "model.channels=[4]"]))
        let other = #expect(throws: ConfigError.self) { try Trainer(config: cnn) }
        #expect(other?.description.contains("has no parameter encoder.") == true, "\(other?.description ?? "")")
        #expect(throws: ConfigError.self) { try smokeConfig(["init_head=true"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["optimizer.encoder_lr_scale=-1"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["model.adapter=-2"]) }
        #expect(throws: ConfigError.self) { try smokeConfig(["freeze=backbone"]) }
    }

    /// freeze: encoder with weight decay: after training the encoder is the pretrained one bit for bit,
    /// no bucket touches it, its gradients stay zero; the adapter and head did train.
    @Test func frozenEncoderIsBitwiseUnchangedAndNeverAllReduced() throws {
        let pretrained = try Self.pretrain()
        let source = try pretrainedModel(pretrained)
        let config = try smokeConfig(Self.fineTune(pretrained, ["freeze=encoder", "train.max_steps=3"]))
        let trainer = try Trainer(config: config)
        let model = trainer.step.model
        let encoder = model.encoderRange
        #expect(encoder.upperBound == model.arena.slice(named: "adapter.down.weight")!.offset)
        #expect(trainer.step.reducer.buckets.allSatisfy { $0.lowerBound >= encoder.upperBound })
        #expect(trainer.step.reducer.buckets.reduce(0) { $0 + $1.count } == model.arena.count - encoder.upperBound)
        let headBefore = try values(model.arena, "adapter.up.weight")
        _ = try trainer.run()
        for slice in model.arena.slices where slice.name.hasPrefix("encoder.") {
            #expect(try values(model.arena, slice.name) == values(source.arena, slice.name), "\(slice.name)")
        }
        #expect((0..<encoder.upperBound).allSatisfy { model.arena.gradients[$0] == 0 })
        #expect(try values(model.arena, "adapter.up.weight") != headBefore)
        let log = try String(contentsOfFile: config.runDirectory + "/train.log", encoding: .utf8)
        #expect(log.contains("freeze: encoder"))
    }

    /// Runs a fine-tune through `contrast train` and returns its final parameters.
    func train(ranks: Int, steps: Int, _ overrides: [String]) throws -> [Float] {
        let run = temporaryDirectory("finetune").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: ranks, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                      "--set", "data.batch_per_rank=\(64 / ranks)", "--set", "train.max_steps=\(steps)",
                                                      "--set", "communication.precision=fp32"] + overrides.flatMap { ["--set", $0] })
        #expect(outcome.status == 0, "P=\(ranks): \(outcome.error.suffix(2000))")
        let config = try ConfigLoader.load(file: run + "/config.yaml", overrides: [])
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        try WeightsFile.read(into: model.arena, from: URL(fileURLWithPath: run + "/weights.bin"))
        return model.arena.parameters.array
    }

    /// One plain SGD step of a frozen-encoder SupCon fine-tune with an adapter, and one of a full fine-tune at
    /// encoder_lr_scale 0.1: P = 2 equals one process on the global batch (to 1e-5 relative, as in
    /// DistributedTrainingTests: the update is -lr g, so the parameters carry the summed gradient).
    @Test func fineTuneAtTwoRanksEqualsOneProcess() throws {
        let pretrained = try Self.pretrain()
        let sgd = ["optimizer.kind=sgd", "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.lr=0.1"]
        for extra in [["freeze=encoder"], ["optimizer.encoder_lr_scale=0.1"]] {
            let settings = Self.fineTune(pretrained) + sgd + extra
            let reference = try train(ranks: 1, steps: 1, settings)
            let distributed = try train(ranks: 2, steps: 1, settings)
            let worst = zip(distributed, reference).map { abs($0 - $1) / max(abs($0), abs($1), 1e-3) }.max() ?? 1
            #expect(worst <= 1e-5, "\(extra): \(worst)")
        }
    }

    /// A frozen fine-tune killed after its step-4 checkpoint resumes bit-exactly, and from its own
    /// checkpoint: the pretrain is gone by then, so re-running init_from would fail.
    @Test func resumedFineTuneContinuesBitExactly() throws {
        let pretrained = try Self.pretrain()
        let settings = Self.fineTune(pretrained, ["freeze=encoder", "checkpoint.every_steps=4"])
        let straight = temporaryDirectory("ft-straight").appendingPathComponent("run").path
        let killed = temporaryDirectory("ft-killed").appendingPathComponent("run").path
        func arguments(_ run: String) -> [String] {
            ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "data.batch_per_rank=32",
             "--set", "train.max_steps=8"] + settings.flatMap { ["--set", $0] }
        }
        let full = try runContrast(ranks: 2, arguments(straight))
        #expect(full.status == 0, "\(full.error.suffix(1500))")
        let crash = try runContrast(ranks: 2, arguments(killed), environment: ["CONTRAST_CHECKPOINT_CRASH_AT": "before-latest@step=4"])
        #expect(crash.status != 0)
        try FileManager.default.moveItem(atPath: pretrained, toPath: pretrained + "-moved")
        let resumed = try runContrast(ranks: 2, arguments(killed))
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        let log = try String(contentsOfFile: killed + "/train.log", encoding: .utf8)
        #expect(log.contains("resumed from checkpoint") && log.contains("not used: the run resumes"))
        func newest(_ run: String) throws -> [String: [UInt32]] {
            let directory = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first)
            let manifest = try CheckpointStore.manifest(at: directory)
            let storage = manifest.buffers.map { Tensor(zeros: [$0.count]) }
            _ = try CheckpointStore.load(directory, into: zip(manifest.buffers, storage).map {
                CheckpointBuffer(name: $0.name, pointer: $1.data, count: $0.count)
            })
            var result: [String: [UInt32]] = [:]
            for (buffer, values) in zip(manifest.buffers, storage) { result[buffer.name] = values.array.map(\.bitPattern) }
            return result
        }
        #expect(try newest(killed) == newest(straight))
        #expect(try Data(contentsOf: URL(fileURLWithPath: killed + "/weights.bin")) == Data(contentsOf: URL(fileURLWithPath: straight + "/weights.bin")))
    }
}
