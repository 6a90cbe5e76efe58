import Foundation
import Tensor

/// Sums a flat gradient buffer over ranks in buckets that start while backward is still running
/// (DESIGN.md decision 4). It knows nothing of models: the caller names the buffer and the ranges
/// of its whole tensors (a model's parameter arena, in Training).
///
/// Buckets are contiguous ranges of whole tensors, formed in *reverse* buffer order, the order
/// backward finishes them. Gradients go on the wire as fp32, bf16 or fp16;
/// the reduction sums in fp32 and the result lands back in the fp32 gradient buffer. fp16 is
/// multiplied by a dynamic scale before the cast (so small gradients survive) and divided
/// after; a non-finite sum, identical on every rank, skips the step everywhere, halves the
/// scale, and `scaleWindow` clean steps double it again. A non-finite summed loss (the caller's
/// judgement, also identical on every rank) skips the step the same way.
public final class GradientReducer {
    public let communicator: Communicator
    public let precision: WirePrecision
    public let buckets: [Range<Int>]
    public private(set) var scale: Float
    public let scaleWindow: Int
    public private(set) var cleanSteps = 0
    public private(set) var skippedSteps = 0
    /// Skipped steps since the last applied one (train.max_skipped_steps stops the run at K).
    public private(set) var skippedInARow = 0

    private let gradients: UnsafeMutablePointer<Float>
    private let wire: [UnsafeMutableRawPointer?]       // 16-bit wire copies; nil for fp32 (reduced in place)
    private var handles: [AllReduceHandle?]
    private var startTimes: [Double]
    private var completeTimes: [Double]
    private var nextBucket = 0                          // buckets start in order
    private var pollError: Error?

    /// Communication timing of the last step.
    public struct Timing: Sendable {
        /// Seconds the step waited for gradient all-reduces after backward (not hidden).
        public var exposed = 0.0
        /// Seconds buckets were in flight while backward still computed.
        public var hidden = 0.0
        /// Seconds spent casting and scaling to and from the wire format.
        public var conversion = 0.0
    }
    public private(set) var timing = Timing()

    /// `tensors`: the ranges of `gradients` (whole tensors, disjoint) whose sums are exchanged; what
    /// lies outside them (a frozen encoder's) is in no bucket, so it costs no traffic. The buffer must
    /// outlive the reducer.
    public init(gradients: UnsafeMutablePointer<Float>, tensors: [Range<Int>], communicator: Communicator,
                precision: WirePrecision, bucketBytes: Int, initialScale: Float = 65536, scaleWindow: Int = 500) {
        self.gradients = gradients
        self.communicator = communicator
        // One rank has nothing to exchange: a round trip through 16 bits would only lose precision.
        self.precision = communicator.size == 1 ? .fp32 : precision
        self.scale = self.precision == .fp16 ? initialScale : 1
        self.scaleWindow = scaleWindow
        buckets = Self.makeBuckets(tensors, bucketElements: max(1, bucketBytes / 4))
        wire = buckets.map { [precision = self.precision] range in
            precision == .fp32 ? nil : UnsafeMutableRawPointer.allocate(byteCount: range.count * 2, alignment: 64)
        }
        handles = Array(repeating: nil, count: buckets.count)
        startTimes = Array(repeating: 0, count: buckets.count)
        completeTimes = Array(repeating: 0, count: buckets.count)
    }

    deinit {
        for pointer in wire { pointer?.deallocate() }
    }

    /// Whole tensors, last first, grouped until a bucket holds at least `bucketElements`.
    static func makeBuckets(_ tensors: [Range<Int>], bucketElements: Int) -> [Range<Int>] {
        var buckets: [Range<Int>] = []
        var upper: Int? = nil, lower = 0
        for tensor in tensors.sorted(by: { $0.lowerBound > $1.lowerBound }) {
            if upper == nil { upper = tensor.upperBound }
            lower = tensor.lowerBound
            if upper! - lower >= bucketElements {
                buckets.append(lower..<upper!)
                upper = nil
            }
        }
        if let upper { buckets.append(lower..<upper) }
        return buckets
    }

