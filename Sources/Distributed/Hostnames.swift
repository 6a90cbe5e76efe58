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
