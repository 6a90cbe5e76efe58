import Testing
import Storage

@Suite struct CRC32Tests {
    /// The check value of CRC-32/ISO-HDLC: Python's zlib.crc32(b"123456789") == 0xcbf43926.
    @Test func knownValue() {
        let crc = Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }
        #expect(crc == 0xCBF4_3926)
        #expect(CRC32.hex(crc) == "cbf43926")
        #expect(CRC32.prefixedHex(crc) == "0xcbf43926")
    }

    /// Both hex forms keep eight digits: manifests compare them as strings.
    @Test func hexKeepsLeadingZeros() {
        #expect(CRC32.hex(0) == "00000000")
        #expect(CRC32.hex(0x1A) == "0000001a")
        #expect(CRC32.prefixedHex(0x00AB_CDEF) == "0x00abcdef")
        #expect(Array("".utf8).withUnsafeBytes { CRC32.checksum($0) } == 0)
    }

    /// A checkpoint writer accumulates the crc frame by frame and a reader combines the
    /// frames' crcs: both must give the crc of the whole.
    @Test func continuingAndCombiningGiveTheWhole() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        bytes.withUnsafeBytes { all in
            let whole = CRC32.checksum(all)
            for cut in [0, 1, 4096, 9_999, 10_000] {
                let head = UnsafeRawBufferPointer(rebasing: all[..<cut]), tail = UnsafeRawBufferPointer(rebasing: all[cut...])
                #expect(CRC32.checksum(tail, continuing: CRC32.checksum(head)) == whole, "cut \(cut)")
                #expect(CRC32.combine(CRC32.checksum(head), CRC32.checksum(tail), secondLength: tail.count) == whole, "cut \(cut)")
            }
        }
    }
}
