import Foundation
import TestSupport
@testable import Config
@testable import RunFiles
@testable import Evaluation
import Testing
@testable import Training

/// `contrast report` on a hand-written run directory: two ranks, lines with and without
/// `type`, a garbled line, a half-written last line, PCA files, checkpoints.
@Suite struct ReportTests {
    /// Writes `lines` (one JSON object each) to `url`, then `tail` without a newline.
    func writeLines(_ lines: [String], tail: String = "", to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data((lines.map { $0 + "\n" }.joined() + tail).utf8).write(to: url)
    }

    /// A run of 100 steps on 2 ranks, stopped before writing weights.bin. Rank 1 is 50% slower.
    func syntheticRun() throws -> URL {
        let run = temporaryDirectory("report").appendingPathComponent("run")
        let config = """
        run_dir: "/tmp/odd<name>&\\"quoted\\""
        data:
          dataset: prepared
          path: /data/pairs
          batch_per_rank: 32
        loss:
          kind: clip
          temperature: 0.07
        optimizer:
          kind: lars
          lr: 0.3
          schedule: cosine
        communication:
          precision: fp16

        """
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data(config.utf8).write(to: run.appendingPathComponent("config.yaml"))
        try Data("2026-01-01T00:00:00Z contrast run x: 4096 train / 512 test samples, 1000 parameters, 200 steps (50 per epoch, 64 samples each)\n".utf8)
            .write(to: run.appendingPathComponent("train.log"))

        for rank in 0..<2 {
            var lines = [#"{"type":"start","schema_version":1,"world_size":2,"hosts":["node-a","node-b"],"rank":\#(rank)}"#]
            let slowdown = rank == 1 ? 1.5 : 1.0
            for step in 1...100 {
                let loss = 5 - 2 * Double(step) / 100
                let times = String(format: #""time_data_wait":0.0005,"time_forward":%g,"time_gather":0.0001,"time_loss":0.0002,"time_backward":%g,"time_communication_exposed":0.0003,"time_communication_hidden":0.0004,"time_optimizer":0.0001"#,
                                   0.002 * slowdown, 0.004 * slowdown)
                if step <= 50 {   // the old schema: no "type"
                    lines.append(#"{"step":\#(step),"epoch":0,"loss":\#(loss),"positive_accuracy":0.5,"lr":0.3,"images_per_second":\#(9000 + step),"skipped":false,"loss_scale":65536,\#(times)}"#)
                } else {
                    lines.append(#"{"type":"step","step":\#(step),"epoch":1,"time":\#(1_700_000_000 + step),"loss":\#(loss),"positive_accuracy":0.6,"lr":0.2,"temperature":\#(0.07 + Double(step) * 1e-4),"gradient_norm":1.5,"images_per_second":\#(9000 + step),"skipped":false,"loss_scale":32768,\#(times)}"#)
                }
                if rank == 0 && step == 50 {
                    lines.append(#"{"step":50,"epoch":0,"epoch_mean_loss":4.5}"#)
                    lines.append(#"{"step":50,"epoch":1,"knn_accuracy":0.5,"recall_at_1_features_to_pairs":0.2,"recall_at_1_pairs_to_features":0.25}"#)
                    lines.append(#"{"step":50,"checkpoint":"step-000000050","checkpoint_seconds":0.03}"#)
                }
                if step % 10 == 0 {
                    lines.append(#"{"type":"geometry","step":\#(step),"alignment":\#(1.5 - Double(step) / 100),"uniformity":-2.5,"effective_rank":20,"positive_cosine":0.8,"negative_cosine":0.1,"embedding_std":0.17}"#)
                }
                if rank == 1 && step == 70 { lines.append("{garbled line") }
            }
            if rank == 0 {
                lines.append(#"{"type":"epoch","step":100,"epoch":1,"epoch_mean_loss":3.5}"#)
                lines.append(#"{"type":"eval","step":100,"epoch":2,"knn_accuracy":0.75,"recall_at_1_features_to_pairs":0.3,"recall_at_1_pairs_to_features":0.35}"#)
                lines.append(#"{"type":"event","step":100,"time":1700000100,"event":"stop requested <SIGTERM>"}"#)
            }
            try writeLines(lines, tail: rank == 0 ? #"{"type":"step","step":101,"lo"# : "",
                           to: run.appendingPathComponent("metrics/rank-\(rank).jsonl"))
        }

        for (step, epoch) in [(50, 1), (100, 2)] {
            var points: [String] = []
            for i in 0..<300 {
                let label = i % 11 == 10 ? -1 : i % 10
                points.append("[\(Double(label) + sin(Double(i))),\(cos(Double(i) * 0.7)),\(label)]")
            }
            try writeLines([#"{"step":\#(step),"epoch":\#(epoch),"points":[\#(points.joined(separator: ","))]}"#],
                           to: run.appendingPathComponent("eval/pca-step-\(step).json"))
        }
        try writeLines(["{}"], to: run.appendingPathComponent("checkpoints/step-000000050/manifest.json"))
        try FileManager.default.createDirectory(at: run.appendingPathComponent("checkpoints/step-000000100"), withIntermediateDirectories: true)
        return run
    }

    @Test func reportOfARunInProgress() throws {
        let run = try syntheticRun()
        let written = try Report.write(runDirectory: run)
        #expect(written.file == run.appendingPathComponent("report.html"))
        let html = try String(contentsOf: written.file, encoding: .utf8)

        let titles = ["Loss", "Positive accuracy", "kNN accuracy and recall@K", "Temperature", "Gradient norm",
                      "Throughput", "Step time split (stacked, smoothed)", "Step time per rank (smoothed)",
                      "Alignment and uniformity", "Embedding statistics", "Effective rank",
                      "PCA of test representations, step 50 (epoch 1)", "PCA of test representations, step 100 (epoch 2)"]
        for title in titles { #expect(html.contains("<title>\(htmlEscaped(title))</title>"), "no chart titled \(title)") }
        // lr (0.3 then 0.2) and loss scale (65536 then 32768) change, so they are charts too.
        #expect(html.contains("<title>Learning rate</title>") && html.contains("<title>Loss scale</title>"))
        #expect(html.components(separatedBy: "<svg").count - 1 == titles.count + 2)

        #expect(html.contains("75.00% (after epoch 2, step 100)"))
        #expect(html.contains("100 of 200 (50%)"))
        #expect(html.contains("2 (from the start line); hosts node-a, node-b"))
        #expect(html.contains("32 per rank × 2 = 64 per step"))
        #expect(html.contains("clip, temperature 0.07") && html.contains("lars, lr 0.3, cosine schedule") && html.contains("fp16 gradients"))
        // No pid recorded and records from 2023: gone, without an end record; step-000000100 is incomplete.
        #expect(html.contains("<th>Status</th><td>stopped without an end record at step 100 (killed or crashed): "
                              + "run the same command to resume from checkpoint step-000000050</td>"))
        #expect(html.contains("step-000000050 (step 50)") && html.contains("step-000000100 (step 100, <span class=\"warn\">incomplete</span>)"))
        #expect(html.contains("rank-0.jsonl: 117 records, <span class=\"warn\">1 unparsable line skipped"))
        #expect(html.contains("rank-1.jsonl: 111 records, <span class=\"warn\">1 unparsable line skipped"))
        #expect(html.contains("stop requested &lt;SIGTERM&gt;"))     // an event, escaped
        #expect(html.contains("checkpoint: step-000000050"))          // a checkpoint line without "type" is an event

        // The config, escaped; nothing of it raw.
        #expect(html.contains("/tmp/odd&lt;name&gt;&amp;\\&quot;quoted\\&quot;"))
        #expect(!html.contains("<name>"))
        // Self-contained: no script, nothing fetched (the SVG namespace is a name, not a fetch).
        #expect(!html.lowercased().contains("<script"))
        let withoutNamespace = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
        #expect(!withoutNamespace.contains("http://") && !withoutNamespace.contains("https://"))
        #expect(written.bytes < 300_000)
    }

    /// The command as a user meets it: the page where --out says, one line saying so; one
    /// line on standard error and status 1 for a directory that is not a run.
    @Test func command() throws {
        let run = try syntheticRun()
        let out = run.deletingLastPathComponent().appendingPathComponent("elsewhere.html")
        let outcome = try runProcess(contrastExecutable, ["report", run.path, "--out", out.path], timeout: 120)
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.hasPrefix("report: \(out.path) ("))
        #expect(FileManager.default.fileExists(atPath: out.path))
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("report.html").path))

        let failed = try runProcess(contrastExecutable, ["report", "/nonexistent/run"], timeout: 120)
        #expect(failed.status == 1)
        #expect(failed.error == "contrast: error: /nonexistent/run is not a run directory (it does not exist); pass the run_dir of a training run\n")
    }

    @Test func finishedRunAndWhatIsMissing() throws {
        let run = try syntheticRun()
        try Data([0]).write(to: run.appendingPathComponent("weights.bin"))
        try FileManager.default.removeItem(at: run.appendingPathComponent("eval"))
        let html = try Report.html(runDirectory: run)
        #expect(html.contains("<th>Status</th><td>ended at step 100 (weights.bin written)</td>"))
        #expect(html.contains("<b>PCA of test representations</b>: no eval/pca-step-&lt;S&gt;.json files yet"))
    }

    /// A run whose evaluations skipped kNN (no test split) says so where the accuracy and the
    /// PCA scatters would be, with the reason its metrics give, never "nan".
    @Test func skippedEvaluationIsSaidInWords() throws {
        let run = temporaryDirectory("report-skipped").appendingPathComponent("run")
        let reason = "the data set data/mine has no test split; prepare it with --test-fraction 0.2"
        try writeLines([#"{"type":"start","schema_version":1,"world_size":1,"rank":0}"#,
                        #"{"type":"step","step":1,"epoch":0,"loss":4.5}"#,
                        #"{"type":"eval","step":1,"epoch":1,"knn_skipped":"\#(reason)"}"#,
                        #"{"type":"end","step":1,"interrupted":false,"seconds":1,"knn_skipped":"\#(reason)"}"#],
                       to: run.appendingPathComponent("metrics/rank-0.jsonl"))
        let html = try Report.html(runDirectory: run)
        #expect(html.contains("<th>Best kNN accuracy</th><td>skipped: \(reason)</td>"))
        #expect(html.contains("<b>kNN accuracy</b>: skipped: \(reason)"))
        #expect(html.contains("<b>PCA of test representations</b>: none: the run's evaluations had no test split to draw"))
        #expect(!html.lowercased().contains("nan"))
    }

    /// A text run's evaluations (retrieval on the held-out split, Spearman with scores): a
    /// "Retrieval" section with the metrics charted by epoch and a table of the latest and best values.
    @Test func textRetrievalIsChartedAndTabled() throws {
        let run = temporaryDirectory("report-text").appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let skipped = "the training data has no labels; prepare it with --labels to evaluate"
        try writeLines([#"{"type":"start","schema_version":1,"world_size":1,"rank":0}"#,
                        #"{"type":"step","step":10,"epoch":0,"loss":3}"#,
                        #"{"type":"eval","step":10,"epoch":1,"retrieval_recall_at_1":0.125,"retrieval_recall_at_5":0.5,"retrieval_recall_at_10":0.625,"retrieval_mrr_at_10":0.3125,"retrieval_ndcg_at_10":0.40625,"spearman":-0.25,"knn_skipped":"\#(skipped)"}"#,
                        #"{"type":"step","step":20,"epoch":1,"loss":2}"#,
                        #"{"type":"eval","step":20,"epoch":2,"retrieval_recall_at_1":0.25,"retrieval_recall_at_5":0.375,"retrieval_recall_at_10":0.75,"retrieval_mrr_at_10":0.5,"retrieval_ndcg_at_10":0.5625,"spearman":0.5,"knn_skipped":"\#(skipped)"}"#],
                       to: run.appendingPathComponent("metrics/rank-0.jsonl"))
        let html = try Report.html(runDirectory: run)
        #expect(html.contains("<h2>Retrieval</h2>"))
        let text = try #require(html.components(separatedBy: "<svg").first { $0.contains("<title>Text retrieval on the test split</title>") })
        for name in ["recall@1", "recall@5", "recall@10", "MRR@10", "nDCG@10"] { #expect(text.contains(">\(name)<"), "no legend entry \(name)") }
        #expect(text.contains(">epoch<"))   // by epoch: the x axis's label
        let spearman = try #require(html.components(separatedBy: "<svg").first { $0.contains("<title>Spearman correlation</title>") })
        #expect(spearman.contains(">epoch<"))
        // The table: latest (epoch 2) and best; recall@5 was best at epoch 1, Spearman is signed.
        #expect(html.contains("<tr><th>recall@1</th><td class=\"n\">25.00%</td><td>epoch 2, step 20</td><td class=\"n\">25.00%</td><td>epoch 2, step 20</td></tr>"))
        #expect(html.contains("<tr><th>recall@5</th><td class=\"n\">37.50%</td><td>epoch 2, step 20</td><td class=\"n\">50.00%</td><td>epoch 1, step 10</td></tr>"))
        #expect(html.contains("<tr><th>MRR@10</th><td class=\"n\">0.5000</td>") && html.contains("<tr><th>nDCG@10</th><td class=\"n\">0.5625</td>"))
        #expect(html.contains("<tr><th>Spearman ρ (cosine against score)</th><td class=\"n\">0.5000</td>"))
        #expect(!html.contains("features → pairs") && !html.contains("image → caption"))
        // The kNN chart says why it is missing, as before; the Retrieval section has no note of a missing chart.
        #expect(html.contains("<b>kNN accuracy</b>: skipped: \(skipped)"))
        let section = html.components(separatedBy: "<h2>Retrieval</h2>")[1].components(separatedBy: "<h2>")[0]
        #expect(!section.contains("class=\"missing\"") && section.components(separatedBy: "<svg").count == 3)
    }

    /// Image <-> caption recall@K of a CLIP run with the text tower: in the table by direction; a run
    /// with neither text retrieval nor recall@K has no Retrieval section and no empty chart.
    @Test func captionRecallIsTabledAndRunsWithoutRetrievalHaveNoSection() throws {
        let run = temporaryDirectory("report-captions").appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data("model:\n  pair_encoder: bert\nloss:\n  kind: clip\n".utf8).write(to: run.appendingPathComponent("config.yaml"))
        try writeLines([#"{"type":"start","schema_version":1,"world_size":1,"rank":0}"#,
                        #"{"type":"step","step":10,"epoch":0,"loss":3}"#,
                        #"{"type":"eval","step":10,"epoch":1,"zero_shot_accuracy":0.5,"recall_at_1_features_to_pairs":0.0625,"recall_at_1_pairs_to_features":0.125,"recall_at_10_features_to_pairs":0.5,"recall_at_10_pairs_to_features":0.75}"#],
                       to: run.appendingPathComponent("metrics/rank-0.jsonl"))
        let html = try Report.html(runDirectory: run)
        #expect(html.contains("<h2>Retrieval</h2>"))
        #expect(html.contains("<tr><th>recall@1 image → caption</th><td class=\"n\">6.25%</td><td>epoch 1, step 10</td>"))
        #expect(html.contains("<tr><th>recall@10 caption → image</th><td class=\"n\">75.00%</td>"))
        // Charted once, with kNN / zero-shot under Training; no text retrieval chart.
        #expect(!html.contains("<title>Text retrieval on the test split</title>") && !html.contains("<title>Spearman correlation</title>"))

        let plain = try syntheticRun()
        let lines = try String(contentsOf: plain.appendingPathComponent("metrics/rank-0.jsonl"), encoding: .utf8)
            .replacingOccurrences(of: #","recall_at_1_[a-z_]+":[0-9.]+"#, with: "", options: .regularExpression)
            .split(separator: "\n").map(String.init)
        try writeLines(lines, to: plain.appendingPathComponent("metrics/rank-0.jsonl"))
        let page = try Report.html(runDirectory: plain)
        #expect(!page.contains("<h2>Retrieval</h2>") && !page.contains("Text retrieval") && !page.contains("Spearman"))
        #expect(page.contains("<title>kNN accuracy</title>") && !page.contains("recall_at_"))
    }

    /// A pid on this host is alive while the process exists; a rank elsewhere (or without a pid)
    /// while its newest record is younger than the limit.
    @Test func liveness() throws {
        let now = Date()
        let here = RunStatus.thisHost
        #expect(RunStatus.isAlive(pid: getpid(), host: here, newestRecord: nil, now: now, staleAfter: 600))
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()           // reaped: its pid names no process
        #expect(!RunStatus.isAlive(pid: child.processIdentifier, host: here, newestRecord: now.timeIntervalSince1970, now: now, staleAfter: 600))
        let fresh = now.timeIntervalSince1970 - 5, stale = now.timeIntervalSince1970 - 700
        #expect(RunStatus.isAlive(pid: child.processIdentifier, host: here + "-elsewhere", newestRecord: fresh, now: now, staleAfter: 600))
        #expect(!RunStatus.isAlive(pid: getpid(), host: here + "-elsewhere", newestRecord: stale, now: now, staleAfter: 600))
        #expect(RunStatus.isAlive(pid: nil, host: nil, newestRecord: fresh, now: now, staleAfter: 600))
        #expect(!RunStatus.isAlive(pid: nil, host: nil, newestRecord: stale, now: now, staleAfter: 600))
    }

    /// The end record decides: interrupted is a stop, weights.bin an end, neither a failure with
    /// train.log's last ERROR line; a resume's new start record opens a new session.
    @Test func endRecords() throws {
        let run = temporaryDirectory("status")
        let metrics = run.appendingPathComponent("metrics/rank-0.jsonl")
        let start = #"{"type":"start","time":1700000000,"world_size":1,"rank":0,"start_step":0}"#
        func status(_ lines: [String]) throws -> RunStatus {
            try writeLines(lines, to: metrics)
            return RunStatus.of(try RunMetrics.read(runDirectory: run))
        }
        let stepped = [start, #"{"type":"step","step":1,"time":1700000001,"loss":1}"#, #"{"type":"step","step":2,"time":1700000002,"loss":1}"#]
        #expect(try status(stepped + [#"{"type":"end","step":2,"interrupted":true}"#]).summary
                == "stopped at step 2 by a stop signal: run the same command to resume (no complete checkpoint yet: it starts over)")
        try writeLines(["x", "ERROR stopping at step 2: too many skipped steps"], to: run.appendingPathComponent("train.log"))
        #expect(try status(stepped + [#"{"type":"end","step":2,"interrupted":false}"#]).state == .failed(reason: "stopping at step 2: too many skipped steps"))
        // Resumed from step 2 after the stop, then killed: the first session's end no longer counts.
        let resumed = stepped + [#"{"type":"end","step":2,"interrupted":true}"#,
                                 #"{"type":"start","time":1700000010,"world_size":1,"rank":0,"start_step":2}"#]
        #expect(try status(resumed) == RunStatus(state: .vanished, step: 2, checkpoint: nil))
        try writeLines(["{}"], to: run.appendingPathComponent("checkpoints/step-000000002/manifest.json"))
        try Data([0]).write(to: run.appendingPathComponent("weights.bin"))
        #expect(try status(resumed + [#"{"type":"step","step":3,"time":1700000011,"loss":1}"#, #"{"type":"end","step":3,"interrupted":false}"#])
                == RunStatus(state: .ended, step: 3, checkpoint: "step-000000002"))
    }

    @Test func notARunDirectory() throws {
        let empty = temporaryDirectory("report-empty")
        try Data("seed: 1\n".utf8).write(to: empty.appendingPathComponent("config.yaml"))
        for directory in [empty, empty.appendingPathComponent("no-such")] {
            do {
                _ = try Report.html(runDirectory: directory)
                Issue.record("expected an error for \(directory.path)")
            } catch {
                let message = "\(error)"
                #expect(message.contains(directory.path) && message.contains("is not a run directory"), "\(message)")
                #expect(!message.contains("\n"))
            }
        }
    }

    /// 10,000 steps on 2 ranks: every series is thinned, so the page stays a few hundred KB.
    @Test func longRunsAreThinned() throws {
        let run = temporaryDirectory("report-long").appendingPathComponent("run")
        for rank in 0..<2 {
            let lines = (1...10_000).map { step in
                #"{"step":\#(step),"epoch":0,"loss":\#(1 + 1 / Double(step)),"positive_accuracy":0.5,"lr":\#(Double(step) * 1e-7),"images_per_second":\#(1000 + step % 7),"time_data_wait":0.001,"time_forward":0.002,"time_backward":0.003,"time_optimizer":0.0005}"#
            }
            try writeLines(lines, to: run.appendingPathComponent("metrics/rank-\(rank).jsonl"))
        }
        let html = try Report.html(runDirectory: run)
        #expect(html.utf8.count < 400_000, "\(html.utf8.count) bytes")
        #expect(html.contains("10000 (total not known)"))
        #expect(html.contains("1.0e-3"))     // the lr axis in scientific notation
    }

    @Test func linesWithoutTypeGetOneFromTheirKeys() throws {
        let url = temporaryDirectory("report-kinds").appendingPathComponent("metrics/rank-3.jsonl")
        try writeLines([
            #"{"step":1,"time_forward":0.1}"#, #"{"step":1,"epoch":0,"epoch_mean_loss":2}"#, #"{"step":1,"knn_accuracy":0.5}"#,
            #"{"step":1,"recall_at_5_pairs_to_features":0.5}"#, #"{"step":1,"alignment":0.5}"#, #"{"world_size":4}"#,
            #"{"step":1,"checkpoint":"x"}"#, #"{"type":"eval","step":2,"loss":1}"#, #"{"type":"future-kind","step":2}"#,
            #"{"step":2}"#, "[1,2]", "", #"{"step":3,"loss":null,"skipped":true}"#,
        ], tail: #"{"step":4,"lo"#, to: url)
        let rank = RunMetrics.readRank(3, file: url)
        #expect(rank.records.map(\.kind) == [.step, .epoch, .eval, .eval, .geometry, .start, .event, .eval, .unknown, .unknown, .step])
        #expect(rank.unparsableLines == 2)                       // the array and the half-written last line
        #expect(rank.records.last?["loss"] == nil && rank.records.last?["skipped"] == 1)
        #expect(RunMetrics.rankOfFileName("rank-12.jsonl") == 12 && RunMetrics.rankOfFileName("rank-.jsonl") == nil)
    }

    /// A resumed run repeats the steps after its checkpoint: the later values win, in step order.
    @Test func repeatedStepsKeepTheirLastValue() throws {
        let url = temporaryDirectory("report-resume").appendingPathComponent("metrics/rank-0.jsonl")
        try writeLines((1...5).map { #"{"step":\#($0),"loss":1}"# } + (4...6).map { #"{"step":\#($0),"loss":2}"# }, to: url)
        let series = RunMetrics.readRank(0, file: url).records(.step).series("loss")
        #expect(series.map(\.0) == [1, 2, 3, 4, 5, 6])
        #expect(series.map(\.1) == [1, 1, 1, 2, 2, 2])
    }

    /// Numbers no trainer writes (a garbled file) give a page, never a trap.
    @Test func absurdNumbersDoNotTrap() throws {
        let run = temporaryDirectory("report-absurd").appendingPathComponent("run")
        try writeLines([#"{"type":"start","world_size":1e30,"total_steps":-1e300}"#, #"{"step":1,"loss":1e300,"lr":5}"#,
                        #"{"step":2,"loss":-1e300,"lr":5}"#, #"{"step":1e40,"loss":1,"images_per_second":1e308}"#,
                        #"{"type":"eval","step":3,"epoch":1e30,"knn_accuracy":0.5}"#],
                       to: run.appendingPathComponent("metrics/rank-0.jsonl"))
        let html = try Report.html(runDirectory: run)
        #expect(html.contains("50.00%"))
    }

    /// A one-rank run on a prepared set that names its classes (as `prepare fashion-mnist` writes
    /// them): the PCA legend says the names, not "class 0-9"; the precision row says there is no
    /// wire; the kNN chart of one evaluation keeps its axis near the value and within [0, 1].
    @Test func oneRankRunOnANamedPreparedSet() throws {
        let root = temporaryDirectory("report-named")
        let data = root.appendingPathComponent("data")
        let run = root.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data("data:\n  dataset: prepared\n  path: \(data.path)\ncommunication:\n  precision: bf16\n".utf8)
            .write(to: run.appendingPathComponent("config.yaml"))
        let names = ["T-shirt/top", "Trouser", "Pullover"]
        let manifest = #"{"format":"contrast-shards","labels":{"dtype":"int64","shape":[]},"classes":["T-shirt/top","Trouser","Pullover"]}"#
        try writeLines([manifest], to: data.appendingPathComponent("test/dataset.json"))
        try writeLines([#"{"type":"start","schema_version":1,"world_size":1,"rank":0,"global_batch":64}"#,
                        #"{"type":"step","step":1,"epoch":0,"loss":4,"positive_accuracy":0.2,"images_per_second":6400,"time_wall":0.03}"#,
                        #"{"type":"step","step":2,"epoch":0,"loss":4,"positive_accuracy":0.2,"images_per_second":6400,"time_wall":0.05}"#,
                        #"{"type":"eval","step":1,"epoch":1,"knn_accuracy":0.98}"#],
                       to: run.appendingPathComponent("metrics/rank-0.jsonl"))
        let points = (0..<30).map { "[\(Double($0)),\(Double($0 % 7)),\($0 % 3)]" }.joined(separator: ",")
        try writeLines([#"{"step":1,"epoch":1,"points":[\#(points)]}"#], to: run.appendingPathComponent("eval/pca-step-1.json"))

        let html = try Report.html(runDirectory: run)
        for (label, name) in names.enumerated() { #expect(html.contains("\(label) \(htmlEscaped(name))"), "no legend entry for \(name)") }
        #expect(!html.contains("class 0"))
        #expect(html.contains("<th>Precision</th><td>single process, no all-reduce; fp32 weights</td>"))
        #expect(!html.contains("on the wire"))
        // Throughput as train.log, TensorBoard and tail define it: 128 images in 0.08 s, not the steps' own 6400/s.
        #expect(html.contains("<th>Throughput</th><td>1600 images/s over the last 2 steps (global batch over wall time)</td>"))

        // The y tick labels (anchored at their end) of the kNN chart: near 0.98, none above 1.
        let knn = try #require(html.components(separatedBy: "<svg").first { $0.contains("<title>kNN accuracy</title>") })
        let ticks = knn.components(separatedBy: "text-anchor=\"end\" class=\"tick\">").dropFirst()
            .compactMap { Double($0.prefix { $0 != "<" }) }
        #expect(!ticks.isEmpty && ticks.allSatisfy { $0 >= 0.85 && $0 <= 1 }, "\(ticks)")

        // Without names in the manifest (or without the data set), labels are numbered.
        try writeLines([#"{"format":"contrast-shards"}"#], to: data.appendingPathComponent("test/dataset.json"))
        #expect(try Report.html(runDirectory: run).contains("class 2"))
    }

    /// Fractions keep their axis within [0, 1] and near a constant value.
    @Test func fractionAxesStayWithinZeroAndOne() {
        func yTicks(_ values: [Double], fractions: Bool) -> [Double] {
            var chart = LineChart(title: "t", yLabel: "y", series: [ChartSeries(name: "a", points: values.enumerated().map { (Double($0.offset + 1), $0.element) }, color: "#000")])
            chart.fractions = fractions
            return chart.svg().components(separatedBy: "text-anchor=\"end\" class=\"tick\">").dropFirst().compactMap { Double($0.prefix { $0 != "<" }) }
        }
        #expect(yTicks([1.0], fractions: false).max()! > 1)     // what the kNN chart drew: 0.9 to 1.1
        #expect(yTicks([1.0], fractions: true).max()! == 1 && yTicks([1.0], fractions: true).min()! >= 0.9)
        #expect(yTicks([0.0, 0.0], fractions: true).min()! == 0 && yTicks([0.0, 0.0], fractions: true).max()! <= 0.1)
        let middle = yTicks([0.7, 0.7, 0.7], fractions: true)
        #expect(middle.min()! >= 0.6 && middle.max()! <= 0.8, "\(middle)")
    }

    @Test func niceTicksAndLabels() {
        let accuracy = NiceTicks(min: 0.03, max: 0.93, target: 5, snapToTicks: true)
        #expect(accuracy.labels() == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        let steps = NiceTicks(min: 1, max: 960, target: 6, snapToTicks: false)
        #expect(steps.labels() == ["200", "400", "600", "800"])
        let rate = NiceTicks(min: 0, max: 3e-4, target: 5, snapToTicks: true)
        #expect(rate.labels() == ["0", "1e-4", "2e-4", "3e-4"])
        let throughput = NiceTicks(min: 0, max: 95_000, target: 5, snapToTicks: true)
        #expect(throughput.labels() == ["0", "20k", "40k", "60k", "80k", "100k"])
        let negative = NiceTicks(min: -3.7, max: -1.2, target: 5, snapToTicks: true)
        #expect(negative.labels() == ["-4.0", "-3.5", "-3.0", "-2.5", "-2.0", "-1.5", "-1.0"])
    }

    @Test func thinningKeepsTheFirstAndLastPoints() {
        for count in [1, 10, 2000, 2001, 4001, 10_007] {
            let kept = thinned(Array(0..<count), to: 2000)
            #expect(kept.first == 0 && kept.last == count - 1)
            #expect(kept.count <= 2001)
            #expect(count <= 2000 ? kept.count == count : kept.count > 1000)
        }
    }

    @Test func escaping() {
        #expect(htmlEscaped(#"<a href="x">Tom & 'Jerry'</a>"#) == "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;")
    }
}
