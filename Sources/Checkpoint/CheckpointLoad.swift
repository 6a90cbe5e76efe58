import Foundation
import Storage

extension CheckpointStore {
    /// Loads a checkpoint into `buffers` (names and counts must match the manifest's) and
    /// returns the trainer's state JSON. Works for any rank count now and at save time:
    /// every buffer is read as "elements [0, count) of buffer X", which decodes exactly the
    /// frames of the shards that cover that range. Every frame's zstd checksum is checked,
    /// and each shard's whole-file crc32 once all its frames have been read.
    public static func load(_ checkpoint: URL, into buffers: [CheckpointBuffer]) throws -> Data {
        let manifest = try manifest(at: checkpoint)
        let manifestPath = checkpoint.appendingPathComponent(manifestName).path
        try validate(manifest, file: manifestPath)
        try checkBuffers(buffers, against: manifest, file: manifestPath)
        let reader = try CheckpointReader(directory: checkpoint, manifest: manifest)
        for buffer in buffers {
            try reader.read(buffer: buffer.name, elements: 0..<buffer.count, into: buffer.pointer)
        }
        try reader.checkWholeFiles()
        return manifest.state
    }

    /// Loads only `buffers`, some of the checkpoint's (the parameters, for evaluation or
    /// export), and returns the state JSON. Each buffer's name and count must match the
    /// manifest's; every frame read is checked (zstd checksum), and the whole-file crc32 of
    /// every shard all of whose frames were read.
    public static func load(_ checkpoint: URL, only buffers: [CheckpointBuffer]) throws -> Data {
        let manifest = try manifest(at: checkpoint)
        let manifestPath = checkpoint.appendingPathComponent(manifestName).path
        try validate(manifest, file: manifestPath)
        for buffer in buffers {
            guard manifest.buffers.contains(where: { $0.name == buffer.name && $0.count == buffer.count }) else {
                throw CheckpointError(.mismatch, file: manifestPath,
                                      problem: "the checkpoint holds \(manifest.buffers.map { "\($0.name)[\($0.count)]" }.joined(separator: ", ")), "
                                          + "not \(buffer.name)[\(buffer.count)]",
                                      fix: "use the model settings it was written with (see its \"state\")")
            }
        }
        let reader = try CheckpointReader(directory: checkpoint, manifest: manifest)
        for buffer in buffers {
            try reader.read(buffer: buffer.name, elements: 0..<buffer.count, into: buffer.pointer)
        }
        try reader.checkWholeFiles()
        return manifest.state
    }

    /// Checks every shard: present, size, whole-file crc32, and every zstd frame decodes
    /// (with its content checksum) to the manifest's length, streamed through a fixed window
    /// (no allocation of a frame's declared size). Throws on the first problem, naming the file.
    public static func verify(_ checkpoint: URL) throws {
        let manifest = try manifest(at: checkpoint)
        try validate(manifest, file: checkpoint.appendingPathComponent(manifestName).path)
        let decoder = try FileIO.mapping { try FrameDecoder() }
        for shard in manifest.shards {
            let path = checkpoint.appendingPathComponent(shard.file).path
            let file = try ShardFile(path: path, expectedBytes: shard.bytes)
            let bytes = try file.read(offset: 0, count: shard.bytes)
            let checksum = CRC32.hex(CRC32.checksum(bytes))
            guard checksum == shard.checksum else {
                throw CheckpointError.corrupt(path, "crc32 of the file is \(checksum), the manifest says \(shard.checksum)")
            }
            for frame in shard.frames {
                let what = "frame of '\(frame.buffer)' elements \(frame.elementOffset)..<\(frame.elementOffset + frame.elementCount) at byte \(frame.byteOffset)"
                let body = UnsafeRawBufferPointer(rebasing: bytes[frame.byteOffset..<(frame.byteOffset + frame.byteCount)])
                try decoder.check(body, count: frame.elementCount, file: path, what: what)
            }
        }
    }

