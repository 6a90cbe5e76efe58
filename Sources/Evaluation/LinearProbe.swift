import NN
import Foundation
import Tensor

/// The linear probe: multinomial logistic regression on frozen features, trained to convergence
/// (the linear evaluation protocol of SimCLR, Chen et al. 2020, and Kolesnikov et al. 2019).
///
/// Features are standardised with the training set's per-feature mean and standard deviation,
/// x' = (x - mean) / std (a feature constant on the training set gets 1/std = 0: it is dropped).
/// With p_i = softmax(W x'_i + b) the probe minimises
///
///     L(W, b) = (1/N) sum_i -log p_i[y_i] + (lambda / 2) |W|^2        (b not penalised)
///
/// dL/dW = (1/N) (P - Y)^T X' + lambda W,  dL/db = (1/N) sum_i (p_i - y_i), Y one-hot.
/// L is smooth and, for lambda > 0, strictly convex in W, so its minimiser is unique and the
/// probe's accuracy is a property of the features, not of a recipe (learning rate, epochs,
/// augmentation) as an SGD-trained probe's is.
///
/// lambda (default 1e-4) only makes the minimum exist and be unique (on separable features the
/// unpenalised loss has none: |W| grows without bound); it is kept small so that the probe
/// measures the features rather than the penalty. In scikit-learn's terms it is C = 1 / (lambda N), 0.17 for N = 60,000.
///
/// Solver: full-batch L-BFGS in Double (`LBFGS`, memory 10), scikit-learn's default for this
/// problem. One loss-and-gradient evaluation per iteration costs two GEMMs over the data (in
/// Double: Float's seven digits put a floor under the line search near the optimum). Newton-CG
/// or a trust region (LIBLINEAR's TRON) take fewer outer iterations, but each needs several
/// Hessian-vector products of two GEMMs each and an inner CG solve; L-BFGS needs only the
/// gradient, a few vectors of memory, and no tuning beyond its tolerance. Not compared here.
/// Stops when max |dL/dtheta| <= tolerance (default 1e-4, scikit-learn's), after `maxIterations`
/// (default 500), or when the line search can no longer decrease L. Representations (R = 256)
/// converge in about 430 iterations; raw pixels (784 strongly correlated features) reach the
/// limit at max |g| ~ 2-3e-4, where the test accuracy is within 0.002 of its value after 3,000
/// iterations (measured on Fashion-MNIST).
///
/// Shapes: N samples, D features, C classes; W is C x D row-major.
public struct LinearProbe: Sendable {
    public static let defaultLambda = 1e-4
    public static let defaultTolerance = 1e-4
    public static let defaultMaxIterations = 500

    public let classes: Int
    /// D, the feature width.
    public let width: Int
    public let lambda: Double
    /// Per-feature mean of the training features (D).
    public let mean: [Double]
    /// Per-feature 1 / std of the training features, 0 where the std is 0 (D).
    public let inverseStd: [Double]
    /// W (C x D, row-major, acting on standardised features) then b (C).
    public let parameters: [Double]
    /// How the fit went: iterations, final loss, why it stopped.
    public let summary: Summary

    public struct Summary: Sendable, Codable, Equatable {
        public var iterations: Int
        public var evaluations: Int
        /// L at the solution.
        public var loss: Double
        /// max |dL/dtheta| at the solution.
        public var gradientNorm: Double
        public var stop: SolverStop
        public var seconds: Double
    }

    /// Fits the probe to `features` (N x D) with labels in 0..<classes.
    public static func fit(features: Tensor, labels: [Int], classes: Int, lambda: Double = defaultLambda,
                           tolerance: Double = defaultTolerance, maxIterations: Int = defaultMaxIterations,
                           progress: EvaluationProgress? = nil) -> LinearProbe {
        let started = monotonicSeconds()
        precondition(labels.count == features.rows, "LinearProbe.fit: \(features.rows) feature rows but \(labels.count) labels")
        precondition(labels.allSatisfy { $0 >= 0 && $0 < classes }, "LinearProbe.fit: labels must lie in 0..<\(classes)")
        let (mean, inverseStd) = standardisation(features)
        let objective = ProbeObjective(features: features, labels: labels, classes: classes, mean: mean, inverseStd: inverseStd, lambda: lambda)
        var evaluations = 0
        let result = LBFGS.minimise(start: [Double](repeating: 0, count: objective.parameterCount), tolerance: tolerance,
                                    maxIterations: maxIterations) { x, gradient in
            evaluations += 1
            progress?.note("linear probe: \(evaluations) loss evaluations on \(features.rows) samples (at most \(maxIterations) iterations)")
            return objective.evaluate(x, gradient: &gradient)
        }
        return LinearProbe(classes: classes, width: features.columns, lambda: lambda, mean: mean, inverseStd: inverseStd,
                           parameters: result.x,
                           summary: Summary(iterations: result.iterations, evaluations: result.evaluations, loss: result.value,
                                            gradientNorm: result.gradientNorm, stop: result.stop, seconds: monotonicSeconds() - started))
    }

