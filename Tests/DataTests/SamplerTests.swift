import Testing
@testable import Data

@Suite struct SamplerTests {
    // 1,003 samples in 8 shards (sizes 125 and 126), 16 per global batch: k = 2, 62 batches.
    let sampler = try! Sampler(sampleCount: 1_003, globalBatchSize: 16, virtualShards: 8, seed: 42)

    @Test func shardsAreContiguousAndBalanced() {
        let ranges = (0..<8).map { sampler.shardRange($0) }
        #expect(ranges.first!.lowerBound == 0 && ranges.last!.upperBound == 1_003)
        for s in 1..<8 { #expect(ranges[s].lowerBound == ranges[s - 1].upperBound) }
        let sizes = ranges.map(\.count)
        #expect(sizes.max()! - sizes.min()! <= 1)
        #expect(sampler.perShard == 2 && sampler.batchesPerEpoch == 62)
    }

    @Test func localBatchesUnionToTheGlobalBatch() throws {
        for epoch in 0..<3 {
            for index in [0, 1, 30, 61] {
                let global = sampler.globalBatch(epoch: epoch, index: index)
                #expect(global.count == 16)
                for worldSize in [1, 2, 4, 8] {
                    var union: [Int] = []
                    for rank in 0..<worldSize {
                        let local = try sampler.localBatch(epoch: epoch, index: index, rank: rank, worldSize: worldSize)
                        #expect(local.count == 16 / worldSize)
                        union += local
                    }
                    #expect(union.sorted() == global.sorted(), "P = \(worldSize), epoch \(epoch), batch \(index)")
                }
            }
        }
        // With one rank the local batch is the global batch, in the same order.
        #expect(try sampler.localBatch(epoch: 1, index: 5, rank: 0, worldSize: 1) == sampler.globalBatch(epoch: 1, index: 5))
    }

    @Test func batchTakesEachShardsShare() {
        let batch = sampler.globalBatch(epoch: 2, index: 7)
        for s in 0..<8 {
            let share = batch[(2 * s)..<(2 * s + 2)]
            #expect(share.allSatisfy { sampler.shardRange(s).contains($0) })
            #expect(Array(share) == Array(sampler.permutation(epoch: 2, shard: s)[14..<16]))
        }
    }

    @Test func orderDependsOnlyOnSeedAndEpoch() throws {
        let again = try Sampler(sampleCount: 1_003, globalBatchSize: 16, virtualShards: 8, seed: 42)
        let otherSeed = try Sampler(sampleCount: 1_003, globalBatchSize: 16, virtualShards: 8, seed: 43)
        let epoch0 = (0..<62).map { sampler.globalBatch(epoch: 0, index: $0) }
        #expect(epoch0 == (0..<62).map { again.globalBatch(epoch: 0, index: $0) })
        #expect(epoch0 != (0..<62).map { otherSeed.globalBatch(epoch: 0, index: $0) })
        #expect(epoch0 != (0..<62).map { sampler.globalBatch(epoch: 1, index: $0) })
        // The epoch order computed once gives the same batches as computing each on its own.
        let order = try sampler.order(epoch: 0)
        #expect(epoch0 == (0..<62).map { order.batch($0) })
    }

    @Test func epochCoversAllButTheRemainderOnce() {
        for epoch in 0..<2 {
            let all = (0..<sampler.batchesPerEpoch).flatMap { sampler.globalBatch(epoch: epoch, index: $0) }
            #expect(Set(all).count == all.count)                  // no repeats
            #expect(all.count == 62 * 16)                         // 1,003 - 992 = 11 left out
            // Every shard gives 124 samples; what is left is each shard's permutation tail.
            for s in 0..<8 {
                let tail = Set(sampler.permutation(epoch: epoch, shard: s).dropFirst(124))
                #expect(tail.isDisjoint(with: all))
            }
        }
    }

    @Test func permutationIsAPermutation() {
        let p = sampler.permutation(epoch: 5, shard: 3)
        #expect(p.sorted() == Array(sampler.shardRange(3)))
        #expect(p != Array(sampler.shardRange(3)))
    }

    @Test func errorsNameTheConfigKeys() throws {
        let notMultiple = #expect(throws: DataError.self) {
            try Sampler(sampleCount: 1_000, globalBatchSize: 100, virtualShards: 64, seed: 0)
        }
        #expect(notMultiple == .batchNotMultipleOfShards(globalBatchSize: 100, virtualShards: 64))
        #expect(notMultiple?.description.contains("data.batch_per_rank") == true)
        #expect(notMultiple?.description.contains("data.virtual_shards") == true)

        let wrongRanks = #expect(throws: DataError.self) {
            try sampler.localBatch(epoch: 0, index: 0, rank: 0, worldSize: 3)
        }
        #expect(wrongRanks == .batchNotMultipleOfRanks(globalBatchSize: 16, worldSize: 3))
        #expect(wrongRanks?.description.contains("data.batch_per_rank") == true)

