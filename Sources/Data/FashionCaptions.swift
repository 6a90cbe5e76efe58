/// Captions for Fashion-MNIST images, for image↔text (CLIP-style) training without a caption
/// corpus: each names the garment's class and up to three attributes read off the image's own
/// pixels, in one of four phrasings. The attributes describe what is there, so a text tower can
/// learn them from the images, and the zero-shot evaluator's class prompts ("a photo of a
/// {}.") are not the captions themselves. docs/data-format.md, "Captions for Fashion-MNIST".
public enum FashionCaptions {
    /// The class names in captions and zero-shot prompts (`FashionMNIST.classNames`, as words).
    public static let classNames = ["t-shirt", "pair of trousers", "pullover", "dress", "coat",
                                    "sandal", "shirt", "sneaker", "bag", "ankle boot"]

    /// A pixel above this is ink; the rest is the background.
    static let inkThreshold: UInt8 = 25

    /// What one image looks like, from its pixels. The thresholds are about the quartiles of
    /// Fashion-MNIST's training images (measured once; docs/data-format.md), so about a quarter of
    /// the images get each attribute and half none of a kind.
    public struct Attributes: Equatable, Sendable {
        /// "dark" (mean ink below 130), "bright" (above 192) or nil.
        public var tone: String?
        /// "patterned" (ink standard deviation above 54), "plain" (below 40) or nil.
        public var texture: String?
        /// "wide" (ink bounding box wider than 1.4 x its height), "narrow" (below 0.68) or nil.
        public var shape: String?

        public var words: [String] { [tone, texture, shape].compactMap { $0 } }
    }

    /// The attributes of a `height` x `width` grey image (row-major, 0 = black background).
    public static func attributes(_ pixels: ArraySlice<UInt8>, height: Int, width: Int) -> Attributes {
        var count = 0, sum = 0.0, sumSquares = 0.0
        var top = height, bottom = -1, left = width, right = -1
        var index = pixels.startIndex
        for row in 0..<height {
            for column in 0..<width {
                let value = pixels[index]
                index += 1
                guard value > inkThreshold else { continue }
                count += 1
                sum += Double(value)
                sumSquares += Double(value) * Double(value)
                top = min(top, row); bottom = max(bottom, row); left = min(left, column); right = max(right, column)
            }
        }
        guard count > 0 else { return Attributes() }
        let mean = sum / Double(count)
        let deviation = (max(0, sumSquares / Double(count) - mean * mean)).squareRoot()
        let aspect = Double(right - left + 1) / Double(bottom - top + 1)
        return Attributes(tone: mean < 130 ? "dark" : mean > 192 ? "bright" : nil,
                          texture: deviation > 54 ? "patterned" : deviation < 40 ? "plain" : nil,
                          shape: aspect > 1.4 ? "wide" : aspect < 0.68 ? "narrow" : nil)
    }

    /// The caption of sample `index` of class `label` with `attributes`: the phrasing is
    /// picked by the index (so one class's captions vary in form as well as attributes).
    public static func caption(label: Int, attributes: Attributes, index: Int) -> String {
        let name = classNames[label], words = attributes.words
        let described = (words + [name]).joined(separator: " ")
        let article = "aeiou".contains(described.first ?? "x") ? "an" : "a"
        switch index % 4 {
        case 0: return "a photo of \(article) \(described)."
        case 1: return "\(article) \(described)."
        case 2: return "a picture of \(article) \(described)."
        default: return words.isEmpty ? "\(name)." : "\(name): \(words.joined(separator: ", "))."
        }
    }

    /// One caption per image of `dataset`, in order.
    public static func captions(for dataset: ImageDataset) -> [String] {
        let size = dataset.height * dataset.width
        return (0..<dataset.count).map { sample in
            let pixels = dataset.images[(sample * size)..<((sample + 1) * size)]
            return caption(label: Int(dataset.labels[sample]),
                           attributes: attributes(pixels, height: dataset.height, width: dataset.width), index: sample)
        }
    }
}
