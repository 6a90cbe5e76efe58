import Yams

// What a resume may change: the keys whose new value would make the resumed run a different run
// than the one its checkpoint belongs to, and the comparison of two configs key by key.

/// One key whose value differs between two configs, each value as the user would write it.
public struct ConfigChange: Sendable, Equatable, CustomStringConvertible {
    public var key: String
    public var old: String
    public var new: String

    public var description: String { "\(key) \(old) -> \(new)" }
}

public enum ResumeChanges {
    /// Keys (or whole sections) that a resume refuses to change unless resume_config_changes is
    /// allow: each changes what is trained, not how fast or how it is watched. The parameters'
    /// shapes and meaning (model, freeze, loss.temperature_mode's learnable temperature, the
    /// decoder of loss.reconstruction_weight), the optimizer state's meaning (optimizer.kind,
    /// loss.moco_queue's queue), the objective (loss.kind, loss.pseudo_labels, loss.sides: whether
    /// there is a pair tower, loss.mask_duplicates and loss.hard_negatives: the batch's layout), the samples and
    /// their order, which step and epoch counts index (seed, data.dataset, data.path,
    /// data.train_limit, data.virtual_shards, data.labeled_fraction, data.shuffle_buffer,
    /// data.vocab and data.lowercase (a text set's tokens), and data.hold to or from stream). The global batch
    /// (data.batch_per_rank x ranks) is checked apart, since batch_per_rank changes with the rank
    /// count. Everything else (lr and its schedule, epochs and max_steps to extend a run,
    /// augmentation strength, evaluation, logging, monitors, checkpoint cadence, precision and
    /// threads) is accepted and logged.
    public static let fixedKeys = [
        "seed", "data.dataset", "data.path", "data.train_limit", "data.virtual_shards", "data.labeled_fraction", "data.shuffle_buffer",
        "data.vocab", "data.lowercase", "model", "freeze", "loss.kind", "loss.temperature_mode", "loss.moco_queue", "loss.reconstruction_weight",
        "loss.pseudo_labels", "loss.sides", "loss.mask_duplicates", "loss.hard_negatives", "optimizer.kind",
    ]

    /// Keys a resume does not compare: where the run lives and how it resumes.
    static let ignoredKeys: Set<String> = ["run_dir", "resume", "resume_config_changes"]

    /// Whether `key` (dotted, `model.hidden`) is one of `fixedKeys` or inside a section of them.
    public static func isFixed(_ key: String) -> Bool {
        fixedKeys.contains { key == $0 || key.hasPrefix($0 + ".") }
    }

    /// Whether a resume refuses `change`: a fixed key, or data.hold to or from stream (a
    /// streamed epoch's order is the shuffle buffer's, not the whole-shard shuffle; memory and
    /// disk give the same batches and may be swapped).
    public static func isFixed(_ change: ConfigChange) -> Bool {
        isFixed(change.key) || (change.key == "data.hold" && (change.old == "stream" || change.new == "stream"))
    }

    /// The keys whose values differ from `old` to `new` (lists compare whole), in the config's
    /// declaration order, except `ignoredKeys`.
    public static func changes(from old: TrainingConfig, to new: TrainingConfig) -> [ConfigChange] {
        let before = Dictionary(uniqueKeysWithValues: leaves(ConfigLoader.tree(of: old), []))
        return leaves(ConfigLoader.tree(of: new), []).compactMap { key, value in
            guard !ignoredKeys.contains(key), let previous = before[key], previous != value else { return nil }
            return ConfigChange(key: key, old: previous, new: value)
        }
    }

    private static func leaves(_ node: Node, _ path: [String]) -> [(String, String)] {
        guard let mapping = node.mapping else { return [(path.joined(separator: "."), render(node))] }
        return mapping.flatMap { key, value in leaves(value, path + [key.string ?? ""]) }
    }
}
