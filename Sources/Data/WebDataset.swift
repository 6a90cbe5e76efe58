import Foundation
import Storage

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

/// One sample as `prepare webdataset` stores it: its key, its image (the encoded bytes, or its
/// C x S x S decoded sample), its caption and label when it has them.
public struct WebDatasetSample: Sendable {
    public var key: String
    public var image: [UInt8]
    public var caption: String?
    public var label: Int64?
}

/// What is done with a sample's image: its first bytes checked (a JPEG or PNG signature),
/// decoded as well (a file that does not decode is a bad sample), or decoded to its sample.
enum WebDatasetImage {
    case signature
    case decodes(ImageDecodeSpec)
    case pixels(ImageDecodeSpec)
}

extension WebDataset {
    /// One group's image (encoded, or decoded with `.pixels`), caption and label, or what is
    /// wrong with it (`DataError.webDatasetInvalid`).
    static func sample(_ group: WebDatasetGroup, in bytes: UnsafeRawBufferPointer, shard: String, captionField: String?,
                       image work: WebDatasetImage) throws -> WebDatasetSample {
        func fail(_ problem: String) -> DataError { .webDatasetInvalid(path: shard, problem: problem) }
        func content(_ member: TarMember) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: bytes[member.offset ..< member.offset + member.size])
        }
        guard let imageExtension = imageExtensions.first(where: { group.members[$0] != nil }) else {
            throw fail("key \(group.key) has no image (.jpg, .jpeg or .png), only \(group.paths.joined(separator: ", "))")
        }
        let image = try storedImage(content(group.members[imageExtension]!), path: group.members[imageExtension]!.path, work, fail)
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
        return WebDatasetSample(key: group.key, image: image, caption: caption, label: label)
    }

    /// The image checked to start as a JPEG (FF D8 FF) or PNG file does: its encoded bytes, once
    /// they are seen to decode with `.decodes` (so training never meets an image it cannot
    /// decode), or its decoded C x S x S sample with `.pixels`. Decoding is the only step that
    /// can fail (converting and fitting cannot), so `.decodes` does only that.
    static func storedImage(_ bytes: UnsafeRawBufferPointer, path: String, _ work: WebDatasetImage,
                            _ fail: (String) -> DataError) throws -> [UInt8] {
        let isJPEG = bytes.starts(with: [0xFF, 0xD8, 0xFF])
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        guard isJPEG || isPNG else { throw fail("\(path) is neither a JPEG nor a PNG file (its first bytes)") }
        let encoded = Array(bytes)
        do {
            switch work {
            case .signature: return encoded
            case .decodes: _ = try ImageDecoding.decode(encoded); return encoded
            case .pixels(let decode): return try decode.sample(encoded)
            }
        } catch { throw fail("\(path) does not decode (\(error))") }
    }

    /// A shard's bytes (mapped, not read: they are not the process's memory), or the error
    /// naming it: missing or unreadable.
    static func withShard<T>(_ shard: String, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        guard FileManager.default.fileExists(atPath: shard) else {
            throw DataError.webDatasetInvalid(path: shard, problem: "not found; check the pattern (its {a..b} range) and the folder")
        }
        let contents: Foundation.Data
        do { contents = try Foundation.Data(contentsOf: URL(fileURLWithPath: shard), options: .alwaysMapped) } catch {
            throw DataError.webDatasetInvalid(path: shard, problem: "cannot be read (\(error.localizedDescription))")
        }
        return try contents.withUnsafeBytes { try body($0) }
    }
}

/// The first of `prepare webdataset`'s two passes over the shards: which samples are kept and
/// whether they have a caption and a label, one byte a sample (webdataset group), with the
/// counted bad samples; no image, caption or key is held. The second pass (`samples`) reads
/// the shards again and makes the kept samples, one at a time, for the shards to be written as
/// they fill.
public struct WebDatasetScan: Sendable {
    static let kept: UInt8 = 1, caption: UInt8 = 2, label: UInt8 = 4

