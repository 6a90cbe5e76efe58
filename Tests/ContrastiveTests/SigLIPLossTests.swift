import Foundation
import Testing
@testable import Contrastive
@testable import Tensor

/// SigLIP's sigmoid loss over a ring: the value and every gradient (x, y, theta, b) against
/// central differences of the Double reference; P ranks (threads passing blocks around an
/// in-memory ring) against one process holding the global batch; the workspace flat in P.
@Suite struct SigLIPLossTests {
    /// `rows` unit rows of width d; x_i and y_i made similar so the pairs are not trivial.
    static func pairs(_ rows: Int, dimension d: Int, seed: UInt64) -> (x: [Float], y: [Float]) {
        var rng = RandomStream(seed: seed, stream: 5)
        var x = [Float](repeating: 0, count: rows * d), y = x
        for i in 0..<(rows * d) { x[i] = rng.nextNormal(); y[i] = x[i] + 0.7 * rng.nextNormal() }
        func normalise(_ v: inout [Float]) {
            for i in 0..<rows {
                let norm = (0..<d).reduce(Float(0)) { $0 + v[i * d + $1] * v[i * d + $1] }.squareRoot()
                for k in 0..<d { v[i * d + k] /= norm }
            }
        }
        normalise(&x); normalise(&y)
        return (x, y)
    }

    struct Outcome {
        var result: SigLIPLoss.Result
        var xGradient: [Float]
        var yGradient: [Float]
    }

    /// One process: the whole batch as one rank.
    static func oneProcess(_ x: [Float], _ y: [Float], dimension d: Int, scale: Float, bias: Float) -> Outcome {
        let n = x.count / d
        var gx = [Float](repeating: 0, count: n * d), gy = gx
        let r = SigLIPLoss().forwardBackward(x: x, y: y, count: n, dimension: d, ranks: 1, normalization: n, scale: scale, bias: bias,
                                             xGradient: &gx, yGradient: &gy) { _, _, _ in Issue.record("a ring of one rank shifted") }
        return Outcome(result: r, xGradient: gx, yGradient: gy)
    }

    @Test func lossMatchesTheReference() {
        let d = 5, n = 7
        let (x, y) = Self.pairs(n, dimension: d, seed: 1)
        for (scale, bias) in [(Float(10), Float(-10)), (1, 0), (3, -2)] {
            let r = Self.oneProcess(x, y, dimension: d, scale: scale, bias: bias).result
            let reference = SigLIPLoss.lossReference(x: x, y: y, dimension: d, scale: Double(scale), bias: Double(bias))
            #expect(abs(r.loss - reference) <= 1e-5 * abs(reference), "t \(scale) b \(bias): \(r.loss) vs \(reference)")
        }
    }

    /// Every gradient against (f(v + h) - f(v - h)) / 2h of the Double reference.
    @Test(arguments: [(Float(10), Float(-10)), (2, -1), (0.5, 1)])
    func gradientsMatchCentralDifferences(scale: Float, bias: Float) {
        let d = 4, n = 6
        let (x, y) = Self.pairs(n, dimension: d, seed: 2)
        let analytic = Self.oneProcess(x, y, dimension: d, scale: scale, bias: bias)
        let h: Float = 1e-3
        func loss(_ x: [Float], _ y: [Float], _ t: Double = Double(scale), _ b: Double = Double(bias)) -> Double {
            SigLIPLoss.lossReference(x: x, y: y, dimension: d, scale: t, bias: b)
        }
        func check(_ analytic: Double, _ numeric: Double, _ label: String) {
            #expect(abs(analytic - numeric) <= 1e-3 * max(abs(numeric), 1e-2), "\(label): \(analytic) vs \(numeric)")
        }
        for k in 0..<(n * d) {
            var plus = x, minus = x
            plus[k] += h; minus[k] -= h
            check(Double(analytic.xGradient[k]), (loss(plus, y) - loss(minus, y)) / Double(plus[k] - minus[k]), "dL/dx[\(k)]")
            plus = y; minus = y
            plus[k] += h; minus[k] -= h
            check(Double(analytic.yGradient[k]), (loss(x, plus) - loss(x, minus)) / Double(plus[k] - minus[k]), "dL/dy[\(k)]")
        }
        let theta = log(Double(scale)), step = 1e-4
        check(analytic.result.logitScaleGradient, (loss(x, y, exp(theta + step)) - loss(x, y, exp(theta - step))) / (2 * step), "dL/dtheta")
        check(analytic.result.biasGradient, (loss(x, y, Double(scale), Double(bias) + step) - loss(x, y, Double(scale), Double(bias) - step))
              / (2 * step), "dL/db")
    }

    /// P threads, one SigLIPLoss each, shifting blocks around an in-memory ring (what MPI_Sendrecv does
    /// between processes): each rank's results for its rows.
    static func ring(_ x: [Float], _ y: [Float], dimension d: Int, ranks p: Int, scale: Float, bias: Float) -> [Outcome] {
        let b = x.count / d / p
        let ring = MemoryRing(ranks: p)
        let outcomes = OutcomeSlots<Outcome>(count: p)
        runRanks(p) { r in
            let rows = (r * b * d)..<((r + 1) * b * d)
            var gx = [Float](repeating: 0, count: b * d), gy = gx
            let loss = SigLIPLoss()
            let result = loss.forwardBackward(x: Array(x[rows]), y: Array(y[rows]), count: b, dimension: d, ranks: p,
                                              normalization: p * b, scale: scale, bias: bias, xGradient: &gx, yGradient: &gy) {
                ring.shift(rank: r, $0, $1, $2)
            }
            outcomes.set(r, Outcome(result: result, xGradient: gx, yGradient: gy))
        }
        return outcomes.values
    }

