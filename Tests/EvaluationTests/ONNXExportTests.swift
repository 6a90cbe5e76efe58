import Checkpoint
import Data
import Foundation
import Testing
import TestSupport
@testable import Config
@testable import Evaluation
@testable import NN
@testable import Tensor

/// The Python that has `onnx` and `onnxruntime`: $CONTRAST_VERIFY_PYTHON (launch/test.sh exports it),
/// else the virtual environment launch/test.sh makes, .venv-verify, at the repository root.
private let verifyPython: URL = {
    if let path = ProcessInfo.processInfo.environment["CONTRAST_VERIFY_PYTHON"], !path.isEmpty { return URL(fileURLWithPath: path) }
    return repositoryRoot.appendingPathComponent(".venv-verify/bin/python")
}()

private func python(_ arguments: [String]) throws -> ProcessOutcome {
    try runProcess(verifyPython, arguments, timeout: 300)
}

/// Why the ONNX checks cannot run here, or nil when they can. Printed by launch/test.sh's count.
private let onnxUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "\(verifyPython.path) does not exist (launch/test.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    guard let outcome = try? python(["-c", "import onnx, onnxruntime, numpy"]), outcome.status == 0 else {
        return "\(verifyPython.path) cannot import onnx, onnxruntime and numpy"
    }
    return nil
}()

/// The marker launch/test.sh counts: every Python-verified test prints it when it runs, and its
/// skip reason carries it when it does not.
private let marker = "python-verify"

private func ran(_ test: String) { print("\(marker): ran \(test)") }

private let checker = repositoryRoot.appendingPathComponent("tools/check_onnx.py").path

/// The wire format's own examples (protobuf.dev, "Encoding") and ONNX's few other shapes, byte for byte.
@Suite struct ProtobufWriterTests {
    @Test func varintsAreBase128LeastSignificantFirst() {
        #expect(ProtobufMessage.varint(0) == [0x00])
        #expect(ProtobufMessage.varint(1) == [0x01])
        #expect(ProtobufMessage.varint(127) == [0x7f])
        #expect(ProtobufMessage.varint(128) == [0x80, 0x01])
        #expect(ProtobufMessage.varint(150) == [0x96, 0x01])
        #expect(ProtobufMessage.varint(300) == [0xac, 0x02])
        #expect(ProtobufMessage.varint(UInt64.max) == [UInt8](repeating: 0xff, count: 9) + [0x01])
    }

    @Test func fieldsCarryTheirKeysAndLengths() {
        var int = ProtobufMessage()
        int.int(1, 150)
        #expect(int.bytes == [0x08, 0x96, 0x01])
        var negative = ProtobufMessage()
        negative.int(1, -1)
        #expect(negative.bytes == [0x08] + [UInt8](repeating: 0xff, count: 9) + [0x01], "a negative int64 is ten bytes")
        var string = ProtobufMessage()
        string.string(2, "testing")
        #expect(string.bytes == [0x12, 0x07] + Array("testing".utf8))
        var nested = ProtobufMessage()
        nested.message(3, int)
        #expect(nested.bytes == [0x1a, 0x03, 0x08, 0x96, 0x01])
        var packed = ProtobufMessage()
        packed.packedInts(4, [3, 270, 86942])
        #expect(packed.bytes == [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05])
        var float = ProtobufMessage()
        float.float(2, 1)
        #expect(float.bytes == [0x15, 0x00, 0x00, 0x80, 0x3f])
        var floats = ProtobufMessage()
        floats.packedFloats(4, [1, -2])
        #expect(floats.bytes == [0x22, 0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0])
        var large = ProtobufMessage()
        large.int(20, 7)
        #expect(large.bytes == [0xa0, 0x01, 0x07], "field 20's key (160) takes two bytes")
        var long = ProtobufMessage()
        long.bytes(9, [UInt8](repeating: 7, count: 200))
        #expect(Array(long.bytes.prefix(3)) == [0x4a, 0xc8, 0x01] && long.bytes.count == 203)
    }

    /// The file starts with ir_version and names the producer; an unknown layer is refused with its type.
    @Test func modelHeaderAndRefusal() throws {
        var config = TrainingConfig()
        config.model.hidden = [4]
        config.model.representation = 3
        config.model.projection = [2]
        let model = ContrastiveModel(config.model, inputWidth: 5)
        model.initialise(seed: 1)
        let bytes = [UInt8](try ONNXExport.file(TrainedModel(config: config, model: model, inputs: ModelInputs(features: [5], image: false), source: "a test"), part: .model))
        #expect(Array(bytes.prefix(2)) == [0x08, UInt8(ONNXExport.irVersion)])
        #expect(bytes[2] == 0x12 && Array(bytes[4..<12]) == Array("contrast".utf8))
        var graph = ONNXGraph(model: model, names: [:])
        #expect(throws: ONNXGraph.Unsupported.self) { try graph.lower(SelfAttention(tokens: 2, width: 4, heads: 2), "x") }
    }
}

