import Foundation
import TestSupport
import Config
import Data
import Testing
@testable import Evaluation
@testable import NN
@testable import Tensor

private func runPython(_ arguments: [String]) throws -> ProcessOutcome {
    try runProcess(URL(fileURLWithPath: "/usr/bin/python3"), arguments, timeout: 120)
}

private let torchImports = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
    && (try? runPython(["-c", "import torch, numpy"]))?.status == 0

/// The ResNet exported by contrast is tools/resnet.py's PyTorch module: the file's names are its
/// state_dict keys, and for the same weights and 3-channel input PyTorch (in float64) computes
/// contrast's h and the same parameter gradients of the same loss, to 1e-5 relative.
@Suite(.serialized) struct ResNetExportTests {
    struct Case: Sendable, CustomStringConvertible {
        var block: ResNetBlockKind, stem: ResNetStemKind, stages: [[Int]], image: [Int], poolCells: Int, poolStages: Int, representation: Int
        var description: String { "\(block) \(stem) \(stages) on \(image)" }
    }

    static let cases = [
        // Basic blocks, imagenet stem (7x7 stride 2, max pool), uneven sides, a Linear fc.
        Case(block: .basic, stem: .imagenet, stages: [[4, 1, 1], [8, 2, 2]], image: [16, 24], poolCells: 1, poolStages: 1, representation: 5),
        // Bottleneck blocks (expansion 4), imagenet stem, stride 3, h the multi-scale pooled maps. Deeper or narrower
        // bottleneck stacks are where float32 itself stops at 1e-5: PyTorch's own float32 gradients of [[2, 2, 1], [4, 1, 3]]
        // differ from its float64 ones by 1e-5 to 5e-5 relative (contrast's by 1.2e-5 to 3.6e-5), of [[4, 1, 1], [4, 1, 3]]
        // by 4.5e-6 to 8.9e-6 over four draws. The identity-skip bottleneck is checked by finite differences (ConvLayerTests).
        Case(block: .bottleneck, stem: .imagenet, stages: [[4, 1, 1], [4, 1, 3]], image: [24, 36], poolCells: 2, poolStages: 2, representation: 0),
    ]

    /// A 3-channel ResNet of `c` with every parameter moved off its initialisation (norms' 1 and 0 included).
    /// (The config builds 1-channel ResNets, for today's grey images; the model takes any channel count.)
    static func model(_ c: Case) -> TrainedModel {
        var config = TrainingConfig()
        config.model.encoder = .resnet
        (config.model.resnet.block, config.model.resnet.stem, config.model.resnet.stages) = (c.block, c.stem, c.stages)
        (config.model.poolCells, config.model.poolStages, config.model.representation) = (c.poolCells, c.poolStages, c.representation)
        config.model.projection = [6, 4]
        var shape = ContrastiveModel.resnet(config.model, imageShape: c.image)
        shape.channels = 3
        let model = ContrastiveModel(inputWidth: 3 * c.image.reduce(1, *), hidden: [], representation: c.representation,
                                     projection: [6, 4], activation: .relu, resnet: shape)
        model.initialise(seed: 8)
        var random = RandomStream(seed: 9, stream: 0)
        for i in 0..<model.arena.count { model.arena.parameters[i] += 0.2 * random.nextNormal() }
        return TrainedModel(config: config, model: model, inputs: ModelInputs(features: [3] + c.image, image: false), source: "a test ResNet")
    }

    @Test func headerKeepsTorchvisionNamesAndDescribesTheResNet() throws {
        let trained = Self.model(Self.cases[1])
        let header = try Safetensors.readHeader(try ModelExport.safetensors(trained, part: .model), path: "resnet.safetensors")
        let own = trained.model.arena.slices.map(\.name).filter { $0.hasPrefix("encoder.") }
        #expect(header.entries.map(\.name) == own + ["projection.0.weight", "projection.0.bias", "projection.2.weight", "projection.2.bias"])
        #expect(header.entry("encoder.conv1.weight")?.shape == [4, 3, 7, 7])
        #expect(header.entry("encoder.layer2.0.conv3.weight")?.shape == [16, 4, 1, 1] && header.entry("encoder.layer1.0.projection.weight")?.shape == [16, 4, 1, 1])
        let metadata = header.metadata
        #expect(metadata["encoder_kind"] == "resnet" && metadata["image_shape"] == "[24, 36]" && metadata["image_channels"] == "3")
        #expect(metadata["stem"] == "imagenet" && metadata["block"] == "bottleneck" && metadata["expansion"] == "4")
        #expect(metadata["stages"] == "[[4, 1, 1], [4, 1, 3]]" && metadata["pool_cells"] == "2" && metadata["pool_stages"] == "2")
        #expect(metadata["encoder_fc"] == "false" && metadata["norm_groups_max"] == "32")
    }

