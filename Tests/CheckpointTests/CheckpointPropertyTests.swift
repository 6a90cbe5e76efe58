import Distributed
import Foundation
import Tensor
import Storage
import Testing
@testable import Checkpoint

/// Seeded random properties of checkpoints: save/load of random arena contents is bit-exact,
/// the manifest encodes and decodes to itself, and a damaged checkpoint is always a thrown
/// `CheckpointError`, never a trap or wrong values.
@Suite struct CheckpointPropertyTests {
    /// 1...5 buffers of 0...3000 floats of any bit pattern (NaNs, infinities, subnormals).
    static func randomState(_ random: inout RandomStream) -> TestState {
        let state = TestState()
        for index in 0..<(1 + random.nextInt(below: 5)) {
            let count = random.nextInt(below: 4) == 0 ? random.nextInt(below: 3) : random.nextInt(below: 3000)
            state.add("buffer.\(index)", count: count, scale: 1)
            let values = state.arrays[index].values
            // Smooth runs (compressible, like weights) mixed with raw bit patterns.
            for element in 0..<count where random.nextInt(below: 3) == 0 { values[element] = Float(bitPattern: random.nextUInt32()) }
        }
        return state
    }

    /// A random JSON object: nested numbers (64-bit integers included), strings with escapes, lists.
    static func randomStateJSON(_ random: inout RandomStream) -> Data {
        let keys = ["epoch", "rng", "lr", "name", "list", "é\\\"x"]
        var fields: [String] = []
        for key in keys where random.nextInt(below: 2) == 0 {
            let value: String
            switch random.nextInt(below: 4) {
            case 0: value = String(UInt64(random.nextUInt32()) << 32 | UInt64(random.nextUInt32()))
            case 1: value = "\(Float(bitPattern: random.nextUInt32() & 0x7F7F_FFFF))"
            case 2: value = "\"a\\\"b\\\\c \\u00e9 }{ ][ ,\""
            default: value = "[1, {\"x\": [2, 3]}, \"]\"]"
            }
            fields.append("\"\(key)\": \(value)")
        }
        return Data(("{" + fields.joined(separator: ", ") + "}").utf8)
    }

    @Test func saveLoadOfRandomArenasIsBitExact() throws {
        var random = RandomStream(seed: 20261123, stream: 11)
        for trial in 0..<20 {
            let state = Self.randomState(&random)
            let json = Self.randomStateJSON(&random)
            let settings = CheckpointSettings(level: Int32(1 + random.nextInt(below: 6)), shuffle: random.nextInt(below: 2) == 0)
            try withRunDirectory { run in
                let directory = try CheckpointStore.save(runDirectory: run, step: trial, buffers: state.buffers, state: json,
                                                         communicator: SingleProcessCommunicator(), settings: settings)
                try CheckpointStore.verify(directory)
                let loaded = state.emptyCopy()
                #expect(try CheckpointStore.load(directory, into: Array(loaded.buffers.reversed())) == json)
                #expect(loaded.bitEqual(state), "trial \(trial)")
            }
        }
    }

    @Test func manifestEncodingRoundTrips() throws {
        var random = RandomStream(seed: 20261123, stream: 12)
        for _ in 0..<50 {
            let names = ["parameters", "adam.m", "a \"quoted\" / name", "ünï", "tab\there"]
            let buffers = names.prefix(1 + random.nextInt(below: names.count)).map {
                CheckpointManifest.Buffer(name: $0, count: random.nextInt(below: 1 << 40))
            }
            let shards = (0..<(1 + random.nextInt(below: 3))).map { rank in
                CheckpointManifest.Shard(rank: rank, file: "shard-\(rank)-of-3.bin", bytes: random.nextInt(below: 1 << 40),
                                         checksum: CRC32.hex(random.nextUInt32()),
                                         frames: buffers.map { buffer in
                                             CheckpointManifest.Frame(buffer: buffer.name, elementOffset: random.nextInt(below: 1 << 20),
                                                                      elementCount: random.nextInt(below: 1 << 20),
                                                                      byteOffset: random.nextInt(below: 1 << 40),
                                                                      byteCount: random.nextInt(below: 1 << 22),
                                                                      transform: FrameTransform.allCases[random.nextInt(below: 2)].rawValue,
                                                                      uncompressedBytes: random.nextInt(below: 1 << 22))
                                         })
            }
            let manifest = CheckpointManifest(formatVersion: "1.\(random.nextInt(below: 5))", step: random.nextInt(below: 1 << 50),
                                              worldSize: shards.count, created: Date.now.ISO8601Format(), buffers: buffers,
                                              shards: shards, compression: .init(level: Int32(random.nextInt(below: 20)), shuffle: true),
                                              state: Self.randomStateJSON(&random))
            let decoded = try CheckpointManifest.decode(try manifest.encoded(), file: "manifest.json")
            #expect(decoded == manifest)
        }
    }

    /// Truncating or bit-flipping a shard makes load and verify throw, and so does any flipped
    /// bit of the manifest: the shards' checksums cover the tensors, the manifest's own checksum
    /// its fields (step, created, the trainer's state).
    @Test func damagedCheckpointsThrowOrLoadTheSameValues() throws {
        var random = RandomStream(seed: 20261123, stream: 13)
        for trial in 0..<15 {
            let state = Self.randomState(&random)
            try withRunDirectory { run in
                let directory = try CheckpointStore.save(runDirectory: run, step: trial, buffers: state.buffers, state: sampleState,
                                                         communicator: SingleProcessCommunicator())
                let shardURL = directory.appendingPathComponent("shard-0-of-1.bin")
                let manifestURL = directory.appendingPathComponent(CheckpointStore.manifestName)
                let shard = [UInt8](try Data(contentsOf: shardURL))
                let manifest = [UInt8](try Data(contentsOf: manifestURL))

                func load() -> Result<TestState, Error> {
                    Result {
                        let loaded = state.emptyCopy()
                        _ = try CheckpointStore.load(directory, into: loaded.buffers)
                        return loaded
                    }
                }
                func expectCheckpointError(_ what: String) {
                    if case .failure(let error) = load() { #expect(error is CheckpointError, "\(what): \(error)") } else {
                        Issue.record("\(what) loaded")
                    }
                    #expect(checkpointError { try CheckpointStore.verify(directory) } != nil, "\(what) verified")
                }

                guard !shard.isEmpty else { return }  // every buffer empty: no frames to damage
                let cut = random.nextInt(below: shard.count)
                try Data(shard[..<cut]).write(to: shardURL)
                expectCheckpointError("shard truncated to \(cut) of \(shard.count) bytes")

                var flipped = shard
                let bit = random.nextInt(below: shard.count * 8)
                flipped[bit / 8] ^= UInt8(1 << (bit % 8))
                try Data(flipped).write(to: shardURL)
                expectCheckpointError("shard bit \(bit) flipped")
                try Data(shard).write(to: shardURL)

                for _ in 0..<40 {
                    var damaged = manifest
                    let bit = random.nextInt(below: manifest.count * 8)
                    damaged[bit / 8] ^= UInt8(1 << (bit % 8))
                    try Data(damaged).write(to: manifestURL)
                    if case .failure(let error) = load() { #expect(error is CheckpointError, "manifest bit \(bit): \(error)") } else {
                        Issue.record("manifest bit \(bit) of \(manifest.count * 8) flipped: the checkpoint loaded")
                    }
                }
            }
        }
    }
}
