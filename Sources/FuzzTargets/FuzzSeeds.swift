import Checkpoint
import Data
import Distributed
import Foundation

/// Small valid inputs for every target, made by contrast's own writers: the synthetic half of
/// the seed corpus (launch/fuzz-seeds.sh adds files from a real `contrast prepare` and training run).
public enum FuzzSeeds {
    /// Writes `directory`/TARGET/NAME for every target.
    public static func write(to directory: String) throws {
        let scratch = try FuzzWorkspace()
        func save(_ target: FuzzTarget, _ name: String, _ bytes: [UInt8]) throws {
            let folder = directory + "/" + target.rawValue
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: folder + "/" + name, contents: Foundation.Data(bytes)) else {
                throw DataError.writeFailed(path: folder + "/" + name, reason: "cannot create the file")
            }
        }
        func read(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Foundation.Data()) }

        // Checkpoints: a few buffers (one empty, one of a single element), shuffled and plain.
        for shuffle in [true, false] {
            scratch.clear()
            let counts = [("parameters", 37), ("adam.m", 37), ("temperature", 1), ("empty", 0)]
            let storage = counts.map { name, count in
                let pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
                for index in 0..<count { pointer[index] = Float(index % 7) * 0.125 - Float(name.count) }
                return pointer
            }
            defer { storage.forEach { $0.deallocate() } }
            let buffers = zip(counts, storage).map { CheckpointBuffer(name: $0.0, pointer: $1, count: $0.1) }
            let run = URL(fileURLWithPath: scratch.directory + "/run")
            let checkpoint = try CheckpointStore.save(runDirectory: run, step: 12, buffers: buffers,
                                                      state: Foundation.Data(#"{"epoch":1,"rng":18446744073709551557}"#.utf8),
                                                      communicator: SingleProcessCommunicator(),
                                                      settings: CheckpointSettings(level: 3, shuffle: shuffle))
            let manifest = read(checkpoint.appendingPathComponent(CheckpointStore.manifestName).path)
            let shard = read(checkpoint.appendingPathComponent("shard-0-of-1.bin").path)
            let name = shuffle ? "writer-shuffled" : "writer-plain"
            try save(.checkpointManifest, name + ".json", manifest)
            try save(.checkpoint, name, FuzzContainer.join([manifest, shard]))
            try? FileManager.default.removeItem(at: run)
        }

        // Data sets: uint8 images with labels in two shards; float32 features with labels and pairs.
        let sets: [(String, SampleBlock, [Int], [Int]?)] = [
            ("writer-uint8", SampleBlock(count: 5, features: .uint8((0..<(5 * 6)).map { UInt8($0 * 9 % 256) }),
                                         labels: [0, 1, 2, 1, 0]), [2, 3], nil),
            ("writer-float32-pairs", SampleBlock(count: 3, features: .float32((0..<(3 * 4)).map { Float($0) / 3 }),
                                                 labels: [7, -1, 3], pairs: (0..<(3 * 2)).map { Float($0) - 2.5 }), [4], [2]),
        ]
        for (name, block, shape, pairShape) in sets {
            scratch.clear()
            let folder = scratch.directory + "/set"
            let manifest = try ShardedDatasetWriter.write(block, featureShape: shape, pairShape: pairShape, to: folder, layout: .count(2))
            let json = read(folder + "/" + ShardManifest.fileName)
            let shards = manifest.shards.map { read(folder + "/" + $0.file) }
            try save(.datasetManifest, name + ".json", json)
            try save(.dataset, name, FuzzContainer.join([json] + shards))
            try save(.datasetFrames, name, FuzzContainer.join([json] + shards))
            try save(.datasetStream, name, FuzzContainer.join([json] + shards))
            try? FileManager.default.removeItem(atPath: folder)
        }

        // A text set (format 1.1): named utf8 fields and a score, no features.
        scratch.clear()
        let textSet = SampleBlock(count: 3, features: nil, labels: [0, 1, 0],
                                  fields: ["text": .variable(VariableValues(strings: ["a", "ünï", "c c"])),
                                           "positive": .variable(VariableValues(strings: ["b", "d", ""])), "score": .float32([0.5, 1, 2])])
        let textFields = [NamedField(name: "text", dtype: .utf8), NamedField(name: "positive", dtype: .utf8),
                          NamedField(name: "score", dtype: .float32, shape: [])]
        let textManifest = try ShardedDatasetWriter.write(textSet, featureShape: nil, fields: textFields, to: scratch.directory + "/text",
                                                          layout: .count(2), classes: ["no", "yes"])
        let textJSON = read(scratch.directory + "/text/" + ShardManifest.fileName)
        let textShards = textManifest.shards.map { read(scratch.directory + "/text/" + $0.file) }
        try save(.datasetManifest, "writer-text.json", textJSON)
        try save(.dataset, "writer-text", FuzzContainer.join([textJSON] + textShards))
        try save(.datasetFrames, "writer-text", FuzzContainer.join([textJSON] + textShards))

        // Encoded images (`--store jpeg`): a bytes field of files of their own lengths, which the
        // stream target reads through its offsets and data frames in step.
        scratch.clear()
        let encoded = SampleBlock(count: 4, features: nil, labels: [3, 1, 4, 1],
                                  fields: ["image": .variable(VariableValues([[0xFF, 0xD8, 0xFF, 0xE0, 1], [], [0x89, 0x50, 0x4E, 0x47], [9, 9, 9]]))])
        let encodedManifest = try ShardedDatasetWriter.write(encoded, featureShape: nil,
                                                             fields: [NamedField(name: "image", dtype: .bytes, decode: ImageDecodeSpec(size: 4, channels: 1, fit: .crop))],
                                                             to: scratch.directory + "/encoded", layout: .count(2))
        let encodedJSON = read(scratch.directory + "/encoded/" + ShardManifest.fileName)
        let encodedShards = encodedManifest.shards.map { read(scratch.directory + "/encoded/" + $0.file) }
        try save(.dataset, "writer-encoded", FuzzContainer.join([encodedJSON] + encodedShards))
        try save(.datasetFrames, "writer-encoded", FuzzContainer.join([encodedJSON] + encodedShards))
        try save(.datasetStream, "writer-encoded", FuzzContainer.join([encodedJSON] + encodedShards))

        // A webdataset shard in plain ustar (launch/fuzz-seeds.sh adds Python's GNU and PAX tars).
        try save(.tar, "writer-ustar.tar", ustar([("000000.jpg", [0xFF, 0xD8, 0xFF, 0xE0, 1, 2]), ("000000.txt", Array("a cat".utf8)),
                                                  ("000000.cls", Array("3".utf8)), ("000001.png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
                                                  ("000001.txt", Array("a dog".utf8)), ("000001.cls", Array("5".utf8)),
                                                  ("000001.json", Array(#"{"caption": "json dog"}"#.utf8))]))

        // Text tables; the first byte picks format, header and columns (`FuzzTarget.readText`).
        try save(.text, "writer-csv-header", [4 | 8 | 32 | 64] + Array("anchor,positive,score,label\n\"a, \"\"q\"\"\",b,0.5,cat\nc,\"d\ne\",1,7\n".utf8))
        try save(.text, "writer-tsv", [1 | 8 | 32] + Array("a\tb\t0.25\nc\td\t1e3\n".utf8))
        try save(.text, "writer-jsonl", [2 | 16 | 32 | 64]
                 + Array(#"{"anchor": "a", "positive": "b", "negative": "c", "score": 1.5, "label": 2}"#.utf8) + [0x0A]
                 + Array(#"{"anchor": "e\u0301", "positive": "f", "negative": "g", "score": "2", "label": "x"}"#.utf8) + [0x0A])

        try save(.npy, "writer-f4.npy", [UInt8](NPYArray.encode(float32: (0..<12).map { Float($0) * 0.5 }, shape: [3, 4])))
        try save(.npy, "writer-i8.npy", [UInt8](NPYArray.encode(int64: [3, -1, 0, 9, 1 << 40], shape: [5])))

        for (name, compressed) in [("writer-images.gz", true), ("writer-images", false)] {
            let path = scratch.directory + "/" + name
            try IDX.write(path: path, magic: IDX.imagesMagic, dimensions: [2, 3, 3], bytes: (0..<18).map { UInt8($0 * 13) },
                          compressed: compressed)
            try save(.idx, name, read(path))
        }
        let labels = scratch.directory + "/writer-labels"
        try IDX.write(path: labels, magic: IDX.labelsMagic, dimensions: [4], bytes: [1, 0, 9, 3], compressed: false)
        try save(.idx, "writer-labels", read(labels))

        let tensors = [Safetensors.NamedTensor(name: "encoder.0.weight", shape: [2, 3], values: [1, -2, 3.5, 0, 1e-3, 7]),
                       Safetensors.NamedTensor(name: "encoder.0.bias", shape: [2], values: [0.25, -0.5])]
        try save(.safetensors, "writer.safetensors",
                 [UInt8](Safetensors.encode(tensors, metadata: [(key: "format", value: "pt"), (key: "contrast", value: "1")])))
    }

    /// A ustar archive of `files` (mode 0644, mtime 0), ended by two zero blocks.
    static func ustar(_ files: [(name: String, bytes: [UInt8])]) -> [UInt8] {
        var archive: [UInt8] = []
        for (name, bytes) in files {
            var header = [UInt8](repeating: 0, count: 512)
            func put(_ text: String, at offset: Int) { for (index, byte) in text.utf8.enumerated() { header[offset + index] = byte } }
            func octal(_ value: Int, _ width: Int) -> String {
                let digits = String(value, radix: 8)
                return String(repeating: "0", count: width - 1 - digits.count) + digits
            }
            put(name, at: 0)
            put(octal(0o644, 8), at: 100)
            put(octal(0, 8), at: 108)
            put(octal(0, 8), at: 116)
            put(octal(bytes.count, 12), at: 124)
            put(octal(0, 12), at: 136)
            put("0", at: 156)
            put("ustar", at: 257)
            put("00", at: 263)
            put("        ", at: 148)
            put(octal(header.reduce(0) { $0 + Int($1) }, 7), at: 148)
            archive += header + bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
        }
        return archive + [UInt8](repeating: 0, count: 1024)
    }
}