    /// The shards read, in order.
    public private(set) var shards: [String] = []
    /// Per shard, the index in `status` of its first group (and one past the last shard's).
    private var firstGroups: [Int] = [0]
    /// Per shard, the CRC-32 of its bytes: a shard that changes between the passes stops the second.
    private var checksums: [UInt32] = []
    /// Per group of every shard, in shard then tar order: 0 refused, else `kept` | `caption` | `label`.
    private var status: [UInt8] = []
    /// The keys of the first few kept samples without a caption and of those without a label,
    /// by group: the ones `requireSameFields` may name.
    private var names: [Int: String] = [:]
    private var withoutCaption = 0, withoutLabel = 0
    /// The samples kept.
    public private(set) var count = 0
    /// Whether any kept sample has a caption, a label (after `requireSameFields`: every one).
    public private(set) var hasCaptions = false, hasLabels = false
    public private(set) var badCount = 0
    /// The first few refused samples: "SHARD: problem".
    public private(set) var badExamples: [String] = []
    public private(set) var sourceBytes = 0

    /// Nothing read yet (`read` adds a shard).
    public init() {}

    /// Reads the shards in order, each sample's members in tar order.
    /// - Parameters:
    ///   - captionField: take the caption from this key of the sample's .json member instead of its .txt.
    ///   - decode: with it, each image is checked to decode (one that does not is a bad sample).
    ///   - strict: stop at the first bad sample instead of counting it.
    /// - Throws: `DataError.webDatasetInvalid` for a missing, unreadable, damaged or truncated
    ///   shard (always: its samples cannot be trusted), a bad sample under `strict`.
    public init(shards: [String], captionField: String? = nil, decode: ImageDecodeSpec? = nil, strict: Bool = false) throws {
        for shard in shards {
            try WebDataset.withShard(shard) { bytes in
                sourceBytes += bytes.count
                try read(bytes, shard: shard, captionField: captionField, decode: decode, strict: strict)
            }
        }
    }

    /// Reads one shard held in memory (the fuzz target's entry).
    public mutating func read(_ bytes: UnsafeRawBufferPointer, shard: String, captionField: String?, decode: ImageDecodeSpec? = nil,
                              strict: Bool) throws {
        let members = try TarArchive.members(bytes, path: shard)
        let work: WebDatasetImage = decode.map { .decodes($0) } ?? .signature
        for (group, problem) in WebDataset.groups(members) {
            var flags: UInt8 = 0
            do {
                if let problem { throw DataError.webDatasetInvalid(path: shard, problem: problem) }
                let sample = try WebDataset.sample(group, in: bytes, shard: shard, captionField: captionField, image: work)
                flags = Self.kept | (sample.caption == nil ? 0 : Self.caption) | (sample.label == nil ? 0 : Self.label)
                hasCaptions = hasCaptions || sample.caption != nil
                hasLabels = hasLabels || sample.label != nil
                count += 1
                var named = false
                if sample.caption == nil && withoutCaption < TextRows.namedBadRows { withoutCaption += 1; named = true }
                if sample.label == nil && withoutLabel < TextRows.namedBadRows { withoutLabel += 1; named = true }
                if named { names[status.count] = group.key }
            } catch DataError.webDatasetInvalid(_, let problem) {
                try refuse(shard, problem, strict: strict)
            }
            status.append(flags)
        }
        shards.append(shard)
        checksums.append(CRC32.checksum(bytes))
        firstGroups.append(status.count)
    }

    mutating func refuse(_ shard: String, _ problem: String, strict: Bool) throws {
        if strict { throw DataError.webDatasetInvalid(path: shard, problem: problem + " (--strict stops at the first bad sample)") }
        badCount += 1
        if badExamples.count < TextRows.namedBadRows { badExamples.append("\(shard): \(problem)") }
    }

    /// Captions and labels must be all or nothing: a sample without one while others have it is
    /// refused (counted, or the error under `strict`), so every kept sample has the same fields.
    /// (The first few refused are among the first few without a caption and the first few
    /// without a label, whose keys `read` kept: the ones a message names.)
    public mutating func requireSameFields(strict: Bool) throws {
        defer { names = [:] }
        guard hasCaptions || hasLabels else { return }
        for group in status.indices where status[group] != 0 {
            var problem: String?
            let key = names[group] ?? "(sample \(group))"
            if hasCaptions && status[group] & Self.caption == 0 { problem = "key \(key) has no caption while others have one" }
            if hasLabels && status[group] & Self.label == 0 { problem = "key \(key) has no .cls label while others have one" }
            if let problem {
                try refuse("(all shards)", problem, strict: strict)
                status[group] = 0
                count -= 1
            }
        }
    }

    /// The named fields: `image` bytes (`jpeg`; with its `decode` size when given), `key` text,
    /// `caption` text when the samples have captions.
    public func fields(store: ImageStore, decode: ImageDecodeSpec?) -> [NamedField] {
        (store == .jpeg ? [NamedField(name: ShardManifest.encodedImageField, dtype: .bytes, decode: decode)] : [])
            + [NamedField(name: "key", dtype: .utf8)]
            + (hasCaptions ? [NamedField(name: "caption", dtype: .utf8)] : [])
    }

