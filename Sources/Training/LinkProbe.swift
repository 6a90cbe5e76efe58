import Config
import Distributed
import Foundation
import RunFiles
import Tensor

/// A start-up measurement of each host's network link (`monitor.link_probe_mb`). The straggler
/// warning compares compute time, and a slow link shows as time in collectives on every rank
/// alike (a collective waits for its slowest member), so only point-to-point timings can name
/// the host behind it.
///
/// The first rank of each host (its leader) exchanges `link_probe_mb` megabytes each way with
/// the next host's leader (the last with the first), one pair at a time, the other ranks waiting
/// in a barrier between pairs, so no two pairs share a link while timed: the best of three
/// exchanges, after a one-byte one that opens the connection. A pair's rate is bounded by its
/// slower end, so a host's own rate is the better of its two pairs': a slow host has both its
/// pairs slow, its neighbours one slow and one fast. With three or more hosts, a host whose rate
/// is `monitor.link_slow_factor` times below the median host's is named in a warning; with two
/// hosts the one link is reported, and no host can be told from the other.
enum LinkProbe {
    /// What the probe found: the hosts by leader, and each link's exchange time.
    struct Result: Equatable {
        /// Host names, one per host, in the order of their first ranks.
        var hosts: [String]
        /// Seconds of the best exchange of link j, between hosts j and j + 1 (mod the count).
        var seconds: [Double]
        /// Bytes exchanged each way.
        var bytes: Int

        /// Bits per second of link j, each way.
        func rate(_ link: Int) -> Double { Double(bytes) * 8 / max(seconds[link], 1e-9) }

        /// Host i's rate: the better of its links' (two hosts: the one link).
        func hostRate(_ host: Int) -> Double {
            seconds.count == 1 ? rate(0) : max(rate(host), rate((host + seconds.count - 1) % seconds.count))
        }

        /// Hosts whose rate is below the median host's divided by `factor`, with their rate and
        /// the median; none with fewer than three hosts.
        func slowHosts(factor: Double) -> [(host: Int, rate: Double, median: Double)] {
            guard hosts.count >= 3 else { return [] }
            let rates = hosts.indices.map(hostRate)
            let median = Statistics.median(rates)!
            return rates.enumerated().filter { $0.element * factor < median }.map { ($0.offset, $0.element, median) }
        }
    }

    /// The first rank of each host, in rank order.
    static func leaders(_ hosts: [String]) -> [Int] {
        var seen = Set<String>(), leaders: [Int] = []
        for (rank, host) in hosts.enumerated() where seen.insert(host).inserted { leaders.append(rank) }
        return leaders
    }

    /// Measures every link (a collective: every rank calls it); nil when the ranks run on one
    /// host or the probe is off. Every rank returns the same result.
    static func measure(megabytes: Float, hosts: [String], communicator: Communicator, repeats: Int = 3) throws -> Result? {
        let leaders = leaders(hosts), bytes = Int((Double(megabytes) * 1_048_576).rounded())
        guard leaders.count >= 2, bytes > 0, communicator.size == hosts.count else { return nil }
        let links = leaders.count == 2 ? 1 : leaders.count
        let send = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let receive = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { send.deallocate(); receive.deallocate() }
        send.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: communicator.rank), count: bytes)
        receive.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        var seconds = [Double](repeating: 0, count: links)
        let me = communicator.rank
        for link in 0..<links {
            let a = leaders[link], b = leaders[(link + 1) % leaders.count]
            if me == a || me == b {
                let partner = me == a ? b : a
                try communicator.sendReceive(send, bytes: 1, to: partner, into: receive, from: partner)
                var best = Double.infinity
                for _ in 0..<repeats {
                    let t0 = monotonicSeconds()
                    try communicator.sendReceive(send, bytes: bytes, to: partner, into: receive, from: partner)
                    best = min(best, monotonicSeconds() - t0)
                }
                seconds[link] = best
            }
            try communicator.barrier()
        }
        // Both ends timed the same exchange: the slower view of it, on every rank.
        try communicator.allReduceMax(&seconds)
        return Result(hosts: leaders.map { hosts[$0] }, seconds: seconds, bytes: bytes)
    }

    /// "52.1 Mb/s", "2.35 Gb/s".
    static func format(_ bitsPerSecond: Double) -> String {
        bitsPerSecond >= 1e9 ? String(format: "%.2f Gb/s", bitsPerSecond / 1e9) : String(format: "%.1f Mb/s", bitsPerSecond / 1e6)
    }

    /// The info line: every link's rate (past eight hosts, the slowest, median and fastest).
    static func summary(_ result: Result) -> String {
        let size = String(format: "%g MB", Double(result.bytes) / 1_048_576)
        let links = result.seconds.indices
        let head = "links: \(size) exchanged each way between neighbouring hosts' first ranks, best of 3: "
        if result.hosts.count <= 8 {
            return head + links.map { j in
                "\(result.hosts[j]) - \(result.hosts[(j + 1) % result.hosts.count]) \(format(result.rate(j)))"
            }.joined(separator: ", ")
        }
        let rates = links.map(result.rate).sorted()
        return head + "\(rates.count) links, slowest \(format(rates.first!)), median \(format(Statistics.median(rates)!)), fastest \(format(rates.last!))"
    }

    /// Measures (when `monitor.link_probe_mb` > 0 and the ranks span hosts), and on rank 0
    /// logs the links and warns of each slow host, naming its ranks.
    static func run(config: TrainingConfig, hosts: [String], communicator: Communicator, log: RunLog, step: Int) throws {
        guard config.monitor.linkProbeMb > 0,
              let result = try measure(megabytes: config.monitor.linkProbeMb, hosts: hosts, communicator: communicator),
              communicator.isRoot else { return }
        log.info(summary(result))
        let factor = Double(config.monitor.linkSlowFactor)
        for slow in result.slowHosts(factor: factor) {
            let name = result.hosts[slow.host], ranks = hosts.indices.filter { hosts[$0] == name }
            log.warn("the network link of \(name) is slow (\(Launch.ranksOnHosts(ranks, hosts: hosts))): \(format(slow.rate)) at best "
                     + "with its neighbouring hosts against the median host's \(format(slow.median)) "
                     + String(format: "(%.1fx slower > monitor.link_slow_factor %.2g)", slow.median / slow.rate, factor)
                     + "; check that node's network (its link speed, cabling, a shared or rate-limited port): "
                     + "every collective waits for it", step: step)
        }
    }
}