/// Models exported to ONNX pass onnx's checker (full_check) and onnxruntime computes contrast's h
/// and z on the same inputs to 1e-5 relative, for every encoder kind (and the first tower of a two-tower model).
@Suite(.serialized) struct ONNXExportTests {
    enum Kind: String, Sendable, CaseIterable { case mlpRelu, mlpGELUAdapter, mlpTwoTower, cnnUneven, cnnThreeStages, cnnBlocked, vitClass, vitMean, resnetBasic, resnetBottleneck }

    /// A model of `kind`, every parameter moved off its initialisation (norms' 1 and 0, the adapter's
    /// zero up-projection), so a tensor under a wrong name or in a wrong layout changes the result.
    static func model(_ kind: Kind) -> (TrainedModel, imageShape: [Int]) {
        var config = TrainingConfig()
        config.model.projection = [6, 4]
        var imageShape = [28, 28]
        switch kind {
        case .mlpRelu:
            (config.model.hidden, config.model.representation) = ([12, 10], 7)
            imageShape = [5, 3]
        case .mlpGELUAdapter:
            // Trained with dropout: the file is the inference network, dropout the identity.
            (config.model.hidden, config.model.representation, config.model.activation, config.model.adapter) = ([9], 5, .gelu, 3)
            config.model.dropout = 0.3
            imageShape = [4, 4]
        case .mlpTwoTower:
            // A CLIP model: the file holds the first tower only, whose inputs and outputs are the model's.
            (config.model.hidden, config.model.representation, config.model.pairHidden, config.loss.kind) = ([6], 5, [7], .clip)
            imageShape = [2, 5]
        case .cnnUneven:
            // Uneven, overlapping pooling bins (5 x 4 maps into 2 x 2 cells) of two stages, a Linear fc, an adapter.
            config.model.encoder = .cnn
            (config.model.channels, config.model.poolCells, config.model.poolStages) = ([4, 8], 2, 2)
            (config.model.representation, config.model.adapter) = (6, 3)
            imageShape = [9, 7]
        case .cnnThreeStages:
            // An identity skip, then two projections, global pooling, no fc.
            config.model.encoder = .cnn
            (config.model.channels, config.model.poolCells, config.model.poolStages, config.model.representation) = ([4, 4, 8], 1, 1, 0)
            config.model.dropPath = 0.2   // stochastic depth, the identity outside training
            imageShape = [8, 8]
        case .cnnBlocked:
            // Channels that fill oneDNN's blocks: contrast runs it on blocked activations, the export is NCHW.
            config.model.encoder = .cnn
            (config.model.channels, config.model.poolCells, config.model.poolStages, config.model.representation) = ([16, 32], 2, 2, 0)
            imageShape = [9, 7]
        case .vitClass, .vitMean:
            let c = ViTExportTests.cases[kind == .vitClass ? 0 : 1]
            return (ViTExportTests.model(c), c.image)
        case .resnetBasic, .resnetBottleneck:
            // 3-channel inputs, the imagenet stem (MaxPool), basic or bottleneck blocks.
            let c = ResNetExportTests.cases[kind == .resnetBasic ? 0 : 1]
            return (ResNetExportTests.model(c), c.image)
        }
        let model = ContrastiveModel(config.model, inputWidth: imageShape.reduce(1, *), pairInputWidth: kind == .mlpTwoTower ? 8 : 0,
                                     imageShape: imageShape)
        model.initialise(seed: 5)
        var random = RandomStream(seed: 6, stream: 0)
        for i in 0..<model.arena.count { model.arena.parameters[i] += 0.2 * random.nextNormal() }
        let inputs = ModelInputs(features: imageShape, image: config.model.encoder == .cnn, pairs: kind == .mlpTwoTower ? [8] : nil)
        return (TrainedModel(config: config, model: model, inputs: inputs, source: "a test \(kind)"), imageShape)
    }

