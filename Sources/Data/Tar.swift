import Foundation

/// A regular file in a tar archive: its path and where its bytes lie in the archive.
public struct TarMember: Sendable, Equatable {
    public var path: String
    /// Offset of the first content byte in the archive.
    public var offset: Int
    public var size: Int
    /// Offset of the member's first header (its GNU long-name or pax header, if any): where a
    /// message about it points.
    public var headerOffset: Int
}

/// Reads the member list of a tar archive held in memory: POSIX ustar (with its 155-byte path
/// prefix), GNU long names (type `L`) and pax extended headers (type `x`: `path` and `size`),
/// as Python's tarfile (GNU or PAX format) and webdataset's TarWriter write them. Directories,
/// links and other special members are passed over; global pax headers (type `g`) are ignored.
public enum TarArchive {
    static let blockSize = 512

    /// The regular-file members of `bytes` (the contents of `path`), in archive order.
    /// - Throws: `DataError.webDatasetInvalid` naming the byte offset when a header's checksum
    ///   is wrong or its fields do not parse, and when the archive ends inside a header or a
    ///   member's content ("ends mid-member": a truncated download or copy).
    public static func members(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [TarMember] {
        func fail(_ offset: Int, _ problem: String) -> DataError {
            .webDatasetInvalid(path: path, problem: "\(problem) (byte \(offset)); the tar file is damaged or truncated: write or copy it again")
        }
        var members: [TarMember] = []
        var position = 0
        var longName: String?, paxPath: String?, paxSize: Int?
        var firstHeader: Int?
        while position < bytes.count {
            guard bytes.count - position >= blockSize else {
                throw fail(position, "the archive ends inside a header (\(bytes.count - position) of \(blockSize) bytes)")
            }
            let header = UnsafeRawBufferPointer(rebasing: bytes[position ..< position + blockSize])
            // Two zero blocks end the archive; one is enough to stop (what follows is padding).
            if header.allSatisfy({ $0 == 0 }) { break }
            try checkChecksum(header, at: position, fail)
            let type = header[156]
            var size = try number(header, 124, 12, at: position, what: "size", fail)
            if let paxSize, type != UInt8(ascii: "x"), type != UInt8(ascii: "L") { size = paxSize }
            let dataStart = position + blockSize
            let name = paxPath ?? longName ?? fullName(header)
            guard size <= bytes.count - dataStart else {
                throw fail(position, "the archive ends inside member \(name): it needs \(size) bytes, \(bytes.count - dataStart) are left "
                           + "(it ends mid-member)")
            }
            let content = UnsafeRawBufferPointer(rebasing: bytes[dataStart ..< dataStart + size])
            firstHeader = firstHeader ?? position
            switch type {
            case UInt8(ascii: "L"):
                // GNU long name: the next member's name, NUL-terminated.
                longName = String(decoding: content.prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"):
                let records = try paxRecords(content, at: position, fail)
                if let path = records["path"] { paxPath = path }
                if let text = records["size"] {
                    guard let value = Int(text), value >= 0 else { throw fail(position, "pax size \"\(text)\" is not a size") }
                    paxSize = value
                }
            case UInt8(ascii: "g"):
                break
            default:
                if type == UInt8(ascii: "0") || type == 0 || type == UInt8(ascii: "7") {
                    members.append(TarMember(path: name, offset: dataStart, size: size, headerOffset: firstHeader!))
                }
                longName = nil
                paxPath = nil
                paxSize = nil
                firstHeader = nil
            }
            // Content is padded to whole blocks; the padding of the last member may be cut.
            let padded = (size + blockSize - 1) / blockSize * blockSize
            position = dataStart + min(padded, bytes.count - dataStart)
        }
        return members
    }

    /// The header checksum: the sum of its bytes with the checksum field read as spaces.
    private static func checkChecksum(_ header: UnsafeRawBufferPointer, at offset: Int, _ fail: (Int, String) -> DataError) throws {
        var sum = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 0x20 : Int(byte) }
        let stored = try number(header, 148, 8, at: offset, what: "checksum", fail)
        guard stored == sum else { throw fail(offset, "a header's checksum is \(stored), its bytes sum to \(sum): not a tar header") }
    }

    /// An octal field (NUL- or space-terminated, leading spaces allowed), or GNU's base-256 one
    /// (first byte's high bit set: big-endian binary in the rest).
    private static func number(_ header: UnsafeRawBufferPointer, _ start: Int, _ length: Int, at offset: Int, what: String,
                               _ fail: (Int, String) -> DataError) throws -> Int {
        let field = header[start ..< start + length]
        if field.first! & 0x80 != 0 {
            guard field.first! == 0x80, field.dropFirst().prefix(max(0, length - 9)).allSatisfy({ $0 == 0 }) else {
                throw fail(offset, "the header's \(what) is a negative or huge base-256 number")
            }
            return field.suffix(8).reduce(0) { $0 << 8 | Int($1) } & Int.max
        }
        let digits = field.drop { $0 == 0x20 }.prefix { $0 != 0 && $0 != 0x20 }
        guard digits.count <= 21, digits.allSatisfy({ (0x30...0x37).contains($0) }) else {
            throw fail(offset, "the header's \(what) field \"\(String(decoding: field.prefix { $0 != 0 }, as: UTF8.self))\" is not an octal number")
        }
        return digits.reduce(0) { $0 * 8 + Int($1 - 0x30) }
    }

    /// name, with ustar's prefix before it.
    private static func fullName(_ header: UnsafeRawBufferPointer) -> String {
        func text(_ start: Int, _ length: Int) -> String {
            String(decoding: header[start ..< start + length].prefix { $0 != 0 }, as: UTF8.self)
        }
        let name = text(0, 100)
        let isUstar = header[257 ..< 262].elementsEqual("ustar".utf8)
        let prefix = isUstar ? text(345, 155) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    /// pax records: "LENGTH key=value\n", LENGTH counting the whole record.
    private static func paxRecords(_ content: UnsafeRawBufferPointer, at offset: Int, _ fail: (Int, String) -> DataError) throws -> [String: String] {
        var records: [String: String] = [:]
        var index = 0
        while index < content.count {
            if content[index] == 0 { break }
            guard let space = content[index...].firstIndex(of: 0x20),
                  let length = Int(String(decoding: content[index ..< space], as: UTF8.self)), length > space - index,
                  length <= content.count - index, content[index + length - 1] == 0x0A,
                  let equals = content[(space + 1) ..< (index + length)].firstIndex(of: UInt8(ascii: "=")) else {
                throw fail(offset, "a pax extended header record does not parse")
            }
            let key = String(decoding: content[(space + 1) ..< equals], as: UTF8.self)
            records[key] = String(decoding: content[(equals + 1) ..< (index + length - 1)], as: UTF8.self)
            index += length
        }
        return records
    }
}

/// webdataset's shard-name patterns: `{000000..000099}` numeric ranges (zero-padded to the
/// wider bound when a bound has a leading zero, as the braceexpand package does; descending
/// too) and `{a,b,c}` alternatives, several and nested, expanded left to right.
public enum BraceExpansion {
    /// More names than this is a mistake in the pattern, not a data set.
    public static let maximumCount = 1_000_000

    public static func expand(_ pattern: String) throws -> [String] {
        let expanded = try expand(Array(pattern))
        return expanded.map { String($0) }
    }

    private static func expand(_ pattern: [Character]) throws -> [[Character]] {
        // The first '{' whose matching '}' exists; a brace without one is literal.
        var start = 0
        while let open = pattern[start...].firstIndex(of: "{") {
            var depth = 0, close: Int?
            for index in open..<pattern.count {
                if pattern[index] == "{" { depth += 1 }
                if pattern[index] == "}" { depth -= 1; if depth == 0 { close = index; break } }
            }
            guard let close else { break }
            let inner = Array(pattern[(open + 1)..<close])
            let head = Array(pattern[..<open])
            let tails = try expand(Array(pattern[(close + 1)...]))
            let choices: [[Character]]
            if let range = try numericRange(inner) {
                choices = range
            } else {
                let parts = topLevelParts(inner)
                guard parts.count > 1 else { start = open + 1; continue }   // "{x}" is literal, as in braceexpand
                choices = try parts.flatMap { try expand($0) }
            }
            let total = choices.count.multipliedReportingOverflow(by: tails.count)
            guard !total.overflow, total.partialValue <= maximumCount else {
                throw DataError.webDatasetInvalid(path: String(pattern), problem: "the pattern names more than \(maximumCount) files")
            }
            return choices.flatMap { choice in tails.map { head + choice + $0 } }
        }
        return [pattern]
    }

    /// The parts of a `{...}` body split at commas outside nested braces.
    private static func topLevelParts(_ inner: [Character]) -> [[Character]] {
        var parts: [[Character]] = [[]], depth = 0
        for character in inner {
            if character == "{" { depth += 1 }
            if character == "}" { depth -= 1 }
            if character == "," && depth == 0 { parts.append([]) } else { parts[parts.count - 1].append(character) }
        }
        return parts
    }

    /// "000..099" -> 000, 001, ..., 099; nil when the body is not a numeric range.
    private static func numericRange(_ inner: [Character]) throws -> [[Character]]? {
        let text = String(inner)
        let bounds = text.components(separatedBy: "..")
        guard bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]),
              bounds.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isNumber || $0 == "-") } }) else { return nil }
        let span = high.subtractingReportingOverflow(low)
        guard !span.overflow, span.partialValue.magnitude < UInt(maximumCount) else {
            throw DataError.webDatasetInvalid(path: text, problem: "the range names more than \(maximumCount) files")
        }
        let padded = bounds.contains { $0.count > 1 && ($0.hasPrefix("0") || $0.hasPrefix("-0")) }
        let width = padded ? bounds.map(\.count).max()! : 0
        let step = high >= low ? 1 : -1
        return stride(from: low, through: high, by: step).map { value in
            let digits = String(abs(value))
            let sign = value < 0 ? "-" : ""
            return Array(sign + String(repeating: "0", count: max(0, width - sign.count - digits.count)) + digits)
        }
    }
}
