import Foundation
import Testing
import TestSupport
import RunFiles
@testable import Data

/// Training on a text set through the binary (configs/text-smoke.yaml): the tokenizer makes BERT's
/// rows of the anchors and positives; the run is the same at P = 1 and 2 and resumes bit for bit;
/// overlong texts are truncated and counted, or refused by data.overlong: error; a one-column set
/// trains with dropout views (SimCSE); what cannot train a text set is refused in one line.
@Suite(.serialized) struct TextTrainingTests {
    /// 64 pairs: every fourth text is 20 words (longer than max_length 16), the rest 3; the
    /// positives of samples 0, 16, 32 and 48 are the same text (duplicates for mask_duplicates).
    static let set: (data: String, vocab: String, simcse: String) = {
        let folder = temporaryDirectory("text-train-set").path
        let words = ["red", "green", "blue", "cat", "dog", "bird", "tree", "stone", "river", "hill", "cloud", "rain"]
        var lines: [String] = []
        for i in 0..<64 {
            let text = (0..<(i % 4 == 0 ? 20 : 3)).map { words[(i + 5 * $0) % words.count] }.joined(separator: " ")
            let positive = i % 16 == 0 ? "the same answer" : "\(words[i % words.count]) \(words[(i / 12) % words.count]) thing"
            lines.append(text + "\t" + positive)
        }
        try! lines.joined(separator: "\n").write(toFile: folder + "/pairs.tsv", atomically: true, encoding: .utf8)
        // The test split: 8 pairs, two sharing a positive (7 distinct documents).
        let test = (0..<8).map { "\(words[$0]) \(words[($0 + 3) % 12])\t" + ($0 == 7 ? "\(words[0]) thing" : "\(words[$0]) thing") }
        try! test.joined(separator: "\n").write(toFile: folder + "/test.tsv", atomically: true, encoding: .utf8)
        try! lines.map { String($0.prefix { $0 != "\t" }) }.joined(separator: "\n")
            .write(toFile: folder + "/texts.txt", atomically: true, encoding: .utf8)
        for (arguments, what) in [(["prepare", "text", folder + "/pairs.tsv", "--test-file", folder + "/test.tsv", "--out", folder + "/set", "--shards", "4"], "prepare"),
                                  (["prepare", "text", folder + "/texts.txt", "--format", "tsv", "--columns", "1", "--out", folder + "/one",
                                    "--shards", "4"], "prepare one column"),
                                  (["vocab", "--size", "300", "--out", folder + "/vocab.txt", folder + "/pairs.tsv"], "vocab")] {
            let outcome = try! runContrast(ranks: 1, arguments)
            precondition(outcome.status == 0, "\(what) failed: \(outcome.error)")
        }
        return (folder + "/set", folder + "/vocab.txt", folder + "/one")
    }()

    /// The texts of the training split, one a line (what `contrast embed` reads as a plain file).
    static let lines: String = {
        let path = temporaryDirectory("text-train-lines").path + "/texts.txt"
        let words = ["red", "green", "blue", "cat", "dog", "bird", "tree", "stone", "river", "hill", "cloud", "rain"]
        let texts = (0..<64).map { i in (0..<(i % 4 == 0 ? 20 : 3)).map { words[(i + 5 * $0) % words.count] }.joined(separator: " ") }
        try! (texts.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    func train(_ run: String, ranks: Int, data: String = set.data, steps: Int = 6, _ extra: [String] = [],
               fault: String? = nil) throws -> ProcessOutcome {
        let overrides = ["run_dir=\(run)", "data.path=\(data)", "data.vocab=\(Self.set.vocab)", "data.batch_per_rank=\(16 / ranks)",
                         "train.max_steps=\(steps)", "checkpoint.every_steps=2"] + extra
        return try runContrast(ranks: ranks, ["train", "--config", "configs/text-smoke.yaml"] + overrides.flatMap { ["--set", $0] },
                               environment: fault.map { ["CONTRAST_FAULT": $0] } ?? [:], timeout: 600)
    }

    func run(_ label: String) -> String { temporaryDirectory(label).appendingPathComponent("run").path }

    /// The loss of every step, from rank 0's metrics.
    func losses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: run + "/metrics/rank-0.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  record["time_forward"] != nil else { return nil }
            return record["loss"] as? Double
        }
    }