    /// The second pass over shard `index` (its `bytes`, read again): its kept samples in order,
    /// each handed to `body` as it is made: the image as `store` keeps it (`pixels` decodes it
    /// with `decode`). The shard must be the bytes the first pass read (its CRC-32): one that
    /// changed stops, naming it.
    public func samples(_ bytes: UnsafeRawBufferPointer, shard index: Int, captionField: String?, store: ImageStore,
                        decode: ImageDecodeSpec? = nil, _ body: (WebDatasetSample) throws -> Void) throws {
        precondition(store == .jpeg || decode != nil, "WebDatasetScan.samples: the pixels store needs a decoded size")
        let shard = shards[index], first = firstGroups[index]
        func changed(_ what: String) -> DataError {
            .webDatasetInvalid(path: shard, problem: "changed while preparing (read again, \(what)); prepare again once it stays as it is")
        }
        guard CRC32.checksum(bytes) == checksums[index] else { throw changed("its bytes differ") }
        let groups = WebDataset.groups(try TarArchive.members(bytes, path: shard))
        guard groups.count == firstGroups[index + 1] - first else { throw changed("it has \(groups.count) samples, not \(firstGroups[index + 1] - first)") }
        let work: WebDatasetImage = store == .pixels ? .pixels(decode!) : .signature
        for (offset, (group, _)) in groups.enumerated() where status[first + offset] != 0 {
            let sample: WebDatasetSample
            do { sample = try WebDataset.sample(group, in: bytes, shard: shard, captionField: captionField, image: work) } catch {
                throw changed("key \(group.key) is bad: \(error)")
            }
            guard (sample.caption != nil) == hasCaptions && (sample.label != nil) == hasLabels else {
                throw changed("key \(group.key) has other fields")
            }
            try body(sample)
        }
    }
}

/// The samples of one shard being filled by the second pass.
struct WebDatasetShardBuffer {
    var keys: [String] = []
    var images = VariableValues()
    var captions: [String] = []
    var labels: [Int64] = []

    var count: Int { keys.count }

    mutating func append(_ sample: WebDatasetSample) {
        keys.append(sample.key)
        images.append(sample.image)
        if let caption = sample.caption { captions.append(caption) }
        if let label = sample.label { labels.append(label) }
    }

    /// The samples as one block: the images as the `image` field (`jpeg`) or as uint8 features
    /// (`pixels`, each value one C x S x S sample).
    func block(store: ImageStore, captions hasCaptions: Bool, labels hasLabels: Bool) -> SampleBlock {
        var values: [String: FieldValues] = ["key": .variable(VariableValues(strings: keys))]
        if store == .jpeg { values[ShardManifest.encodedImageField] = .variable(images) }
        if hasCaptions { values["caption"] = .variable(VariableValues(strings: captions)) }
        return SampleBlock(count: count, features: store == .pixels ? .uint8(images.bytes) : nil, labels: hasLabels ? labels : nil,
                           fields: values)
    }
}

