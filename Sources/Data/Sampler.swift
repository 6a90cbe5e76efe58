import Tensor

/// Where a run is in its data: the next batch to train on. Stored in checkpoints.
public struct SamplerPosition: Codable, Sendable, Equatable, Hashable {
    public var epoch: Int
    public var batch: Int

    public init(epoch: Int = 0, batch: Int = 0) {
        self.epoch = epoch
        self.batch = batch
    }

    /// The position after this one: the next batch, or batch 0 of the next epoch.
    public func advanced(batchesPerEpoch: Int) -> SamplerPosition {
        precondition(batchesPerEpoch > 0, "SamplerPosition.advanced: batchesPerEpoch must be positive")
        return batch + 1 < batchesPerEpoch ? SamplerPosition(epoch: epoch, batch: batch + 1)
                                           : SamplerPosition(epoch: epoch + 1, batch: 0)
    }
}

/// Order of samples in global and per-rank batches, independent of the rank count.
///
/// The N samples are cut into S shards, contiguous ranges: either virtual shards of an
/// in-memory data set, whose sizes differ by at most 1 (shard s = [floor(s N / S),
/// floor((s+1) N / S))), or the shard files of a prepared data set (any sizes). Each epoch every
/// shard is shuffled by Fisher-Yates with `RandomStream(seed, id(.sampleOrder, epoch, s))`.
/// With k = B / S, global batch b is the concatenation over s = 0..<S of perm_s[b k ..< (b+1) k]:
/// B slots, shard-major. An epoch has min_s floor(|shard s| / k) batches; the rest of each
/// shard (its permutation's tail, different every epoch) is skipped that epoch. With a shuffle
/// buffer (`data.hold: stream`) perm_s is instead the order of `BufferedShuffle`, the rest being
/// the same: the structure, and so the rank layout, does not depend on how a shard is shuffled.
///
/// Rank r of P fills the slots [r B / P, (r+1) B / P) of every global batch, so the union over
/// ranks of the local batches is the global batch, in order, for every P, and the sequence
/// depends only on (seed, epoch). When P divides S these slots are exactly the shards
/// [r S / P, (r+1) S / P): each rank reads S / P whole shards. Otherwise a shard can straddle
/// two ranks, which then both read it and each take their fixed part of its share of every
/// batch; at most P - 1 shards are read by two ranks, and every rank still gets B / P samples.
/// Shapes: N samples, S shards, B global batch, P ranks, k = B / S.
public struct Sampler: Sendable, Equatable {
    public let sampleCount: Int
    public let globalBatchSize: Int
    public let seed: UInt64
    /// The shards' sample ranges, contiguous and in order, covering 0..<N.
    public let shardRanges: [Range<Int>]
    /// k = B / S: samples each shard gives to each global batch.
    public let perShard: Int
    public let batchesPerEpoch: Int
    /// 0: each shard is shuffled whole (Fisher-Yates). M > 0 (`data.hold: stream`): each shard's
    /// order is that of a bounded shuffle buffer of M samples over the shard read in file order
    /// (`BufferedShuffle`), so a rank can stream its shards holding M samples of each.
    public let shuffleBuffer: Int

    public var virtualShards: Int { shardRanges.count }

    /// S virtual shards of near-equal size over N samples held in memory.
    /// - Throws: `DataError.batchNotMultipleOfShards` when S does not divide B,
    ///   `DataError.epochTooShort` when the smallest shard cannot fill one batch.
    public init(sampleCount: Int, globalBatchSize: Int, virtualShards: Int, seed: UInt64, shuffleBuffer: Int = 0) throws {
        precondition(sampleCount > 0 && virtualShards > 0, "Sampler: sample count and shard count must be positive")
        try self.init(shardRanges: (0..<virtualShards).map { s in
                          (s * sampleCount / virtualShards)..<((s + 1) * sampleCount / virtualShards)
                      }, globalBatchSize: globalBatchSize, seed: seed, shuffleBuffer: shuffleBuffer)
    }