    /// The manifest's own consistency, before any shard is opened: known transforms, frames
    /// that tile each shard file, and shards whose frames tile every buffer exactly once.
    static func validate(_ manifest: CheckpointManifest, file: String) throws {
        func bad(_ problem: String) -> CheckpointError { CheckpointError.corrupt(file, problem) }
        guard manifest.worldSize >= 1, manifest.worldSize == manifest.shards.count,
              manifest.shards.map(\.rank) == Array(0..<manifest.worldSize) else {
            throw bad("world size \(manifest.worldSize) but shards for ranks \(manifest.shards.map(\.rank))")
        }
        var counts: [String: Int] = [:]
        for buffer in manifest.buffers {
            guard counts.updateValue(buffer.count, forKey: buffer.name) == nil, buffer.count >= 0 else {
                throw bad("buffer '\(buffer.name)' is listed twice or has a negative count")
            }
        }
        var pieces: [String: [Range<Int>]] = [:]
        for shard in manifest.shards {
            guard !shard.file.contains("/"), shard.file != ".." else { throw bad("shard file name '\(shard.file)' is not a plain name") }
            var end = 0
            for frame in shard.frames {
                guard FrameTransform(rawValue: frame.transform) != nil else {
                    throw bad("unknown frame transform '\(frame.transform)' in \(shard.file) (this build knows \(FrameTransform.allCases.map(\.rawValue)))")
                }
                guard frame.byteOffset == end, frame.byteCount > 0 else { throw bad("frames of \(shard.file) do not tile the file at byte \(end)") }
                end += frame.byteCount
                guard let count = counts[frame.buffer], frame.elementOffset >= 0, frame.elementCount > 0,
                      frame.elementOffset + frame.elementCount <= count,
                      frame.uncompressedBytes == frame.elementCount * MemoryLayout<Float>.size else {
                    throw bad("frame of '\(frame.buffer)' in \(shard.file) has an impossible element range or size")
                }
                pieces[frame.buffer, default: []].append(frame.elementOffset..<(frame.elementOffset + frame.elementCount))
            }
            guard end == shard.bytes else { throw bad("frames of \(shard.file) cover \(end) bytes, the file has \(shard.bytes)") }
        }
        for buffer in manifest.buffers {
            var next = 0
            for range in (pieces[buffer.name] ?? []).sorted(by: { $0.lowerBound < $1.lowerBound }) {
                guard range.lowerBound == next else { throw bad("frames of '\(buffer.name)' leave a gap or overlap at element \(next)") }
                next = range.upperBound
            }
            guard next == buffer.count else { throw bad("frames of '\(buffer.name)' cover \(next) of \(buffer.count) elements") }
        }
    }

    static func checkBuffers(_ buffers: [CheckpointBuffer], against manifest: CheckpointManifest, file: String) throws {
        let expected = manifest.buffers.map { "\($0.name)[\($0.count)]" }
        let given = buffers.map { "\($0.name)[\($0.count)]" }
        guard Set(expected) == Set(given), expected.count == given.count else {
            throw CheckpointError(.mismatch, file: file,
                                  problem: "the checkpoint holds \(expected.joined(separator: ", ")) but the trainer has \(given.joined(separator: ", "))",
                                  fix: "resume with the model and optimizer settings it was written with (see its \"state\"), or use a new run directory")
        }
    }
}

/// Reads element ranges of buffers from a checkpoint's shards, whichever ranks wrote them.
final class CheckpointReader {
    let directory: URL
    let manifest: CheckpointManifest
    /// Per buffer: (shard index, frame index), ascending by element offset.
    private var framesByBuffer: [String: [(shard: Int, frame: Int)]] = [:]
    private var files: [Int: ShardFile] = [:]
    /// crc32 of each frame's bytes as read, per shard.
    private var frameChecksums: [Int: [Int: UInt32]] = [:]
    private let decoder: FrameDecoder
    private var scratch = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    private var scratchCapacity = 0

    /// `manifest` must have passed `CheckpointStore.validate`.
    init(directory: URL, manifest: CheckpointManifest) throws {
        self.directory = directory
        self.manifest = manifest
        decoder = try FileIO.mapping { try FrameDecoder() }
        for (shardIndex, shard) in manifest.shards.enumerated() {
            for (frameIndex, frame) in shard.frames.enumerated() {
                framesByBuffer[frame.buffer, default: []].append((shardIndex, frameIndex))
            }
        }
        for name in framesByBuffer.keys {
            framesByBuffer[name]!.sort {
                manifest.shards[$0.shard].frames[$0.frame].elementOffset < manifest.shards[$1.shard].frames[$1.frame].elementOffset
            }
        }
    }

    deinit { scratch.deallocate() }

