import Foundation
import NN
import Testing

// transformers' and sentence-transformers' side of the BERT checks (tools/check_bert.py), in the Python of
// $CONTRAST_VERIFY_PYTHON (`verifyPython`).

/// Why transformers and sentence-transformers cannot be run here, or nil when they can. The skip reason
/// carries the marker launch/test.sh counts.
public let transformersUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "python-verify: skipped: \(verifyPython.path) does not exist (launch/verify-python.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    guard let outcome = try? runProcess(verifyPython, ["-c", "import transformers, sentence_transformers, safetensors, numpy"], timeout: 300),
          outcome.status == 0 else {
        return "python-verify: skipped: \(verifyPython.path) cannot import transformers, sentence_transformers and safetensors "
            + "(pip install -r tools/verify-requirements.txt)"
    }
    return nil
}()

/// Runs tools/check_bert.py; records its output as the test's failure when it fails.
public func checkBert(_ arguments: [String]) throws -> String {
    let outcome = try runProcess(verifyPython, [repositoryRoot.appendingPathComponent("tools/check_bert.py").path] + arguments, timeout: 600)
    guard outcome.status == 0 else {
        Issue.record("tools/check_bert.py \(arguments.first ?? "") failed: \(outcome.output) \(outcome.error)")
        throw CancellationError()
    }
    return outcome.output
}

/// The BERT encoder's input rows of `ids`, `mask`, `types` (each N x T, as transformers takes them).
public func bertRows(_ ids: [Int64], _ mask: [Int64], _ types: [Int64], tokens: Int) -> [Float] {
    (0..<(ids.count / tokens)).flatMap { n in
        let range = (n * tokens)..<((n + 1) * tokens)
        return BERT.row(ids: ids[range].map { Int($0) }, mask: mask[range].map { Int($0) }, types: types[range].map { Int($0) })
    }
}

/// The last hidden states (N x T x D, BertModel's last_hidden_state) and h (N x R) of a BERT model's encoder.
public func bertOutputs(_ model: ContrastiveModel, rows: [Float], count: Int) -> (hidden: [Float], h: [Float]) {
    let stack = Sequential(Array(model.encoder.layers.prefix { !($0 is MaskedTokenPool) }))
    let hidden = rows.withUnsafeBufferPointer { x in
        Array(UnsafeBufferPointer(start: stack.forward(x.baseAddress!, batch: count), count: count * stack.outputWidth))
    }
    var h = [Float](repeating: 0, count: count * model.representationWidth)
    model.representations(of: rows, count: count, into: &h)
    return (hidden, h)
}

/// max |a - b| / max |b|: the error relative to the reference b's scale.
public func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    return zip(a, b).map { abs($0 - $1) }.max()! / b.map(abs).max()!
}