    /// Shards with the given sample ranges (a prepared data set's shard files).
    /// - Throws: `DataError.batchNotMultipleOfShards` when S does not divide B,
    ///   `DataError.epochTooShort` when the smallest shard cannot fill one batch.
    public init(shardRanges: [Range<Int>], globalBatchSize: Int, seed: UInt64, shuffleBuffer: Int = 0) throws {
        precondition(!shardRanges.isEmpty && globalBatchSize > 0, "Sampler: needs shards and a positive batch size")
        precondition(shuffleBuffer >= 0, "Sampler: the shuffle buffer cannot be negative")
        precondition(shardRanges.first!.lowerBound == 0 && zip(shardRanges, shardRanges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound },
                     "Sampler: shard ranges must be contiguous from 0")
        guard globalBatchSize % shardRanges.count == 0 else {
            throw DataError.batchNotMultipleOfShards(globalBatchSize: globalBatchSize, virtualShards: shardRanges.count)
        }
        self.sampleCount = shardRanges.last!.upperBound
        self.globalBatchSize = globalBatchSize
        self.seed = seed
        self.shuffleBuffer = shuffleBuffer
        self.shardRanges = shardRanges
        self.perShard = globalBatchSize / shardRanges.count
        let smallest = shardRanges.map(\.count).min()!
        self.batchesPerEpoch = smallest / perShard
        guard batchesPerEpoch > 0 else {
            throw DataError.epochTooShort(sampleCount: sampleCount, virtualShards: shardRanges.count, perShard: perShard)
        }
    }

    /// The shard files of the prepared data set in `directory` as shards, for a global batch
    /// of `batchPerRank` x `worldSize`. Its errors name the files and `contrast prepare --shards`,
    /// not data.virtual_shards, which does not apply to a prepared data set.
    /// - Throws: `DataError.preparedBatchNotMultipleOfShards`, `DataError.preparedEpochTooShort`.
    public init(preparedShards shardRanges: [Range<Int>], directory: String, batchPerRank: Int, worldSize: Int, seed: UInt64,
                shuffleBuffer: Int = 0) throws {
        do {
            try self.init(shardRanges: shardRanges, globalBatchSize: batchPerRank * worldSize, seed: seed, shuffleBuffer: shuffleBuffer)
        } catch DataError.batchNotMultipleOfShards {
            throw DataError.preparedBatchNotMultipleOfShards(directory: directory, shards: shardRanges.count,
                                                             batchPerRank: batchPerRank, worldSize: worldSize)
        } catch DataError.epochTooShort {
            throw DataError.preparedEpochTooShort(directory: directory, sampleCount: shardRanges.last!.upperBound, shards: shardRanges.count,
                                                  smallestShard: shardRanges.map(\.count).min()!, batchPerRank: batchPerRank, worldSize: worldSize)
        }
    }

    /// Samples of shard s.
    public func shardRange(_ shard: Int) -> Range<Int> {
        precondition(shard >= 0 && shard < virtualShards, "shard \(shard) out of range 0..<\(virtualShards)")
        return shardRanges[shard]
    }

    /// Slots of every global batch that rank r of P fills: [r B / P, (r+1) B / P).
    /// - Throws: `DataError.batchNotMultipleOfRanks` when P does not divide B.
    public func slots(rank: Int, worldSize: Int) throws -> Range<Int> {
        precondition(worldSize > 0 && rank >= 0 && rank < worldSize, "rank \(rank) out of range 0..<\(worldSize)")
        guard globalBatchSize % worldSize == 0 else {
            throw DataError.batchNotMultipleOfRanks(globalBatchSize: globalBatchSize, worldSize: worldSize)
        }
        let local = globalBatchSize / worldSize
        return (rank * local)..<((rank + 1) * local)
    }

