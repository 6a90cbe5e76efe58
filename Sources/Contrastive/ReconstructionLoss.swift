import Tensor

/// The reconstruction term of the hybrid objective: a weighted mean squared error between a
/// decoder's output and the views it reconstructs.
///
/// Shapes: A local rows (views), I features per row, N rows of the global batch.
///
///     L_rec = w / (N I) sum_{a, i} (x_hat[a, i] - x[a, i])^2
///     dL/dx_hat = 2 w (x_hat - x) / (N I)
///
/// N (`normalization`) counts the rows of the *global* batch, so each rank's share is
/// normalised by the global count and the ranks' shares (and gradients) sum to the one-process value.
public enum ReconstructionLoss {
    /// Writes dL/dx_hat (A x I) into `gradient` and returns this rank's share of the unweighted mean
    /// squared error, sum (x_hat - x)^2 / (N I); the weighted loss is `weight` times it.
    /// - Parameters:
    ///   - prediction: x_hat, A x I.
    ///   - target: x, A x I.
    ///   - normalization: N, rows of the global batch.
    ///   - weight: w >= 0.
    public static func forwardBackward(prediction: UnsafePointer<Float>, target: UnsafePointer<Float>, rows: Int, width: Int,
                                       normalization: Int, weight: Float, gradient: UnsafeMutablePointer<Float>) -> Double {
        precondition(normalization > 0, "ReconstructionLoss normalization must be positive, got \(normalization)")
        let count = rows * width
        let inverseCount = 1 / (Double(normalization) * Double(width))
        let scale = Float(2 * Double(weight) * inverseCount)
        var sum = 0.0
        for i in 0..<count {
            let difference = prediction[i] - target[i]
            sum += Double(difference * difference)
            gradient[i] = scale * difference
        }
        return sum * inverseCount
    }
}
