import Foundation
import Testing
import TestSupport
@testable import Data

/// `prepare fashion-mnist --captions`: attributes read off constructed images, the phrasings,
/// and the captions stored beside the pixels.
struct FashionCaptionTests {
    /// A 28 x 28 black image with a `rows` x `columns` block whose pixels alternate `a` and `b`.
    static func image(rows: Int, columns: Int, _ a: UInt8, _ b: UInt8) -> [UInt8] {
        var pixels = [UInt8](repeating: 0, count: 28 * 28)
        for row in 0..<rows { for column in 0..<columns { pixels[(row + 2) * 28 + column + 3] = (row + column) % 2 == 0 ? a : b } }
        return pixels
    }

    @Test func attributesDescribeThePixels() {
        func attributes(_ pixels: [UInt8]) -> FashionCaptions.Attributes { FashionCaptions.attributes(pixels[...], height: 28, width: 28) }
        // Uniform 100: dark (mean < 130), plain (deviation 0), 20 wide x 10 high: wide.
        #expect(attributes(Self.image(rows: 10, columns: 20, 100, 100)) == .init(tone: "dark", texture: "plain", shape: "wide"))
        // 80 / 255 alternating: mean 167.5 (no tone), deviation 87.5: patterned; 20 high x 10 wide: narrow.
        #expect(attributes(Self.image(rows: 20, columns: 10, 80, 255)) == .init(tone: nil, texture: "patterned", shape: "narrow"))
        // Uniform 200, square: bright, plain, no shape.
        #expect(attributes(Self.image(rows: 12, columns: 12, 200, 200)) == .init(tone: "bright", texture: "plain", shape: nil))
        // Background (and pixels at the ink threshold) is no ink: a blank image has no attributes.
        #expect(attributes(Self.image(rows: 5, columns: 5, 25, 25)) == .init())
    }

    @Test func captionsNameTheClassInFourPhrasings() {
        let attributes = FashionCaptions.Attributes(tone: "dark", texture: "plain", shape: "wide")
        #expect(FashionCaptions.caption(label: 4, attributes: attributes, index: 0) == "a photo of a dark plain wide coat.")
        #expect(FashionCaptions.caption(label: 9, attributes: .init(), index: 1) == "an ankle boot.")
        #expect(FashionCaptions.caption(label: 1, attributes: .init(tone: "bright"), index: 6) == "a picture of a bright pair of trousers.")
        #expect(FashionCaptions.caption(label: 7, attributes: attributes, index: 3) == "sneaker: dark, plain, wide.")
        #expect(FashionCaptions.caption(label: 8, attributes: .init(), index: 7) == "bag.")
        #expect(FashionCaptions.caption(label: 0, attributes: .init(texture: "patterned"), index: 5) == "a patterned t-shirt.")
    }

    /// Through the binary: the caption field holds the caption of each stored image.
    @Test func prepareStoresOneCaptionPerImage() throws {
        guard FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory) else {
            print("FashionCaptionTests: skipped (no Fashion-MNIST at \(FashionMNIST.defaultDirectory))")
            return
        }
        let folder = temporaryDirectory("captions").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outcome = try runContrast(ranks: 1, ["prepare", "fashion-mnist", "--captions", "--limit", "64", "--shards", "2", "--out", folder + "/set"])
        try #require(outcome.status == 0, "\(outcome.error)")
        let dataset = try ShardedDataset(directory: folder + "/set/train")
        #expect(dataset.manifest.fields?.map(\.name) == ["caption"])
        let images = try FashionMNIST.load(split: .train, limit: 64)
        var stored: [String] = []
        for shard in 0..<dataset.shardCount {
            let block = try dataset.readShard(shard)
            stored += (0..<block.count).map { block.text("caption", $0)! }
        }
        #expect(stored == FashionCaptions.captions(for: images))
        #expect(Set(stored).count > 32, "captions vary: \(Set(stored).count) distinct of 64")
        #expect(stored.enumerated().allSatisfy { $1.contains(FashionCaptions.classNames[Int(images.labels[$0])]) })
    }
}