    /// P = 1 and P = 2 take the same batches (the sampler) and the same global negatives: the
    /// same losses step by step to float rounding; the log counts the truncated texts (16 of the
    /// 128 on the one rank) and names how the batch is made.
    @Test func pairsTrainTheSameAtOneAndTwoRanks() throws {
        let one = run("text-p1"), two = run("text-p2")
        let a = try train(one, ranks: 1)
        #expect(a.status == 0, "\(a.error.suffix(1500))")
        let b = try train(two, ranks: 2)
        #expect(b.status == 0, "\(b.error.suffix(1500))")
        let la = try losses(one), lb = try losses(two)
        #expect(la.count == 6 && la.count == lb.count, "\(la) \(lb)")
        for (x, y) in zip(la, lb) { #expect(abs(x - y) <= 1e-4 * abs(x), "\(la) \(lb)") }
        #expect(la.last! < la.first!, "\(la)")
        let log = try String(contentsOfFile: one + "/train.log", encoding: .utf8)
        #expect(log.contains("16 of the 128 texts on this rank longer than 16 tokens, truncated") && log.contains("text and positive through the one encoder")
                && log.contains("pair ids from a hash of the positive's text"), "\(log.prefix(3000))")
        // Retrieval on the test split at the end: the log line and the metrics record.
        #expect(log.contains("retrieval of 8 texts among 7 positives: recall@1 ") && log.contains("MRR@10 "), "\(log.suffix(2000))")
        let metrics = try String(contentsOfFile: one + "/metrics/rank-0.jsonl", encoding: .utf8)
        #expect(metrics.contains("\"retrieval_recall_at_10\"") && metrics.contains("\"retrieval_ndcg_at_10\""), "\(metrics.suffix(1500))")
        // TensorBoard holds every one of them, as eval/<field>, at the evaluated step; report.html charts and tables them.
        let tensorboard = URL(fileURLWithPath: one + "/tensorboard")
        let events = try #require(try FileManager.default.contentsOfDirectory(atPath: tensorboard.path).first { $0.hasPrefix("events.out.tfevents.") })
        let tags = Set(try TensorBoardReader.scalars(file: tensorboard.appendingPathComponent(events)).filter { $0.step == 6 }.map(\.tag))
        for field in ["retrieval_recall_at_1", "retrieval_recall_at_5", "retrieval_recall_at_10", "retrieval_mrr_at_10", "retrieval_ndcg_at_10"] {
            #expect(tags.contains("eval/" + field), "no eval/\(field) in TensorBoard: \(tags.sorted())")
        }
        let report = try runProcess(contrastExecutable, ["report", one], timeout: 120)
        #expect(report.status == 0, "\(report.error)")
        let html = try String(contentsOfFile: one + "/report.html", encoding: .utf8)
        #expect(html.contains("<title>Text retrieval on the test split</title>") && html.contains("<tr><th>MRR@10</th>"))

        // contrast embed: the set's texts (tokenized as in training) and the same texts as a plain file give the same rows.
        let folder = temporaryDirectory("text-embed").path
        let fromSet = try runContrast(ranks: 1, ["embed", "--checkpoint", one, "--data", Self.set.data, "--split", "train", "--out", folder + "/a.npy"])
        #expect(fromSet.status == 0 && fromSet.output.contains("representations of 64 texts") && fromSet.output.contains("16 longer than 16 tokens"),
                "\(fromSet.output) \(fromSet.error)")
        let fromFile = try runContrast(ranks: 1, ["embed", "--checkpoint", one, "--data", Self.lines, "--out", folder + "/b.npy"])
        #expect(fromFile.status == 0, "\(fromFile.error)")
        // --texts FILE is the same path as --data FILE: the same tokenizer (the run's data.vocab and data.lowercase), the same rows.
        let texts = try runContrast(ranks: 1, ["embed", "--checkpoint", one, "--texts", Self.lines, "--out", folder + "/c.npy"])
        #expect(texts.status == 0 && texts.output.contains("representations of 64 texts (the lines of \(Self.lines); 16 longer than 16 tokens"),
                "\(texts.output) \(texts.error)")
        let x = try NPYArray(path: folder + "/a.npy"), y = try NPYArray(path: folder + "/b.npy"), z = try NPYArray(path: folder + "/c.npy")
        #expect(x.shape == [64, 32] && x.shape == y.shape && x.float32Values() == y.float32Values() && z.float32Values() == y.float32Values())
    }

    /// Retrieval between epochs at P = 2: every rank enters the evaluation (only rank 0 holds the
    /// test split). Before, rank 1 went on to the next step's all-gather while rank 0 evaluated and
    /// waited in the evaluation's closing all-reduce, until the watchdog ended the job.
    @Test func retrievalBetweenEpochsAtTwoRanks() throws {
        let folder = run("text-eval-p2")
        let outcome = try train(folder, ranks: 2, steps: 8, ["eval.retrieval_every_epochs=1", "communication.watchdog_seconds=60"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: folder + "/train.log", encoding: .utf8)
        #expect(log.contains("eval epoch 1: retrieval of 8 texts among 7 positives") && log.contains("done: 8 steps"), "\(log.suffix(2500))")
    }

    /// Killed at step 5, the run resumes from its step-4 checkpoint to the uninterrupted weights, bit for bit.
    @Test func killedTextRunResumesExactly() throws {
        let straight = run("text-straight"), killed = run("text-killed")
        #expect(try train(straight, ranks: 2).status == 0)
        let crash = try train(killed, ranks: 2, fault: "kill@rank=1@step=5@phase=allreduce")
        #expect(crash.status != 0 && crash.error.contains("kill at step 5"), "\(crash.error.suffix(1500))")
        let resumed = try train(killed, ranks: 2)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/weights.bin"))
        let b = try Data(contentsOf: URL(fileURLWithPath: killed + "/weights.bin"))
        #expect(a.count > 1000 && a == b)
    }

    /// One column: the text twice, through two dropout masks (SimCSE), with ntxent.
    @Test func oneColumnTrainsWithDropoutViews() throws {
        let directory = run("text-simcse")
        let outcome = try train(directory, ranks: 1, data: Self.set.simcse, steps: 2, ["loss.kind=ntxent", "loss.mask_duplicates=false"])
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: directory + "/train.log", encoding: .utf8)
        #expect(log.contains("the text twice through two dropout masks (SimCSE)"), "\(log.prefix(3000))")
        #expect(try losses(directory).count == 2)
    }

    /// data.overlong: error names the data set, the first overlong sample and the fix; a model
    /// other than bert, a missing vocabulary, streaming and two towers are refused; each in one
    /// line, before the run directory exists.
    @Test func whatCannotTrainATextSetIsRefusedInOneLine() throws {
        let cases: [([String], String)] = [
            (["data.overlong=error"], "sample 0 of the data set \(Self.set.data)/train has a text of "),
            (["data.overlong=error"], "more than model.bert.max_length 16 (data.overlong: error); raise model.bert.max_length to "),
            (["model.encoder=mlp", "model.representation=16"], "config key 'model.encoder' is mlp"),
            (["data.vocab=", "model.bert.vocab_size=300"], "config key 'data.vocab' is empty"),
            (["data.hold=stream"], "use data.hold: memory"),
            (["loss.sides=pairs", "loss.mask_duplicates=false"], "use loss.kind pairs or siglip with loss.sides: views, or ntxent"),
        ]
        for (extra, expected) in cases {
            let directory = run("text-refused")
            let outcome = try train(directory, ranks: 1, extra)
            #expect(outcome.status != 0 && outcome.error.contains(expected), "\(extra): \(outcome.error)")
            #expect(outcome.error.split(separator: "\n").count == 1 && !FileManager.default.fileExists(atPath: directory), "\(extra): \(outcome.error)")
        }
    }
}
