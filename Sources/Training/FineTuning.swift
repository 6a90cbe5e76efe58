import Tensor
import Evaluation
import RunFiles
import Config
import Distributed
import Foundation
import NN

// Fine-tuning from a pretrained encoder (docs/fine-tuning.md): `init_from` copies the encoder's
// parameters (parameters only; the optimizer starts fresh), `freeze: encoder` keeps them fixed,
// `optimizer.encoder_lr_scale` scales their learning rate, `model.adapter` adds a residual bottleneck
// adapter on h that trains on top.

extension ContrastiveModel {
    /// What the optimizer steps: above a frozen encoder only; else the encoder at lr · `encoderLearningRateScale`
    /// and the rest at lr. A scale of 1 gives one group, the whole arena (the optimizer steps as it always has).
    public func parameterGroups(encoderLearningRateScale: Float) -> [ParameterGroup] {
        let encoder = encoderRange
        if freezesEncoder { return [ParameterGroup(range: trainableRange)] }
        if encoderLearningRateScale == 1 || encoder.isEmpty { return ParameterGroup.all(arena) }
        return [ParameterGroup(range: encoder, learningRateScale: encoderLearningRateScale),
                ParameterGroup(range: encoder.upperBound ..< arena.count)]
    }

    /// Names of the parameters `init_from` copies: the first tower's encoder, and its projection head with `head`.
    func initialisedSlices(head: Bool) -> [ParameterSlice] {
        arena.slices.filter { $0.name.hasPrefix("encoder.") || (head && $0.name.hasPrefix("projection.")) }
    }
}

/// The pretrained parameters `init_from` names, read and checked against the new model on rank 0
/// before the run directory exists, then copied in and broadcast once the model is built.
struct PretrainedEncoder {
    /// The values to copy by parameter name (rank 0 only).
    let parameters: [String: [Float]]
    /// Names of the parameters copied, in arena order.
    let names: [String]
    /// For the log: what was loaded from where.
    let summary: String

    /// Loads `config.initFrom` on rank 0 and checks that `target` (a model of the new run's layout) has
    /// every copied parameter under the same name and shape. Collective; throws on every rank.
    static func prepare(_ config: TrainingConfig, target: () throws -> ContrastiveModel, communicator: Communicator) throws -> PretrainedEncoder {
        var failure = "", summary = ""
        var parameters: [String: [Float]] = [:]
        var names: [String] = []
        if communicator.isRoot {
            do {
                (parameters, names, summary) = try load(config, target: try target())
            } catch {
                failure = "\(error)"
            }
        }
        failure = try communicator.broadcast(failure)
        if !failure.isEmpty {
            // Every rank throws rank 0's message: no rank need abort the job.
            let error = ConfigError(key: "init_from", problem: failure)
            throw communicator.size > 1 ? SameOnEveryRank(error) : error
        }
        summary = try communicator.broadcast(summary)
        return PretrainedEncoder(parameters: parameters, names: names, summary: summary)
    }

    static func load(_ config: TrainingConfig, target: ContrastiveModel) throws -> ([String: [Float]], [String], String) {
        let path = config.initFrom
        guard FileManager.default.fileExists(atPath: path) else {
            throw RunDirectory.Failure(description: "init_from: \(path) does not exist; give the run directory (or a checkpoint directory) "
                                   + "of the pretraining run, e.g. runs/fmnist-simclr after contrast train --config configs/fmnist-simclr.yaml")
        }
        if HuggingFaceBert.isModelDirectory(path) {
            guard !config.initHead else {
                throw RunDirectory.Failure(description: "init_from: \(path) is a Hugging Face model directory, which has no projection head; "
                                           + "set init_head=false")
            }
            let parameters = try HuggingFaceBert.encoderParameters(from: path, for: target)
            let names = target.arena.slices.map(\.name).filter { parameters[$0] != nil }
            let count = parameters.values.reduce(0) { $0 + $1.count }
            let fresh = target.arena.slices.filter { $0.name.hasPrefix("encoder.") && parameters[$0.name] == nil }.map(\.name)
            let summary = "init_from: \(count) parameters (\(names.count) tensors: BERT encoder) from the Hugging Face directory \(path)"
                + (fresh.isEmpty ? "" : " (\(fresh.joined(separator: ", ")) freshly initialised: BertModel has no such tensor)")
                + "; a fresh optimizer state"
            return (parameters, names, summary)
        }
        let pretrained: TrainedModel
        do { pretrained = try TrainedModel.load(path) } catch {
            throw RunDirectory.Failure(description: "init_from: \(error)")
        }
        let wanted = target.initialisedSlices(head: config.initHead)
        for slice in wanted {
            guard let found = pretrained.model.arena.slice(named: slice.name) else {
                throw RunDirectory.Failure(description: "init_from: \(pretrained.source) has no parameter \(slice.name) (shape \(slice.shape)) "
                                       + "that this run's model needs; the pretrain's model section must match (model.encoder, "
                                       + "model.hidden, model.representation\(config.initHead ? ", model.projection" : "")) or set init_from to a matching run")
            }
            guard found.shape == slice.shape else {
                throw RunDirectory.Failure(description: "init_from: parameter \(slice.name) has shape \(found.shape) in \(pretrained.source) "
                                       + "but \(slice.shape) in this run's model; use the pretrain's model section "
                                       + "(its config.yaml) for model.hidden / model.representation\(config.initHead ? " / model.projection" : "")")
            }
        }
        let count = wanted.reduce(0) { $0 + $1.count }
        let summary = "init_from: \(count) parameters (\(wanted.count) tensors: \(config.initHead ? "encoder and projection head" : "encoder")) "
            + "from \(pretrained.source); a fresh optimizer state"
        let arena = pretrained.model.arena
        let parameters = Dictionary(uniqueKeysWithValues: wanted.map { slice in
            (slice.name, Array(UnsafeBufferPointer(start: arena.parameters(arena.slice(named: slice.name)!), count: slice.count)))
        })
        return (parameters, wanted.map(\.name), summary)
    }

    /// Copies the parameters into `model` on rank 0 and broadcasts the arena so every rank starts alike. Collective.
    func apply(to model: ContrastiveModel, communicator: Communicator) throws {
        for name in names {
            let to = model.arena.slice(named: name)!, values = parameters[name]!
            precondition(values.count == to.count, "init_from: \(name) has \(values.count) values, not \(to.count)")
            model.arena.parameters(to).update(from: values, count: to.count)
        }
        try communicator.broadcast(UnsafeMutableRawPointer(model.arena.parameters.data), bytes: model.arena.count * 4, root: 0)
    }
}
