/// Byte-plane shuffling of Float32 (Blosc's and HDF5's "shuffle" filter, element size 4), the
/// transform before zstd in checkpoints and in data-set shards.
///
/// For n floats stored little-endian, the shuffled bytes are all byte 0s (least significant),
/// then all byte 1s, 2s and 3s: out[k*n + i] = byte k of element i. Sign and exponent bytes
/// of trained weights repeat a lot and the mantissa's low bytes are noise; putting like bytes
/// together lets zstd find the repetition.
public enum ByteShuffle {
    /// Fast shuffle: one 32-bit load per element, four byte stores into the planes.
    public static func shuffle(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<UInt8>) {
        let plane0 = destination, plane1 = destination + count, plane2 = plane1 + count, plane3 = plane2 + count
        UnsafeRawPointer(source).withMemoryRebound(to: UInt32.self, capacity: count) { words in
            for i in 0..<count {
                let word = UInt32(littleEndian: words[i])
                plane0[i] = UInt8(truncatingIfNeeded: word)
                plane1[i] = UInt8(truncatingIfNeeded: word &>> 8)
                plane2[i] = UInt8(truncatingIfNeeded: word &>> 16)
                plane3[i] = UInt8(truncatingIfNeeded: word &>> 24)
            }
        }
    }

    /// Fast unshuffle: four byte loads from the planes, one 32-bit store per element.
    public static func unshuffle(_ source: UnsafePointer<UInt8>, count: Int, into destination: UnsafeMutablePointer<Float>) {
        let plane0 = source, plane1 = source + count, plane2 = plane1 + count, plane3 = plane2 + count
        UnsafeMutableRawPointer(destination).withMemoryRebound(to: UInt32.self, capacity: count) { words in
            for i in 0..<count {
                let word = UInt32(plane0[i]) | UInt32(plane1[i]) &<< 8 | UInt32(plane2[i]) &<< 16 | UInt32(plane3[i]) &<< 24
                words[i] = word.littleEndian
            }
        }
    }

    /// Reference: the definition, byte by byte (little-endian host), the fast versions' oracle.
    public static func shuffleReference(_ source: UnsafePointer<Float>, count: Int, into destination: UnsafeMutablePointer<UInt8>) {
        let bytes = UnsafeRawPointer(source).assumingMemoryBound(to: UInt8.self)
        for element in 0..<count {
            for byte in 0..<4 { destination[byte * count + element] = bytes[4 * element + byte] }
        }
    }

    public static func unshuffleReference(_ source: UnsafePointer<UInt8>, count: Int, into destination: UnsafeMutablePointer<Float>) {
        let bytes = UnsafeMutableRawPointer(destination).assumingMemoryBound(to: UInt8.self)
        for element in 0..<count {
            for byte in 0..<4 { bytes[4 * element + byte] = source[byte * count + element] }
        }
    }
}
