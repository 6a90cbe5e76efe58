import TestSupport
import Config
import Testing
@testable import Data
@testable import Training

/// Each rank keeps only its shards of Fashion-MNIST, and they are the samples the whole data set
/// holds at those indices: P = 1's batches, cut by rank, are what the ranks make.
@Suite struct RankDataTests {
    @Test func eachRankHoldsOnlyItsShards() throws {
        let config = try smokeConfig(["data.virtual_shards=8"])
        let whole = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        #expect(whole.train.held == 0..<2048)
        for (p, expected) in [(2, [0..<1024, 1024..<2048]), (4, [0..<512, 512..<1024, 1024..<1536, 1536..<2048])] {
            for rank in 0..<p {
                let data = try TrainingData(config: config, rank: rank, worldSize: p, loadTest: false)
                #expect(data.train.held == expected[rank] && data.train.totalCount == 2048)
                #expect(data.shards == (rank * 8 / p)..<((rank + 1) * 8 / p))
                #expect(data.summary.contains("(\(data.shards.lowerBound)..<\(data.shards.upperBound) on this rank, \(expected[rank].count) samples)"))
                let samples = Array(data.train.held)
                var mine = [Float](repeating: -1, count: samples.count * 784), all = [Float](repeating: -2, count: samples.count * 784)
                data.train.writeInputs(samples, into: &mine)
                whole.train.writeInputs(samples, into: &all)
                #expect(mine == all)
                #expect(data.train.labels! == Array(whole.train.labels![samples.first!...samples.last!]))
            }
        }
        // P = 3 does not divide S = 4 (48 samples of each shard in a global batch of 192): the
        // shards straddling two ranks are held by both.
        let four = try smokeConfig(["data.virtual_shards=4"])
        let ranges = try (0..<3).map { try TrainingData(config: four, rank: $0, worldSize: 3, loadTest: false).train.held }
        #expect(ranges == [0..<1024, 512..<1536, 1024..<2048])
    }
}
