import Foundation
import Storage
import Testing

/// A fresh directory, removed after `body`.
private func withDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = NSTemporaryDirectory() + "contrast-storage-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

private func names(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

@Suite struct AtomicFileTests {
    @Test func writesAndReplacesWholeFiles() throws {
        try withDirectory { directory in
            let url = URL(fileURLWithPath: directory + "/config.yaml")
            try AtomicFile.write(Data("first\n".utf8), to: url)
            #expect(try Data(contentsOf: url) == Data("first\n".utf8))
            try AtomicFile.write(Data("the second, longer\n".utf8), to: url)
            #expect(try Data(contentsOf: url) == Data("the second, longer\n".utf8))
            #expect(names(directory) == ["config.yaml"])
        }
    }

    /// A full disk part-way through: a disk-full error naming the call and the temporary file,
    /// no temporary file left, the previous file untouched.
    @Test func diskFullLeavesNoTemporaryFileAndTheOldFile() throws {
        try withDirectory { directory in
            let path = directory + "/shard.bin"
            try Data("old".utf8).withUnsafeBytes { try AtomicFile.write($0, toPath: path) }
            let large = [UInt8](repeating: 7, count: 10_000)
            let error = storageError { try large.withUnsafeBytes { try AtomicFile.write($0, toPath: path, capacity: 4_096) } }
            #expect(error?.kind == .system(errno: ENOSPC))
            #expect(error?.isDiskFull == true)
            #expect(error?.call == "write" && error?.path == path + ".tmp")
            #expect(error?.description.contains("No space left on device") == true)
            #expect(names(directory) == ["shard.bin"])
            #expect(FileManager.default.contents(atPath: path) == Data("old".utf8))
        }
    }

    /// An error after the temporary file is complete (a test's crash point) abandons it too.
    @Test func failureBeforeRenameLeavesNoTemporaryFile() throws {
        struct Stop: Error {}
        try withDirectory { directory in
            let path = directory + "/manifest.json"
            #expect(throws: Stop.self) {
                try Data("{}".utf8).withUnsafeBytes { try AtomicFile.write($0, toPath: path, beforeRename: { throw Stop() }) }
            }
            #expect(names(directory).isEmpty)
        }
    }

    @Test func missingDirectoryNamesTheCall() throws {
        try withDirectory { directory in
            let path = directory + "/absent/file"
            let error = storageError { try AtomicFile.write(Data("x".utf8), to: URL(fileURLWithPath: path)) }
            #expect(error?.kind == .system(errno: ENOENT))
            #expect(error?.description == "\(path).tmp: open failed: No such file or directory (errno \(ENOENT)); check the path")
            #expect(error?.isDiskFull == false)
        }
    }

    /// The writer streams pieces with a running crc32 and offset (a checkpoint shard's frames).
    @Test func writerCountsBytesAndChecksumsThem() throws {
        try withDirectory { directory in
            let path = directory + "/shard-0-of-1.bin"
            let pieces = [Array("1234".utf8), [], Array("56789".utf8)]
            let writer = try AtomicFileWriter(path: path)
            for piece in pieces { try piece.withUnsafeBytes { try writer.write($0) } }
            #expect(writer.bytesWritten == 9)
            #expect(writer.crc == 0xCBF4_3926)
            #expect(names(directory) == ["shard-0-of-1.bin.tmp"])
            try writer.synchronize()
            try writer.commit()
            #expect(names(directory) == ["shard-0-of-1.bin"])
            #expect(FileManager.default.contents(atPath: path) == Data("123456789".utf8))
        }
    }
}

@Suite struct JSONTextTests {
    /// Every string comes back from JSONSerialization as it went in: quotes, backslashes,
    /// control characters and non-ASCII text.
    @Test(arguments: ["plain", "say \"hi\"", #"C:\path\"#, "tab\tnew\nline\r", "\u{1}\u{1F}", "naïve ✓ 🙂", ""])
    func quotedTextParsesBack(text: String) throws {
        let quoted = jsonQuoted(text)
        let parsed = try JSONSerialization.jsonObject(with: Data("[\(quoted)]".utf8)) as? [String]
        #expect(parsed == [text])
    }

    @Test func controlCharactersUseShortOrUnicodeEscapes() {
        #expect(jsonQuoted("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
    }
}
