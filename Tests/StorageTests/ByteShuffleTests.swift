import Foundation
import Testing
import Storage

@Suite struct ShuffleTests {
    @Test(arguments: [0, 1, 2, 3, 7, 1000, 4097])
    func fastMatchesReference(count: Int) {
        let source = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        defer { source.deallocate() }
        for i in 0..<count { source[i] = Float(bitPattern: UInt32(truncatingIfNeeded: i &* 2_654_435_761 &+ 12345)) }
        let fast = [UInt8](unsafeUninitializedCapacity: count * 4) { buffer, initialized in
            ByteShuffle.shuffle(source, count: count, into: buffer.baseAddress!); initialized = count * 4
        }
        let reference = [UInt8](unsafeUninitializedCapacity: count * 4) { buffer, initialized in
            ByteShuffle.shuffleReference(source, count: count, into: buffer.baseAddress!); initialized = count * 4
        }
        #expect(fast == reference)

        let back = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        let backReference = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        defer { back.deallocate(); backReference.deallocate() }
        fast.withUnsafeBufferPointer {
            ByteShuffle.unshuffle($0.baseAddress!, count: count, into: back)
            ByteShuffle.unshuffleReference($0.baseAddress!, count: count, into: backReference)
        }
        #expect(memcmp(back, source, count * 4) == 0)
        #expect(memcmp(backReference, source, count * 4) == 0)
    }

    /// The documented layout: plane k holds byte k (least significant first) of every element.
    @Test func planesAreLittleEndianBytes() {
        var values: [Float] = [Float(bitPattern: 0x4433_2211), Float(bitPattern: 0x8877_6655)]
        var out = [UInt8](repeating: 0, count: 8)
        ByteShuffle.shuffle(&values, count: 2, into: &out)
        #expect(out == [0x11, 0x55, 0x22, 0x66, 0x33, 0x77, 0x44, 0x88])
    }
}
