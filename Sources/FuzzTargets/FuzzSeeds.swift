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
            try? FileManager.default.removeItem(atPath: folder)
        }

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
}
