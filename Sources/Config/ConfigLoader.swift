// Loading a TrainingConfig: defaults <- YAML file <- `--set key=value` overrides, in that order of precedence.
//
// The defaults are encoded to a YAML tree; the user's file is merged onto it key by key (a key the defaults
// do not have is an error; a list replaces the whole list); each override replaces one subtree; the merged
// tree is decoded with Yams and validated. Where each value came from (file line or `--set`) is remembered so
// that every error can point at it.

import Foundation
import Yams

public enum ConfigLoader {
    /// Loads a config: defaults, then `file` (if any), then `overrides` (`section.key=value`, value in YAML).
    /// - Throws: `ConfigError` naming the key, the problem and where the value came from.
    public static func load(file: String?, overrides: [String]) throws -> TrainingConfig {
        var tree = ConfigTree()
        if let file {
            guard FileManager.default.fileExists(atPath: file) else {
                throw ConfigError(problem: "config file \(file) not found", hint: "check the path given to --config")
            }
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ConfigError(problem: "config file \(file) could not be read as UTF-8 text: \(error)")
            }
            try tree.merge(yaml: text, source: file)
        }
        for override in overrides { try tree.apply(override: override) }
        return try tree.decode()
    }

    /// Loads a config from YAML text (a resolved config from a run directory or checkpoint, say); `source`
    /// names it in error messages. Keys it lacks keep their defaults.
    public static func load(yaml: String, source: String, overrides: [String] = []) throws -> TrainingConfig {
        var tree = ConfigTree()
        try tree.merge(yaml: yaml, source: source)
        for override in overrides { try tree.apply(override: override) }
        return try tree.decode()
    }

    /// The defaults as a YAML tree, floats written in their shortest form and lists in flow style.
    static func tree(of config: TrainingConfig) -> Node {
        // Encoding plain structs of numbers, strings and lists cannot fail, nor can reading back what Yams wrote.
        let text = try! YAMLEncoder().encode(config)
        return tidy(try! Yams.compose(yaml: text)!)
    }

    /// Every leaf key of the config as a dotted path (`optimizer.lr`), in declaration order.
    static func leafKeys() -> [String] {
        func walk(_ node: Node, _ path: [String]) -> [String] {
            guard let mapping = node.mapping else { return [path.joined(separator: ".")] }
            return mapping.flatMap { key, value in walk(value, path + [key.string ?? ""]) }
        }
        return walk(tree(of: TrainingConfig()), [])
    }
}

extension TrainingConfig {
    /// The config as a YAML document, one section per block, that loads back to an equal config.
    public func yaml() -> String {
        // Serialising a tree we built ourselves cannot fail.
        return try! Yams.serialize(node: ConfigLoader.tree(of: self), sortKeys: false)
    }
}

/// Floats as Swift prints them (0.2, not 0.20000000298023224) but always with a '.' and a signed exponent,
/// so YAML 1.1 readers see a float too; lists in flow style (`[1024, 1024]`).
private func tidy(_ node: Node) -> Node {
    switch node {
    case .scalar(let scalar) where node.tagName == .float:
        guard let value = Double(scalar.string) else { return node }
        var text = "\(Float(value))"
        if text.contains("e") && !text.contains(".") {
            text = text.replacingOccurrences(of: "e", with: ".0e")
        }
        return Node(text, Tag(.float))
    case .mapping(let mapping):
        return Node(mapping.map { ($0.key, tidy($0.value)) })
    case .sequence(let sequence):
        return Node(sequence.map(tidy), Tag(.seq), .flow)
    default:
        return node
    }
}

/// Where a value came from.
private enum Origin {
    case file(String)
    case override(String)

    func location(of node: Node) -> String {
        switch self {
        case .file(let file): node.mark.map { "\(file) line \($0.line)" } ?? file
        case .override(let argument): "--set \(argument)"
        }
    }
}

/// The config as a YAML tree being merged, with the origin of every value that did not come from defaults.
private struct ConfigTree {
    let defaults = ConfigLoader.tree(of: TrainingConfig())
    var root = ConfigLoader.tree(of: TrainingConfig())
    /// Dotted key -> where its value came from (`configs/x.yaml line 7`, `--set optimizer.lr=fast`).
    var origins: [String: String] = [:]

