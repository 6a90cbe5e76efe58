import Checkpoint
import Data
import Foundation
import NN
import Tensor
import TestSupport
@testable import Config
@testable import RunFiles
@testable import Evaluation
import Testing
@testable import Training

/// /usr/bin/python3 with `arguments`, from the repository root.
private func python(_ arguments: [String]) throws -> ProcessOutcome {
    try runProcess(URL(fileURLWithPath: "/usr/bin/python3"), arguments, timeout: 120)
}

private func pythonImports(_ modules: String) -> Bool {
    FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") && (try? python(["-c", "import \(modules)"]))?.status == 0
}

private let torchAvailable = pythonImports("torch, numpy")
private let safetensorsAvailable = pythonImports("torch, numpy, safetensors")
private let loader = repositoryRoot.appendingPathComponent("tools/load_safetensors.py").path

/// The largest difference the loader's `--compare` printed ("max abs difference 1.2e-07 over ...").
private func reportedDifference(_ output: String) -> Double? {
    guard let range = output.range(of: "max abs difference ") else { return nil }
    return Double(output[range.upperBound...].prefix { !$0.isWhitespace })
}

/// A small two-tower GELU model (I = 10, W = 8), initialised, with its config.
private func smallCLIPModel() -> TrainedModel {
    var config = TrainingConfig()
    config.model.hidden = [6]
    config.model.representation = 5
    config.model.projection = [4, 3]
    config.model.activation = .gelu
    config.model.pairHidden = [7]
    config.loss.kind = .clip
    let model = ContrastiveModel(config.model, inputWidth: 10, pairInputWidth: 8)
    model.initialise(seed: 3)
    return TrainedModel(config: config, model: model, inputs: ModelInputs(features: [10], image: false, pairs: [8]), source: "a test model")
}

private func write(_ data: Data, _ url: URL) throws -> String {
    try data.write(to: url)
    return url.path
}

@Suite(.serialized) struct ExportTests {
    /// The header names every tower's Linear layers as torch.nn.Sequential does (activations
    /// between them take the odd indices), holds the arena's values bit for bit, and carries
    /// what a loader needs in its metadata.
    @Test func headerParsesBack() throws {
        let trained = smallCLIPModel()
        let file = try ModelExport.safetensors(trained, part: .model)
        let headerLength = file.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        #expect(headerLength % 8 == 0 && file[8] == UInt8(ascii: "{"))
        let header = try Safetensors.readHeader(file, path: "model.safetensors")
        let expected: [(String, [Int], String)] = [
            ("encoder.0.weight", [6, 10], "encoder.0.weight"), ("encoder.0.bias", [6], "encoder.0.bias"),
            ("encoder.2.weight", [5, 6], "encoder.1.weight"), ("encoder.2.bias", [5], "encoder.1.bias"),
            ("projection.0.weight", [4, 5], "projection.0.weight"), ("projection.0.bias", [4], "projection.0.bias"),
            ("projection.2.weight", [3, 4], "projection.1.weight"), ("projection.2.bias", [3], "projection.1.bias"),
            ("pair_encoder.0.weight", [7, 8], "pair_encoder.0.weight"), ("pair_encoder.0.bias", [7], "pair_encoder.0.bias"),
            ("pair_encoder.2.weight", [5, 7], "pair_encoder.1.weight"), ("pair_encoder.2.bias", [5], "pair_encoder.1.bias"),
            ("pair_projection.0.weight", [4, 5], "pair_projection.0.weight"), ("pair_projection.0.bias", [4], "pair_projection.0.bias"),
            ("pair_projection.2.weight", [3, 4], "pair_projection.1.weight"), ("pair_projection.2.bias", [3], "pair_projection.1.bias"),
        ]
        #expect(header.entries.map(\.name) == expected.map(\.0))
        let arena = trained.model.arena
        for (name, shape, arenaName) in expected {
            let entry = try #require(header.entry(name))
            #expect(entry.dtype == "F32" && entry.shape == shape, "\(name)")
            let slice = try #require(arena.slice(named: arenaName))
            let stored = Array(UnsafeBufferPointer(start: arena.parameters(slice), count: slice.count))
            #expect(Safetensors.float32Values(entry, of: file, header: header).map(\.bitPattern) == stored.map(\.bitPattern), "\(name)")
        }
        let metadata = header.metadata
        #expect(metadata["activation"] == "gelu" && metadata["normalize"] == "l2" && metadata["contents"] == "model")
        #expect(metadata["encoder_widths"] == "[10, 6, 5]" && metadata["projection_widths"] == "[5, 4, 3]")
        #expect(metadata["pair_encoder_widths"] == "[8, 7, 5]" && metadata["pair_projection_widths"] == "[5, 4, 3]")
        #expect(metadata["representation_width"] == "5" && metadata["embedding_width"] == "3")
        #expect(metadata["contrast_version"] == contrastVersion && metadata["config"] == trained.config.yaml())

        let encoder = try Safetensors.readHeader(try ModelExport.safetensors(trained, part: .encoder), path: "encoder.safetensors")
        #expect(encoder.entries.map(\.name) == expected.map(\.0).filter { $0.contains("encoder") })
        #expect(encoder.metadata["normalize"] == "none" && encoder.metadata["contents"] == "encoder")
        #expect(encoder.metadata["embedding_width"] == nil && encoder.metadata["projection_widths"] == nil)
    }

