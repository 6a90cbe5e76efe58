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
        return TrainedModel(config: config, model: model, inputs: ModelInputs(features: c.image, image: true), source: "a test ViT")
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

/// One Transformer block with padded keys, pre-LN (ViT) and post-LN (BERT, the text encoder's), against
/// tools/vit.py's `Block` in float64: output, input gradient and parameter gradients to 1e-5 relative.
@Suite(.serialized) struct TransformerBlockTorchTests {
    @Test(.enabled(if: torchImports, "skipped: /usr/bin/python3 cannot import torch and numpy"),
          arguments: [TransformerBlock.NormPlacement.pre, .post], [SelfAttention.Mode.plain, .tiled(3)])
    func blockWithMaskMatchesPyTorch(placement: TransformerBlock.NormPlacement, attention: SelfAttention.Mode) throws {
        let (batch, tokens, width, heads, mlpWidth) = (3, 7, 8, 2, 12)
        let arena = ParameterArena()
        let block = TransformerBlock(tokens: tokens, width: width, heads: heads, mlpWidth: mlpWidth, placement: placement,
                                     attention: attention, name: "block", arena: arena)
        arena.seal()
        _ = block.initialise(seed: 1, firstStream: 0)
        var random = RandomStream(seed: 2, stream: 0)
        for i in 0..<arena.count { arena.parameters[i] += 0.2 * random.nextNormal() }
        let n = batch * tokens * width
        let x = (0..<n).map { _ in random.nextNormal() }, w = (0..<n).map { _ in random.nextNormal() }
        // Sample b has its last 2 b tokens padded.
        let mask: [UInt8] = (0..<batch).flatMap { b in (0..<tokens).map { $0 < tokens - 2 * b ? 1 : 0 } }
        var y = [Float](), dx = [Float]()
        mask.withUnsafeBufferPointer { mask in
            block.keyMask = mask.baseAddress
            x.withUnsafeBufferPointer { x in
                y = Array(UnsafeBufferPointer(start: block.forward(x.baseAddress!, batch: batch), count: n))
                var dy = w
                dy.withUnsafeMutableBufferPointer { dx = Array(UnsafeBufferPointer(start: block.backward($0.baseAddress!, batch: batch)!, count: n)) }
            }
        }
        let folder = temporaryDirectory("block-torch")
        defer { try? FileManager.default.removeItem(at: folder) }
        func file(_ name: String, _ data: Data) throws -> String {
            let url = folder.appendingPathComponent(name)
            try data.write(to: url)
            return url.path
        }
        func tensors(_ pointer: (ParameterSlice) -> UnsafeMutablePointer<Float>) -> [Safetensors.NamedTensor] {
            arena.slices.map { Safetensors.NamedTensor(name: $0.name, shape: $0.shape, values: Array(UnsafeBufferPointer(start: pointer($0), count: $0.count))) }
        }
        let shape = [batch, tokens, width]
        let arguments = [
            try file("parameters.safetensors", Safetensors.encode(tensors(arena.parameters), metadata: [])),
            try file("gradients.safetensors", Safetensors.encode(tensors(arena.gradients), metadata: [])),
            try file("x.npy", NPYArray.encode(float32: x, shape: shape)), try file("w.npy", NPYArray.encode(float32: w, shape: shape)),
            try file("y.npy", NPYArray.encode(float32: y, shape: shape)), try file("dx.npy", NPYArray.encode(float32: dx, shape: shape)),
            try file("mask.npy", NPYArray.encode(float32: mask.map(Float.init), shape: [batch, tokens])),
            "\(heads)", "\(mlpWidth)", placement.rawValue,
        ]
        let script = """
        import json, sys
        import numpy as np, torch
        sys.path.insert(0, sys.argv[1])
        from vit import Block
        from load_safetensors import read
        parameters, gradients, x, w, y, dx, mask, heads, mlp, placement = sys.argv[2:]
        values, _, _ = read(parameters, "plain")
        block = Block(8, int(heads), int(mlp), 1e-5, pre_norm=placement == "pre").double()
        block.load_state_dict({k[len("block."):]: torch.from_numpy(v).double() for k, v in values.items()}, strict=True)
        inputs = torch.from_numpy(np.load(x)).double().requires_grad_()
        output = block(inputs, torch.from_numpy(np.load(mask)) > 0)
        (output * torch.from_numpy(np.load(w)).double()).sum().backward()
        def relative(computed, expected):
            return float(np.max(np.abs(computed.astype(np.float64) - expected)) / np.max(np.abs(expected)))
        report = {"output": relative(np.load(y), output.detach().numpy()), "input": relative(np.load(dx), inputs.grad.numpy())}
        ours, _, _ = read(gradients, "plain")
        for name, parameter in block.named_parameters():
            report["block." + name] = relative(ours["block." + name], parameter.grad.numpy())
        print(json.dumps(report))
        """
        let outcome = try runPython(["-c", script, repositoryRoot.appendingPathComponent("tools").path] + arguments)
        #expect(outcome.status == 0, "\(outcome.output) \(outcome.error)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Double], "\(outcome.output)")
        #expect(report.count == 2 + arena.slices.count)
        for (name, difference) in report.sorted(by: { $0.key < $1.key }) {
            #expect(difference <= 1e-5, "\(placement) \(attention): \(name) differs from PyTorch's by \(difference) relative")
        }
    }
}