    /// Call before backward.
    public func beginStep() {
        nextBucket = 0
        timing = Timing()
        pollError = nil
        for i in buckets.indices { handles[i] = nil; completeTimes[i] = 0 }
    }

    /// Every gradient at offset >= `offset` is final: start the buckets that are complete.
    public func gradientsFinal(from offset: Int) {
        while nextBucket < buckets.count && buckets[nextBucket].lowerBound >= offset {
            do { try start(nextBucket) } catch { pollError = pollError ?? error }
            nextBucket += 1
        }
        poll()
    }

    /// Lets in-flight all-reduces progress; called between chunks of backward.
    public func poll() {
        for i in 0..<nextBucket where completeTimes[i] == 0 {
            guard let handle = handles[i] else { continue }
            do { if try handle.test() { completeTimes[i] = monotonicSeconds() } } catch { pollError = pollError ?? error }
        }
    }

    private func start(_ i: Int) throws {
        let range = buckets[i]
        let gradients = gradients + range.lowerBound
        let t0 = monotonicSeconds()
        let buffer: UnsafeMutableRawPointer
        switch precision {
        case .fp32:
            buffer = UnsafeMutableRawPointer(gradients)
        case .bf16:
            buffer = wire[i]!
            HalfPrecision.floatToBFloat(gradients, buffer.assumingMemoryBound(to: UInt16.self), count: range.count)
        case .fp16:
            buffer = wire[i]!
            if scale != 1 { Kernels.scale(gradients, by: scale, count: range.count) }
            HalfPrecision.floatToHalf(gradients, buffer.assumingMemoryBound(to: UInt16.self), count: range.count)
        }
        startTimes[i] = monotonicSeconds()
        timing.conversion += startTimes[i] - t0
        handles[i] = try communicator.startAllReduce(buffer, count: range.count, precision: precision)
    }

    /// Completes every bucket, brings the sums back to fp32 and checks them. Returns whether
    /// the step may be applied (false: a non-finite sum, or `lossFinite` false, and the step is
    /// skipped on every rank; `lossFinite` must be the same on every rank).
    public func finish(lossFinite: Bool = true) throws -> Bool {
        if nextBucket < buckets.count { gradientsFinal(from: 0) }
        if let pollError { throw pollError }
        let waitStart = monotonicSeconds()
        for i in buckets.indices {
            try handles[i]!.wait()
            if completeTimes[i] == 0 { completeTimes[i] = monotonicSeconds() }
        }
        let waitEnd = monotonicSeconds()
        timing.exposed = waitEnd - waitStart
        for i in buckets.indices { timing.hidden += max(0, min(completeTimes[i], waitStart) - startTimes[i]) }

        var finite = true
        for (i, range) in buckets.enumerated() {
            let gradients = gradients + range.lowerBound
            switch precision {
            case .fp32:
                finite = Kernels.allFinite(gradients, count: range.count) && finite
            case .bf16:
                finite = HalfPrecision.bfloatToFloatCheckingFinite(wire[i]!.assumingMemoryBound(to: UInt16.self), gradients,
                                                                   count: range.count) && finite
            case .fp16:
                HalfPrecision.halfToFloat(wire[i]!.assumingMemoryBound(to: UInt16.self), gradients, count: range.count)
                if scale != 1 { Kernels.scale(gradients, by: 1 / scale, count: range.count) }
                finite = Kernels.allFinite(gradients, count: range.count) && finite
            }
        }
        timing.conversion += monotonicSeconds() - waitEnd
        finite = finite && lossFinite
        if finite {
            cleanSteps += 1
            skippedInARow = 0
            if precision == .fp16 && cleanSteps >= scaleWindow { scale *= 2; cleanSteps = 0 }
        } else {
            skippedSteps += 1
            skippedInARow += 1
            cleanSteps = 0
            if precision == .fp16 { scale = max(scale / 2, Float.leastNormalMagnitude) }
        }
        return finite
    }

    /// Restores the dynamic scaler (checkpoint resume).
    public func restore(scale: Float, cleanSteps: Int, skippedSteps: Int, skippedInARow: Int = 0) {
        self.scale = scale
        self.cleanSteps = cleanSteps
        self.skippedSteps = skippedSteps
        self.skippedInARow = skippedInARow
    }
}
