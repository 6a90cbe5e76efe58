import Tensor
import RunFiles
import Data

extension TrainingData {
    /// Labels the trainer can use: class indices 0 ..< 2^24. SupCon carries labels through the
    /// batch as Float32 (exact for integers below 2^24, and -1 marks an unlabeled sample) and
    /// converts them back to Int32; kNN votes index by label. A label outside that range would
    /// trap at the first step or merge classes silently, so it stops the run here, before the
    /// run directory exists, naming the sample and the file.
    public static let labelLimit: Int64 = 1 << 24

    /// Throws when a label of `rows` (the `split` split read from `path`) is outside 0 ..< 2^24.
    static func checkLabels(_ rows: SampleRows, split: String, path: String) throws {
        guard let labels = rows.labels, let index = labels.firstIndex(where: { $0 < 0 || $0 >= labelLimit }) else { return }
        let sample = rows.held.lowerBound + index
        throw RunDirectory.Failure(description: "data set \(path): sample \(sample) of the \(split) split has label \(labels[index]); "
                               + "labels must be class indices in 0 ..< \(labelLimit) (2^24); renumber the classes and prepare the data again")
    }
}
