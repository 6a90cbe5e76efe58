import Training
import RunFiles
import Distributed
import Foundation
import Tensor

extension Bench {
    /// A collective `bench allreduce` / `bench allgather` measures.
    public enum Collective: String, Sendable {
        case allReduce = "allreduce", allGather = "allgather"

        /// nccl-tests' bus bandwidth factor: the share of the data each rank must send and
        /// receive in an optimal ring, so figures compare across P and with the wire's speed.
        /// All-reduce 2(P-1)/P, all-gather (P-1)/P.
        public func busFactor(ranks p: Int) -> Double {
            switch self {
            case .allReduce: return 2 * Double(p - 1) / Double(p)
            case .allGather: return Double(p - 1) / Double(p)
            }
        }
    }

    /// 4 KB, 16 KB, ... up to `maxBytes` (64 MB by default): the issue's sweep, x4 a step.
    public static func collectiveSizes(maxBytes: Int = 64 << 20) -> [Int] {
        Array(sequence(first: 4096) { $0 * 4 }.prefix { $0 <= maxBytes })
    }

    /// The transport the ranks were told to use: Open MPI's `btl` as mpirun passes it
    /// (`--mca btl self,tcp` sets OMPI_MCA_btl), else its default (shared memory on one machine).
    public static var transport: String {
        let btl = ProcessInfo.processInfo.environment["OMPI_MCA_btl"]
        return btl.map { $0.contains("tcp") && !$0.contains("vader") && !$0.contains("sm") ? "tcp (btl \($0))" : "btl \($0)" }
            ?? "default (shared memory between ranks of one machine)"
    }

    /// Time of one blocking collective of `bytes` bytes (nccl-tests' size: the all-reduce buffer,
    /// the all-gather's whole output) per element format, over `sizes`.
    ///
    /// Each repeat: restore the buffer outside the timing, barrier, time one call; a repeat's time
    /// is the slowest rank's (allReduceMax). algbw = bytes / median; busbw = algbw x busFactor.
    /// All-reduce sums fp32, or bf16 / fp16 with fp32 pairwise sums (the gradients' wire formats);
    /// all-gather moves fp32 through MPI_Allgatherv of floats and 16-bit embeddings through
    /// MPI_Allgather of bytes (bf16 and fp16 are the same bytes to it, so it is measured once, as "16-bit").
    /// With `sameValues` every format moves the values of `size` fp32 bytes (the gradients in
    /// each wire format: 16-bit moves half the bytes) instead of `size` bytes.
    public static func collective(_ collective: Collective, communicator: Communicator, sizes: [Int], sameValues: Bool = false,
                                  repeats: Int, warmup: Int) throws -> BenchOutput {
        let p = communicator.size
        let out = BenchOutput(bench: collective.rawValue)
        out.line("\(collective.rawValue), \(p) rank\(p == 1 ? "" : "s"), transport \(transport); median of \(repeats) after \(warmup) warm-up (slowest rank's clock)")
        out.line("  format          bytes  values/rank    time ms  algbw GB/s  busbw GB/s")
        let formats: [(name: String, stride: Int, wire: WirePrecision?)] = collective == .allReduce
            ? [("fp32", 4, .fp32), ("bf16", 2, .bf16), ("fp16", 2, .fp16)]
            : [("fp32", 4, .fp32), ("16-bit", 2, nil)]
        var rng = RandomStream(seed: 7, stream: UInt64(communicator.rank))
        for bytes in sizes {
            for format in formats {
                // All-gather: each rank sends bytes / P, rounded down to whole elements.
                let stride = sameValues ? 4 : format.stride
                let count = collective == .allReduce ? bytes / stride : bytes / stride / p
                guard count > 0 else { continue }
                let total = collective == .allReduce ? count * format.stride : count * format.stride * p
                let pristine = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 64)
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 64)
                defer { pristine.deallocate(); buffer.deallocate() }
                let values = (0..<count).map { _ in (rng.nextUniform() - 0.5) * 1e-2 }
                values.withUnsafeBufferPointer { source in
                    let base = source.baseAddress!
                    switch format.wire {
                    case .fp32: pristine.copyMemory(from: base, byteCount: count * 4)
                    case .fp16: HalfPrecision.floatToHalf(base, pristine.assumingMemoryBound(to: UInt16.self), count: count)
                    case .bf16, nil: HalfPrecision.floatToBFloat(base, pristine.assumingMemoryBound(to: UInt16.self), count: count)
                    }
                }
                let time = try measureEach(repeats: repeats, warmup: warmup) {
                    if collective == .allReduce { buffer.copyMemory(from: pristine, byteCount: total) }
                    try communicator.barrier()
                    let start = monotonicSeconds()
                    switch format.wire {
                    case let wire? where collective == .allReduce:
                        try communicator.allReduce(buffer, count: count, precision: wire)
                    case .fp32?:
                        try communicator.allGather(UnsafePointer(pristine.assumingMemoryBound(to: Float.self)), count: count,
                                                   into: buffer.assumingMemoryBound(to: Float.self))
                    default:
                        try communicator.allGatherBytes(UnsafeRawPointer(pristine), bytes: count * format.stride, into: buffer)
                    }
                    var elapsed = [monotonicSeconds() - start]
                    try communicator.allReduceMax(&elapsed)
                    return elapsed[0]
                }
                let algorithm = Double(total) / time.median, bus = algorithm * collective.busFactor(ranks: p)
                out.line("  " + padded(format.name, 8) + String(format: " %12d  %11d  %9.3f  %10.3f  %10.3f", total, count,
                                time.median * 1e3, algorithm / 1e9, bus / 1e9))
                out.record(["collective": collective.rawValue, "format": format.name, "ranks": p, "bytes": total, "values_per_rank": count,
                            "bytes_per_value": format.stride, "transport": transport,
                            "algbw_gb_per_s": algorithm / 1e9, "busbw_gb_per_s": bus / 1e9], time)
            }
        }
        return out
    }
}
