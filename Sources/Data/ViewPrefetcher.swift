import Foundation
import Tensor

/// Makes upcoming batches (decoding and augmenting their samples) on a background thread, at
/// most `depth` batches ahead of the training loop (a bounded ring of batch buffers), so the
/// data work overlaps the step instead of preceding it.
///
/// The batches are the same as made in the loop: a batch is a pure function of (samples,
/// epoch), whichever thread makes it.
public final class ViewPrefetcher: @unchecked Sendable {
    public let depth: Int
    private let slots: [Tensor]                 // depth + 1 buffers of one batch each
    private let condition = NSCondition()
    private var produced = 0                    // batches whose views are ready
    private var consumed = 0                    // batches handed to the loop (the last one is still in use)
    private var cancelled = false
    private var finished = false
    private var thread: Thread?

    /// Starts making `steps` batches from `start` on, for rank r of P.
    public init(maker: BatchMaker, sampler: Sampler, rank: Int, worldSize: Int,
                start: SamplerPosition, steps: Int, depth: Int) throws {
        precondition(depth >= 1, "ViewPrefetcher needs depth >= 1, got \(depth)")
        self.depth = depth
        slots = (0...depth).map { _ in Tensor(zeros: [maker.floatsPerBatch]) }
        _ = try sampler.slots(rank: rank, worldSize: worldSize)
        let thread = Thread { [self] in
            var position = start
            var order: EpochOrder? = nil
            for k in 0..<steps {
                condition.lock()
                while !cancelled && k >= consumed + depth { condition.wait() }
                let stop = cancelled
                condition.unlock()
                if stop { break }
                if order?.epoch != position.epoch { order = try! sampler.order(epoch: position.epoch, rank: rank, worldSize: worldSize) }
                maker.makeBatch(samples: order!.batch(position.batch), epoch: position.epoch, into: slots[k % slots.count].data)
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

    /// The next batch, valid until the next call; and the seconds spent waiting for it.
    public func next() -> (batch: UnsafePointer<Float>, waited: Double) {
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