    /// An MLP trained with model.dropout exports as the same network without it: dropout is the identity
    /// outside training, so the file (tensors and names; the config in the metadata aside) is the one of
    /// the same weights without dropout.
    @Test func modelWithDropoutExportsItsInferenceNetwork() throws {
        func trained(dropout: Float) -> TrainedModel {
            var config = TrainingConfig()
            config.model.hidden = [6, 7]
            config.model.representation = 5
            config.model.projection = [4, 3]
            config.model.dropout = dropout
            let model = ContrastiveModel(config.model, inputWidth: 10)
            model.initialise(seed: 3)
            return TrainedModel(config: config, model: model, inputs: ModelInputs(features: [10], image: false), source: "a test model")
        }
        let plain = try ModelExport.tensors(trained(dropout: 0).model, part: .model)
        let dropped = try ModelExport.tensors(trained(dropout: 0.4).model, part: .model)
        #expect(dropped.map(\.name) == plain.map(\.name) && dropped.map(\.shape) == plain.map(\.shape))
        #expect(dropped.map { $0.values.map(\.bitPattern) } == plain.map { $0.values.map(\.bitPattern) })
        #expect(dropped.map(\.name).contains("encoder.4.weight"))
    }

    /// Metadata strings survive JSON escaping; a file whose tensors do not tile its data is refused.
    @Test func escapesMetadataAndChecksLayout() throws {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{7} é 日本 /slash"
        let tensor = Safetensors.NamedTensor(name: "a \"b\"", shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        let file = Safetensors.encode([tensor], metadata: [("text", text), ("empty", "")])
        let header = try Safetensors.readHeader(file, path: "x")
        #expect(header.metadata == ["text": text, "empty": ""])
        #expect(header.entries == [Safetensors.Entry(name: "a \"b\"", dtype: "F32", shape: [2, 3], bytes: 0..<24)])
        #expect(Safetensors.float32Values(header.entries[0], of: file, header: header) == [1, 2, 3, 4, 5, 6])
        for broken in [file.dropLast(), file + Data([0]), Data(file.prefix(4))] {
            #expect(throws: DataError.self) { try Safetensors.readHeader(Data(broken), path: "x") }
        }
    }

    /// A trained run, exported and embedded by contrast, loaded into torch by
    /// tools/load_safetensors.py (its plain reader): torch's h and z match contrast's.
    @Test(.enabled(if: torchAvailable, "needs /usr/bin/python3 with torch and numpy"))
    func torchMatchesContrastEmbed() throws {
        let folder = temporaryDirectory("export")
        defer { try? FileManager.default.removeItem(at: folder) }
        let run = folder.appendingPathComponent("run").path, prepared = folder.appendingPathComponent("prepared").path
        func contrast(_ arguments: [String]) throws -> ProcessOutcome {
            let outcome = try runContrast(ranks: 1, arguments)
            #expect(outcome.status == 0, "contrast \(arguments.joined(separator: " ")): \(outcome.error)")
            return outcome
        }
        _ = try contrast(["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)", "--set", "train.max_steps=12",
                          "--set", "eval.knn_every_epochs=0", "--set", "checkpoint.every_steps=12"])
        _ = try contrast(["prepare", "fashion-mnist", "--out", prepared, "--limit", "300", "--shards", "4"])
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: run)).first).path
        let path = { folder.appendingPathComponent($0).path }
        _ = try contrast(["export", "--checkpoint", run, "--format", "safetensors", "--out", path("model.safetensors")])
        _ = try contrast(["export", "--checkpoint", checkpoint, "--what", "encoder", "--out", path("encoder.safetensors")])
        _ = try contrast(["embed", "--checkpoint", run, "--data", prepared, "--out", path("h.npy"), "--labels-out", path("labels.npy")])
        _ = try contrast(["embed", "--checkpoint", run, "--data", prepared, "--what", "embedding", "--out", path("z.npy")])

        // The same images as contrast's inputs (byte / 255), handed to torch as an .npy.
        let rows = try Evaluation.evaluationSplit(Evaluation.config(TrainingConfig(), data: prepared), .test)
        var inputs = [Float](repeating: 0, count: rows.count * rows.featureWidth)
        rows.writeInputs(rows.held, into: &inputs)
        let inputsFile = try write(NPYArray.encode(float32: inputs, shape: [rows.count, rows.featureWidth]), folder.appendingPathComponent("x.npy"))
        #expect(try NPYArray(path: path("labels.npy")).int64Values() == rows.labels)
        #expect(try NPYArray(path: path("h.npy")).shape == [300, 32])

        for (file, what, expected) in [("model.safetensors", "representation", "h.npy"), ("model.safetensors", "embedding", "z.npy"),
                                       ("encoder.safetensors", "representation", "h.npy")] {
            let outcome = try python([loader, path(file), "--reader", "plain", "--inputs", inputsFile, "--what", what,
                                      "--compare", path(expected)])
            #expect(outcome.status == 0, "\(file) \(what): \(outcome.output) \(outcome.error)")
            let difference = try #require(reportedDifference(outcome.output), "\(outcome.output) \(outcome.error)")
            #expect(difference <= 1e-5, "\(file) \(what): \(difference)")
        }

        let refused = try runContrast(ranks: 1, ["export", "--checkpoint", run, "--format", "pickle", "--out", path("m.pt")])
        #expect(refused.status != 0 && refused.error.contains("--format pickle is not supported; use 'safetensors'"), "\(refused.error)")
        let drift = try contrast(["eval", "drift", "--a", run, "--b", checkpoint, "--data", prepared])
        #expect(drift.output.hasPrefix("linear CKA 1.0000 ") && drift.output.contains("300 test samples"), "\(drift.output)")
    }

    /// The safetensors package reads what contrast wrote (names, shapes, metadata), and a two-tower
    /// GELU model built from it gives contrast's h and z through both towers.
    @Test(.enabled(if: safetensorsAvailable, "needs /usr/bin/python3 with torch, numpy and safetensors"))
    func safetensorsPackageLoadsBothTowers() throws {
        let folder = temporaryDirectory("export-clip")
        defer { try? FileManager.default.removeItem(at: folder) }
        let trained = smallCLIPModel(), model = trained.model
        let modelFile = try write(try ModelExport.safetensors(trained, part: .model), folder.appendingPathComponent("clip.safetensors"))
        let n = 50
        var random = RandomStream(seed: 11, stream: 0)
        for (pair, width) in [(false, 10), (true, 8)] {
            let inputs = (0..<(n * width)).map { _ in random.nextNormal() }
            var h = [Float](repeating: 0, count: n * 5), z = [Float](repeating: 0, count: n * 3)
            model.representations(of: inputs, count: n, pair: pair, into: &h)
            model.embeddings(of: inputs, count: n, pair: pair, into: &z)
            let name = pair ? "pair" : "features"
            _ = try write(NPYArray.encode(float32: inputs, shape: [n, width]), folder.appendingPathComponent("\(name).npy"))
            _ = try write(NPYArray.encode(float32: h, shape: [n, 5]), folder.appendingPathComponent("\(name)-h.npy"))
            _ = try write(NPYArray.encode(float32: z, shape: [n, 3]), folder.appendingPathComponent("\(name)-z.npy"))
        }
        let script = """
        import json, sys
        import numpy as np
        from safetensors.numpy import load_file
        sys.path.insert(0, 'tools')
        import load_safetensors as loader
        folder, path = sys.argv[1], sys.argv[2]
        model, metadata, reader = loader.load(path, 'safetensors')
        difference = 0.0
        for name, pair in (('features', False), ('pair', True)):
            h, z = model.encode(loader.as_inputs(np.load(f'{folder}/{name}.npy')), pair=pair)
            for computed, expected in ((h, f'{name}-h'), (z, f'{name}-z')):
                difference = max(difference, float(np.abs(computed.numpy() - np.load(f'{folder}/{expected}.npy')).max()))
        shapes = {name: list(tensor.shape) for name, tensor in load_file(path).items()}
        print(json.dumps({'reader': reader, 'difference': difference, 'shapes': shapes, 'metadata': metadata}))
        """
        let outcome = try python(["-c", script, folder.path, modelFile])
        #expect(outcome.status == 0, "\(outcome.error)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: Any])
        #expect(result["reader"] as? String == "safetensors")
        let difference = try #require(result["difference"] as? Double)
        #expect(difference <= 1e-5, "\(difference)")
        let shapes = try #require(result["shapes"] as? [String: [Int]])
        let header = try Safetensors.readHeader(try Data(contentsOf: URL(fileURLWithPath: modelFile)), path: modelFile)
        #expect(shapes == Dictionary(uniqueKeysWithValues: header.entries.map { ($0.name, $0.shape) }))
        #expect(result["metadata"] as? [String: String] == header.metadata)
    }
}

