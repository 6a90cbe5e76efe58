import ArgumentParser
import Distributed
import Foundation
import Tensor

/// `mpirun -np P contrast bench allreduce`: the gradient all-reduce alone, per wire precision.
///
/// Each repeat: restore the wire buffer (fp32 gradients already cast, outside the timing),
/// barrier, time one blocking all-reduce; a repeat's time is the slowest rank's (allReduceMax).
/// Reported: the median, and bus bandwidth 2(P-1)/P x bytes / time (NCCL's convention: the
/// bytes each rank must send and receive in an optimal ring, so figures compare across P).
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "allreduce",
        abstract: "All-reduce time and bus bandwidth for fp32, bf16 and fp16 on the wire (run under mpirun).")

    @Option(help: "Values to reduce (default: the benchmark model's gradient count).") var count = 2_214_528
    @Option(help: "Timed repeats per precision (median reported).") var repeats = 20
    @Option(help: "Warm-up repeats, not timed.") var warmup = 3
    @Flag(help: "Print one JSON object per precision instead of the table.") var json = false

    func validate() throws {
        if count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    }

    func run() throws {
        try runOnRanks { communicator in
            var rng = RandomStream(seed: 7, stream: UInt64(communicator.rank))
            let gradients = (0..<count).map { _ in (rng.nextUniform() - 0.5) * 1e-2 }
            let size = communicator.size
            if communicator.isRoot && !json {
                say("all-reduce of \(count) values, \(size) rank\(size == 1 ? "" : "s"), median of \(repeats)")
                say("precision  bytes/value      MB    time ms   bus GB/s")
            }
            for precision in [WirePrecision.fp32, .bf16, .fp16] {
                let bytes = count * precision.stride
                let pristine = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                defer { pristine.deallocate(); buffer.deallocate() }
                gradients.withUnsafeBufferPointer { source in
                    let base = source.baseAddress!
                    switch precision {
                    case .fp32: pristine.copyMemory(from: base, byteCount: bytes)
                    case .fp16: HalfPrecision.floatToHalf(base, pristine.assumingMemoryBound(to: UInt16.self), count: count)
                    case .bf16: HalfPrecision.floatToBFloat(base, pristine.assumingMemoryBound(to: UInt16.self), count: count)
                    }
                }
                var times: [Double] = []
                for repeatIndex in 0..<(warmup + repeats) {
                    buffer.copyMemory(from: pristine, byteCount: bytes)
                    try communicator.barrier()
                    let start = DispatchTime.now().uptimeNanoseconds
                    try communicator.allReduce(buffer, count: count, precision: precision)
                    var elapsed = [Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9]
                    try communicator.allReduceMax(&elapsed)
                    if repeatIndex >= warmup { times.append(elapsed[0]) }
                }
                let median = times.sorted()[times.count / 2]
                let busBandwidth = 2 * Double(size - 1) / Double(size) * Double(bytes) / median
                guard communicator.isRoot else { continue }
                if json {
                    say(String(format: "{\"precision\":\"%@\",\"ranks\":%d,\"count\":%d,\"bytes_per_value\":%d,\"median_ms\":%.3f,\"bus_gb_per_s\":%.3f}",
                               precision.rawValue, size, count, precision.stride, median * 1e3, busBandwidth * 1e-9))
                } else {
                    say(String(format: "%-9@  %11d  %6.2f  %9.3f  %9.3f", precision.rawValue, precision.stride,
                               Double(bytes) / 1e6, median * 1e3, busBandwidth * 1e-9))
                }
            }
        }
    }
}
