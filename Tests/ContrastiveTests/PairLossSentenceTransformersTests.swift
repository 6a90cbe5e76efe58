import Foundation
import Testing
import TestSupport
@testable import Contrastive

/// The Python with sentence-transformers: $CONTRAST_VERIFY_PYTHON (launch/test.sh exports it), else
/// the virtual environment launch/verify-python.sh makes, .venv-verify, at the repository root.
private let verifyPython: URL = {
    if let path = ProcessInfo.processInfo.environment["CONTRAST_VERIFY_PYTHON"], !path.isEmpty { return URL(fileURLWithPath: path) }
    return repositoryRoot.appendingPathComponent(".venv-verify/bin/python")
}()

/// Why the check cannot run here, or nil when it can (the reason starts with the marker launch/test.sh counts).
private let sentenceTransformersUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "python-verify: skipped: \(verifyPython.path) does not exist (launch/verify-python.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    let probe = try? runProcess(verifyPython, ["-W", "ignore", "-c", "import sentence_transformers.losses"], timeout: 120)
    guard probe?.status == 0 else { return "python-verify: skipped: \(verifyPython.path) cannot import sentence_transformers.losses" }
    return nil
}()

/// PairLoss in one process against sentence-transformers 3.0.1's MultipleNegativesRankingLoss and
/// MultipleNegativesSymmetricRankingLoss (tools/mnrl_reference.py) on the same unit rows, with and
/// without a hard-negative column, scale 20 = temperature 0.05. Their cos_sim normalises the rows
/// again, which on unit rows changes no value but projects each row's gradient onto the sphere's
/// tangent (I - x x^T): ours is compared after that projection.
@Suite(.serialized) struct PairLossSentenceTransformersTests {
    @Test(.enabled(if: sentenceTransformersUnavailable == nil, Comment(rawValue: sentenceTransformersUnavailable ?? "")),
          arguments: [(false, false), (true, false), (false, true), (true, true)])
    func lossAndGradientsMatchSentenceTransformers(symmetric: Bool, hard: Bool) throws {
        print("python-verify: ran PairLossSentenceTransformersTests (symmetric \(symmetric), hard negatives \(hard))")
        let batch = PairLossTests.batch(n: 8, d: 5, hard: hard, ids: false), d = batch.d, n = batch.n
        let outcome = PairLossTests.run(batch, perRank: n, temperature: 0.05, symmetric: symmetric)
        let directory = temporaryDirectory("mnrl")
        defer { try? FileManager.default.removeItem(at: directory) }
        let spec = directory.appendingPathComponent("spec.json")
        let object: [String: Any] = ["anchors": batch.anchors, "positives": batch.positives, "negatives": batch.hardNegatives,
                                     "dimension": d, "scale": 20.0, "symmetric": symmetric]
        try JSONSerialization.data(withJSONObject: object).write(to: spec)
        let run = try runProcess(verifyPython, ["-W", "ignore", repositoryRoot.appendingPathComponent("tools/mnrl_reference.py").path, spec.path],
                                 timeout: 300)
        #expect(run.status == 0, "\(run.error.suffix(1500))")
        let reference = try #require(JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        let loss = try #require(reference["loss"] as? Double)
        #expect(abs(outcome.result.loss - loss) <= 1e-5 * loss, "\(outcome.result.loss) vs \(loss)")
        /// Our gradient of the rows `values` projected onto the tangent of each unit row, against theirs.
        func compare(_ name: String, rows values: [Float], ours: ArraySlice<Float>) throws {
            let theirs = try #require(reference[name] as? [Double])
            let ours = Array(ours)
            let largest = theirs.map(abs).max() ?? 0
            for i in 0..<(values.count / d) {
                let radial = (0..<d).reduce(0.0) { $0 + Double(values[i * d + $1]) * Double(ours[i * d + $1]) }
                for k in 0..<d {
                    let projected = Double(ours[i * d + k]) - radial * Double(values[i * d + k])
                    #expect(abs(projected - theirs[i * d + k]) <= 1e-5 * largest + 1e-7, "\(name)[\(i), \(k)]: \(projected) vs \(theirs[i * d + k])")
                }
            }
        }
        try compare("anchors", rows: batch.anchors, ours: outcome.anchorGradient[...])
        try compare("positives", rows: batch.positives, ours: outcome.positiveGradient[0..<(n * d)])
        if hard { try compare("negatives", rows: batch.hardNegatives, ours: outcome.positiveGradient[(n * d)...]) }
    }
}
