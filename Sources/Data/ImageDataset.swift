/// A set of equally sized grey-scale uint8 images with uint8 labels, held in memory.
///
/// Immutable after loading, so ranks' threads share it without copies or locks.
/// Shapes: N images of H x W, stored row-major as N x (H*W) bytes.
public final class ImageDataset: Sendable {
    public let count: Int
    public let height: Int
    public let width: Int
    /// All pixels, count x height x width, row-major.
    public let images: [UInt8]
    /// One label per image; only evaluation reads them.
    public let labels: [UInt8]

    public var pixelsPerImage: Int { height * width }

    public init(height: Int, width: Int, images: [UInt8], labels: [UInt8]) {
        precondition(height > 0 && width > 0, "ImageDataset: image size \(height)x\(width) must be positive")
        precondition(images.count == labels.count * height * width,
                      "ImageDataset: \(images.count) pixels do not make \(labels.count) images of \(height)x\(width)")
        self.count = labels.count
        self.height = height
        self.width = width
        self.images = images
        self.labels = labels
    }

    /// Writes the un-augmented images of `samples`, scaled to [0, 1] as `pixel / 255`, as the
    /// rows of `out` (samples.count x H*W, row-major). Evaluation (kNN, linear probe) reads these.
    public func writePixels(samples: [Int], into out: UnsafeMutablePointer<Float>) {
        let pixels = pixelsPerImage
        images.withUnsafeBufferPointer { all in
            for (row, sample) in samples.enumerated() {
                precondition(sample >= 0 && sample < count, "writePixels: sample \(sample) out of range 0..<\(count)")
                let source = all.baseAddress! + sample * pixels
                let target = out + row * pixels
                // Division, not multiplication by 1/255: the same values the views give for an identity crop.
                for i in 0..<pixels { target[i] = Float(source[i]) / 255 }
            }
        }
    }
}

/// Fashion-MNIST (Xiao et al., 2017): 60,000 train and 10,000 test 28x28 images, 10 classes.
public enum FashionMNIST {
    /// The class names by label (Xiao, Rasul & Vollgraf 2017), as prepared sets record them.
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    public enum Split: String, Sendable, CaseIterable {
        case train, test
        /// File name prefix used by the original distribution and Debian's package.
        public var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    /// Where Debian's `dataset-fashion-mnist` package installs the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"

    /// Loads one split from `directory`/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz.
    /// - Parameters:
    ///   - directory: folder holding the four IDX files.
    ///   - split: `.train` or `.test`.
    ///   - limit: load only the first `limit` samples; 0 loads all.
    public static func load(directory: String = defaultDirectory, split: Split, limit: Int = 0) throws -> ImageDataset {
        let (imagesPath, labelsPath) = paths(directory: directory, split: split)
        let images = try IDX.read(path: imagesPath, magic: IDX.imagesMagic, limit: limit, section: "pixel data")
        let labels = try IDX.read(path: labelsPath, magic: IDX.labelsMagic, limit: limit, section: "label data")
        guard images.dimensions[0] == labels.dimensions[0] else {
            throw DataError.countMismatch(imagesPath: imagesPath, images: images.dimensions[0],
                                          labelsPath: labelsPath, labels: labels.dimensions[0])
        }
        return ImageDataset(height: images.dimensions[1], width: images.dimensions[2],
                            images: images.bytes, labels: labels.bytes)
    }

    /// Samples in one split (the first `limit` when it is set), from the two files' headers alone.
    /// - Throws: `DataError.countMismatch` when the images and labels files disagree.
    public static func sampleCount(directory: String = defaultDirectory, split: Split, limit: Int = 0) throws -> Int {
        let (imagesPath, labelsPath) = paths(directory: directory, split: split)
        let images = try IDX.dimensions(path: imagesPath, magic: IDX.imagesMagic)[0]
        let labels = try IDX.dimensions(path: labelsPath, magic: IDX.labelsMagic)[0]
        guard images == labels else {
            throw DataError.countMismatch(imagesPath: imagesPath, images: images, labelsPath: labelsPath, labels: labels)
        }
        guard images > 0 else { throw DataError.noSamples(path: imagesPath) }
        return limit == 0 ? images : min(limit, images)
    }

    /// The samples `held` of one split (of its first `limit`), and nothing else: a rank keeps
    /// only its shards. The files are decompressed from the start up to `held`'s end. With
    /// `spillDirectory` the images go to an unnamed file there (`data.hold: disk`) 4 MiB at a
    /// time instead of into memory; the labels stay in memory.
    public static func rows(directory: String = defaultDirectory, split: Split, limit: Int = 0, held: Range<Int>,
                            spillDirectory: String? = nil) throws -> SampleRows {
        let (imagesPath, labelsPath) = paths(directory: directory, split: split)
        let total = try sampleCount(directory: directory, split: split, limit: limit)
        let labels = try IDX.read(path: labelsPath, magic: IDX.labelsMagic, limit: limit, samples: held, section: "label data")
        guard let spillDirectory else {
            let images = try IDX.read(path: imagesPath, magic: IDX.imagesMagic, limit: limit, samples: held, section: "pixel data")
            return SampleRows(held: held, totalCount: total, featureShape: [images.dimensions[1], images.dimensions[2]],
                              features: .uint8(images.bytes), labels: labels.bytes.map { Int64($0) })
        }
        let shape = Array(try IDX.dimensions(path: imagesPath, magic: IDX.imagesMagic).dropFirst())
        let (pixels, overflow) = shape.count == 2 ? shape[0].multipliedReportingOverflow(by: shape[1]) : (0, true)
        guard !overflow, shape[0] > 0, shape[1] > 0, pixels <= 1 << 40 else {
            throw DataError.corruptStream(path: imagesPath, detail: "the header declares images of \(shape.map(String.init).joined(separator: " x ")) pixels; "
                                          + "the file is not an IDX file of this data set")
        }
        // Chunks of 4 MiB: whole images when they are smaller, parts of one when larger.
        let writer = try SampleFile.Writer(directory: spillDirectory, rowBytes: pixels)
        _ = try IDX.read(path: imagesPath, magic: IDX.imagesMagic, limit: limit, samples: held, section: "pixel data",
                         chunkBytes: 1 << 22) { try writer.append($0) }
        return SampleRows(held: held, totalCount: total, featureShape: shape, features: .uint8([]),
                          labels: labels.bytes.map { Int64($0) }, disk: SampleRows.Disk(features: writer.finish(), pairs: nil))
    }

    private static func paths(directory: String, split: Split) -> (images: String, labels: String) {
        (directory + "/" + split.filePrefix + "-images-idx3-ubyte.gz", directory + "/" + split.filePrefix + "-labels-idx1-ubyte.gz")
    }
}
