import RunFiles
import NN
import Data
import Foundation
import Tensor

/// Representations or embeddings of a whole data set split, for `contrast embed` and
/// `contrast eval drift`: un-augmented inputs (uint8 as byte / 255), the model in inference.
///
/// Shapes: N samples, I input width (W for pairs), R representation width, E embedding width.
public enum Embedding {
    /// Which output of the model to write.
    public enum Output: String, Sendable, CaseIterable {
        /// The encoder's output h (N x R), what evaluation and transfer use.
        case representation
        /// The L2-normalised projection z (N x E), what the loss compared.
        case embedding
    }

    /// Split `split` of the data set at `path`: a folder `contrast prepare` wrote (with train/
    /// and test/, or one data-set folder without splits, which is the train split) or a
    /// Fashion-MNIST folder of IDX files. Only the first `limit` samples when `limit` > 0.
    public static func samples(at path: String, split: FashionMNIST.Split, limit: Int = 0) throws -> SampleRows {
        let fileManager = FileManager.default
        let isPrepared = { (folder: String) in fileManager.fileExists(atPath: folder + "/" + ShardManifest.fileName) }
        if isPrepared(path) || isPrepared(path + "/train") {
            let (trainPath, testPath) = ShardedDataset.splits(of: path)
            let folder: String
            switch split {
            case .train: folder = trainPath
            case .test:
                guard let testPath else {
                    throw RunDirectory.Failure(description: "\(path) is a prepared data set without a test split (no test/ folder); "
                                           + "use --split train, or prepare it with a test split (contrast prepare npy ... --test-fraction 0.2)")
                }
                folder = testPath
            }
            let dataset = try ShardedDataset(directory: folder)
            var shards = dataset.shardCount
            if limit > 0, let covering = dataset.manifest.shards.firstIndex(where: { $0.firstSample + $0.sampleCount >= limit }) {
                shards = covering + 1
            }
            return try SampleRows.read(dataset, shards: 0..<shards).prefix(limit)
        }
        let images = path + "/" + split.filePrefix + "-images-idx3-ubyte.gz"
        guard fileManager.fileExists(atPath: images) else {
            throw RunDirectory.Failure(description: "\(path) is neither a prepared data set (no \(ShardManifest.fileName) in it or in "
                                   + "its train/ folder) nor a Fashion-MNIST folder (no \((images as NSString).lastPathComponent)); "
                                   + "pass the folder `contrast prepare` wrote or the IDX files' folder")
        }
        return SampleRows(try FashionMNIST.load(directory: path, split: split, limit: limit))
    }


    /// `output` of every held sample of `rows` (N x R or N x E), through the pair tower
    /// from the pair vectors when `pairs`, in chunks of `chunk` samples.
    /// - Throws: when the data's widths do not fit the model, or `pairs` has nothing to embed.
    public static func compute(_ model: ContrastiveModel, rows: SampleRows, output: Output, pairs: Bool = false,
                               chunk: Int = 1024) throws -> Tensor {
        if pairs {
            guard model.pairEncoder != nil else {
                throw RunDirectory.Failure(description: "--pairs embeds through the pair tower, but this model has none "
                                       + "(trained with loss.kind ntxent); leave out --pairs")
            }
            guard let pairShape = rows.pairShape else {
                throw RunDirectory.Failure(description: "--pairs: the data set has no pair vectors; prepare one with --pairs")
            }
            guard rows.pairWidth == model.pairInputWidth else {
                throw RunDirectory.Failure(description: "the model's pair tower takes vectors of width \(model.pairInputWidth), the data set's "
                                       + "pairs are \(pairShape) (width \(rows.pairWidth)); embed the data set the model was trained on")
            }
        } else if rows.featureWidth != model.inputWidth {
            throw RunDirectory.Failure(description: "the model takes inputs of width \(model.inputWidth), the data set's features are "
                                   + "\(rows.featureShape) (width \(rows.featureWidth)); embed the data set the model was trained on")
        }
        let width = output == .representation ? model.representationWidth : model.embeddingWidth
        let inputWidth = pairs ? rows.pairWidth : rows.featureWidth
        let out = Tensor(zeros: [max(1, rows.count), width])
        let inputs = Tensor(zeros: [min(chunk, max(1, rows.count)), inputWidth])
        var start = rows.held.lowerBound
        while start < rows.held.upperBound {
            let count = min(chunk, rows.held.upperBound - start)
            let samples = start ..< start + count
            if pairs { rows.writePairs(samples, into: inputs.data) } else { rows.writeInputs(samples, into: inputs.data) }
            let target = out.data + (start - rows.held.lowerBound) * width
            switch output {
            case .representation: model.representations(of: inputs.data, count: count, pair: pairs, into: target, batch: count)
            case .embedding: model.embeddings(of: inputs.data, count: count, pair: pairs, into: target, batch: count)
            }
            start += count
        }
        return out
    }
}
