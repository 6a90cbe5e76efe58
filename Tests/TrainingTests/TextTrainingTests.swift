import Foundation
import Testing
import TestSupport
import RunFiles
@testable import Data
import Contrastive
@testable import Training

/// Training on a text set through the binary (configs/text-smoke.yaml): the tokenizer makes BERT's
/// rows of the anchors and positives; the run is the same at P = 1 and 2 and resumes bit for bit;
/// overlong texts are truncated and counted, or refused by data.overlong: error; a one-column set
/// trains with dropout views (SimCSE); what cannot train a text set is refused in one line. A
/// three-column set trains its hard negatives (the same at P = 1, 2 and 3, with gradient caching,
/// across a resume), and they change the loss.
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

    /// The 64 pairs of `set` with a third column, a hard negative: another sentence of the same
    /// words; every eighth (i = 3 mod 8) is the positive of the next pair (its duplicate across
    /// pairs), samples 8, 24, 40 and 56 have "the same answer", the positive of samples 0, 16, 32
    /// and 48. The vocabulary is `set`'s (the negatives' words are in it).
    static let triplets: String = {
        let folder = temporaryDirectory("text-train-triplets").path
        let words = ["red", "green", "blue", "cat", "dog", "bird", "tree", "stone", "river", "hill", "cloud", "rain"]
        func positive(_ i: Int) -> String { i % 16 == 0 ? "the same answer" : "\(words[i % words.count]) \(words[(i / 12) % words.count]) thing" }
        var lines: [String] = []
        for i in 0..<64 {
            let text = (0..<(i % 4 == 0 ? 20 : 3)).map { words[(i + 5 * $0) % words.count] }.joined(separator: " ")
            let negative = i % 8 == 3 ? positive(i + 1) : i % 16 == 8 ? "the same answer"
                : "\(words[(i + 7) % words.count]) \(words[(i / 5) % words.count]) \(words[(i + 2) % words.count])"
            lines.append(text + "\t" + positive(i) + "\t" + negative)
        }
        try! lines.joined(separator: "\n").write(toFile: folder + "/triplets.tsv", atomically: true, encoding: .utf8)
        let outcome = try! runContrast(ranks: 1, ["prepare", "text", folder + "/triplets.tsv", "--out", folder + "/set", "--shards", "4"])
        precondition(outcome.status == 0, "prepare triplets failed: \(outcome.error)")
        return folder + "/set"
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
            (["data.hold=disk"], "use data.hold: stream for a text set larger than memory"),
            (["loss.sides=pairs", "loss.mask_duplicates=false"], "use loss.kind pairs or siglip with loss.sides: views, or ntxent"),
        ]
        for (extra, expected) in cases {
            let directory = run("text-refused")
            let outcome = try train(directory, ranks: 1, extra)
            #expect(outcome.status != 0 && outcome.error.contains(expected), "\(extra): \(outcome.error)")
            #expect(outcome.error.split(separator: "\n").count == 1 && !FileManager.default.fileExists(atPath: directory), "\(extra): \(outcome.error)")
        }
    }

    /// Hard negatives: P = 1, 2 and 3 take the same global batches and the same candidates [every
    /// positive, every negative] with the gradients of the gathered copies summed back onto their
    /// owners: the same losses step by step to float rounding; gradient caching (chunks of 8 of the
    /// 48 rows, replaying the dropout masks of the negatives' view too) is the same run. The log
    /// names the negatives.
    @Test func hardNegativesTrainTheSameAtOneTwoAndThreeRanks() throws {
        let data = Self.triplets
        let one = run("text-neg-p1"), two = run("text-neg-p2"), three = run("text-neg-p3"), cached = run("text-neg-cached")
        let runs: [(String, Int, [String])] = [
            (one, 1, ["data.batch_per_rank=12"]), (two, 2, ["data.batch_per_rank=6"]), (three, 3, ["data.batch_per_rank=4"]),
            (cached, 1, ["data.batch_per_rank=12", "train.gradient_cache_chunk=8"]),
        ]
        for (directory, ranks, extra) in runs {
            let outcome = try train(directory, ranks: ranks, data: data, extra)
            #expect(outcome.status == 0, "\(ranks) ranks \(extra): \(outcome.error.suffix(1500))")
        }
        let reference = try losses(one)
        #expect(reference.count == 6 && reference.last! < reference.first!, "\(reference)")
        for directory in [two, three, cached] {
            let other = try losses(directory)
            #expect(other.count == reference.count, "\(directory): \(other) \(reference)")
            for (x, y) in zip(reference, other) { #expect(abs(x - y) <= 1e-4 * abs(x), "\(directory): \(reference) \(other)") }
        }
        let log = try String(contentsOfFile: one + "/train.log", encoding: .utf8)
        #expect(log.contains("text, positive and hard negative through the one encoder")
                && log.contains("hard negatives: each pair's negative through the encoder joins every anchor's candidates")
                && log.contains("16 of the 192 texts on this rank longer than 16 tokens") && !log.contains("not used"), "\(log.prefix(3000))")
    }

    /// The negatives are in the loss: at step 0 (the same weights and batch) each anchor has 2N
    /// candidates instead of N, so the loss is larger than with loss.hard_negatives false, which
    /// trains on the pairs alone, as the two-column set does, and says why in the log.
    @Test func hardNegativesChangeTheLoss() throws {
        let with = run("text-neg-on"), without = run("text-neg-off"), pairs = run("text-neg-pairs")
        #expect(try train(with, ranks: 1, data: Self.triplets, steps: 2).status == 0)
        let off = try train(without, ranks: 1, data: Self.triplets, steps: 2, ["loss.hard_negatives=false"])
        #expect(off.status == 0, "\(off.error.suffix(1500))")
        #expect(try train(pairs, ranks: 1, steps: 2).status == 0)
        let a = try losses(with), b = try losses(without), c = try losses(pairs)
        #expect(a.count == 2 && b.count == 2 && a[0] > b[0] + 0.1, "with \(a), without \(b)")
        #expect(b == c, "without negatives \(b), the pairs alone \(c)")
        let log = try String(contentsOfFile: without + "/train.log", encoding: .utf8)
        #expect(log.contains("the negative field is not trained: loss.hard_negatives is false")
                && log.contains("text and positive through the one encoder"), "\(log.prefix(3000))")
    }

    /// Killed at step 5, a run with hard negatives resumes from its step-4 checkpoint to the
    /// uninterrupted weights, bit for bit.
    @Test func killedRunWithHardNegativesResumesExactly() throws {
        let straight = run("text-neg-straight"), killed = run("text-neg-killed")
        #expect(try train(straight, ranks: 2, data: Self.triplets).status == 0)
        let crash = try train(killed, ranks: 2, data: Self.triplets, fault: "kill@rank=1@step=5@phase=allreduce")
        #expect(crash.status != 0 && crash.error.contains("kill at step 5"), "\(crash.error.suffix(1500))")
        let resumed = try train(killed, ranks: 2, data: Self.triplets)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        let a = try Data(contentsOf: URL(fileURLWithPath: straight + "/weights.bin"))
        let b = try Data(contentsOf: URL(fileURLWithPath: killed + "/weights.bin"))
        #expect(a.count > 1000 && a == b)
    }

    /// The triplets of `triplets` with a `group` field (samples 2k and 2k + 1 share group k, as
    /// WordNet's synsets do): the pair ids are the groups and the positives' text hashes travel as
    /// well, so negatives equal to a positive are still masked; P = 2 is one process.
    @Test func groupsWithNegativesTrainTheSameAtOneAndTwoRanks() throws {
        let folder = temporaryDirectory("text-neg-groups").path
        let dataset = try ShardedDataset(directory: Self.triplets)
        var texts: [[String]] = [[], [], []]
        for shard in 0..<dataset.shardCount {
            let block = try dataset.readShard(shard)
            for i in 0..<block.count {
                for (k, field) in ["text", "positive", "negative"].enumerated() { texts[k].append(block.text(field, i) ?? "") }
            }
        }
        let names = ["text", "positive", "negative"]
        var values: [String: FieldValues] = ["group": .int64((0..<texts[0].count).map { Int64($0 / 2) })]
        for (k, name) in names.enumerated() { values[name] = .variable(VariableValues(strings: texts[k])) }
        try ShardedDatasetWriter.write(SampleBlock(count: texts[0].count, features: nil, fields: values), featureShape: nil,
                                       fields: names.map { NamedField(name: $0, dtype: .utf8) } + [NamedField(name: "group", dtype: .int64, shape: [])],
                                       to: folder + "/set", layout: .count(4))
        let one = run("text-neg-groups-p1"), two = run("text-neg-groups-p2")
        let a = try train(one, ranks: 1, data: folder + "/set")
        #expect(a.status == 0, "\(a.error.suffix(1500))")
        let b = try train(two, ranks: 2, data: folder + "/set")
        #expect(b.status == 0, "\(b.error.suffix(1500))")
        let la = try losses(one), lb = try losses(two)
        #expect(la.count == 6 && la.count == lb.count, "\(la) \(lb)")
        for (x, y) in zip(la, lb) { #expect(abs(x - y) <= 1e-4 * abs(x), "\(la) \(lb)") }
        let log = try String(contentsOfFile: one + "/train.log", encoding: .utf8)
        #expect(log.contains("pair ids from the group field, carried exactly (64 bits), with the positives' text hashes"), "\(log.prefix(3000))")
    }

    /// A set with a negative field but an empty negative (written by hand: contrast prepare text
    /// skips such rows) is refused at the first read, in one line naming the sample and the fix;
    /// loss.hard_negatives false trains it.
    @Test func anEmptyNegativeIsRefusedInOneLine() throws {
        let folder = temporaryDirectory("text-neg-empty").path
        let dataset = try ShardedDataset(directory: Self.triplets)
        var texts: [[String]] = [[], [], []]
        for shard in 0..<dataset.shardCount {
            let block = try dataset.readShard(shard)
            for i in 0..<block.count {
                for (k, field) in ["text", "positive", "negative"].enumerated() { texts[k].append(block.text(field, i) ?? "") }
            }
        }
        texts[2][5] = " "
        let names = ["text", "positive", "negative"]
        var values: [String: FieldValues] = [:]
        for (k, name) in names.enumerated() { values[name] = .variable(VariableValues(strings: texts[k])) }
        try ShardedDatasetWriter.write(SampleBlock(count: texts[0].count, features: nil, fields: values), featureShape: nil,
                                       fields: names.map { NamedField(name: $0, dtype: .utf8) }, to: folder + "/set", layout: .count(2))
        let directory = run("text-neg-empty-run")
        let outcome = try train(directory, ranks: 1, data: folder + "/set", steps: 1)
        #expect(outcome.status != 0 && outcome.error.contains("sample 5 of the data set \(folder)/set has an empty negative")
                && outcome.error.contains("loss.hard_negatives: false"), "\(outcome.error)")
        #expect(outcome.error.split(separator: "\n").count == 1 && !FileManager.default.fileExists(atPath: directory), "\(outcome.error)")
        #expect(try train(run("text-neg-empty-off"), ranks: 1, data: folder + "/set", steps: 1, ["loss.hard_negatives=false"]).status == 0)
    }
}

