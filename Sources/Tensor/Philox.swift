/// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
///
/// A counter-based generator: the output is a pure function of (key, counter), so any draw
/// can be recomputed from its coordinates without replaying a stream. contrast keys it with
/// the run's seed and puts a *stream* id (which sample, view, layer, ...) and a position in
/// the counter; see `RandomStream`.
public enum Philox {
    public typealias Counter = (UInt32, UInt32, UInt32, UInt32)
    public typealias Key = (UInt32, UInt32)

    @inline(__always)
    static func mulhilo(_ a: UInt32, _ b: UInt32) -> (hi: UInt32, lo: UInt32) {
        let product = UInt64(a) &* UInt64(b)
        return (UInt32(truncatingIfNeeded: product >> 32), UInt32(truncatingIfNeeded: product))
    }

    /// Ten rounds of Philox-4x32.
    @inline(__always)
    public static func block(counter: Counter, key: Key) -> Counter {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
            let p0 = mulhilo(0xD251_1F53, c0)
            let p1 = mulhilo(0xCD9E_8D57, c2)
            (c0, c1, c2, c3) = (p1.hi ^ c1 ^ k0, p1.lo, p0.hi ^ c3 ^ k1, p0.lo)
        }
        return (c0, c1, c2, c3)
    }

    /// Philox blocks computed per step of `fillDraws`: eight lanes side by side.
    public static let lanes = 8

    /// Writes draws `position ..< position + 4 * blocks` of `RandomStream(seed, stream)` into
    /// `draws`, whole Philox blocks at a time: draw i = Philox(seed, (i / 4, 0, stream.lo,
    /// stream.hi))[i % 4], the formula `RandomStream.nextUInt32` uses (a test checks they agree).
    /// Eight blocks are made side by side in SIMD lanes, so `draws` must have room for `blocks`
    /// rounded up to a multiple of 8 blocks. `position` must be a multiple of 4.
    public static func fillDraws(seed: UInt64, stream: UInt64, position: UInt64, blocks: Int, into draws: UnsafeMutablePointer<UInt32>) {
        precondition(position % 4 == 0, "fillDraws: position \(position) is not at a block boundary")
        let streamLow = UInt32(truncatingIfNeeded: stream), streamHigh = UInt32(truncatingIfNeeded: stream >> 32)
        let key0 = UInt32(truncatingIfNeeded: seed), key1 = UInt32(truncatingIfNeeded: seed >> 32)
        let laneOffsets = SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)
        var block = 0
        while block < blocks {
            let index = SIMD8<UInt64>(repeating: position / 4 &+ UInt64(block)) &+ laneOffsets
            var c0 = SIMD8<UInt32>(truncatingIfNeeded: index), c1 = SIMD8<UInt32>(truncatingIfNeeded: index &>> 32)
            var c2 = SIMD8<UInt32>(repeating: streamLow), c3 = SIMD8<UInt32>(repeating: streamHigh)
            var k0 = key0, k1 = key1
            // Philox-4x32-10, as in `block`, on eight counters at once.
            for round in 0..<10 {
                if round > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
                let p0 = SIMD8<UInt64>(truncatingIfNeeded: c0) &* 0xD251_1F53
                let p1 = SIMD8<UInt64>(truncatingIfNeeded: c2) &* 0xCD9E_8D57
                let next0 = SIMD8<UInt32>(truncatingIfNeeded: p1 &>> 32) ^ c1 ^ k0
                let next2 = SIMD8<UInt32>(truncatingIfNeeded: p0 &>> 32) ^ c3 ^ k1
                c1 = SIMD8<UInt32>(truncatingIfNeeded: p1)
                c3 = SIMD8<UInt32>(truncatingIfNeeded: p0)
                c0 = next0
                c2 = next2
            }
            let base = draws + (block &* 4)
            for lane in 0..<lanes {
                base[lane &* 4] = c0[lane]
                base[lane &* 4 &+ 1] = c1[lane]
                base[lane &* 4 &+ 2] = c2[lane]
                base[lane &* 4 &+ 3] = c3[lane]
            }
            block &+= lanes
        }
    }
}

/// A deterministic random stream: draw i of stream `stream` under `seed` is
/// Philox(key: seed, counter: (i / 4, 0, stream.lo, stream.hi))[i % 4].
///
/// Streams with different ids never overlap (they differ in the counter's upper half), so
/// "the views of sample 17 in epoch 3" is its own stream no matter which rank draws it.
public struct RandomStream: Sendable {
    public let seed: UInt64
    public let stream: UInt64
    /// Index of the next 32-bit draw.
    public private(set) var position: UInt64

    private var block: Philox.Counter = (0, 0, 0, 0)
    private var blockIndex: UInt64 = .max

    public init(seed: UInt64, stream: UInt64, position: UInt64 = 0) {
        self.seed = seed
        self.stream = stream
        self.position = position
    }

    /// Purposes keep streams of different uses apart (top 8 bits of the stream id).
    /// `featureView`: augmented views of feature vectors (FeatureViewMaker); `pairProjection`:
    /// the random matrix of `contrast prepare fashion-mnist --pairs projection` (PairSpec);
    /// `corruption`: corrupted test samples of the evaluation suite (Data/Corruptions.swift);
    /// `labelSubset`: which training samples keep their labels (data.labeled_fraction);
    /// `testSplit`: which samples `contrast prepare npy --test-fraction` holds out for testing;
    /// `dropout`: the model's dropout and drop-path masks (NN/Dropout.swift).
    public enum Purpose: UInt64, Sendable {
        case sampleOrder = 1, view = 2, initialisation = 3, evaluation = 4, noise = 5, featureView = 6, pairProjection = 7,
             corruption = 8, labelSubset = 9, testSplit = 10, dropout = 11
    }

    /// Stream id for a purpose and up to three coordinates (a: 16 bits, b: 32 bits, c: 8 bits).
    /// Example: `.view` with (epoch, sample index, view).
    public static func id(_ purpose: Purpose, _ a: UInt64 = 0, _ b: UInt64 = 0, _ c: UInt64 = 0) -> UInt64 {
        precondition(a < 1 << 16 && b < 1 << 32 && c < 1 << 8, "stream coordinates (\(a), \(b), \(c)) out of range")
        return purpose.rawValue << 56 | a << 40 | b << 8 | c
    }

    public mutating func nextUInt32() -> UInt32 {
        let index = position >> 2
        if index != blockIndex {
            block = Philox.block(
                counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                          UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)),
                key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
            blockIndex = index
        }
        let lane = position & 3
        position += 1
        switch lane {
        case 0: return block.0
        case 1: return block.1
        case 2: return block.2
        default: return block.3
        }
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float {
        Float(nextUInt32() >> 8) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [low, high).
    public mutating func nextUniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * nextUniform()
    }

    /// Standard normal by Box-Muller over two draws (the cosine branch only, so every normal
    /// costs exactly two draws and positions stay predictable).
    public mutating func nextNormal() -> Float {
        let u1 = (Double(nextUInt32()) + 1) * (1.0 / 4_294_967_297.0)   // (0, 1]
        let u2 = Double(nextUInt32()) * (1.0 / 4_294_967_296.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// Uniform integer in 0..<bound (Lemire's multiply-shift; bias below 2^-32 * bound).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0)
        return Int((UInt64(nextUInt32()) &* UInt64(bound)) >> 32)
    }
}

import Foundation
@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
