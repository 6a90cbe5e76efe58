import Foundation
import Testing
import TestSupport
@testable import Data

/// An H x W x C uint8 .npy (H x W for gray) as a `DecodedImage`.
private func npyImage(_ path: String) throws -> DecodedImage {
    let array = try NPYArray(path: path)
    let channels = array.shape.count == 3 ? array.shape[2] : 1
    return DecodedImage(width: array.shape[1], height: array.shape[0], channels: channels, pixels: array.uint8Values()!)
}

private func file(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

/// Largest absolute difference of two images' bytes (same shape).
private func maxDifference(_ a: DecodedImage, _ b: DecodedImage) -> Int {
    precondition(a.width == b.width && a.height == b.height && a.channels == b.channels)
    return zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

/// Decoding of every kind of PNG and JPEG PIL writes, against PIL's own reading of the same files.
@Suite(.serialized, .enabled(if: pillowUnavailable == nil, "\(pillowUnavailable ?? "")"))
struct ImageDecodingTests {
    static let decodeFixtures = imageFixtures("decode", label: "decode")
    static let exifFixtures = imageFixtures("exif", label: "exif")
    static let size = 32
    static let resizeFixtures = imageFixtures("resize", ["\(size)"], label: "resize")

    static let pngs = ["png-1bit", "png-4bit", "png-gray", "png-gray-alpha", "png-rgb", "png-rgba", "png-palette",
                       "png-palette-transparent", "png-interlaced", "png-gray16", "png-rgb16", "png-rgba16"]
    static let jpegs = ["jpeg-gray", "jpeg-rgb420", "jpeg-rgb444", "jpeg-progressive"]

    /// PNG: exactly PIL's pixels after convert("RGB") and convert("L"): alpha dropped, the
    /// palette's colours, low bit depths scaled, 16-bit samples' high byte, and PIL's luma.
    @Test(arguments: pngs) func pngDecodesAsPIL(name: String) throws {
        let decoded = try ImageDecoding.decode(try file("\(Self.decodeFixtures)/\(name).png"))
        #expect(decoded.converted(channels: 3) == (try npyImage("\(Self.decodeFixtures)/\(name).rgb.npy")))
        #expect(decoded.converted(channels: 1) == (try npyImage("\(Self.decodeFixtures)/\(name).l.npy")))
        let gray = ["png-1bit", "png-4bit", "png-gray", "png-gray-alpha", "png-gray16"].contains(name)
        #expect(decoded.channels == (gray ? 1 : 3), "a gray PNG decodes to one channel, a colour one to three")
    }

    /// JPEG: Debian's libjpeg-turbo 2.1.5 against the libjpeg-turbo 3.0.3 in Pillow 10.4.0's wheel, both
    /// with the accurate integer IDCT and smooth upsampling. libjpeg only promises decoders agree to
    /// within 1 per sample between builds; these two agree exactly on every file here (measured, printed),
    /// so the expectation is exact equality.
    @Test(arguments: jpegs) func jpegDecodesAsPIL(name: String) throws {
        let decoded = try ImageDecoding.decode(try file("\(Self.decodeFixtures)/\(name).jpg"))
        let rgb = maxDifference(decoded.converted(channels: 3), try npyImage("\(Self.decodeFixtures)/\(name).rgb.npy"))
        let gray = maxDifference(decoded.converted(channels: 1), try npyImage("\(Self.decodeFixtures)/\(name).l.npy"))
        print("python-verify: ran \(name): largest difference from PIL's decode \(rgb) (RGB), \(gray) (L)")
        #expect(rgb == 0 && gray == 0)
        #expect(decoded.channels == (name == "jpeg-gray" ? 1 : 3))
    }

    @Test func cmykJPEGIsRefusedWithTheFix() throws {
        #expect {
            try ImageDecoding.decode(try file("\(Self.decodeFixtures)/jpeg-cmyk.jpg"))
        } throws: { "\($0)".contains("CMYK JPEG is not supported; convert it to RGB") }
    }

    /// All eight EXIF orientations turn the image upright as PIL's exif_transpose does; and each
    /// is exactly the orientation-1 decode turned (the eight files hold the same JPEG data).
    @Test(arguments: 1...8) func exifOrientationAsPIL(orientation: Int) throws {
        let bytes = try file("\(Self.exifFixtures)/orient-\(orientation).jpg")
        #expect(EXIFOrientation.of(jpeg: bytes) == orientation)
        let decoded = try ImageDecoding.decode(bytes)
        let upright = try ImageDecoding.decode(try file("\(Self.exifFixtures)/orient-1.jpg"))
        #expect(decoded == upright.oriented(orientation))
        #expect(decoded == (try npyImage("\(Self.exifFixtures)/orient-\(orientation).npy")))
        #expect((decoded.width, decoded.height) == (orientation >= 5 ? (24, 40) : (40, 24)))
    }

    /// Resize + centre crop and resize + pad: PIL's Image.resize(BILINEAR) bit for bit, reducing
    /// (224 x 160, 500 x 333 to 32), enlarging (17 x 9, 7 x 5) and equal (28 x 28 is only padded).
    @Test func fittingMatchesPILBitForBit() throws {
        let sources = try FileManager.default.contentsOfDirectory(atPath: Self.resizeFixtures)
            .filter { $0.split(separator: ".").count == 2 }.sorted()
        #expect(sources.count == 8)
        for source in sources {
            let name = String(source.dropLast(4))
            let image = try npyImage("\(Self.resizeFixtures)/\(source)")
            for mode in [DecodedImage.Fit.crop, .pad] {
                let expected = try npyImage("\(Self.resizeFixtures)/\(name).\(Self.size).\(mode.rawValue).npy")
                let fitted = image.fitted(size: Self.size, mode: mode)
                #expect(fitted == expected, "\(name) \(mode): largest difference \(maxDifference(fitted, expected))")
            }
        }
    }

    /// Every prefix of every fixture (a file cut short anywhere) and every single-byte corruption
    /// of the headers is an error or an image, never a crash; a cut inside the image data is an error.
    @Test func truncatedAndCorruptFilesAreErrors() throws {
        for name in Self.pngs.map({ "\($0).png" }) + Self.jpegs.map({ "\($0).jpg" }) {
            let bytes = try file("\(Self.decodeFixtures)/\(name)")
            for length in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
                // Even a JPEG without its EOI (PIL refuses it too) or a PNG without its IEND (PIL would load it).
                #expect(throws: ImageDecodingError.self, "\(name) cut to \(length) of \(bytes.count) bytes") {
                    try ImageDecoding.decode(Array(bytes.prefix(length)))
                }
            }
            for position in 0..<min(bytes.count, 200) {
                var damaged = bytes
                damaged[position] ^= 0x5A
                _ = try? ImageDecoding.decode(damaged)
            }
        }
        #expect(throws: ImageDecodingError("not a JPEG or PNG file (its first bytes are neither signature)")) {
            try ImageDecoding.decode(Array("hello, world".utf8))
        }
        #expect(throws: ImageDecodingError("empty file")) { try ImageDecoding.decode([]) }
    }
}

