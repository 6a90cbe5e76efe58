import Foundation

/// How `prepare webdataset` and `prepare images` store each sample's image.
public enum ImageStore: String, Sendable, CaseIterable {
    /// The encoded file's bytes as they are (JPEG or PNG), field `image` (bytes), with the size to
    /// decode them to recorded (`NamedField.decode`): the smallest shards; training decodes each
    /// image on the fly, in the prefetch threads.
    case jpeg
    /// Decoded at prepare time (`ImageDecoding.sample`) into uint8 [C, S, S] features: larger
    /// shards, no decoding when training.
    case pixels
}

/// One sample of a webdataset shard: the members that share a key, by extension.
public struct WebDatasetGroup: Sendable {
    /// The member path up to the first dot of its base name, with its folder ("shard3/000042").
    public var key: String
    /// Member by extension (lower-cased, everything after the first dot: "jpg", "seg.png").
    public var members: [String: TarMember]
    /// The members' paths, for messages.
    public var paths: [String]
}

/// webdataset's grouping of tar members into samples, and what contrast takes from each.
public enum WebDataset {
    /// Image extensions, in the order one is picked when a sample has several.
    public static let imageExtensions = ["jpg", "jpeg", "png"]

    /// (key, extension) as webdataset's `base_plus_ext` splits a member path: the extension
    /// starts at the first dot of the base name and is lower-cased; nil for a base name without
    /// a dot or starting with one (webdataset skips those members).
    public static func keyAndExtension(_ path: String) -> (key: String, extension: String)? {
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        let base = path[slash...]
        guard let dot = base.firstIndex(of: "."), dot > base.startIndex else { return nil }
        return (String(path[..<dot]), String(path[path.index(after: dot)...]).lowercased())
    }

    /// Members grouped as webdataset groups them: consecutive members with the same key make a
    /// sample. Top-level `__...__` members (webdataset's metadata) and names without an
    /// extension are passed over. Problems webdataset would raise on or silently mishandle are
    /// returned with the group, not thrown: two members of one key with the same extension, and
    /// a key that comes back after other keys (webdataset would make it a second sample).
    public static func groups(_ members: [TarMember]) -> [(group: WebDatasetGroup, problem: String?)] {
        var result: [(WebDatasetGroup, String?)] = []
        var seen = Set<String>()
        var current: WebDatasetGroup?, problem: String?
        func finish() {
            if let current { result.append((current, problem)) }
            current = nil
            problem = nil
        }
        for member in members {
            if !member.path.contains("/") && member.path.hasPrefix("__") && member.path.hasSuffix("__") { continue }
            guard let (key, ext) = keyAndExtension(member.path) else { continue }
            if current?.key != key {
                finish()
                current = WebDatasetGroup(key: key, members: [:], paths: [])
                if !seen.insert(key).inserted {
                    problem = "key \(key) appears again after other keys (member \(member.path)); keys must be unique and their members adjacent"
                }
            }
            if current!.members[ext] != nil && problem == nil {
                problem = "key \(key) has two .\(ext) members (\(member.path))"
            }
            current!.members[ext] = current!.members[ext] ?? member
            current!.paths.append(member.path)
        }
        finish()
        return result
    }
}

/// The samples read from webdataset shards, before they are written.
public struct WebDatasetSamples: Sendable {
    public var keys: [String] = []
    /// Each sample's image: the encoded bytes (`jpeg`), or its C x S x S decoded sample (`pixels`).
    public var images = VariableValues()
    public var captions: [String?] = []
    public var labels: [Int64?] = []
    public var badCount = 0
    /// The first few refused samples: "SHARD: problem".
    public var badExamples: [String] = []
    public var sourceBytes = 0

    public var count: Int { keys.count }

    /// No samples yet (`read` adds a shard's).
    public init() {}

    /// Reads the shards in order, each sample's members in tar order.
    /// - Parameters:
    ///   - captionField: take the caption from this key of the sample's .json member instead of its .txt.
    ///   - strict: stop at the first bad sample instead of counting it.
    /// - Throws: `DataError.webDatasetInvalid` for a missing, unreadable, damaged or truncated
    ///   shard (always: its samples cannot be trusted), a bad sample under `strict`.
    ///   - decode: the decoded size: the samples of `pixels`; with `jpeg`, checked to decode (a
    ///     file that does not is a bad sample) and recorded for training. Needed by `pixels`.
    public init(shards: [String], captionField: String? = nil, store: ImageStore = .jpeg, decode: ImageDecodeSpec? = nil,
                strict: Bool = false) throws {
        precondition(store == .jpeg || decode != nil, "WebDatasetSamples: the pixels store needs a decoded size")
        for shard in shards {
            guard FileManager.default.fileExists(atPath: shard) else {
                throw DataError.webDatasetInvalid(path: shard, problem: "not found; check the pattern (its {a..b} range) and the folder")
            }
            let contents: Foundation.Data
            do { contents = try Foundation.Data(contentsOf: URL(fileURLWithPath: shard), options: .alwaysMapped) } catch {
                throw DataError.webDatasetInvalid(path: shard, problem: "cannot be read (\(error.localizedDescription))")
            }
            sourceBytes += contents.count
            try contents.withUnsafeBytes { bytes in
                try read(bytes, shard: shard, captionField: captionField, store: store, decode: decode, strict: strict)
            }
        }
    }