    @Test(.enabled(if: torchImports, "skipped: /usr/bin/python3 cannot import torch and numpy"), arguments: cases)
    func pytorchComputesTheSameOutputAndGradients(c: Case) throws {
        let trained = Self.model(c)
        let model = trained.model, arena = model.arena
        let n = 4, width = 3 * c.image.reduce(1, *), r = model.representationWidth
        var random = RandomStream(seed: 10, stream: 0)
        let inputs = (0..<(n * width)).map { _ in random.nextUniform() }
        let weights = (0..<(n * r)).map { _ in random.nextNormal() }
        // h = f(x), L = sum(h w), so dL/dh = w.
        let h = inputs.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: model.encoder.forward($0.baseAddress!, batch: n), count: n * r)) }
        arena.zeroGradients()
        var outputGradient = weights
        outputGradient.withUnsafeMutableBufferPointer { _ = model.encoder.backward($0.baseAddress!, batch: n) }
        let encoderSlices = arena.slices.filter { $0.name.hasPrefix("encoder.") }
        let gradients = encoderSlices.map {
            Safetensors.NamedTensor(name: $0.name, shape: $0.shape, values: Array(UnsafeBufferPointer(start: arena.gradients($0), count: $0.count)))
        }

        let folder = temporaryDirectory("export-resnet")
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ name: String, _ data: Data) throws -> String {
            let url = folder.appendingPathComponent(name)
            try data.write(to: url)
            return url.path
        }
        let encoder = try file("encoder.safetensors", try ModelExport.safetensors(trained, part: .encoder))
        let x = try file("x.npy", NPYArray.encode(float32: inputs, shape: [n, width]))
        let w = try file("w.npy", NPYArray.encode(float32: weights, shape: [n, r]))
        let hFile = try file("h.npy", NPYArray.encode(float32: h, shape: [n, r]))
        let gFile = try file("gradients.safetensors", Safetensors.encode(gradients, metadata: [("format", "pt")]))
        let outcome = try runPython([repositoryRoot.appendingPathComponent("tools/resnet.py").path, encoder, "--inputs", x,
                                     "--output-gradient", w, "--compare-output", hFile, "--compare-gradients", gFile])
        #expect(outcome.status == 0, "\(outcome.output) \(outcome.error)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any], "\(outcome.output)")
        let output = try #require(report["output"] as? Double)
        #expect(output <= 1e-5, "h differs from PyTorch's by \(output) relative")
        let byTensor = try #require(report["gradients"] as? [String: Double])
        #expect(Set(byTensor.keys) == Set(encoderSlices.map(\.name)), "PyTorch's parameters are not contrast's encoder tensors")
        for (name, difference) in byTensor.sorted(by: { $0.key < $1.key }) {
            #expect(difference <= 1e-5, "dL/d\(name) differs from PyTorch's by \(difference) relative")
        }
        #expect((report["missing"] as? [String])?.isEmpty == true)

        // The whole exported model through tools/load_safetensors.py: z as contrast computes it.
        var z = [Float](repeating: 0, count: n * model.embeddingWidth)
        model.embeddings(of: inputs, count: n, into: &z)
        let full = try file("model.safetensors", try ModelExport.safetensors(trained, part: .model))
        let zFile = try file("z.npy", NPYArray.encode(float32: z, shape: [n, model.embeddingWidth]))
        let loaded = try runPython([repositoryRoot.appendingPathComponent("tools/load_safetensors.py").path, full, "--reader", "plain",
                                    "--inputs", x, "--what", "embedding", "--compare", zFile, "--tolerance", "1e-5"])
        #expect(loaded.status == 0, "\(loaded.output) \(loaded.error)")
    }
}
