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

/// webdataset's shard-name patterns, expanded as the braceexpand package (which webdataset uses)
/// expands them: `{000000..000099}` numeric ranges (zero-padded to the wider bound when a bound
/// other than 0 has a leading zero; descending too; `{1..9..2}` with a step), `{a..e}` letter
/// ranges and `{a,b,c}` alternatives, several and nested, left to right. `{x}` and `{}` are
/// literal; an unbalanced brace is an error.
public enum BraceExpansion {
    /// More names than this is a mistake in the pattern, not a data set.
    public static let maximumCount = 1_000_000

    public static func expand(_ pattern: String) throws -> [String] {
        var depth = 0
        for character in pattern {
            if character == "{" { depth += 1 }
            if character == "}" { depth -= 1 }
            guard depth >= 0 else { break }
        }
        guard depth == 0 else {
            throw DataError.webDatasetInvalid(path: pattern, problem: "the pattern's braces do not balance; write ranges as {000000..000099}")
        }
        return try expand(Array(pattern), whole: pattern).map { String($0) }
    }

    private static func expand(_ pattern: [Character], whole: String) throws -> [[Character]] {
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
            let choices: [[Character]]
            if let range = try range(String(inner), whole: whole) {
                choices = range
            } else {
                let parts = topLevelParts(inner)
                guard parts.count > 1 else { start = open + 1; continue }   // "{x}" is literal
                choices = try parts.flatMap { try expand($0, whole: whole) }
            }
            let tails = try expand(Array(pattern[(close + 1)...]), whole: whole)
            let total = choices.count.multipliedReportingOverflow(by: tails.count)
            guard !total.overflow, total.partialValue <= maximumCount else {
                throw DataError.webDatasetInvalid(path: whole, problem: "the pattern names more than \(maximumCount) files")
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

    /// "000..099" -> 000, 001, ..., 099; "a..e" -> a ... e; an optional "..STEP"; nil when the
    /// body is not a range.
    private static func range(_ text: String, whole: String) throws -> [[Character]]? {
        let bounds = text.components(separatedBy: "..")
        guard bounds.count == 2 || bounds.count == 3 else { return nil }
        var step = 1
        if bounds.count == 3 {
            guard let value = Int(bounds[2].hasPrefix("-") ? String(bounds[2].dropFirst()) : bounds[2]), value > 0,
                  bounds[2].dropFirst(bounds[2].hasPrefix("-") ? 1 : 0).allSatisfy(\.isASCII) else { return nil }
            step = value
        }
        func isInteger(_ bound: String) -> Bool {
            let digits = bound.hasPrefix("-") ? bound.dropFirst() : Substring(bound)
            return !digits.isEmpty && digits.count <= 18 && digits.allSatisfy { $0.isASCII && $0.isNumber }
        }
        if isInteger(bounds[0]) && isInteger(bounds[1]), let low = Int(bounds[0]), let high = Int(bounds[1]) {
            guard (high - low).magnitude / UInt(step) < UInt(maximumCount) else {
                throw DataError.webDatasetInvalid(path: whole, problem: "the range {\(text)} names more than \(maximumCount) files")
            }
            let padded = bounds.prefix(2).contains { $0 != "0" && $0 != "-0" && ($0.hasPrefix("0") || $0.hasPrefix("-0")) }
            let width = padded ? bounds.prefix(2).map(\.count).max()! : 0
            return stride(from: low, through: high, by: high >= low ? step : -step).map { value in
                let digits = String(value.magnitude), sign = value < 0 ? "-" : ""
                return Array(sign + String(repeating: "0", count: max(0, width - sign.count - digits.count)) + digits)
            }
        }
        // braceexpand's alphabet: A-Z then a-z, so {a..B} runs down through Z.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        let letters = bounds.prefix(2).compactMap { $0.count == 1 ? alphabet.firstIndex(of: $0.first!) : nil }
        guard letters.count == 2 else { return nil }
        let low = letters[0], high = letters[1]
        return stride(from: low, through: high, by: high >= low ? step : -step).map { [alphabet[$0]] }
    }
}
