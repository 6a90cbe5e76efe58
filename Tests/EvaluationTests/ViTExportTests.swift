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

/// The Vision Transformer exported by contrast is tools/vit.py's PyTorch module: the file's names are
/// its state_dict keys, and for the same weights and input PyTorch (in float64) computes contrast's h
/// and the same parameter gradients of the same loss, to 1e-5 relative.
@Suite(.serialized) struct ViTExportTests {
    struct Case: Sendable, CustomStringConvertible {
        var image: [Int], patch: Int, dim: Int, depth: Int, heads: Int, mlpRatio: Int, pool: TokenPoolKind, representation: Int, tile: Int
        var description: String { "\(image) patch \(patch) dim \(dim) depth \(depth) heads \(heads) pool \(pool) tile \(tile)" }
    }

    static let cases = [
        // [CLS] pooling and a Linear fc, uneven image sides, plain attention.
        Case(image: [12, 8], patch: 4, dim: 8, depth: 2, heads: 2, mlpRatio: 2, pool: .cls, representation: 5, tile: 0),
        // Mean pooling, h the pooled token, three heads, tiled attention with a ragged last tile.
        Case(image: [28, 28], patch: 7, dim: 12, depth: 1, heads: 3, mlpRatio: 3, pool: .mean, representation: 0, tile: 5),
    ]

    /// A ViT of `c` with every parameter moved off its initialisation (norms' 1 and 0 included), so a
    /// tensor under a wrong name or in a wrong layout changes the result.
    static func model(_ c: Case) -> TrainedModel {
        var config = TrainingConfig()
        config.model.encoder = .vit
        config.model.vit.preset = .none
        (config.model.vit.patch, config.model.vit.dim, config.model.vit.depth) = (c.patch, c.dim, c.depth)
        (config.model.vit.heads, config.model.vit.mlpRatio, config.model.vit.pool) = (c.heads, c.mlpRatio, c.pool)
        config.model.vit.attentionTile = c.tile
        config.model.representation = c.representation
        config.model.projection = [6, 4]
        let model = ContrastiveModel(config.model, inputWidth: c.image.reduce(1, *), imageShape: c.image)
        model.initialise(seed: 8)
        var random = RandomStream(seed: 9, stream: 0)
        for i in 0..<model.arena.count { model.arena.parameters[i] += 0.2 * random.nextNormal() }
        return TrainedModel(config: config, model: model, source: "a test ViT")
    }

    @Test func headerKeepsTimmNamesAndDescribesTheViT() throws {
        let trained = Self.model(Self.cases[0])
        let header = try Safetensors.readHeader(try ModelExport.safetensors(trained, part: .model), path: "vit.safetensors")
        let own = trained.model.arena.slices.map(\.name).filter { $0.hasPrefix("encoder.") }
        #expect(header.entries.map(\.name) == own + ["projection.0.weight", "projection.0.bias", "projection.2.weight", "projection.2.bias"])
        #expect(header.entry("encoder.blocks.1.attn.qkv.weight")?.shape == [24, 8])
        #expect(header.entry("encoder.patch_embed.proj.weight")?.shape == [8, 1, 4, 4])
        let metadata = header.metadata
        #expect(metadata["encoder_kind"] == "vit" && metadata["image_shape"] == "[12, 8]" && metadata["patch"] == "4")
        #expect(metadata["dim"] == "8" && metadata["depth"] == "2" && metadata["heads"] == "2" && metadata["mlp_width"] == "16")
        #expect(metadata["pool"] == "cls" && metadata["encoder_fc"] == "true" && metadata["norm_eps"] == "1e-06")
    }

    @Test(.enabled(if: torchImports, "skipped: /usr/bin/python3 cannot import torch and numpy"), arguments: cases)
    func pytorchComputesTheSameOutputAndGradients(c: Case) throws {
        let trained = Self.model(c)
        let model = trained.model, arena = model.arena
        let n = 5, width = c.image.reduce(1, *), r = model.representationWidth
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

        let folder = temporaryDirectory("export-vit")
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
        let outcome = try runPython([repositoryRoot.appendingPathComponent("tools/vit.py").path, encoder, "--inputs", x,
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

        // The whole exported model through tools/load_safetensors.py: h and z as contrast computes them.
        var z = [Float](repeating: 0, count: n * model.embeddingWidth), hAgain = [Float](repeating: 0, count: n * r)
        model.representations(of: inputs, count: n, into: &hAgain)
        model.embeddings(of: inputs, count: n, into: &z)
        let full = try file("model.safetensors", try ModelExport.safetensors(trained, part: .model))
        let zFile = try file("z.npy", NPYArray.encode(float32: z, shape: [n, model.embeddingWidth]))
        let hAgainFile = try file("h2.npy", NPYArray.encode(float32: hAgain, shape: [n, r]))
        for (what, expected) in [("representation", hAgainFile), ("embedding", zFile)] {
            let loaded = try runPython([repositoryRoot.appendingPathComponent("tools/load_safetensors.py").path, full, "--reader", "plain",
                                        "--inputs", x, "--what", what, "--compare", expected, "--tolerance", "1e-5"])
            #expect(loaded.status == 0, "\(what): \(loaded.output) \(loaded.error)")
        }
    }
}
