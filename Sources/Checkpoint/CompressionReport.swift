import Foundation
import Storage

/// One row of `CheckpointStore.compressionReport`: how the buffers compress with one setting.
public struct CompressionMeasurement: Sendable, CustomStringConvertible {
    public var settings: CheckpointSettings
    public var uncompressedBytes: Int
    public var compressedBytes: Int
    /// Seconds to compress (shuffle included) every buffer, in memory.
    public var compressSeconds: Double
    /// Seconds to decode every frame again (unshuffle included).
    public var decompressSeconds: Double

    public var ratio: Double { Double(uncompressedBytes) / Double(max(compressedBytes, 1)) }

    public var description: String {
        let megabytes = Double(uncompressedBytes) / 1e6
        let transform = settings.shuffle ? FrameTransform.shuffleZstd.rawValue : FrameTransform.zstd.rawValue
        return String(format: "%-13@ level %2d  ratio %.3f  compress %.0f MB/s  decompress %.0f MB/s",
                      transform as NSString, settings.level, ratio, megabytes / compressSeconds, megabytes / decompressSeconds)
    }
}

extension CheckpointStore {
    /// Compresses `buffers` in memory with every combination of `levels` x {plain, shuffled},
    /// framed as `save` frames them, and decodes them again (for `contrast bench checkpoint`).
    public static func compressionReport(buffers: [CheckpointBuffer], levels: [Int32] = [1, 3]) throws -> [CompressionMeasurement] {
        var rows: [CompressionMeasurement] = []
        for level in levels {
            for shuffle in [false, true] {
                let settings = CheckpointSettings(level: level, shuffle: shuffle)
                let encoder = try FileIO.mapping { try FrameEncoder(level: level) }
                let transform: FrameTransform = shuffle ? .shuffleZstd : .zstd
                var frames: [(bytes: [UInt8], count: Int)] = []
                var compressed = 0, uncompressed = 0
                let start = DispatchTime.now().uptimeNanoseconds
                for buffer in buffers {
                    for offset in stride(from: 0, to: buffer.count, by: frameElements) {
                        let count = min(frameElements, buffer.count - offset)
                        let bytes = try FileIO.mapping { try encoder.encode(buffer.pointer + offset, count: count, transform: transform) }
                        frames.append(([UInt8](bytes), count))
                        compressed += bytes.count
                        uncompressed += count * MemoryLayout<Float>.size
                    }
                }
                let middle = DispatchTime.now().uptimeNanoseconds
                let decoder = try FileIO.mapping { try FrameDecoder() }
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: frameElements)
                defer { scratch.deallocate() }
                for frame in frames {
                    try frame.bytes.withUnsafeBytes {
                        try decoder.decode($0, transform: transform, count: frame.count, into: scratch, file: "(memory)", what: "frame")
                    }
                }
                let end = DispatchTime.now().uptimeNanoseconds
                rows.append(CompressionMeasurement(settings: settings, uncompressedBytes: uncompressed, compressedBytes: compressed,
                                                   compressSeconds: Double(middle - start) / 1e9,
                                                   decompressSeconds: Double(end - middle) / 1e9))
            }
        }
        return rows
    }
}