/// A small CNN model (`CNN.make`) on `imageShape` images, every parameter moved off its
/// initialisation (GroupNorm's gamma 1 and beta 0, the adapter's zero up-projection), so a
/// tensor written under the wrong name or transposed changes the result.
private func smallCNNModel(channels: [Int], imageShape: [Int], poolCells: Int, poolStages: Int,
                           representation: Int, adapter: Int) -> TrainedModel {
    var config = TrainingConfig()
    config.model.representation = representation
    config.model.projection = [5, 3]
    config.model.encoder = .cnn
    config.model.channels = channels
    config.model.poolCells = poolCells
    config.model.poolStages = poolStages
    config.model.adapter = adapter
    let model = ContrastiveModel(config.model, inputWidth: imageShape.reduce(1, *), imageShape: imageShape)
    model.initialise(seed: 5)
    var random = RandomStream(seed: 6, stream: 0)
    let parameters = model.arena.parameters.data
    for i in 0..<model.arena.count { parameters[i] += 0.2 * random.nextNormal() }
    return TrainedModel(config: config, model: model, inputs: ModelInputs(features: imageShape, image: true), source: "a test CNN")
}

@Suite(.serialized) struct CNNExportTests {
    static let shapes: [(channels: [Int], imageShape: [Int], poolCells: Int, poolStages: Int, representation: Int, adapter: Int)] = [
        // Uneven pooling bins (5 x 4 maps into 2 x 2 cells), a Linear fc, an adapter.
        ([4, 8], [9, 7], 2, 2, 6, 3),
        // Three stages (an identity skip, then two projections), global pooling of the last, no fc.
        ([4, 4, 8], [8, 8], 1, 1, 0, 0),
    ]