        #expect(throws: DataError.epochTooShort(sampleCount: 10, virtualShards: 8, perShard: 2)) {
            try Sampler(sampleCount: 10, globalBatchSize: 16, virtualShards: 8, seed: 0)
        }
    }

    /// A prepared data set's shards are its files: the errors name the folder, the file count and
    /// `prepare --shards`, give values that work, and do not blame data.virtual_shards.
    @Test func preparedShardErrorsNameTheShardFiles() throws {
        let ranges = (0..<4).map { ($0 * 512)..<(($0 + 1) * 512) }
        let notMultiple = #expect(throws: DataError.self) {
            try Sampler(preparedShards: ranges, directory: "data/mine", batchPerRank: 3, worldSize: 2, seed: 0)
        }
        #expect(notMultiple == .preparedBatchNotMultipleOfShards(directory: "data/mine", shards: 4, batchPerRank: 3, worldSize: 2))
        let text = notMultiple?.description ?? ""
        for fragment in ["global batch 6 (data.batch_per_rank 3 x 2 ranks)", "4 shard files of the prepared data set data/mine",
                         "--shards", "set data.batch_per_rank to 4", "--shards 3 (a divisor of 6)"] {
            #expect(text.contains(fragment), "\(fragment): \(text)")
        }
        #expect(!text.contains("data.virtual_shards ="), "\(text)")
        // The suggested values really work.
        _ = try Sampler(preparedShards: ranges, directory: "d", batchPerRank: 4, worldSize: 2, seed: 0)
        _ = try Sampler(preparedShards: (0..<3).map { ($0 * 512)..<(($0 + 1) * 512) }, directory: "d", batchPerRank: 3, worldSize: 2, seed: 0)

        let tooShort = #expect(throws: DataError.self) {
            try Sampler(preparedShards: ranges, directory: "data/mine", batchPerRank: 1_536, worldSize: 2, seed: 0)
        }
        let short = tooShort?.description ?? ""
        for fragment in ["2048 samples in 4 shard files", "the smallest of 512", "global batch 3072 (data.batch_per_rank 1536 x 2 ranks)",
                         "takes 768 from each", "lower data.batch_per_rank to 1024 or less"] {
            #expect(short.contains(fragment), "\(fragment): \(short)")
        }
        _ = try Sampler(preparedShards: ranges, directory: "d", batchPerRank: 1_024, worldSize: 2, seed: 0)
        // Fewer shards help only when the data set holds a whole global batch: here 750 samples
        // cut by --shard-size 100, whose last shard of 50 is the short one.
        let bySize = (0..<8).map { ($0 * 100)..<min(750, ($0 + 1) * 100) }
        let fewer = #expect(throws: DataError.self) {
            try Sampler(preparedShards: bySize, directory: "d", batchPerRank: 512, worldSize: 1, seed: 0)
        }
        let fewerText = fewer?.description ?? ""
        #expect(fewerText.contains("lower data.batch_per_rank to 400 or less") && fewerText.contains("re-prepare it with fewer shards (--shards 4)"),
                "\(fewerText)")
        _ = try Sampler(preparedShards: bySize, directory: "d", batchPerRank: 400, worldSize: 1, seed: 0)
        _ = try Sampler(preparedShards: try ShardLayout.count(4).ranges(sampleCount: 750), directory: "d", batchPerRank: 512, worldSize: 1, seed: 0)
        // The fashion-mnist messages keep naming data.virtual_shards.
        #expect(DataError.batchNotMultipleOfShards(globalBatchSize: 100, virtualShards: 64).description.contains("data.virtual_shards = 64"))
    }

    /// Shard files of unequal sizes (a prepared data set cut every 40 samples, the last short),
    /// 12 shards, 24 samples per global batch (k = 2): on P = 1, 2, 3, 4 ranks every sample of an
    /// epoch is read once, except each shard's permutation tail; each rank reads only its own
    /// shards, and a shard is shared by two ranks only where P does not divide S (at most P - 1).
    @Test(arguments: [1, 2, 3, 4])
    func everyRankCountSeesEachSampleOnceFromItsOwnShards(worldSize: Int) throws {
        let ranges = (0..<12).map { s in (s * 40)..<min(470, (s + 1) * 40) }
        let sampler = try Sampler(shardRanges: ranges, globalBatchSize: 24, seed: 9)
        #expect(sampler.perShard == 2 && sampler.batchesPerEpoch == 15)    // the last shard has 30 samples
        var readers = [Int](repeating: 0, count: 12)
        for rank in 0..<worldSize {
            for shard in try sampler.shards(rank: rank, worldSize: worldSize) { readers[shard] += 1 }
        }
        #expect(readers.allSatisfy { $0 >= 1 })
        if 12 % worldSize == 0 {
            #expect(readers.allSatisfy { $0 == 1 })
        } else {
            #expect(readers.filter { $0 > 1 }.count <= worldSize - 1 && readers.allSatisfy { $0 <= 2 })
        }
        for epoch in 0..<2 {
            var seen: [Int] = []
            for index in 0..<sampler.batchesPerEpoch {
                var union: [Int] = []
                for rank in 0..<worldSize {
                    let own = try sampler.shards(rank: rank, worldSize: worldSize)
                    let local = try sampler.localBatch(epoch: epoch, index: index, rank: rank, worldSize: worldSize)
                    #expect(local.count == 24 / worldSize)
                    #expect(local.allSatisfy { sample in own.contains { ranges[$0].contains(sample) } }, "rank \(rank) read outside its shards")
                    #expect(try sampler.samples(rank: rank, worldSize: worldSize).contains(local.min()!))
                    union += local
                }
                // Rank-major concatenation is the global batch itself, whatever P.
                #expect(union == sampler.globalBatch(epoch: epoch, index: index))
                seen += union
            }
            #expect(Set(seen).count == seen.count)                         // nothing twice
            #expect(seen.count == 15 * 24)                                 // 470 - 360 = 110 skipped:
            for s in 0..<12 {                                              // each shard's tail after 30
                let tail = Set(sampler.permutation(epoch: epoch, shard: s).dropFirst(30))
                #expect(tail.isDisjoint(with: seen))
            }
        }
    }

    @Test func positionAdvancesAndEncodes() throws {
        var position = SamplerPosition()
        for _ in 0..<5 { position = position.advanced(batchesPerEpoch: 3) }
        #expect(position == SamplerPosition(epoch: 1, batch: 2))
        #expect(position.advanced(batchesPerEpoch: 3) == SamplerPosition(epoch: 2, batch: 0))
    }

    @Test func benchmarkConfiguration() throws {
        // data.batch_per_rank 256, data.virtual_shards 64, on 1, 2 and 4 ranks: 4, 8, 16 per shard.
        for worldSize in [1, 2, 4] {
            let s = try Sampler(sampleCount: 60_000, globalBatchSize: 256 * worldSize, virtualShards: 64, seed: 1)
            #expect(s.batchesPerEpoch == (60_000 / 64) / (4 * worldSize))
            #expect(try s.localBatch(epoch: 0, index: 0, rank: worldSize - 1, worldSize: worldSize).count == 256)
        }
    }
}

@Suite struct LabelSubsetTests {
    /// A fixed subset of about the asked fraction, the same whoever asks; 1 keeps every label.
    @Test func subsetIsFixedAndNearTheFraction() {
        let subset = LabelSubset(fraction: 0.1, seed: 7)
        let labeled = (0..<20_000).filter { subset.isLabeled($0) }
        #expect(abs(Double(labeled.count) / 20_000 - 0.1) < 0.01)      // 5 sigma is 0.0106
        #expect(labeled == (0..<20_000).filter { LabelSubset(fraction: 0.1, seed: 7).isLabeled($0) })
        #expect(labeled != (0..<20_000).filter { LabelSubset(fraction: 0.1, seed: 8).isLabeled($0) })
        #expect((0..<100).allSatisfy { LabelSubset(fraction: 1, seed: 7).isLabeled($0) })
        #expect(!(0..<100).contains { LabelSubset(fraction: 0, seed: 7).isLabeled($0) })
    }
}
