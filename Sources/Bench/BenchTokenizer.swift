import Foundation
import Text

extension Bench {
    /// WordPiece tokenisation throughput on one thread: every line of `corpus` encoded ([CLS]
    /// ... [SEP], no limit), in batches of 256 padded to their longest, as training encodes;
    /// MB/s of UTF-8 input at the median of `repeats` passes (docs/text.md;
    /// benchmarks/tokenizer_vs_hf.sh runs it beside the `tokenizers` package).
    public static func tokenizer(vocabulary path: String, corpus: String, lowercase: Bool, repeats: Int, warmup: Int) throws -> BenchOutput {
        let tokenizer = try WordPieceTokenizer(vocabularyFile: path, options: TokenizerOptions(lowercase: lowercase))
        guard let data = FileManager.default.contents(atPath: corpus) else {
            throw TextError.unreadable(path: corpus, reason: FileManager.default.fileExists(atPath: corpus) ? "permission denied" : "no such file")
        }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        let bytes = lines.reduce(0) { $0 + $1.utf8.count }
        var tokens = 0
        let measurement = try measure(repeats: repeats, warmup: warmup) {
            tokens = 0
            for start in stride(from: 0, to: lines.count, by: 256) {
                let batch = try tokenizer.encode(texts: Array(lines[start..<min(start + 256, lines.count)]), maxLength: Int(Int32.max),
                                                 padding: .longest)
                tokens += batch.attentionMask.reduce(0) { $0 + Int($1) }
            }
        }
        let megabytesPerSecond = Double(bytes) / measurement.median / 1e6
        let output = BenchOutput(bench: "tokenizer")
        output.line("WordPiece tokenizer, one thread: \(lines.count) texts, \(bytes) bytes, \(tokens) tokens (vocabulary \(tokenizer.vocabulary.count), lower-case \(lowercase))")
        output.line(String(format: "median %.4f s of %d passes: %.2f MB/s, %.0f texts/s", measurement.median, repeats, megabytesPerSecond,
                           Double(lines.count) / measurement.median))
        output.record(["texts": lines.count, "bytes": bytes, "tokens": tokens, "vocabulary": tokenizer.vocabulary.count,
                       "lowercase": lowercase, "megabytes_per_second": megabytesPerSecond], measurement)
        return output
    }
}
