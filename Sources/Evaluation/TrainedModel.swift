import RunFiles
import NN
import Config
import Checkpoint
import Data
import Foundation

/// What a model takes: one sample's feature shape (and pair shape), recorded with its
/// parameters (`weights.bin`, every checkpoint's state), so that the model can be rebuilt when
/// the data set it was trained on has moved or is gone.
public struct ModelInputs: Codable, Equatable, Sendable {
    /// One sample's feature shape, e.g. [28, 28] for an image or [512] for a feature vector.
    public var features: [Int]
    /// Whether the features are grey-scale images (uint8 [height, width]): the shape a CNN encoder is built for.
    public var image: Bool
    /// One sample's pair shape (the second modality of two-tower models), nil without pairs.
    public var pairs: [Int]?

    public init(features: [Int], image: Bool, pairs: [Int]? = nil) {
        self.features = features
        self.image = image
        self.pairs = pairs
    }

    /// The inputs of a data set's samples.
    public init(_ rows: SampleRows) { self.init(features: rows.featureShape, image: rows.isImage, pairs: rows.pairShape) }

    public var featureWidth: Int { features.reduce(1, *) }
    public var pairWidth: Int { pairs?.reduce(1, *) ?? 0 }

    /// "uint8 image [28, 28]" / "features [512]", for messages.
    public var description: String { (image ? "images \(features)" : "features \(features)") + " (width \(featureWidth))" }
}

/// A trained model and the config it was trained with, for evaluation and export: from a
/// checkpoint directory (its parameters and the config in its state), or from a run directory
/// (its `weights.bin` when the run finished, else its newest complete checkpoint).
public struct TrainedModel {
    public let config: TrainingConfig
    public let model: ContrastiveModel
    /// The inputs the model was built for.
    public let inputs: ModelInputs
    /// What was loaded, for messages: "checkpoint DIR (step S)" or "weights of RUN".
    public let source: String

    /// Loads `path`: a run directory (its `weights.bin` when the run finished, else its newest
    /// complete checkpoint), a checkpoint directory or `RUN/checkpoints/latest`
    /// (`CheckpointStore.resolve`). The model's input shape is the one recorded with its
    /// parameters; a model saved before contrast recorded it takes it from its data set:
    /// `data` (a prepared or IDX folder, `--data`) when given, else the config's data.path.
    public static func load(_ path: String, data: String? = nil) throws -> TrainedModel {
        let url = URL(fileURLWithPath: path)
        let weights = url.appendingPathComponent("weights.bin")
        if FileManager.default.fileExists(atPath: weights.path) {
            let config = try ConfigLoader.load(file: url.appendingPathComponent("config.yaml").path, overrides: [])
            let source = "weights of \(path)"
            let inputs = try WeightsFile.inputs(at: weights) ?? dataInputs(config, data: data, source: source)
            let model = makeModel(config, inputs: inputs)
            try WeightsFile.read(into: model.arena, from: weights)
            return TrainedModel(config: config, model: model, inputs: inputs, source: source)
        }
        return try fromCheckpoint(try CheckpointStore.resolve(path), data: data)
    }

    static func fromCheckpoint(_ checkpoint: URL, data: String?) throws -> TrainedModel {
        struct State: Decodable { var step: Int; var config: String; var inputs: ModelInputs? }
        let manifest = try CheckpointStore.manifest(at: checkpoint)
        let state: State
        do { state = try JSONDecoder().decode(State.self, from: manifest.state) } catch {
            throw RunDirectory.Failure(description: "\(checkpoint.path)/manifest.json: its training state is unreadable (\(error))")
        }
        let config = try ConfigLoader.load(yaml: state.config, source: checkpoint.path + " (state.config)")
        let source = "checkpoint \(checkpoint.path) (step \(state.step))"
        let inputs = try state.inputs ?? dataInputs(config, data: data, source: source)
        let model = makeModel(config, inputs: inputs)
        _ = try CheckpointStore.load(checkpoint, only: [CheckpointBuffer(name: "parameters", pointer: model.arena.parameters.data,
                                                                          count: model.arena.count)])
        return TrainedModel(config: config, model: model, inputs: inputs, source: source)
    }

    /// The model the config describes, for samples of `inputs`.
    public static func makeModel(_ config: TrainingConfig, inputs: ModelInputs) -> ContrastiveModel {
        ContrastiveModel(config.model, inputWidth: inputs.featureWidth, pairInputWidth: config.loss.usesPairTower ? inputs.pairWidth : 0,
                         imageShape: inputs.image ? inputs.features : nil,
                         learnableTemperature: config.loss.temperatureMode == .learnable, learnableBias: config.loss.learnsLogitBias,
                         reconstruction: config.loss.reconstructionWeight > 0)
    }

    /// The inputs of the data set of a model that did not record them: `data`, else the config's.
    static func dataInputs(_ config: TrainingConfig, data: String?, source: String) throws -> ModelInputs {
        do {
            return try Evaluation.modelInputs(of: data.map { try Evaluation.config(config, data: $0) } ?? config)
        } catch {
            let named = data ?? config.data.path
            throw RunDirectory.Failure(description: "\(source) does not record its input shape (it was saved by an older contrast), "
                                   + "and its data set \(named) cannot be read to find it: \(error); "
                                   + (data == nil ? "pass --data DIR naming the data set it was trained on (or one of the same shape)"
                                                  : "pass --data with a data set of the shape the model was trained on"))
        }
    }

    /// Checks that `rows` (from `data`, a folder given with --data or data.path) fit the model's input.
    public func check(fits rows: SampleRows, data: String, pairs: Bool = false) throws {
        let given = ModelInputs(rows)
        let fits = pairs ? given.pairWidth == inputs.pairWidth
            : given.featureWidth == inputs.featureWidth && (!inputs.image || given.features == inputs.features)
        guard fits else {
            let (theirs, ours) = pairs ? ("pairs \(given.pairs ?? []) (width \(given.pairWidth))", "pairs of width \(inputs.pairWidth)")
                                       : (given.description, inputs.description)
            throw RunDirectory.Failure(description: "\(data): its samples are \(theirs), but the model takes \(ours), "
                                   + "what it was trained on; evaluate it on data of that shape (--data)")
        }
    }
}
