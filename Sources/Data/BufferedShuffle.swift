import Tensor

/// What a `BufferedShuffle` asks of the shard it orders, in stream order: pass over a sample,
/// read the next one into a buffer slot, move a slot's sample to another slot. The index-only
/// order (`Sampler.permutation`) passes a source that does nothing; the streamed batches
/// (`ShardShuffleStream`) one that decompresses rows. One algorithm, so the two agree by construction.
public protocol ShuffleSource {
    /// The stream's next sample is not used this epoch.
    mutating func skip() throws
    /// The stream's next sample goes into buffer slot `slot`.
    mutating func read(into slot: Int) throws
    /// The sample in slot `from` moves to slot `to` (the buffer shrinks at the shard's end).
    mutating func move(from: Int, to: Int) throws
}

/// A source that holds no samples: the order alone.
public struct IndexOnlySource: ShuffleSource {
    public init() {}
    public func skip() {}
    public func read(into slot: Int) {}
    public func move(from: Int, to: Int) {}
}

/// The order in which one shard's samples leave a bounded shuffle buffer in one epoch, for
/// `data.hold: stream`: a pure function of (seed, epoch, shard, n, u, M).
///
/// 1. Selection: of the shard's n samples, read in file order, u (the epoch's used part,
///    batches per epoch x k) are kept by selection sampling (Knuth's algorithm S): sample i is
///    kept when `selection.nextInt(below: n - i)` < (samples still needed), one draw per sample
///    passed. Every u-subset is equally likely, so which n - u samples an epoch skips is random
///    and differs every epoch, as the in-memory sampler's skipped permutation tail does, and no
///    sample is favoured for being near the shard's end.
/// 2. Shuffle: the first min(M, u) kept samples fill the buffer's slots in order; then each
///    emission draws slot j = `draws.nextInt(below: buffer count)`, emits its sample and refills
///    the slot with the next kept sample, or, once none is left, with the buffer's last slot
///    (which is dropped). With M >= u this is a uniform random permutation of the kept samples.
///    A smaller M gives a less random order: the i-th kept sample enters the buffer only after
///    i - M + 1 samples have left it, so it cannot come before that place in the order, and
///    samples early in the file tend to come early in the epoch (the trade-off for memory).
///
/// Streams: `RandomStream(seed, id(.sampleOrder, epoch, shard, 1))` for the selection and
/// `id(.sampleOrder, epoch, shard, 2)` for the slot draws (the in-memory Fisher-Yates uses c = 0).
public struct BufferedShuffle: Sendable {
    /// Samples in the shard (n), kept this epoch (u), buffer slots (M).
    public let count: Int
    public let used: Int
    public let capacity: Int
    private var selection: RandomStream
    private var draws: RandomStream
    /// The next sample of the stream (an offset in the shard): those before it were read or skipped.
    public private(set) var position = 0
    private var needed: Int
    /// The shard offset of the sample in each slot.
    public private(set) var slots: [Int] = []
    public private(set) var emitted = 0
    private var filled = false

    public init(count: Int, used: Int, capacity: Int, seed: UInt64, epoch: Int, shard: Int) {
        precondition(used >= 0 && used <= count && capacity > 0, "BufferedShuffle: need 0 <= used <= count and capacity > 0")
        self.count = count
        self.used = used
        self.capacity = capacity
        self.needed = used
        selection = RandomStream(seed: seed, stream: RandomStream.id(.sampleOrder, UInt64(epoch), UInt64(shard), 1))
        draws = RandomStream(seed: seed, stream: RandomStream.id(.sampleOrder, UInt64(epoch), UInt64(shard), 2))
        slots.reserveCapacity(min(capacity, used))
    }

    /// Passes over unkept samples to the next kept one; nil when all u are read.
    private mutating func nextKept<Source: ShuffleSource>(_ source: inout Source) throws -> Int? {
        while needed > 0 && position < count {
            let offset = position
            position += 1
            if selection.nextInt(below: count - offset) < needed {
                needed -= 1
                return offset
            }
            try source.skip()
        }
        return nil
    }

    /// The next sample of the order (an offset in the shard). `take` is called with its slot
    /// before the slot is refilled: the caller copies the sample out there.
    @discardableResult
    public mutating func emit<Source: ShuffleSource>(_ source: inout Source, _ take: (_ slot: Int, _ offset: Int) throws -> Void) throws -> Int {
        precondition(emitted < used, "BufferedShuffle: all \(used) samples of the epoch were emitted")
        if !filled {
            filled = true
            while slots.count < capacity, let offset = try nextKept(&source) {
                try source.read(into: slots.count)
                slots.append(offset)
            }
        }
        let slot = draws.nextInt(below: slots.count)
        let offset = slots[slot]
        try take(slot, offset)
        if let next = try nextKept(&source) {
            try source.read(into: slot)
            slots[slot] = next
        } else {
            let last = slots.count - 1
            if slot != last {
                try source.move(from: last, to: slot)
                slots[slot] = slots[last]
            }
            slots.removeLast()
        }
        emitted += 1
        return offset
    }

    /// The whole epoch's order of the shard's offsets (u of them), holding no samples.
    public static func order(count: Int, used: Int, capacity: Int, seed: UInt64, epoch: Int, shard: Int) -> [Int] {
        var shuffle = BufferedShuffle(count: count, used: used, capacity: capacity, seed: seed, epoch: epoch, shard: shard)
        var source = IndexOnlySource()
        return (0..<used).map { _ in try! shuffle.emit(&source) { _, _ in } }
    }
}
