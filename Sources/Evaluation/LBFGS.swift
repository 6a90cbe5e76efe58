import NN
/// Limited-memory BFGS (Nocedal 1980; Nocedal & Wright, *Numerical Optimization*, 2nd ed.,
/// algorithms 7.4 and 7.5) for smooth unconstrained minimisation in Double.
///
/// Each iteration: direction d = -H g from the two-loop recursion over the last `memory` pairs
/// (s = x' - x, y = g' - g), H0 = (s.y / y.y) I; then a backtracking line search that accepts
/// the first step a with f(x + a d) <= f(x) + c1 a g.d (Armijo, c1 = 1e-4), trying a = 1 first
/// (1 / |g| on the first iteration), then the minimiser of the quadratic through f(x), g.d and
/// f(x + a d), kept within [0.1 a, 0.5 a]. A pair enters the memory only when s.y > 0, so H
/// stays positive definite without a Wolfe curvature test.
///
/// Stops when max_i |g_i| <= tolerance (converged), after `maxIterations` iterations, or when
/// the line search finds no decrease within 40 trials (no progress: Double rounding's floor).
enum LBFGS {
    struct Result {
        var x: [Double]
        var value: Double
        /// max_i |g_i| at x.
        var gradientNorm: Double
        var iterations: Int
        /// Loss-and-gradient evaluations, line-search trials included.
        var evaluations: Int
        var stop: SolverStop
    }

    /// Minimises f from `start`; `evaluate(x, &g)` returns f(x) and writes its gradient into g.
    static func minimise(start: [Double], memory: Int = 10, tolerance: Double, maxIterations: Int,
                         evaluate: ([Double], inout [Double]) -> Double) -> Result {
        let n = start.count
        var x = start
        var g = [Double](repeating: 0, count: n)
        var f = evaluate(x, &g)
        var evaluations = 1
        var steps: [[Double]] = [], changes: [[Double]] = [], rhos: [Double] = []
        var candidate = x, candidateGradient = g
        var iteration = 0
        func infinityNorm(_ v: [Double]) -> Double { v.reduce(0) { max($0, abs($1)) } }
        func dot(_ a: [Double], _ b: [Double]) -> Double {
            var sum = 0.0
            for i in 0..<a.count { sum += a[i] * b[i] }
            return sum
        }
        while true {
            let norm = infinityNorm(g)
            if norm <= tolerance { return Result(x: x, value: f, gradientNorm: norm, iterations: iteration, evaluations: evaluations, stop: .converged) }
            if iteration >= maxIterations {
                return Result(x: x, value: f, gradientNorm: norm, iterations: iteration, evaluations: evaluations, stop: .iterationLimit)
            }
            // Two-loop recursion: d = -H g.
            var q = g
            var alphas = [Double](repeating: 0, count: steps.count)
            for i in stride(from: steps.count - 1, through: 0, by: -1) {
                alphas[i] = rhos[i] * dot(steps[i], q)
                for j in 0..<n { q[j] -= alphas[i] * changes[i][j] }
            }
            if let s = steps.last, let y = changes.last {
                let scale = dot(s, y) / dot(y, y)
                for j in 0..<n { q[j] *= scale }
            }
            for i in 0..<steps.count {
                let beta = rhos[i] * dot(changes[i], q)
                for j in 0..<n { q[j] += steps[i][j] * (alphas[i] - beta) }
            }
            var direction = q.map { -$0 }
            var slope = dot(g, direction)
            if !(slope < 0) {
                // Not a descent direction (rounding in a long memory): restart from steepest descent.
                steps.removeAll(); changes.removeAll(); rhos.removeAll()
                direction = g.map { -$0 }
                slope = dot(g, direction)
            }
            var step = steps.isEmpty ? 1 / max(1, dot(g, g).squareRoot()) : 1.0
            var accepted = false
            var candidateValue = f
            for _ in 0..<40 {
                for j in 0..<n { candidate[j] = x[j] + step * direction[j] }
                candidateValue = evaluate(candidate, &candidateGradient)
                evaluations += 1
                if candidateValue.isFinite && candidateValue <= f + 1e-4 * step * slope { accepted = true; break }
                if candidateValue.isFinite {
                    let curvature = candidateValue - f - slope * step
                    let minimiser = curvature > 0 ? -slope * step * step / (2 * curvature) : 0.5 * step
                    step = min(max(minimiser, 0.1 * step), 0.5 * step)
                } else {
                    step *= 0.1
                }
            }
            guard accepted else {
                return Result(x: x, value: f, gradientNorm: norm, iterations: iteration, evaluations: evaluations, stop: .noProgress)
            }
            var s = [Double](repeating: 0, count: n), y = [Double](repeating: 0, count: n)
            for j in 0..<n { s[j] = candidate[j] - x[j]; y[j] = candidateGradient[j] - g[j] }
            let sy = dot(s, y)
            if sy > 1e-12 * dot(y, y) {
                if steps.count == memory { steps.removeFirst(); changes.removeFirst(); rhos.removeFirst() }
                steps.append(s); changes.append(y); rhos.append(1 / sy)
            }
            swap(&x, &candidate)
            swap(&g, &candidateGradient)
            f = candidateValue
            iteration += 1
        }
    }
}

/// Why an iterative solver stopped.
public enum SolverStop: String, Codable, Sendable {
    /// The gradient's largest component fell below the tolerance.
    case converged
    case iterationLimit = "iteration limit"
    /// No step along the search direction decreased the objective (Double rounding's floor).
    case noProgress = "no progress"
}
