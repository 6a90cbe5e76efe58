import Foundation

extension Launch {
    /// Bytes one rank's host name takes in `Communicator.hostnames()`: Linux's HOST_NAME_MAX
    /// (255) plus a terminating zero.
    public static let hostnameSlotBytes = 256

    /// This machine's host name as `gethostname` gives it (no DNS lookup), or "unknown".
    public static func localHostname() -> String {
        var buffer = [CChar](repeating: 0, count: hostnameSlotBytes + 1)
        guard gethostname(&buffer, hostnameSlotBytes) == 0 else { return "unknown" }
        let bytes = buffer.prefix(hostnameSlotBytes).prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return bytes.isEmpty ? "unknown" : String(decoding: bytes, as: UTF8.self)
    }
}

extension Communicator {
    /// Every rank's host name in rank order (entry r is rank r's machine): each rank's
    /// `gethostname`, gathered with `allGatherBytes` in fixed 256-byte zero-padded slots
    /// (a longer name is cut at 255 bytes). A collective: every rank must call it. For the
    /// start of a run's log, to tell which nodes a job ran on and which ranks shared one.
    public func hostnames() throws -> [String] {
        let slot = Launch.hostnameSlotBytes
        var send = [UInt8](repeating: 0, count: slot)
        let name = Array(Launch.localHostname().utf8.prefix(slot - 1))
        send.replaceSubrange(0..<name.count, with: name)
        var receive = [UInt8](repeating: 0, count: slot * size)
        try receive.withUnsafeMutableBytes { r in
            try send.withUnsafeBytes { s in try allGatherBytes(s.baseAddress!, bytes: slot, into: r.baseAddress!) }
        }
        return (0..<size).map { rank in
            String(decoding: receive[rank * slot ..< (rank + 1) * slot].prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

extension Launch {
    /// `ranks` named with their hosts for a one-line message, the ranks of a host together in
    /// the order the hosts first appear: "rank 2 on node7", "ranks 2, 3 on node7 and rank 5 on
    /// node9"; runs of three or more ranks as "ranks 0-31"; past four hosts, the first three and
    /// a count ("... and 40 ranks on 5 more hosts"). `hosts` is by rank.
    public static func ranksOnHosts(_ ranks: [Int], hosts: [String]) -> String {
        var order: [String] = [], byHost: [String: [Int]] = [:]
        for rank in ranks.sorted() {
            let host = rank >= 0 && rank < hosts.count ? hosts[rank] : "?"
            if byHost[host] == nil { order.append(host) }
            byHost[host, default: []].append(rank)
        }
        func group(_ host: String) -> String {
            let list = byHost[host]!
            return (list.count == 1 ? "rank " : "ranks ") + rankRuns(list) + " on " + host
        }
        var parts = order.count > 4 ? order.prefix(3).map(group) : order.map(group)
        if order.count > 4 {
            let rest = order.dropFirst(3), count = rest.reduce(0) { $0 + byHost[$1]!.count }
            parts.append("\(count) rank\(count == 1 ? "" : "s") on \(rest.count) more hosts")
        }
        return parts.count == 1 ? parts[0] : parts.dropLast().joined(separator: ", ") + " and " + parts.last!
    }

    /// Sorted distinct ranks as "0, 1" or "0-31, 40".
    static func rankRuns(_ ranks: [Int]) -> String {
        var runs: [String] = [], start = 0
        while start < ranks.count {
            var end = start
            while end + 1 < ranks.count && ranks[end + 1] == ranks[end] + 1 { end += 1 }
            if end - start >= 2 {
                runs.append("\(ranks[start])-\(ranks[end])")
            } else {
                runs.append(contentsOf: ranks[start...end].map(String.init))
            }
            start = end + 1
        }
        return runs.joined(separator: ", ")
    }
}