    /// The encoder's and the adapter's tensors keep the arena's names (the module's state_dict
    /// keys), bit for bit; the head stays a Sequential; the metadata describes the CNN.
    @Test func headerNamesTheArenaAndDescribesTheCNN() throws {
        let trained = smallCNNModel(channels: [4, 8], imageShape: [9, 7], poolCells: 2, poolStages: 2, representation: 6, adapter: 3)
        let file = try ModelExport.safetensors(trained, part: .model)
        let header = try Safetensors.readHeader(file, path: "cnn.safetensors")
        let arena = trained.model.arena
        let own = arena.slices.map(\.name).filter { $0.hasPrefix("encoder.") || $0.hasPrefix("adapter.") }
        #expect(own.contains("encoder.stem.weight") && own.contains("encoder.stage1.projection.bias") && own.contains("encoder.fc.weight"))
        #expect(own.last == "adapter.up.bias")
        let head = ["projection.0.weight", "projection.0.bias", "projection.2.weight", "projection.2.bias"]
        #expect(header.entries.map(\.name) == own + head)
        for name in own {
            let entry = try #require(header.entry(name)), slice = try #require(arena.slice(named: name))
            #expect(entry.shape == slice.shape, "\(name)")
            let stored = Array(UnsafeBufferPointer(start: arena.parameters(slice), count: slice.count))
            #expect(Safetensors.float32Values(entry, of: file, header: header).map(\.bitPattern) == stored.map(\.bitPattern), "\(name)")
        }
        #expect(header.entry("encoder.stage0.conv1.weight")?.shape == [4, 4, 3, 3])
        let metadata = header.metadata
        #expect(metadata["encoder_kind"] == "cnn" && metadata["encoder_channels"] == "[4, 8]" && metadata["encoder_groups"] == "[4, 8]")
        #expect(metadata["image_shape"] == "[9, 7]" && metadata["pool_cells"] == "2" && metadata["pool_stages"] == "2")
        #expect(metadata["encoder_fc"] == "true" && metadata["norm_eps"] == "1e-05" && metadata["adapter_width"] == "3")
        #expect(metadata["encoder_widths"] == nil && metadata["projection_widths"] == "[6, 5, 3]" && metadata["representation_width"] == "6")
        let encoderOnly = try Safetensors.readHeader(try ModelExport.safetensors(trained, part: .encoder), path: "encoder.safetensors")
        #expect(encoderOnly.entries.map(\.name) == own)
    }

