import Foundation
import Tensor

/// Makes the two views of upcoming batches on a background thread, at most `depth` batches
/// ahead of the training loop (a bounded ring of view buffers), so augmentation overlaps the
/// step instead of preceding it.
///
/// The views are the same as made in the loop: a view is a pure function of (seed, epoch,
/// sample, view), whichever thread makes it. Shapes: B images per step, V = 2B rows of I pixels.
public final class ViewPrefetcher: @unchecked Sendable {
    public let depth: Int
    private let slots: [Tensor]                 // depth + 1 buffers of V x I
    private let condition = NSCondition()
    private var produced = 0                    // batches whose views are ready
    private var consumed = 0                    // batches handed to the loop (the last one is still in use)
    private var cancelled = false
    private var finished = false
    private var thread: Thread?

    /// Starts making the views of `steps` batches from `start` on, for this rank's `shards`.
    public init(dataset: ImageDataset, viewMaker: ViewMaker, sampler: Sampler, shards: [Int], seed: UInt64,
                start: SamplerPosition, steps: Int, depth: Int) {
        precondition(depth >= 1, "ViewPrefetcher needs depth >= 1, got \(depth)")
        self.depth = depth
        let rows = 2 * sampler.perShard * shards.count
        slots = (0...depth).map { _ in Tensor(zeros: [rows, dataset.pixelsPerImage]) }
        let thread = Thread { [self] in
            var position = start
            var order: EpochOrder? = nil
            for k in 0..<steps {
                condition.lock()
                while !cancelled && k >= consumed + depth { condition.wait() }
                let stop = cancelled
                condition.unlock()
                if stop { break }
                if order?.epoch != position.epoch { order = sampler.order(epoch: position.epoch, shards: shards) }
                viewMaker.makeViews(dataset: dataset, samples: order!.batch(position.batch), epoch: position.epoch,
                                    seed: seed, into: slots[k % slots.count].data)
                position = position.advanced(batchesPerEpoch: sampler.batchesPerEpoch)
                condition.lock()
                produced = k + 1
                condition.broadcast()
                condition.unlock()
            }
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "contrast-views"
        self.thread = thread
        thread.start()
    }

    deinit { stop() }

    /// The views of the next batch (V x I), valid until the next call; and the seconds spent waiting for them.
    public func next() -> (views: UnsafePointer<Float>, waited: Double) {
        let t0 = Date()
        condition.lock()
        consumed += 1                          // the previous batch's buffer is free again
        condition.broadcast()
        while produced < consumed && !finished { condition.wait() }
        precondition(produced >= consumed, "ViewPrefetcher: asked for more batches than it was started for")
        let slot = slots[(consumed - 1) % slots.count]
        condition.unlock()
        return (UnsafePointer(slot.data), Date().timeIntervalSince(t0))
    }

    /// Ends the background thread (idempotent); waits for it to leave its current batch.
    public func stop() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        while thread != nil && !finished { condition.wait() }
        thread = nil
        condition.unlock()
    }
}
