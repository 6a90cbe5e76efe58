import Testing
@testable import Data
@testable import Tensor

@Suite struct ViewPrefetcherTests {
    /// The background thread makes exactly the views the loop would, batch after batch,
    /// across an epoch boundary, for a rank's own shards; stopping early does not hang.
    @Test(arguments: [1, 3])
    func prefetchedViewsEqualViewsMadeInTheLoop(depth: Int) throws {
        let dataset = try FashionMNIST.load(split: .train, limit: 640)
        let sampler = try Sampler(sampleCount: dataset.count, globalBatchSize: 64, virtualShards: 8, seed: 5)
        let maker = TwoViewBatches(rows: SampleRows(dataset), augmentation: .image(ViewMaker(dataset: dataset)), seed: 5, samplesPerBatch: 32)
        let start = SamplerPosition(epoch: 0, batch: sampler.batchesPerEpoch - 2)
        let steps = 5
        let prefetcher = try ViewPrefetcher(maker: maker, sampler: sampler, rank: 1, worldSize: 2, start: start, steps: steps, depth: depth)
        let expected = Tensor(zeros: [64, dataset.pixelsPerImage])
        var position = start
        for _ in 0..<steps {
            let (views, _) = try prefetcher.next()
            let order = try sampler.order(epoch: position.epoch, rank: 1, worldSize: 2)
            maker.makeBatch(samples: order.batch(position.batch), epoch: position.epoch, into: expected.data)
            #expect((0..<expected.count).allSatisfy { views[$0].bitPattern == expected[$0].bitPattern }, "\(position)")
            position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
        }
        prefetcher.stop()

        let early = try ViewPrefetcher(maker: maker, sampler: sampler, rank: 1, worldSize: 2, start: start, steps: 100, depth: depth)
        _ = try early.next()
        early.stop()
    }
}