    /// torch, given the file alone (tools/load_safetensors.py, plain reader), computes contrast's
    /// h and z: the CNN, its pooling and the adapter are the modules docs/export.md says.
    @Test(.enabled(if: torchAvailable, "needs /usr/bin/python3 with torch and numpy"), arguments: 0..<2)
    func torchRebuildsTheCNN(shape: Int) throws {
        let s = Self.shapes[shape]
        let trained = smallCNNModel(channels: s.channels, imageShape: s.imageShape, poolCells: s.poolCells, poolStages: s.poolStages,
                                    representation: s.representation, adapter: s.adapter)
        let model = trained.model
        let folder = temporaryDirectory("export-cnn")
        defer { try? FileManager.default.removeItem(at: folder) }
        let n = 12, width = s.imageShape.reduce(1, *), r = model.representationWidth, e = model.embeddingWidth
        var random = RandomStream(seed: 7, stream: 0)
        let inputs = (0..<(n * width)).map { _ in Float(random.nextInt(below: 256)) / 255 }
        var h = [Float](repeating: 0, count: n * r), z = [Float](repeating: 0, count: n * e)
        model.representations(of: inputs, count: n, into: &h)
        model.embeddings(of: inputs, count: n, into: &z)
        let path = { folder.appendingPathComponent($0).path }
        _ = try write(try ModelExport.safetensors(trained, part: .model), folder.appendingPathComponent("cnn.safetensors"))
        _ = try write(NPYArray.encode(float32: inputs, shape: [n, width]), folder.appendingPathComponent("x.npy"))
        _ = try write(NPYArray.encode(float32: h, shape: [n, r]), folder.appendingPathComponent("h.npy"))
        _ = try write(NPYArray.encode(float32: z, shape: [n, e]), folder.appendingPathComponent("z.npy"))
        for (what, expected) in [("representation", "h.npy"), ("embedding", "z.npy")] {
            let outcome = try python([loader, path("cnn.safetensors"), "--reader", "plain", "--inputs", path("x.npy"), "--what", what,
                                      "--compare", path(expected), "--tolerance", "1e-4"])
            #expect(outcome.status == 0, "\(what): \(outcome.output) \(outcome.error)")
            let difference = try #require(reportedDifference(outcome.output), "\(outcome.output) \(outcome.error)")
            #expect(difference <= 1e-4, "\(what): \(difference)")
        }
    }
}