    @Test(arguments: [2, 3, 4])
    func ranksEqualOneProcessOnTheGlobalBatch(ranks p: Int) {
        let d = 6, b = 4, n = p * b
        let (x, y) = Self.pairs(n, dimension: d, seed: 3)
        let whole = Self.oneProcess(x, y, dimension: d, scale: 10, bias: -10)
        let parts = Self.ring(x, y, dimension: d, ranks: p, scale: 10, bias: -10)
        let loss = parts.reduce(0) { $0 + $1.result.loss }
        #expect(abs(loss - whole.result.loss) <= 1e-6 * abs(whole.result.loss))
        #expect(abs(parts.reduce(0) { $0 + $1.result.logitScaleGradient } - whole.result.logitScaleGradient) <= 1e-6)
        #expect(abs(parts.reduce(0) { $0 + $1.result.biasGradient } - whole.result.biasGradient) <= 1e-6)
        #expect(parts.reduce(0) { $0 + $1.result.positiveTop1 } == whole.result.positiveTop1)
        let gx = parts.flatMap(\.xGradient), gy = parts.flatMap(\.yGradient)
        let scaleOfGradients = (whole.xGradient + whole.yGradient).map(abs).max()!
        for k in 0..<(n * d) {
            #expect(abs(gx[k] - whole.xGradient[k]) <= 1e-6 * scaleOfGradients, "dL/dx[\(k)]")
            #expect(abs(gy[k] - whole.yGradient[k]) <= 1e-6 * scaleOfGradients, "dL/dy[\(k)]")
        }
        // The same ring twice gives the same bits (each rank sums its blocks in ring order).
        let again = Self.ring(x, y, dimension: d, ranks: p, scale: 10, bias: -10)
        #expect(again.flatMap(\.xGradient).map(\.bitPattern) == gx.map(\.bitPattern))
        #expect(again.flatMap(\.yGradient).map(\.bitPattern) == gy.map(\.bitPattern))
    }

    /// The ring's own buffers depend on the local batch, not on P: at P = 1, 2, 4 and 8 with 4
    /// pairs per rank they are the same bytes (B x B logits, two [y, dy] blocks, two rows of B),
    /// while one process holding the same global batch needs N x N logits.
    @Test func workspaceIsFlatInTheRankCount() {
        let d = 8, b = 4
        var bytes: [Int] = []
        for p in [1, 2, 4, 8] {
            let (x, y) = Self.pairs(p * b, dimension: d, seed: 4)
            let ring = MemoryRing(ranks: p)
            let losses = Unchecked((0..<p).map { _ in SigLIPLoss() })
            runRanks(p) { r in
                var gx = [Float](repeating: 0, count: b * d), gy = gx
                let rows = (r * b * d)..<((r + 1) * b * d)
                _ = losses.value[r].forwardBackward(x: Array(x[rows]), y: Array(y[rows]), count: b, dimension: d, ranks: p,
                                              normalization: p * b, scale: 10, bias: -10, xGradient: &gx, yGradient: &gy) {
                    ring.shift(rank: r, $0, $1, $2)
                }
            }
            bytes.append(losses.value[0].workspaceBytes)
        }
        let expected = (b * b + 2 * 2 * b * d + 2 * b) * MemoryLayout<Float>.stride
        #expect(bytes == [expected, expected, expected, expected])
        let (x, y) = Self.pairs(8 * b, dimension: d, seed: 4)
        let whole = SigLIPLoss()
        var gx = [Float](repeating: 0, count: 8 * b * d), gy = gx
        _ = whole.forwardBackward(x: x, y: y, count: 8 * b, dimension: d, ranks: 1, normalization: 8 * b, scale: 10, bias: -10,
                                  xGradient: &gx, yGradient: &gy) { _, _, _ in }
        #expect(whole.workspaceBytes > 8 * expected)
    }
}

/// An in-memory ring of P threads: `shift` puts a rank's block in the next rank's mailbox and,
/// once every rank has, takes its own (a barrier on each side, as MPI_Sendrecv pairs up the ranks).
final class MemoryRing: @unchecked Sendable {
    let ranks: Int
    private var mailboxes: [[Float]]
    private let condition = NSCondition()
    private var arrived = 0, generation = 0

    init(ranks: Int) {
        self.ranks = ranks
        mailboxes = [[Float]](repeating: [], count: ranks)
    }

    private func barrier() {
        condition.lock()
        let mine = generation
        arrived += 1
        if arrived == ranks {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
        condition.unlock()
    }

    func shift(rank: Int, _ send: UnsafePointer<Float>, _ receive: UnsafeMutablePointer<Float>, _ count: Int) {
        condition.lock()
        mailboxes[(rank + 1) % ranks] = Array(UnsafeBufferPointer(start: send, count: count))
        condition.unlock()
        barrier()
        condition.lock()
        let block = mailboxes[rank]
        condition.unlock()
        block.withUnsafeBufferPointer { receive.update(from: $0.baseAddress!, count: count) }
        barrier()
    }
}

/// Runs `body(rank)` on P threads at once and returns when all have finished. (Not
/// concurrentPerform: it runs as many at once as there are cores, and a ring needs every rank.)
func runRanks(_ p: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for r in 0..<p {
        group.enter()
        let thread = Thread { body(r); group.leave() }
        thread.start()
    }
    group.wait()
}

/// A value the ranks' threads share, each touching only its own part.
final class Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Results written by concurrent ranks, read after they finish.
final class OutcomeSlots<Value>: @unchecked Sendable {
    private var slots: [Value?]
    private let lock = NSLock()
    init(count: Int) { slots = [Value?](repeating: nil, count: count) }
    func set(_ index: Int, _ value: Value) { lock.withLock { slots[index] = value } }
    var values: [Value] { lock.withLock { slots.map { $0! } } }
}