    /// Elements [range) of buffer `name` into `destination` (destination[0] is element
    /// range.lowerBound). Decodes only the frames that overlap the range.
    func read(buffer name: String, elements range: Range<Int>, into destination: UnsafeMutablePointer<Float>) throws {
        for (shardIndex, frameIndex) in framesByBuffer[name] ?? [] {
            let shard = manifest.shards[shardIndex]
            let frame = shard.frames[frameIndex]
            let frameRange = frame.elementOffset..<(frame.elementOffset + frame.elementCount)
            let overlap = frameRange.clamped(to: range)
            guard !overlap.isEmpty else { continue }
            let path = directory.appendingPathComponent(shard.file).path
            if files[shardIndex] == nil { files[shardIndex] = try ShardFile(path: path, expectedBytes: shard.bytes) }
            let bytes = try files[shardIndex]!.read(offset: frame.byteOffset, count: frame.byteCount)
            frameChecksums[shardIndex, default: [:]][frameIndex] = CRC32.checksum(bytes)
            let what = "frame of '\(name)' elements \(frameRange) at byte \(frame.byteOffset)"
            let transform = FrameTransform(rawValue: frame.transform)!
            if overlap == frameRange {
                try decoder.decode(bytes, transform: transform, count: frame.elementCount,
                                   into: destination + (frame.elementOffset - range.lowerBound), file: path, what: what)
            } else {
                if scratchCapacity < frame.elementCount {
                    scratch.deallocate()
                    scratch = .allocate(capacity: frame.elementCount)
                    scratchCapacity = frame.elementCount
                }
                try decoder.decode(bytes, transform: transform, count: frame.elementCount, into: scratch, file: path, what: what)
                (destination + (overlap.lowerBound - range.lowerBound))
                    .update(from: scratch + (overlap.lowerBound - frame.elementOffset), count: overlap.count)
            }
        }
    }

    /// For every shard whose frames have all been read: the file's crc32 (combined from the
    /// frames' crc32s, which tile the file) must equal the manifest's.
    func checkWholeFiles() throws {
        for (shardIndex, checksums) in frameChecksums {
            let shard = manifest.shards[shardIndex]
            guard checksums.count == shard.frames.count else { continue }
            var crc: UInt32 = 0
            for (frameIndex, frame) in shard.frames.enumerated() {
                crc = CRC32.combine(crc, checksums[frameIndex]!, secondLength: frame.byteCount)
            }
            guard CRC32.hex(crc) == shard.checksum else {
                throw CheckpointError.corrupt(directory.appendingPathComponent(shard.file).path,
                                              "crc32 of the file is \(CRC32.hex(crc)), the manifest says \(shard.checksum)")
            }
        }
    }
}

/// A shard file opened for positioned reads; opening checks that it exists and its size.
final class ShardFile {
    let path: String
    private let descriptor: Int32
    private var buffer = UnsafeMutableRawPointer.allocate(byteCount: 0, alignment: 16)
    private var capacity = 0

    init(path: String, expectedBytes: Int) throws {
        self.path = path
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT {
                throw CheckpointError(.missing, file: path, problem: "shard file is missing",
                                      fix: "the checkpoint is incomplete: copy the file back or resume from an earlier checkpoint")
            }
            throw FileIO.error("open", path, code)
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { close(descriptor); throw FileIO.error("fstat", path) }
        guard Int(status.st_size) == expectedBytes else {
            close(descriptor)
            throw CheckpointError.corrupt(path, "the file has \(status.st_size) bytes, the manifest says \(expectedBytes)"
                                              + (Int(status.st_size) < expectedBytes ? " (truncated)" : ""))
        }
    }

    deinit {
        close(descriptor)
        buffer.deallocate()
    }

    /// `count` bytes at `offset`; valid until the next read.
    func read(offset: Int, count: Int) throws -> UnsafeRawBufferPointer {
        if capacity < count {
            buffer.deallocate()
            buffer = .allocate(byteCount: count, alignment: 16)
            capacity = count
        }
        var done = 0
        while done < count {
            let got = pread(descriptor, buffer + done, count - done, off_t(offset + done))
            if got < 0 {
                if errno == EINTR { continue }
                throw FileIO.error("pread", path)
            }
            if got == 0 { throw CheckpointError.corrupt(path, "the file ends at byte \(offset + done), before its frames do (truncated)") }
            done += got
        }
        return UnsafeRawBufferPointer(start: buffer, count: count)
    }
}
