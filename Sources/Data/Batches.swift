import Tensor

/// How the samples of a step become the floats the model reads: the producer side of the
/// data pipeline, run by the training loop or by `ViewPrefetcher`'s background thread.
/// A batch must be a pure function of (samples, epoch), whichever thread makes it.
public protocol BatchMaker: Sendable {
    /// Floats one batch of `samplesPerBatch` samples takes.
    var floatsPerBatch: Int { get }
    var samplesPerBatch: Int { get }
    /// Writes the batch of `samples` (global indices, this rank's local batch) for `epoch`.
    func makeBatch(samples: [Int], epoch: Int, into out: UnsafeMutablePointer<Float>)
    /// The same maker reading `rows` (a streamed batch's gathered samples) in place of its own.
    func reading(_ rows: SampleRows) -> BatchMaker
}

/// How one view of a sample is made from its features.
public enum Augmentation: Sendable {
    /// Crops, flips, colour jitter, grayscale, blur, solarize and noise of grey or RGB images (`ViewMaker`).
    case image(ViewMaker)
    /// Scaling, masking, dropout and noise of any features (`FeatureViewMaker`).
    case features(FeatureViewMaker)
    /// No augmentation: the features as they are (uint8 as byte / 255).
    case none
}

/// Which training samples keep their labels when only a fraction is labeled (supervised
/// contrastive fine-tuning with few labels): sample i is labeled when the first uniform draw of
/// `RandomStream(seed, id(.labelSubset, 0, i))` is below `fraction`, a fixed subset whatever
/// the rank count or epoch.
public struct LabelSubset: Sendable, Equatable {
    public var fraction: Float
    public var seed: UInt64

    public init(fraction: Float, seed: UInt64) {
        self.fraction = fraction
        self.seed = seed
    }

    public func isLabeled(_ sample: Int) -> Bool {
        if fraction >= 1 { return true }
        var random = RandomStream(seed: seed, stream: RandomStream.id(.labelSubset, 0, UInt64(sample)))
        return random.nextUniform(0, 1) < fraction
    }
}

/// SimCLR's input: two augmented views of each of B samples, 2B x F, rows 0..<B view 0,
/// rows B..<2B view 1 of the same samples (row i's positive is row (i + B) mod 2B). With
/// `labels` (SupCon) B more floats follow: each sample's label, or -1 when it is unlabeled.
public struct TwoViewBatches: BatchMaker {
    public let rows: SampleRows
    public let augmentation: Augmentation
    public let seed: UInt64
    public let samplesPerBatch: Int
    public let labels: LabelSubset?

    public init(rows: SampleRows, augmentation: Augmentation, seed: UInt64, samplesPerBatch: Int, labels: LabelSubset? = nil) {
        precondition(labels == nil || rows.labels != nil, "TwoViewBatches: labels asked for, but the data set has none")
        self.labels = labels
        if case .image(let maker) = augmentation {
            precondition(rows.isImage && rows.featureWidth == maker.valuesPerView && Array(rows.featureShape.suffix(2)) == [maker.height, maker.width],
                         "TwoViewBatches: image views need \(maker.channels)x\(maker.height)x\(maker.width) uint8 images, the data has \(rows.featureShape)")
        }
        self.rows = rows
        self.augmentation = augmentation
        self.seed = seed
        self.samplesPerBatch = samplesPerBatch
    }

    public var floatsPerBatch: Int { 2 * samplesPerBatch * rows.featureWidth + (labels == nil ? 0 : samplesPerBatch) }

    public func reading(_ rows: SampleRows) -> BatchMaker {
        TwoViewBatches(rows: rows, augmentation: augmentation, seed: seed, samplesPerBatch: samplesPerBatch, labels: labels)
    }

    public func makeBatch(samples: [Int], epoch: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(samples.count == samplesPerBatch, "a batch of \(samplesPerBatch) samples got \(samples.count)")
        switch augmentation {
        case .image(let maker):
            rows.withFeatureRows(of: samples) { source, rowOf in
                guard case .uint8(let images) = source else { preconditionFailure("image views need uint8 features") }
                maker.makeViews(images: images, rows: rowOf, samples: samples, epoch: epoch, seed: seed, into: out)
            }
        case .features(let maker):
            rows.withFeatureRows(of: samples) { source, rowOf in
                maker.makeViews(samples: samples, rows: rowOf, source: source, epoch: epoch, seed: seed, into: out)
            }
        case .none:
            // Both views are the inputs themselves: read once, copy.
            let floats = samples.count * rows.featureWidth
            rows.writeInputs(samples, into: out)
            (out + floats).update(from: out, count: floats)
        }
        if let labels, let values = rows.labels {
            let tail = out + 2 * samples.count * rows.featureWidth
            for (index, sample) in samples.enumerated() {
                tail[index] = labels.isLabeled(sample) ? Float(values[rows.row(sample)]) : -1
            }
        }
    }
}

/// CLIP's input: modality a (the features, one view) of B samples, B x F, then modality b
/// (the pairs), B x W. The two modalities are the two views; `augmentation` applies to a only.
public struct PairBatches: BatchMaker {
    public let rows: SampleRows
    public let augmentation: Augmentation
    public let seed: UInt64
    public let samplesPerBatch: Int

    public init(rows: SampleRows, augmentation: Augmentation = .none, seed: UInt64, samplesPerBatch: Int) {
        precondition(rows.hasPairs, "PairBatches: the data set has no pairs")
        self.rows = rows
        self.augmentation = augmentation
        self.seed = seed
        self.samplesPerBatch = samplesPerBatch
    }

    public var floatsPerBatch: Int { samplesPerBatch * (rows.featureWidth + rows.pairWidth) }

    public func reading(_ rows: SampleRows) -> BatchMaker {
        PairBatches(rows: rows, augmentation: augmentation, seed: seed, samplesPerBatch: samplesPerBatch)
    }

    public func makeBatch(samples: [Int], epoch: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(samples.count == samplesPerBatch, "a batch of \(samplesPerBatch) samples got \(samples.count)")
        let pairsStart = out + samples.count * rows.featureWidth
        switch augmentation {
        case .image(let maker):
            let width = rows.featureWidth
            rows.withFeatureRows(of: samples) { source, rowOf in
                guard case .uint8(let images) = source else { preconditionFailure("image views need uint8 features") }
                for (index, sample) in samples.enumerated() {
                    maker.makeView(image: images.baseAddress! + rowOf(index, sample) * width, into: out + index * width,
                                   seed: seed, epoch: epoch, sample: sample, view: 0)
                }
            }
        case .features(let maker):
            let width = rows.featureWidth
            rows.withFeatureRows(of: samples) { source, rowOf in
                for (index, sample) in samples.enumerated() {
                    maker.makeView(source: source, row: rowOf(index, sample), into: out + index * width,
                                   seed: seed, epoch: epoch, sample: sample, view: 0)
                }
            }
        case .none:
            rows.writeInputs(samples, into: out)
        }
        rows.writePairs(samples, into: pairsStart)
    }
}
