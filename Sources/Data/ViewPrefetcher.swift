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

    /// The first error of the batch sequence (a corrupt shard while streaming), thrown by `next()`.
    private var failure: Error?

    /// Starts making `steps` batches from `start` on, for rank r of P, from rows held.
    public convenience init(maker: BatchMaker, sampler: Sampler, rank: Int, worldSize: Int,
                            start: SamplerPosition, steps: Int, depth: Int) throws {
        try self.init(batches: SampledBatches(maker: maker, sampler: sampler, rank: rank, worldSize: worldSize, start: start),
                      floatsPerBatch: maker.floatsPerBatch, steps: steps, depth: depth)
    }

    /// Starts making the next `steps` batches of `batches` (which the thread alone uses from now
    /// on): with `StreamedBatches` the shards are read and decompressed on this thread too.
    public init(batches: BatchSequence, floatsPerBatch: Int, steps: Int, depth: Int) throws {
        precondition(depth >= 1, "ViewPrefetcher needs depth >= 1, got \(depth)")
        self.depth = depth
        slots = (0...depth).map { _ in Tensor(zeros: [floatsPerBatch]) }
        nonisolated(unsafe) let batches = batches
        let thread = Thread { [self] in
            for k in 0..<steps {
                condition.lock()
                while !cancelled && k >= consumed + depth { condition.wait() }
                let stop = cancelled
                condition.unlock()
                if stop { break }
                do {
                    try batches.makeNext(into: slots[k % slots.count].data)
                } catch {
                    condition.lock()
                    failure = error
                    condition.unlock()
                    break
                }
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
    /// - Throws: the error that stopped the batch sequence, once the batches before it are used.
    public func next() throws -> (batch: UnsafePointer<Float>, waited: Double) {
        let t0 = Date()
        condition.lock()
        consumed += 1                          // the previous batch's buffer is free again
        condition.broadcast()
        while produced < consumed && !finished { condition.wait() }
        if produced < consumed, let failure {
            condition.unlock()
            throw failure
        }
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
