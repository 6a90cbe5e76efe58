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
/// The N samples are cut into S virtual shards, contiguous ranges whose sizes differ by at
/// most 1 (shard s = [floor(s N / S), floor((s+1) N / S))). Each epoch every shard is shuffled
/// by Fisher-Yates with `RandomStream(seed, id(.sampleOrder, epoch, s))`. With k = B / S, global
/// batch b is the concatenation over s = 0..<S of perm_s[b k ..< (b+1) k]; an epoch has
/// min_s floor(|shard s| / k) batches, the rest of each shard is skipped that epoch.
/// Rank r of P takes the shards s with s mod P == r, so the union over ranks of the local
/// batches is the global batch for every P dividing S, and the sequence depends only on
/// (seed, epoch). Shapes: N samples, S shards, B global batch, P ranks, k = B / S.
public struct Sampler: Sendable, Equatable {
    public let sampleCount: Int
    public let virtualShards: Int
    public let globalBatchSize: Int
    public let seed: UInt64
    /// k = B / S: samples each shard gives to each global batch.
    public let perShard: Int
    public let batchesPerEpoch: Int

    /// - Throws: `DataError.batchNotMultipleOfShards` when S does not divide B,
    ///   `DataError.epochTooShort` when the smallest shard cannot fill one batch.
    public init(sampleCount: Int, globalBatchSize: Int, virtualShards: Int, seed: UInt64) throws {
        precondition(sampleCount > 0 && globalBatchSize > 0 && virtualShards > 0,
                     "Sampler: sample count, batch size and shard count must be positive")
        guard globalBatchSize % virtualShards == 0 else {
            throw DataError.batchNotMultipleOfShards(globalBatchSize: globalBatchSize, virtualShards: virtualShards)
        }
        self.sampleCount = sampleCount
        self.virtualShards = virtualShards
        self.globalBatchSize = globalBatchSize
        self.seed = seed
        self.perShard = globalBatchSize / virtualShards
        // The smallest shard has floor(N / S) samples.
        self.batchesPerEpoch = (sampleCount / virtualShards) / perShard
        guard batchesPerEpoch > 0 else {
            throw DataError.epochTooShort(sampleCount: sampleCount, virtualShards: virtualShards, perShard: perShard)
        }
    }

    /// Samples of shard s: [floor(s N / S), floor((s+1) N / S)).
    public func shardRange(_ shard: Int) -> Range<Int> {
        precondition(shard >= 0 && shard < virtualShards, "shard \(shard) out of range 0..<\(virtualShards)")
        return (shard * sampleCount / virtualShards)..<((shard + 1) * sampleCount / virtualShards)
    }

    /// Shards rank r of P reads: s = r, r + P, r + 2P, ...
    /// - Throws: `DataError.shardsNotMultipleOfRanks` when P does not divide S.
    public func shards(rank: Int, worldSize: Int) throws -> [Int] {
        precondition(worldSize > 0 && rank >= 0 && rank < worldSize, "rank \(rank) out of range 0..<\(worldSize)")
        guard virtualShards % worldSize == 0 else {
            throw DataError.shardsNotMultipleOfRanks(virtualShards: virtualShards, worldSize: worldSize)
        }
        return Array(stride(from: rank, to: virtualShards, by: worldSize))
    }

    /// Shard s shuffled for `epoch`: Fisher-Yates from the back, i = n-1 ... 1 swaps i with
    /// j = nextInt(below: i + 1), one draw per step.
    public func permutation(epoch: Int, shard: Int) -> [Int] {
        var order = Array(shardRange(shard))
        var random = RandomStream(seed: seed, stream: RandomStream.id(.sampleOrder, UInt64(epoch), UInt64(shard)))
        var i = order.count - 1
        while i > 0 {
            order.swapAt(i, random.nextInt(below: i + 1))
            i -= 1
        }
        return order
    }

    /// One epoch's shuffled shards, computed once and sliced by every batch of the epoch.
    public func order(epoch: Int, shards: [Int]? = nil) -> EpochOrder {
        let chosen = shards ?? Array(0..<virtualShards)
        return EpochOrder(epoch: epoch, perShard: perShard, batchesPerEpoch: batchesPerEpoch,
                          shards: chosen, permutations: chosen.map { permutation(epoch: epoch, shard: $0) })
    }

    /// Global batch `index` of `epoch`: B sample indices, shard 0's share first.
    public func globalBatch(epoch: Int, index: Int) -> [Int] {
        order(epoch: epoch).batch(index)
    }

    /// The part of global batch `index` that rank r of P reads: B / P samples from its shards,
    /// in increasing shard order. Shuffles only this rank's shards.
    public func localBatch(epoch: Int, index: Int, rank: Int, worldSize: Int) throws -> [Int] {
        order(epoch: epoch, shards: try shards(rank: rank, worldSize: worldSize)).batch(index)
    }
}

/// The shuffled shards of one epoch (all of them, or one rank's); batches are slices of it.
public struct EpochOrder: Sendable {
    public let epoch: Int
    public let perShard: Int
    public let batchesPerEpoch: Int
    /// The shards held, in increasing order, and each one's permutation of its samples.
    public let shards: [Int]
    public let permutations: [[Int]]

    /// Concatenation over the held shards of perm_s[b k ..< (b+1) k].
    public func batch(_ index: Int) -> [Int] {
        precondition(index >= 0 && index < batchesPerEpoch, "batch \(index) out of range 0..<\(batchesPerEpoch)")
        var samples: [Int] = []
        samples.reserveCapacity(perShard * permutations.count)
        for permutation in permutations {
            samples.append(contentsOf: permutation[(index * perShard)..<((index + 1) * perShard)])
        }
        return samples
    }
}