/// Pair ids as the text batch carries them: exact 64-bit ids in three floats, where the old
/// 24-bit fold made two different positives one id; and a hard negative whose text is another
/// pair's positive masked for that pair's anchor, through the ids the batch carries.
@Suite struct TextPairIdTests {
    /// Two texts whose FNV-1a hashes fold to the same 24 bits (found by search: among 20,000
    /// texts a collision is all but certain) but differ in 64: the folded labels are equal, the
    /// carried ids are not, and every id (hash, negative group, large group) is read back bit for bit.
    @Test func carriedIdsAreExactWhereTheFoldCollides() {
        var seen: [Float: String] = [:]
        var collision: (String, String)? = nil
        for i in 0..<20_000 where collision == nil {
            let text = "sentence number \(i)"
            let folded = TextSamples.carried(TextSamples.hash(text))
            if let other = seen[folded] { collision = (other, text) } else { seen[folded] = text }
        }
        guard let (a, b) = collision else { Issue.record("no 24-bit collision among 20,000 texts"); return }
        let ha = TextSamples.hash(a), hb = TextSamples.hash(b)
        #expect(TextSamples.carried(ha) == TextSamples.carried(hb) && ha != hb)
        var floats = [Float](repeating: 0, count: 2 * CarriedId.floats)
        floats.withUnsafeMutableBufferPointer { out in
            CarriedId.write(UInt64(bitPattern: ha), into: out.baseAddress!)
            CarriedId.write(UInt64(bitPattern: hb), into: out.baseAddress! + CarriedId.floats)
        }
        let ra = floats.withUnsafeBufferPointer { CarriedId.read($0.baseAddress!) }
        let rb = floats.withUnsafeBufferPointer { CarriedId.read($0.baseAddress! + CarriedId.floats) }
        #expect(ra == UInt64(bitPattern: ha) && rb == UInt64(bitPattern: hb) && ra != rb)
        #expect(floats.allSatisfy { $0 >= 0 && $0 < Float(1 << 22) && $0 == $0.rounded() })
        for id: Int64 in [0, 1, 7, (1 << 24) - 1, 1 << 24, 1 << 48 + 5, -1, .min, .max, ha, hb] {
            var three = [Float](repeating: 0, count: CarriedId.floats)
            three.withUnsafeMutableBufferPointer { CarriedId.write(UInt64(bitPattern: id), into: $0.baseAddress!) }
            #expect(three.withUnsafeBufferPointer { CarriedId.read($0.baseAddress!) } == UInt64(bitPattern: id), "\(id)")
        }
    }

