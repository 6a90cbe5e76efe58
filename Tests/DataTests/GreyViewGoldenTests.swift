import Testing
@testable import Data

/// Grey-scale views as they were before RGB views existed (commit c688ec0), as FNV-1a hashes of the
/// views' bit patterns: the RGB work shares the crop and the jitter passes with the grey path, and
/// must not move one bit of the grey views (runs and checkpoints made before depend on them).
@Suite struct GreyViewGoldenTests {
    /// A 20x24 image (not square, so rows and columns cannot be swapped unnoticed) with a gradient and texture.
    static let image: [UInt8] = (0..<480).map { (i: Int) -> UInt8 in
        let texture = Int((UInt32(i) &* 2_654_435_761) >> 27)
        let gradient: Int = (i % 24) * 9 + (i / 24) * 3
        return UInt8(min(255, gradient + texture))
    }

    static let settings: [(String, ViewSettings)] = [
        ("default", ViewSettings()),
        ("strong", ViewSettings(cropArea: 0.08...1, flipProbability: 0.5, jitterStrength: 1, jitterProbability: 1, noiseSigma: 0.3)),
        ("no noise", ViewSettings(cropArea: 0.2...1, aspectRatio: 0.5...2, jitterStrength: 0.8, jitterProbability: 0.9, noiseSigma: 0)),
        ("identity", .identity),
    ]

    static func hash(_ settings: ViewSettings) -> UInt64 {
        let maker = ViewMaker(height: 20, width: 24, settings: settings)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var out = [Float](repeating: 0, count: 480)
        for sample in 0..<64 {
            for view in 0..<2 {
                image.withUnsafeBufferPointer {
                    maker.makeView(image: $0.baseAddress!, into: &out, seed: 11, epoch: sample % 3, sample: sample, view: view)
                }
                for value in out {
                    hash = (hash ^ UInt64(value.bitPattern)) &* 0x100_0000_01b3
                }
            }
        }
        return hash
    }

    static let expected: [String: UInt64] = [
        "default": 0x6f23_7079_8e4b_5d17, "strong": 0x492f_65be_ef68_2b6d,
        "no noise": 0x3c53_2242_edda_7394, "identity": 0x8e36_767b_9a3b_6225,
    ]

    @Test func greyViewsAreUnchangedBitForBit() {
        for (name, settings) in Self.settings {
            let hash = Self.hash(settings)
            #expect(hash == Self.expected[name], "grey views '\(name)' changed: hash 0x\(String(hash, radix: 16))")
        }
    }
}