    /// Per-feature mean and 1 / std (population std; 0 for a constant feature) over the rows, in Double.
    static func standardisation(_ features: Tensor) -> (mean: [Double], inverseStd: [Double]) {
        let n = features.rows, d = features.columns
        var sum = [Double](repeating: 0, count: d), squares = [Double](repeating: 0, count: d)
        for i in 0..<n {
            let row = features.data + i * d
            for j in 0..<d { let v = Double(row[j]); sum[j] += v; squares[j] += v * v }
        }
        let mean = sum.map { $0 / Double(max(1, n)) }
        let inverseStd = (0..<d).map { j -> Double in
            // Two-pass-free variance: fine at the scales of features (|x| ~ 1, N <= 1e6) in Double.
            let variance = max(0, squares[j] / Double(max(1, n)) - mean[j] * mean[j])
            return variance > 1e-12 * max(1, mean[j] * mean[j]) ? 1 / variance.squareRoot() : 0
        }
        return (mean, inverseStd)
    }

    /// Class probabilities (N x C, row-major) of `features` (N x D).
    public func predictProbabilities(_ features: Tensor) -> [Double] {
        precondition(features.columns == width, "LinearProbe: fitted on \(width) features, given \(features.columns)")
        let objective = ProbeObjective(features: features, labels: [], classes: classes, mean: mean, inverseStd: inverseStd, lambda: lambda)
        return objective.probabilities(parameters)
    }

    /// The most probable class of every row (the lower index on a tie).
    public func predict(_ features: Tensor) -> [Int] { Self.argmax(predictProbabilities(features), classes: classes) }

    /// Fraction of rows whose most probable class is their label.
    public func accuracy(features: Tensor, labels: [Int]) -> Double {
        let predictions = predict(features)
        return Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(1, labels.count))
    }

    static func argmax(_ probabilities: [Double], classes: Int) -> [Int] {
        (0..<(probabilities.count / classes)).map { i in
            var best = 0
            for c in 1..<classes where probabilities[i * classes + c] > probabilities[i * classes + best] { best = c }
            return best
        }
    }
}

/// The probe's loss and gradient over standardised features, in chunks of rows: each chunk is
/// standardised into Double, its logits are one dgemm, its gradient another (beta = 1 adds).
///
/// Shapes: N rows, D features, C classes, K rows per chunk; theta = [W (C x D), b (C)].
struct ProbeObjective {
    let features: Tensor
    let labels: [Int]
    let classes: Int
    let mean: [Double]
    let inverseStd: [Double]
    let lambda: Double
    var chunk = 2048

    var width: Int { features.columns }
    var parameterCount: Int { classes * width + classes }

    /// Rows `rows` of the features, standardised, into `out` (rows.count x D).
    func standardise(_ rows: Range<Int>, into out: UnsafeMutablePointer<Double>) {
        let d = width
        for (index, i) in rows.enumerated() {
            let source = features.data + i * d, target = out + index * d
            for j in 0..<d { target[j] = (Double(source[j]) - mean[j]) * inverseStd[j] }
        }
    }

    /// Softmax of one row of logits in place; returns log sum exp.
    @inline(__always)
    static func softmax(_ z: UnsafeMutablePointer<Double>, classes: Int) -> Double {
        var largest = z[0]
        for c in 1..<classes { largest = max(largest, z[c]) }
        var sum = 0.0
        for c in 0..<classes { z[c] = exp(z[c] - largest); sum += z[c] }
        for c in 0..<classes { z[c] /= sum }
        return largest + log(sum)
    }