    mutating func merge(yaml text: String, source: String) throws {
        let document: Node?
        do {
            document = try Yams.compose(yaml: text)
        } catch {
            throw syntaxError(error, what: "config file \(source)")
        }
        guard let document, !document.isNull else { return }  // an empty file changes nothing
        guard document.mapping != nil else {
            throw ConfigError(problem: "config file \(source) must be a mapping of sections, got \(render(document))",
                              location: Origin.file(source).location(of: document),
                              hint: "write it like 'optimizer: {lr: 0.001}'")
        }
        root = try merge(document, onto: root, path: [], origin: .file(source))
    }

    /// Applies one `section.key=value` override; the value is parsed as YAML (`[512, 512]` is a list).
    mutating func apply(override argument: String) throws {
        guard let equals = argument.firstIndex(of: "=") else {
            throw ConfigError(problem: "--set \(argument) has no '='",
                              hint: "write --set section.key=value, e.g. --set optimizer.lr=0.001")
        }
        let keyText = argument[..<equals].trimmingCharacters(in: .whitespaces)
        let valueText = String(argument[argument.index(after: equals)...])
        let path = keyText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !keyText.isEmpty, !path.contains(where: \.isEmpty) else {
            throw ConfigError(problem: "--set \(argument) has no valid key before '='",
                              hint: "write --set section.key=value, e.g. --set optimizer.lr=0.001")
        }
        let origin = Origin.override(argument)
        let value: Node
        do {
            value = try Yams.compose(yaml: valueText) ?? Node("", Tag(.null))
        } catch {
            throw syntaxError(error, what: "value of --set \(argument)", showLine: false)
        }
        // Check the key exists, section by section, so the error names the first unknown part.
        var node = root
        for (depth, name) in path.enumerated() {
            guard let mapping = node.mapping else {
                let parent = path[..<depth].joined(separator: ".")
                throw ConfigError(key: parent, problem: "config key '\(parent)' has no keys below it",
                                  location: origin.location(of: value),
                                  hint: "set it whole: --set \(parent)=VALUE")
            }
            guard let child = mapping.first(where: { $0.key.string == name })?.value else {
                throw unknownKey(Array(path[...depth]), location: origin.location(of: value))
            }
            node = child
        }
        root = try replace(in: root, at: path[...]) { current in
            try merge(value, onto: current, path: path, origin: origin)
        }
    }

    /// Decodes and validates the merged tree.
    func decode() throws -> TrainingConfig {
        var config: TrainingConfig
        do {
            config = try YAMLDecoder().decode(TrainingConfig.self, from: root)
        } catch let error as InvalidChoice {
            let key = dotted(error.codingPath)
            throw ConfigError(key: key,
                              problem: "config key '\(key)' expects one of \(error.choices.joined(separator: ", ")), "
                                  + "got \(valueText(at: error.codingPath))",
                              location: location(of: key))
        } catch let error as DecodingError {
            throw translate(error)
        }
        // views.preset fills the views keys the file and --set did not give.
        let givenViews = origins.keys.compactMap { key -> String? in
            guard key.hasPrefix("views.") else { return nil }
            return String(key.dropFirst("views.".count).prefix { $0 != "[" && $0 != "." })
        }
        config.views = config.views.resolvingPreset(given: Set(givenViews))
        // The text encoder's word table has a row per vocabulary line; the resolved size is what config.yaml
        // keeps, so a trained model rebuilds without the file.
        if (config.model.encoder == .bert || config.model.pairEncoder == .bert) && config.model.bert.vocabSize == 0 && !config.data.vocab.isEmpty {
            guard let text = try? String(contentsOfFile: config.data.vocab, encoding: .utf8) else {
                throw ConfigError(key: "data.vocab", problem: "config key 'data.vocab' is \(config.data.vocab), which cannot be read",
                                  location: location(of: "data.vocab"),
                                  hint: "give the path of a vocab.txt (one token a line), or set model.bert.vocab_size")
            }
            config.model.bert.vocabSize = text.split(separator: "\n", omittingEmptySubsequences: false).count
                - (text.hasSuffix("\n") ? 1 : 0)
        }
        do {
            try config.validate()
        } catch var error as ConfigError {
            if let key = error.key { error.location = location(of: key) }
            throw error
        }
        return config
    }

