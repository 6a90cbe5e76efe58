import Data
import Foundation
import Tensor

/// Evaluation of representations on un-augmented images.
public enum Evaluation {
    /// kNN test accuracy of the model's representation h (train set as memory).
    public static func knnAccuracy(model: ContrastiveModel, train: ImageDataset, test: ImageDataset, classifier: KNNClassifier) -> Double {
        let memory = representations(model: model, dataset: train)
        let queries = representations(model: model, dataset: test)
        return classifier.accuracy(memory: memory, memoryLabels: train.labels, queries: queries, queryLabels: test.labels)
    }

    /// kNN test accuracy on raw pixels: the baseline any representation must beat.
    public static func knnAccuracyOnPixels(train: ImageDataset, test: ImageDataset, classifier: KNNClassifier) -> Double {
        classifier.accuracy(memory: pixels(train), memoryLabels: train.labels, queries: pixels(test), queryLabels: test.labels)
    }

    static func pixels(_ dataset: ImageDataset) -> Tensor {
        let out = Tensor(zeros: [dataset.count, dataset.pixelsPerImage])
        dataset.writePixels(samples: Array(0..<dataset.count), into: out.data)
        return out
    }

    /// h for every image of `dataset` (count x R), computed in chunks.
    public static func representations(model: ContrastiveModel, dataset: ImageDataset, chunk: Int = 1024) -> Tensor {
        let out = Tensor(zeros: [dataset.count, model.representationWidth])
        let pixels = Tensor(zeros: [chunk, dataset.pixelsPerImage])
        var start = 0
        while start < dataset.count {
            let rows = min(chunk, dataset.count - start)
            dataset.writePixels(samples: Array(start..<(start + rows)), into: pixels.data)
            model.representations(of: pixels.data, count: rows, into: out.data + start * model.representationWidth, batch: rows)
            start += rows
        }
        return out
    }
}
