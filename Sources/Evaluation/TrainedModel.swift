import RunFiles
import NN
import Config
import Checkpoint
import Data
import Foundation

/// A trained model and the config it was trained with, for evaluation and export: from a
/// checkpoint directory (its parameters and the config in its state), or from a run directory
/// (its `weights.bin` when the run finished, else its newest complete checkpoint).
public struct TrainedModel {
    public let config: TrainingConfig
    public let model: ContrastiveModel
    /// What was loaded, for messages: "checkpoint DIR (step S)" or "weights of RUN".
    public let source: String

    /// Loads `path`: a run directory (its `weights.bin` when the run finished, else its newest
    /// complete checkpoint), a checkpoint directory or `RUN/checkpoints/latest`
    /// (`CheckpointStore.resolve`). The model's input widths come from the data set the config
    /// names (its manifest, or Fashion-MNIST's image size).
    public static func load(_ path: String) throws -> TrainedModel {
        let url = URL(fileURLWithPath: path)
        let weights = url.appendingPathComponent("weights.bin")
        if FileManager.default.fileExists(atPath: weights.path) {
            let config = try ConfigLoader.load(file: url.appendingPathComponent("config.yaml").path, overrides: [])
            let model = try makeModel(config)
            try WeightsFile.read(into: model.arena, from: weights)
            return TrainedModel(config: config, model: model, source: "weights of \(path)")
        }
        return try fromCheckpoint(try CheckpointStore.resolve(path))
    }

    static func fromCheckpoint(_ checkpoint: URL) throws -> TrainedModel {
        struct State: Decodable { var step: Int; var config: String }
        let manifest = try CheckpointStore.manifest(at: checkpoint)
        let state: State
        do { state = try JSONDecoder().decode(State.self, from: manifest.state) } catch {
            throw RunDirectory.Failure(description: "\(checkpoint.path)/manifest.json: its training state is unreadable (\(error))")
        }
        let config = try ConfigLoader.load(yaml: state.config, source: checkpoint.path + " (state.config)")
        let model = try makeModel(config)
        _ = try CheckpointStore.load(checkpoint, only: [CheckpointBuffer(name: "parameters", pointer: model.arena.parameters.data,
                                                                          count: model.arena.count)])
        return TrainedModel(config: config, model: model, source: "checkpoint \(checkpoint.path) (step \(state.step))")
    }

    /// The model the config describes, for the data set it names.
    static func makeModel(_ config: TrainingConfig) throws -> ContrastiveModel {
        let (input, pair, image) = try inputWidths(config)
        return ContrastiveModel(config.model, inputWidth: input, pairInputWidth: config.loss.kind == .clip ? pair : 0, imageShape: image,
                                learnableTemperature: config.loss.temperatureMode == .learnable,
                                reconstruction: config.loss.reconstructionWeight > 0)
    }

    /// Feature and pair widths of the config's data set, and its image shape when its features
    /// are images, read from its manifest or its test images.
    static func inputWidths(_ config: TrainingConfig) throws -> (input: Int, pair: Int, image: [Int]?) {
        let path = config.data.path.replacingOccurrences(of: "{rank}", with: "0")
        switch config.data.dataset {
        case .fashionMNIST:
            let images = try FashionMNIST.load(directory: path, split: .test, limit: 1)
            return (images.pixelsPerImage, 0, [images.height, images.width])
        case .prepared:
            let manifest = try ShardedDataset.readManifest(directory: ShardedDataset.splits(of: path).train)
            let image = manifest.features.dtype == .uint8 && manifest.features.shape.count == 2 ? manifest.features.shape : nil
            return (manifest.features.elementsPerSample, manifest.pairs?.elementsPerSample ?? 0, image)
        }
    }
}