/// The pure parts that need no fixtures.
@Suite struct ImageGeometryTests {
    /// A 3 x 2 image with distinct pixels, turned each way by hand.
    @Test func orientationsByHand() {
        // 1 2 3
        // 4 5 6
        let image = DecodedImage(width: 3, height: 2, channels: 1, pixels: [1, 2, 3, 4, 5, 6])
        let expected: [Int: (Int, [UInt8])] = [
            1: (3, [1, 2, 3, 4, 5, 6]), 2: (3, [3, 2, 1, 6, 5, 4]), 3: (3, [6, 5, 4, 3, 2, 1]), 4: (3, [4, 5, 6, 1, 2, 3]),
            5: (2, [1, 4, 2, 5, 3, 6]), 6: (2, [4, 1, 5, 2, 6, 3]), 7: (2, [6, 3, 5, 2, 4, 1]), 8: (2, [3, 6, 2, 5, 1, 4]),
        ]
        for (orientation, (width, pixels)) in expected {
            let turned = image.oriented(orientation)
            #expect(turned.width == width && turned.pixels == pixels, "orientation \(orientation)")
        }
    }

    @Test func lumaIsPILsFormulaAndGrayRepeats() {
        let rgb = DecodedImage(width: 3, height: 1, channels: 3, pixels: [255, 0, 0, 0, 255, 0, 10, 20, 30])
        // (19595 R + 38470 G + 7471 B + 32768) >> 16
        #expect(rgb.converted(channels: 1).pixels == [76, 150, 18])
        #expect(DecodedImage(width: 1, height: 1, channels: 1, pixels: [7]).converted(channels: 3).pixels == [7, 7, 7])
    }

    @Test func planarIsChannelMajor() {
        let image = DecodedImage(width: 2, height: 1, channels: 3, pixels: [1, 2, 3, 4, 5, 6])
        #expect(image.planar == [1, 4, 2, 5, 3, 6])
    }

    /// Malformed EXIF never fails: orientation 1.
    @Test func malformedEXIFIsUpright() {
        let soi: [UInt8] = [0xFF, 0xD8]
        func app1(_ payload: [UInt8]) -> [UInt8] { [0xFF, 0xE1, UInt8((payload.count + 2) >> 8), UInt8((payload.count + 2) & 0xFF)] + payload }
        let exif: [UInt8] = Array("Exif".utf8) + [0, 0]
        // II, 42, IFD at 8, one entry: 0x0112 SHORT 1 value 6.
        let good = exif + [0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]
        #expect(EXIFOrientation.of(jpeg: soi + app1(good)) == 6)
        #expect(EXIFOrientation.of(jpeg: soi + app1(Array(good.prefix(20)))) == 1, "IFD cut short")
        var outOfRange = good; outOfRange[18] = 9
        #expect(EXIFOrientation.of(jpeg: soi + app1(outOfRange)) == 1)
        var badOffset = good; badOffset[10] = 0xFF
        #expect(EXIFOrientation.of(jpeg: soi + app1(badOffset)) == 1)
        #expect(EXIFOrientation.of(jpeg: soi + [0xFF, 0xE1, 0xFF, 0xFF]) == 1, "segment longer than the file")
        // Big-endian (MM) works too.
        let motorola = exif + [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0]
        #expect(EXIFOrientation.of(jpeg: soi + app1(motorola)) == 3)
    }
}