    /// L(theta); writes dL/dtheta into `gradient`.
    func evaluate(_ theta: [Double], gradient: inout [Double]) -> Double {
        let n = features.rows, d = width, c = classes, k = min(chunk, max(1, n))
        let x = UnsafeMutablePointer<Double>.allocate(capacity: k * d)
        let z = UnsafeMutablePointer<Double>.allocate(capacity: k * c)
        defer { x.deallocate(); z.deallocate() }
        for i in 0..<gradient.count { gradient[i] = 0 }
        var loss = 0.0
        theta.withUnsafeBufferPointer { theta in
            gradient.withUnsafeMutableBufferPointer { gradient in
                let w = theta.baseAddress!, b = w + c * d, gradientW = gradient.baseAddress!, gradientB = gradientW + c * d
                var start = 0
                while start < n {
                    let rows = min(k, n - start)
                    standardise(start..<(start + rows), into: x)
                    // Z = X' W^T (rows x C), plus b; then P - Y in place.
                    gemm(transposeA: false, transposeB: true, m: rows, n: c, k: d, a: x, lda: d, b: w, ldb: d, c: z, ldc: c)
                    for r in 0..<rows {
                        let row = z + r * c, label = labels[start + r]
                        for j in 0..<c { row[j] += b[j] }
                        let logitOfLabel = row[label]
                        loss += Self.softmax(row, classes: c) - logitOfLabel
                        row[label] -= 1
                        for j in 0..<c { gradientB[j] += row[j] }
                    }
                    // dW += (P - Y)^T X' (C x D).
                    gemm(transposeA: true, transposeB: false, m: c, n: d, k: rows, a: z, lda: c, b: x, ldb: d,
                         beta: 1, c: gradientW, ldc: d)
                    start += rows
                }
                let scale = 1 / Double(max(1, n))
                var squaredNorm = 0.0
                for i in 0..<(c * d) {
                    gradientW[i] = gradientW[i] * scale + lambda * w[i]
                    squaredNorm += w[i] * w[i]
                }
                for j in 0..<c { gradientB[j] *= scale }
                loss = loss * scale + lambda / 2 * squaredNorm
            }
        }
        return loss
    }

    /// `evaluate` as plain loops, one sample at a time: the oracle its tests compare against.
    func evaluateReference(_ theta: [Double], gradient: inout [Double]) -> Double {
        let n = features.rows, d = width, c = classes
        for i in 0..<gradient.count { gradient[i] = 0 }
        var loss = 0.0
        var x = [Double](repeating: 0, count: d), z = [Double](repeating: 0, count: c)
        for i in 0..<n {
            for j in 0..<d { x[j] = (Double(features.data[i * d + j]) - mean[j]) * inverseStd[j] }
            for a in 0..<c {
                z[a] = theta[c * d + a]
                for j in 0..<d { z[a] += theta[a * d + j] * x[j] }
            }
            let largest = z.max()!
            let logSumExp = largest + log(z.reduce(0) { $0 + exp($1 - largest) })
            loss += logSumExp - z[labels[i]]
            for a in 0..<c {
                let residual = exp(z[a] - logSumExp) - (a == labels[i] ? 1 : 0)
                for j in 0..<d { gradient[a * d + j] += residual * x[j] }
                gradient[c * d + a] += residual
            }
        }
        var squaredNorm = 0.0
        for i in 0..<(c * d) {
            gradient[i] = gradient[i] / Double(n) + lambda * theta[i]
            squaredNorm += theta[i] * theta[i]
        }
        for a in 0..<c { gradient[c * d + a] /= Double(n) }
        return loss / Double(n) + lambda / 2 * squaredNorm
    }

    /// Softmax probabilities (N x C) under theta.
    func probabilities(_ theta: [Double]) -> [Double] {
        let n = features.rows, d = width, c = classes, k = min(chunk, max(1, n))
        var out = [Double](repeating: 0, count: n * c)
        let x = UnsafeMutablePointer<Double>.allocate(capacity: k * d)
        defer { x.deallocate() }
        theta.withUnsafeBufferPointer { theta in
            out.withUnsafeMutableBufferPointer { out in
                let w = theta.baseAddress!, b = w + c * d
                var start = 0
                while start < n {
                    let rows = min(k, n - start)
                    standardise(start..<(start + rows), into: x)
                    let z = out.baseAddress! + start * c
                    gemm(transposeA: false, transposeB: true, m: rows, n: c, k: d, a: x, lda: d, b: w, ldb: d, c: z, ldc: c)
                    for r in 0..<rows {
                        for j in 0..<c { z[r * c + j] += b[j] }
                        _ = Self.softmax(z + r * c, classes: c)
                    }
                    start += rows
                }
            }
        }
        return out
    }
}