    /// Four pairs with hard negatives; negative 1's text is positive 3's. With the ids the batch
    /// carries (hashes of the texts, written and read as floats), anchor 3 loses exactly that
    /// candidate (one masked, and the loss is the reference's with that mask), nothing else; the
    /// symmetric direction (positives against anchors) does not see the negatives.
    @Test func aNegativeThatIsAnAnchorsPositiveIsMaskedForIt() {
        let d = 3, n = 4
        let positiveTexts = ["a cat", "a dog", "a bird", "a tree"], negativeTexts = ["a stone", "a tree", "a river", "a hill"]
        var carried = [Float](repeating: 0, count: 2 * n * CarriedId.floats)
        carried.withUnsafeMutableBufferPointer { out in
            for (k, text) in (positiveTexts + negativeTexts).enumerated() {
                CarriedId.write(UInt64(bitPattern: TextSamples.hash(text)), into: out.baseAddress! + k * CarriedId.floats)
            }
        }
        let ids = (0..<(2 * n)).map { k in carried.withUnsafeBufferPointer { CarriedId.read($0.baseAddress! + k * CarriedId.floats) } }
        func rows(_ seed: Int) -> [Float] {
            var values = (0..<(n * d)).map { Float(sin(Double($0 * 7 + seed * 13) * 1.3)) }
            for i in 0..<n {
                let norm = sqrt((0..<d).reduce(Float(0)) { $0 + values[i * d + $1] * values[i * d + $1] })
                for k in 0..<d { values[i * d + k] /= norm }
            }
            return values
        }
        let anchors = rows(1), positives = rows(2), negatives = rows(3)
        for symmetric in [false, true] {
            var ga = [Float](repeating: 0, count: n * d), gp = ga, gc = [Float](repeating: 0, count: 2 * n * d), gx = ga
            let candidates = positives + negatives
            let result = PairLoss(temperature: 0.5, symmetric: symmetric).forwardBackward(
                anchors: anchors, positives: positives, count: n, candidates: candidates, candidateCount: 2 * n, allAnchors: anchors,
                pairs: n, dimension: d, offset: 0, ids: ids, anchorGradient: &ga, positiveGradient: &gp,
                candidateGradient: &gc, allAnchorGradient: &gx)
            #expect(result.masked == 1)
            let masked = PairLoss.lossReference(anchors: anchors, positives: positives, hardNegatives: negatives, dimension: d,
                                                ids: ids, temperature: 0.5, symmetric: symmetric)
            let unmasked = PairLoss.lossReference(anchors: anchors, positives: positives, hardNegatives: negatives, dimension: d,
                                                  ids: nil, temperature: 0.5, symmetric: symmetric)
            #expect(abs(result.loss - masked) <= 1e-5 * masked && abs(masked - unmasked) > 1e-4, "\(result.loss) \(masked) \(unmasked)")
        }
    }
}