    @Test(.enabled(if: onnxUnavailable == nil, "\(marker): skipped: \(onnxUnavailable ?? "")"), arguments: Kind.allCases)
    func onnxruntimeComputesContrastsOutputs(kind: Kind) throws {
        ran("ONNX \(kind)")
        let (trained, imageShape) = Self.model(kind)
        let model = trained.model
        let n = 7, width = model.inputWidth, r = model.representationWidth, e = model.embeddingWidth
        var random = RandomStream(seed: 7, stream: 0)
        let inputs = (0..<(n * width)).map { _ in Float(random.nextInt(below: 256)) / 255 }
        var h = [Float](repeating: 0, count: n * r), z = [Float](repeating: 0, count: n * e)
        model.representations(of: inputs, count: n, into: &h)
        model.embeddings(of: inputs, count: n, into: &z)

        let folder = temporaryDirectory("onnx")
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ name: String, _ data: Data) throws -> String {
            let url = folder.appendingPathComponent(name)
            try data.write(to: url)
            return url.path
        }
        let x = try file("x.npy", NPYArray.encode(float32: inputs, shape: [n, width]))
        let hFile = try file("h.npy", NPYArray.encode(float32: h, shape: [n, r]))
        let zFile = try file("z.npy", NPYArray.encode(float32: z, shape: [n, e]))
        for part in ModelExport.Part.allCases {
            let onnx = try file("\(part).onnx", try ONNXExport.file(trained, part: part))
            let outcome = try python([checker, onnx, "--inputs", x, "--compare-representation", hFile]
                                     + (part == .model ? ["--compare-embedding", zFile] : []))
            #expect(outcome.status == 0, "\(kind) \(part): \(outcome.output) \(outcome.error)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any],
                                      "\(kind) \(part): \(outcome.output) \(outcome.error)")
            print("\(marker): ONNX \(kind) \(part): \(outcome.output)")
            #expect(report["checker"] as? String == "ok")
            #expect(report["opset"] as? [String: Int] == ["ai.onnx": ONNXExport.opset])
            let channels = kind.rawValue.hasPrefix("mlp") ? [width] : [kind.rawValue.hasPrefix("resnet") ? 3 : 1] + imageShape
            #expect((report["inputs"] as? [String: [Any]])?["input"]?.map { "\($0)" } == ["N"] + channels.map(String.init))
            #expect((report["inputs"] as? [String: Any])?.count == 1, "one input, the first tower's: \(outcome.output)")
            let outputs = try #require(report["outputs"] as? [String: [Any]])
            #expect(Set(outputs.keys) == (part == .model ? ["representation", "embedding"] : ["representation"]))
            let representation = try #require(report["representation"] as? Double, "\(outcome.output)")
            #expect(representation <= 1e-5, "\(kind) \(part): h differs from onnxruntime's by \(representation) relative")
            if part == .model {
                let embedding = try #require(report["embedding"] as? Double, "\(outcome.output)")
                #expect(embedding <= 1e-5, "\(kind) \(part): z differs from onnxruntime's by \(embedding) relative")
            }
        }
    }

    /// End to end through the binary: a model trained two steps by `contrast train`, exported by
    /// `contrast export --format onnx`, gives in onnxruntime what `contrast embed` writes (h, and z).
    @Test(.enabled(if: onnxUnavailable == nil, "\(marker): skipped: \(onnxUnavailable ?? "")"),
          arguments: [["model.encoder=mlp"], ["model.encoder=cnn", "model.channels=[4,8]", "model.adapter=3"],
                      ["model.encoder=vit", "model.vit.preset=none", "model.vit.patch=7", "model.vit.dim=16", "model.vit.depth=2",
                       "model.vit.heads=2", "model.vit.mlp_ratio=2"],
                      ["model.encoder=resnet", "model.resnet.stages=[[4,1,1],[4,2,2]]", "model.resnet.block=bottleneck", "model.resnet.expansion=2"]])
    func exportedFileEqualsContrastEmbed(encoder: [String]) throws {
        ran("ONNX end to end \(encoder[0])")
        let folder = temporaryDirectory("onnx-e2e")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = { folder.appendingPathComponent($0).path }
        func contrast(_ arguments: [String]) throws -> ProcessOutcome {
            let outcome = try runContrast(ranks: 1, arguments)
            #expect(outcome.status == 0, "contrast \(arguments.joined(separator: " ")): \(outcome.error)")
            return outcome
        }
        let sets = ["run_dir=\(path("run"))", "train.max_steps=2", "eval.knn_every_epochs=0", "data.train_limit=256"] + encoder
        _ = try contrast(["train", "--config", "configs/smoke.yaml"] + sets.flatMap { ["--set", $0] })
        _ = try contrast(["prepare", "fashion-mnist", "--out", path("prepared"), "--limit", "40", "--shards", "1"])
        let exported = try contrast(["export", "--checkpoint", path("run"), "--format", "onnx", "--out", path("model.onnx")])
        #expect(exported.output.contains("model.onnx: ONNX opset \(ONNXExport.opset), input [N, "), "\(exported.output)")
        _ = try contrast(["export", "--checkpoint", path("run"), "--format", "onnx", "--what", "encoder", "--out", path("encoder.onnx")])
        _ = try contrast(["embed", "--checkpoint", path("run"), "--data", path("prepared"), "--out", path("h.npy")])
        _ = try contrast(["embed", "--checkpoint", path("run"), "--data", path("prepared"), "--what", "embedding", "--out", path("z.npy")])
        // The images as contrast reads them (byte / 255).
        let rows = try Evaluation.evaluationSplit(Evaluation.config(TrainingConfig(), data: path("prepared")), .test)
        var inputs = [Float](repeating: 0, count: rows.count * rows.featureWidth)
        rows.writeInputs(rows.held, into: &inputs)
        try NPYArray.encode(float32: inputs, shape: [rows.count, rows.featureWidth]).write(to: folder.appendingPathComponent("x.npy"))
        for (file, compare) in [("model.onnx", ["--compare-embedding", path("z.npy")]), ("encoder.onnx", [])] {
            let outcome = try python([checker, path(file), "--inputs", path("x.npy"), "--compare-representation", path("h.npy")] + compare)
            print("\(marker): ONNX end to end \(encoder[0]) \(file): \(outcome.output)")
            #expect(outcome.status == 0, "\(encoder[0]) \(file): \(outcome.output) \(outcome.error)")
        }
    }
}