extension DatasetPreparation {
    /// webdataset tar shards (`pattern` brace-expanded: `DIR/shard-{000000..000099}.tar`) into
    /// `out`: per sample the image (`store`), its key, its caption (.txt, or a .json field) and
    /// its label (.cls) when the shards have them, in tar order then shard order. A shard that
    /// is missing, damaged or truncated stops it; a bad sample (no image, a key seen twice, a
    /// non-numeric .cls, a caption that is not UTF-8) is skipped and counted (`strict` stops).
    ///
    /// Two passes: the first (`WebDatasetScan`) reads the shards and keeps a byte a sample, so
    /// the sample count, the shard boundaries, the test split, the skips and the notes are known
    /// before anything is written; the second reads the shards again and writes each output
    /// shard as it fills (`ShardSink`), in the temporary folder `placing` renames at the end. So
    /// memory is an output shard or two (one per split), not the data set, and the files are
    /// the bytes `ShardedDatasetWriter.write` wrote from all the samples held at once.
    public static func webDataset(pattern: String, captionField: String? = nil, store: ImageStore = .jpeg, decode: ImageDecodeSpec? = nil,
                                  strict: Bool = false,
                                  testFraction: (fraction: Double, seed: UInt64)? = nil, out: String, layout: ShardLayout,
                                  overwrite: Bool = false) throws -> [PrepareSummary] {
        precondition(store == .jpeg || decode != nil, "webDataset: the pixels store needs a decoded size")
        try checkOutput(out, overwrite: overwrite)
        let shards = try BraceExpansion.expand(pattern)
        var first = try WebDatasetScan(shards: shards, captionField: captionField, decode: decode, strict: strict)
        try first.requireSameFields(strict: strict)
        let scan = first
        guard scan.count > 0 else {
            throw DataError.webDatasetInvalid(path: pattern, problem: "no usable samples in \(shards.count) shard\(shards.count == 1 ? "" : "s") "
                                              + "(\(scan.badCount) bad)" + (scan.badExamples.first.map { "; the first: \($0)" } ?? ""))
        }
        let shape = decode.map { "\($0.channels) x \($0.size) x \($0.size)" } ?? ""
        let stored = store == .pixels ? "pixels (uint8 [\(shape)] features)"
            : "jpeg (encoded bytes, field image" + (decode == nil ? "; no --size: not trainable as it is)" : ", decoded to \(shape) when training)")
        var notes = ["\(shards.count) tar shard\(shards.count == 1 ? "" : "s"); images stored as \(stored)"]
        if scan.badCount > 0 {
            let more = scan.badCount > scan.badExamples.count ? " (the first \(scan.badExamples.count) below)" : ""
            notes += ["\(scan.badCount) bad sample\(scan.badCount == 1 ? "" : "s") skipped\(more); --strict stops at the first"]
                + scan.badExamples
        }
        let fields = scan.fields(store: store, decode: decode)
        let featureShape = store == .pixels ? decode!.layout.shape : nil

        // The splits' shard ranges, known before anything is written: one set, or train and test
        // (the rows `prepare npy --test-fraction` draws; test gets at most as many shards as samples).
        var isTest: [Bool]?
        let ranges: [[Range<Int>]], sourceBytes: [Int]
        if let testFraction {
            let split = try testSplit(sampleCount: scan.count, fraction: testFraction.fraction, seed: testFraction.seed)
            let testBytes = Int((Double(scan.sourceBytes) * Double(split.test.count) / Double(scan.count)).rounded())
            var testLayout = layout
            if case .count(let shards) = layout { testLayout = .count(min(shards, split.test.count)) }
            ranges = [try layout.ranges(sampleCount: split.train.count), try testLayout.ranges(sampleCount: split.test.count)]
            sourceBytes = [scan.sourceBytes - testBytes, testBytes]
            var test = [Bool](repeating: false, count: scan.count)
            for row in split.test { test[row] = true }
            isTest = test
        } else {
            ranges = [try layout.ranges(sampleCount: scan.count)]
            sourceBytes = [scan.sourceBytes]
        }
        return try placing(out) { staging in
            let folders = isTest == nil ? [(staging, out)] : [(staging + "/train", out + "/train"), (staging + "/test", out + "/test")]
            let sinks = try folders.map { try ShardSink(directory: $0.0) }
            var buffers = folders.map { _ in WebDatasetShardBuffer() }
            var written = folders.map { _ in 0 }
            var row = 0
            for index in shards.indices {
                try WebDataset.withShard(shards[index]) { bytes in
                    try scan.samples(bytes, shard: index, captionField: captionField, store: store, decode: decode) { sample in
                        let split = isTest?[row] == true ? 1 : 0
                        row += 1
                        buffers[split].append(sample)
                        guard buffers[split].count == ranges[split][written[split]].count else { return }
                        let block = buffers[split].block(store: store, captions: scan.hasCaptions, labels: scan.hasLabels)
                        buffers[split] = WebDatasetShardBuffer()
                        try sinks[split].append(try ShardedDatasetWriter.encode(block, featureShape: featureShape, fields: fields))
                        written[split] += 1
                    }
                }
            }
            precondition(row == scan.count && written == ranges.map(\.count), "webDataset: the second pass made other samples")
            return try folders.indices.map { split in
                let manifest = try sinks[split].finish(featureShape: featureShape, labels: scan.hasLabels, fields: fields)
                return PrepareSummary(directory: folders[split].1, sampleCount: manifest.sampleCount, shardCount: manifest.shards.count,
                                      preparedBytes: manifest.totalShardBytes + (try fileSize(folders[split].0 + "/" + ShardManifest.fileName)),
                                      sourceBytes: sourceBytes[split], notes: split == 0 ? notes : [])
            }
        }
    }
}