    /// Reads one shard held in memory (the fuzz target's entry).
    public mutating func read(_ bytes: UnsafeRawBufferPointer, shard: String, captionField: String?, store: ImageStore,
                              decode: ImageDecodeSpec? = nil, strict: Bool) throws {
        let members = try TarArchive.members(bytes, path: shard)
        for (group, problem) in WebDataset.groups(members) {
            do {
                if let problem { throw DataError.webDatasetInvalid(path: shard, problem: problem) }
                let sample = try Self.sample(group, in: bytes, shard: shard, captionField: captionField, store: store, decode: decode)
                keys.append(group.key)
                images.append(sample.image)
                captions.append(sample.caption)
                labels.append(sample.label)
            } catch DataError.webDatasetInvalid(_, let problem) {
                try refuse(shard, problem, strict: strict)
            }
        }
    }

    mutating func refuse(_ shard: String, _ problem: String, strict: Bool) throws {
        if strict { throw DataError.webDatasetInvalid(path: shard, problem: problem + " (--strict stops at the first bad sample)") }
        badCount += 1
        if badExamples.count < TextRows.namedBadRows { badExamples.append("\(shard): \(problem)") }
    }

    /// One group's image, caption and label, or what is wrong with it.
    static func sample(_ group: WebDatasetGroup, in bytes: UnsafeRawBufferPointer, shard: String, captionField: String?,
                       store: ImageStore, decode: ImageDecodeSpec? = nil) throws -> (image: [UInt8], caption: String?, label: Int64?) {
        func fail(_ problem: String) -> DataError { .webDatasetInvalid(path: shard, problem: problem) }
        func content(_ member: TarMember) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: bytes[member.offset ..< member.offset + member.size])
        }
        guard let imageExtension = WebDataset.imageExtensions.first(where: { group.members[$0] != nil }) else {
            throw fail("key \(group.key) has no image (.jpg, .jpeg or .png), only \(group.paths.joined(separator: ", "))")
        }
        let image = try storedImage(content(group.members[imageExtension]!), path: group.members[imageExtension]!.path, store: store,
                                    decode: decode, fail)
        var label: Int64?
        if let member = group.members["cls"] {
            let text = String(decoding: content(member), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let value = Int64(text), text.allSatisfy({ $0.isASCII }) else {
                throw fail("\(member.path) holds \"\(text.prefix(20))\", not an integer class label")
            }
            label = value
        }
        var caption: String?
        if let captionField {
            if let member = group.members["json"] {
                guard let object = try? JSONSerialization.jsonObject(with: Foundation.Data(content(member))) as? [String: Any] else {
                    throw fail("\(member.path) is not a JSON object")
                }
                guard let text = object[captionField] as? String else {
                    throw fail("\(member.path) has no string '\(captionField)' (--caption-field)")
                }
                guard !text.allSatisfy(\.isWhitespace) else { throw fail("\(member.path)'s '\(captionField)' is empty") }
                caption = text.precomposedStringWithCanonicalMapping
            }
        } else if let member = group.members["txt"] {
            guard let text = String(validating: content(member), as: UTF8.self) else { throw fail("\(member.path) is not valid UTF-8") }
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else { throw fail("\(member.path) is empty") }
            caption = trimmed.precomposedStringWithCanonicalMapping
        }
        return (image, caption, label)
    }

    /// The image as the store keeps it, checked to start as a JPEG (FF D8 FF) or PNG file does.
    /// `jpeg` keeps the encoded bytes (with `decode`, once they are seen to decode, so training
    /// never meets an image it cannot decode); `pixels` the decoded C x S x S sample.
    static func storedImage(_ bytes: UnsafeRawBufferPointer, path: String, store: ImageStore, decode: ImageDecodeSpec? = nil,
                            _ fail: (String) -> DataError) throws -> [UInt8] {
        let isJPEG = bytes.starts(with: [0xFF, 0xD8, 0xFF])
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        guard isJPEG || isPNG else { throw fail("\(path) is neither a JPEG nor a PNG file (its first bytes)") }
        let encoded = Array(bytes)
        guard let decode else { return encoded }
        let sample: [UInt8]
        do { sample = try decode.sample(encoded) } catch { throw fail("\(path) does not decode (\(error))") }
        return store == .jpeg ? encoded : sample
    }

    /// Captions and labels must be all or nothing: a sample without one while others have it is
    /// refused (counted, or the error under `strict`), so every kept sample has the same fields.
    public mutating func requireSameFields(strict: Bool) throws {
        let withCaption = captions.contains { $0 != nil }, withLabel = labels.contains { $0 != nil }
        var keep: [Int] = []
        for index in 0..<count {
            var problem: String?
            if withCaption && captions[index] == nil { problem = "key \(keys[index]) has no caption while others have one" }
            if withLabel && labels[index] == nil { problem = "key \(keys[index]) has no .cls label while others have one" }
            if let problem { try refuse("(all shards)", problem, strict: strict) } else { keep.append(index) }
        }
        guard keep.count < count else { return }
        let images = self.images
        keys = keep.map { keys[$0] }
        captions = keep.map { captions[$0] }
        labels = keep.map { labels[$0] }
        self.images = VariableValues(keep.map { Array(images[$0]) })
    }

    /// The named fields: `image` bytes (`jpeg`; with its `decode` size when given), `key` text,
    /// `caption` text when the samples have captions.
    public func fields(store: ImageStore, decode: ImageDecodeSpec?) -> [NamedField] {
        (store == .jpeg ? [NamedField(name: ShardManifest.encodedImageField, dtype: .bytes, decode: decode)] : [])
            + [NamedField(name: "key", dtype: .utf8)]
            + (captions.first.flatMap { $0 } == nil ? [] : [NamedField(name: "caption", dtype: .utf8)])
    }

    /// All samples as one block (call `requireSameFields` first): the images as the `image`
    /// field (`jpeg`) or as uint8 features (`pixels`, each value one C x S x S sample).
    public func block(store: ImageStore) -> SampleBlock {
        var values: [String: FieldValues] = ["key": .variable(VariableValues(strings: keys))]
        if store == .jpeg { values[ShardManifest.encodedImageField] = .variable(images) }
        if captions.first.flatMap({ $0 }) != nil { values["caption"] = .variable(VariableValues(strings: captions.map { $0! })) }
        let hasLabels = labels.first.flatMap { $0 } != nil
        return SampleBlock(count: count, features: store == .pixels ? .uint8(images.bytes) : nil,
                           labels: hasLabels ? labels.map { $0! } : nil, fields: values)
    }
}