    /// Shards rank r of P reads: those its slots fall in, a contiguous run.
    public func shards(rank: Int, worldSize: Int) throws -> Range<Int> {
        let slots = try slots(rank: rank, worldSize: worldSize)
        return (slots.lowerBound / perShard)..<((slots.upperBound - 1) / perShard + 1)
    }

    /// Samples rank r of P holds: the union of its shards, one contiguous range.
    public func samples(rank: Int, worldSize: Int) throws -> Range<Int> {
        let shards = try shards(rank: rank, worldSize: worldSize)
        return shardRanges[shards.lowerBound].lowerBound..<shardRanges[shards.upperBound - 1].upperBound
    }

    /// Samples each shard gives an epoch: batches per epoch x k.
    public var usedPerShard: Int { batchesPerEpoch * perShard }

    /// Shard s shuffled for `epoch`: Fisher-Yates from the back, i = n-1 ... 1 swaps i with
    /// j = nextInt(below: i + 1), one draw per step. With a shuffle buffer: the u = `usedPerShard`
    /// samples `BufferedShuffle` emits, in its order (only they are used; the epoch's batches
    /// read positions 0 ..< u of either permutation).
    public func permutation(epoch: Int, shard: Int) -> [Int] {
        if shuffleBuffer > 0 {
            let range = shardRange(shard)
            return BufferedShuffle.order(count: range.count, used: usedPerShard, capacity: shuffleBuffer, seed: seed,
                                         epoch: epoch, shard: shard).map { range.lowerBound + $0 }
        }
        var order = Array(shardRange(shard))
        var random = RandomStream(seed: seed, stream: RandomStream.id(.sampleOrder, UInt64(epoch), UInt64(shard)))
        var i = order.count - 1
        while i > 0 {
            order.swapAt(i, random.nextInt(below: i + 1))
            i -= 1
        }
        return order
    }

    /// One epoch's shuffled shards for rank r of P (by default the whole global batch),
    /// computed once and sliced by every batch of the epoch.
    public func order(epoch: Int, rank: Int = 0, worldSize: Int = 1) throws -> EpochOrder {
        let slots = try slots(rank: rank, worldSize: worldSize)
        let shards = try shards(rank: rank, worldSize: worldSize)
        return EpochOrder(epoch: epoch, perShard: perShard, batchesPerEpoch: batchesPerEpoch, slots: slots,
                          shards: shards, permutations: shards.map { permutation(epoch: epoch, shard: $0) })
    }

    /// Global batch `index` of `epoch`: B sample indices, shard 0's share first.
    public func globalBatch(epoch: Int, index: Int) -> [Int] {
        try! order(epoch: epoch).batch(index)
    }

    /// The part of global batch `index` that rank r of P reads: its B / P slots, in order.
    /// Shuffles only this rank's shards.
    public func localBatch(epoch: Int, index: Int, rank: Int, worldSize: Int) throws -> [Int] {
        try order(epoch: epoch, rank: rank, worldSize: worldSize).batch(index)
    }
}

/// The shuffled shards of one epoch that one rank reads; its batches are slices of them.
public struct EpochOrder: Sendable {
    public let epoch: Int
    public let perShard: Int
    public let batchesPerEpoch: Int
    /// The slots of the global batch this order fills.
    public let slots: Range<Int>
    /// The shards those slots fall in, and each one's permutation of its samples.
    public let shards: Range<Int>
    public let permutations: [[Int]]

    /// Slot j of batch b is perm_s[b k + j mod k] with s = j / k, for j in `slots`.
    public func batch(_ index: Int) -> [Int] {
        precondition(index >= 0 && index < batchesPerEpoch, "batch \(index) out of range 0..<\(batchesPerEpoch)")
        var samples: [Int] = []
        samples.reserveCapacity(slots.count)
        for slot in slots {
            let shard = slot / perShard
            samples.append(permutations[shard - shards.lowerBound][index * perShard + slot % perShard])
        }
        return samples
    }
}