    // MARK: Merging

    /// Merges `user` onto `base`: mappings key by key (unknown keys are errors), anything else replaces whole.
    mutating func merge(_ user: Node, onto base: Node, path: [String], origin: Origin) throws -> Node {
        guard let baseMapping = base.mapping, let userMapping = user.mapping else {
            if base.mapping != nil && user.isNull { return base }  // `data:` with every key commented out
            origins[dotted(path)] = origin.location(of: user)
            return user
        }
        var pairs = Array(baseMapping.map { ($0.key, $0.value) })
        for (key, value) in userMapping {
            let name = key.string ?? ""
            guard let index = pairs.firstIndex(where: { $0.0.string == name }) else {
                throw unknownKey(path + [name], location: origin.location(of: key))
            }
            pairs[index].1 = try merge(value, onto: pairs[index].1, path: path + [name], origin: origin)
        }
        return Node(pairs)
    }

    /// Returns `node` with the subtree at `path` replaced by `transform` of it.
    func replace(in node: Node, at path: ArraySlice<String>, _ transform: (Node) throws -> Node) rethrows -> Node {
        guard let name = path.first, let mapping = node.mapping else { return try transform(node) }
        return Node(try mapping.map { key, value in
            (key, key.string == name ? try replace(in: value, at: path.dropFirst(), transform) : value)
        })
    }

    // MARK: Errors

    func unknownKey(_ path: [String], location: String) -> ConfigError {
        let key = path.joined(separator: ".")
        let name = path.last!
        let parentPath = Array(path.dropLast())
        let siblings = node(at: parentPath, in: defaults)?.mapping?.keys.compactMap(\.string) ?? []
        let allKeys = ConfigLoader.leafKeys() + (defaults.mapping?.keys.compactMap(\.string) ?? [])
        let near = siblings.map { (editDistance($0, name), $0) }.min { $0.0 < $1.0 }
        var hint: String
        if let near, near.0 <= max(2, name.count / 3) {
            hint = "did you mean '\(dotted(parentPath + [near.1]))'?"
        } else if let elsewhere = allKeys.first(where: { $0.split(separator: ".").last.map(String.init) == name }) {
            hint = "did you mean '\(elsewhere)'?"
        } else {
            let scope = parentPath.isEmpty ? "top-level keys" : "keys in '\(dotted(parentPath))'"
            hint = "known \(scope): \(siblings.joined(separator: ", "))"
        }
        if siblings.isEmpty { hint = "'\(dotted(parentPath))' has no keys below it" }
        return ConfigError(key: key, problem: "unknown config key '\(key)'", location: location, hint: hint)
    }

    func translate(_ error: DecodingError) -> ConfigError {
        switch error {
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            let path = context.codingPath.map(keyName)
            let key = dotted(path)
            return ConfigError(key: key,
                               problem: "config key '\(key)' expects \(expectation(at: path, type: type)), "
                                   + "got \(valueText(at: path))",
                               location: location(of: key))
        case .keyNotFound(let codingKey, let context):
            let key = dotted(context.codingPath.map(keyName) + [codingKey.stringValue])
            return ConfigError(key: key, problem: "config key '\(key)' is missing", location: location(of: key),
                               hint: "give it a value or delete the section around it to use the defaults")
        case .dataCorrupted(let context):
            let path = context.codingPath.map(keyName)
            let key = dotted(path)
            return ConfigError(key: key, problem: "config key '\(key)' has an invalid value \(valueText(at: path)): "
                                   + context.debugDescription, location: location(of: key))
        @unknown default:
            return ConfigError(problem: "config could not be decoded: \(error)")
        }
    }