extension DatasetPreparation {
    /// webdataset tar shards (`pattern` brace-expanded: `DIR/shard-{000000..000099}.tar`) into
    /// `out`: per sample the image (`store`), its key, its caption (.txt, or a .json field) and
    /// its label (.cls) when the shards have them, in tar order then shard order. A shard that
    /// is missing, damaged or truncated stops it; a bad sample (no image, a key seen twice, a
    /// non-numeric .cls, a caption that is not UTF-8) is skipped and counted (`strict` stops).
    public static func webDataset(pattern: String, captionField: String? = nil, store: ImageStore = .jpeg, decode: ImageDecodeSpec? = nil,
                                  strict: Bool = false,
                                  testFraction: (fraction: Double, seed: UInt64)? = nil, out: String, layout: ShardLayout,
                                  overwrite: Bool = false) throws -> [PrepareSummary] {
        precondition(store == .jpeg || decode != nil, "webDataset: the pixels store needs a decoded size")
        try checkOutput(out, overwrite: overwrite)
        let shards = try BraceExpansion.expand(pattern)
        var samples = try WebDatasetSamples(shards: shards, captionField: captionField, store: store, decode: decode, strict: strict)
        try samples.requireSameFields(strict: strict)
        guard samples.count > 0 else {
            throw DataError.webDatasetInvalid(path: pattern, problem: "no usable samples in \(shards.count) shard\(shards.count == 1 ? "" : "s") "
                                              + "(\(samples.badCount) bad)" + (samples.badExamples.first.map { "; the first: \($0)" } ?? ""))
        }
        let shape = decode.map { "\($0.channels) x \($0.size) x \($0.size)" } ?? ""
        let stored = store == .pixels ? "pixels (uint8 [\(shape)] features)"
            : "jpeg (encoded bytes, field image" + (decode == nil ? "; no --size: not trainable as it is)" : ", decoded to \(shape) when training)")
        var notes = ["\(shards.count) tar shard\(shards.count == 1 ? "" : "s"); images stored as \(stored)"]
        if samples.badCount > 0 {
            let more = samples.badCount > samples.badExamples.count ? " (the first \(samples.badExamples.count) below)" : ""
            notes += ["\(samples.badCount) bad sample\(samples.badCount == 1 ? "" : "s") skipped\(more); --strict stops at the first"]
                + samples.badExamples
        }
        let block = samples.block(store: store), fields = samples.fields(store: store, decode: decode)
        let featureShape = store == .pixels ? decode!.layout.shape : nil
        guard let testFraction else {
            _ = try layout.ranges(sampleCount: block.count)
            return [try placing(out) { staging in
                try writeSplit(block, featureShape: featureShape, fields: fields, classes: nil, to: staging, named: out, layout: layout,
                               sourceBytes: samples.sourceBytes, notes: notes)
            }]
        }
        let split = try testSplit(sampleCount: block.count, fraction: testFraction.fraction, seed: testFraction.seed)
        let testBytes = Int((Double(samples.sourceBytes) * Double(split.test.count) / Double(block.count)).rounded())
        let width = featureShape?.reduce(1, *) ?? 0
        return try placingSplits(train: block.rows(split.train, featureWidth: width),
                                 test: block.rows(split.test, featureWidth: width), featureShape: featureShape, fields: fields,
                                 classes: nil, out: out, layout: layout, sourceBytes: (samples.sourceBytes - testBytes, testBytes), notes: notes)
    }
}