    /// What the defaults say belongs at `path`: "a number", "a list of integers like [1024, 1024]", ...
    func expectation(at path: [String], type: Any.Type) -> String {
        let keyPath = path.filter { !$0.hasPrefix("[") }
        guard let expected = node(at: keyPath, in: defaults) else { return "a value of type \(type)" }
        let elementWanted = path.last?.hasPrefix("[") == true
        switch expected {
        case .mapping:
            return "a section of keys (\(expected.mapping!.keys.compactMap(\.string).joined(separator: ", ")))"
        case .sequence(let sequence) where !elementWanted:
            let element = switch sequence.first?.tagName {
            case .int: "integers"
            case .float: "numbers"
            default: "values"
            }
            return "a list of \(element) like \(render(expected))"
        case .sequence(let sequence):
            return sequence.first.map(scalarKind) ?? "a value"
        default:
            return scalarKind(expected)
        }
    }

    func scalarKind(_ node: Node) -> String {
        switch node.tagName {
        case .int: "an integer"
        case .float: "a number"
        case .bool: "true or false"
        default: "a string"
        }
    }

    /// The value found at `path` in the merged tree, as the user would recognise it.
    func valueText(at path: [String]) -> String {
        var node: Node? = root
        for name in path {
            if name.hasPrefix("["), let index = Int(name.dropFirst().dropLast()) {
                node = node?.sequence.flatMap { index < $0.count ? $0[index] : nil }
            } else {
                node = node?.mapping?.first(where: { $0.key.string == name })?.value
            }
        }
        return node.map(render) ?? "nothing"
    }

    /// Where the value of `key` (or the closest enclosing key that has a recorded origin) came from.
    func location(of key: String) -> String? {
        var candidate = key
        while true {
            if let origin = origins[candidate] { return origin }
            if let bracket = candidate.lastIndex(of: "[") {
                candidate = String(candidate[..<bracket])
            } else if let dot = candidate.lastIndex(of: ".") {
                candidate = String(candidate[..<dot])
            } else {
                return nil
            }
        }
    }
}

// MARK: Helpers

private func node(at path: [String], in root: Node) -> Node? {
    var node: Node? = root
    for name in path { node = node?.mapping?.first(where: { $0.key.string == name })?.value }
    return node
}

private func keyName(_ key: any CodingKey) -> String {
    key.intValue.map { "[\($0)]" } ?? key.stringValue
}

/// Joins path components into a dotted key; list indices attach without a dot (`views.crop_area[1]`).
private func dotted(_ path: [String]) -> String {
    path.reduce("") { key, name in
        key.isEmpty || name.hasPrefix("[") ? key + name : key + "." + name
    }
}

/// A node as the user would write it: numbers bare, strings quoted, lists and sections in flow style.
func render(_ node: Node) -> String {
    switch node {
    case .scalar(let scalar):
        switch node.tagName {
        case .null: return "nothing"
        case .int, .float, .bool: return scalar.string  // quoted scalars resolve to strings
        default: return "\"\(scalar.string)\""
        }
    case .sequence(let sequence):
        return "[" + sequence.map(render).joined(separator: ", ") + "]"
    case .mapping(let mapping):
        return "{" + mapping.map { "\($0.key.string ?? ""): \(render($0.value))" }.joined(separator: ", ") + "}"
    case .alias:
        return "an alias"
    }
}

private func syntaxError(_ error: any Error, what: String, showLine: Bool = true) -> ConfigError {
    guard let yamlError = error as? YamlError else {
        return ConfigError(problem: "\(what) is not valid YAML: \(error)")
    }
    let place: (problem: String, mark: Mark?) = switch yamlError {
    case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
         .composer(_, let problem, let mark, _):
        (problem, mark)
    case .duplicatedKeysInMapping(let duplicates, let context):
        ("duplicate key \(duplicates.joined(separator: ", "))", context.mark)
    case .reader(let problem, _, _, _):
        (problem, nil)
    default:
        ("\(yamlError)", nil)
    }
    let location = showLine ? place.mark.map { "line \($0.line), column \($0.column)" } : nil
    return ConfigError(problem: "\(what) is not valid YAML: \(place.problem)", location: location,
                       hint: "fix the YAML syntax there")
}

/// Levenshtein distance, for "did you mean" suggestions.
private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var previous = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...max(b.count, 1) where !b.isEmpty {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}

private extension Node {
    /// The resolved tag's name (`Tag.name` itself is internal to Yams).
    var tagName: Tag.Name { Tag.Name(rawValue: tag.rawValue) }

    var isNull: Bool { if case .scalar = self { tagName == .null } else { false } }
}
