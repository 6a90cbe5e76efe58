import Config
import Foundation
import Tensor

/// The HTML of `contrast report`: summary, charts, PCA scatters, config and log tail.
struct ReportPage {
    var run: RunReport
    var generated: Date

    /// Most PCA scatters drawn (the first, the last and evenly spaced ones between).
    static let maxScatters = 6
    /// Most points per scatter (every n-th point beyond).
    static let maxScatterPoints = 2000

    func render() -> String {
        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <title>contrast report: \(htmlEscaped(run.directory.lastPathComponent))</title>
        <style>\(Self.style)</style></head><body>
        <h1>contrast run report</h1>
        <p class="sub">\(htmlEscaped(run.directory.path)) — generated \(htmlEscaped(Self.timestamp(generated)))</p>

        """
        html += "<h2>Summary</h2>\n" + summaryTable()
        html += section("Training", trainingCharts())
        html += retrievalSection()
        html += section("Speed", speedCharts()) + rankTable()
        html += section("Representations", representationCharts())
        html += eventsTable()
        html += configAndLog()
        html += "</body></html>\n"
        return html
    }

    static let style = """
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:1160px;margin:24px auto;padding:0 16px}
    h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
    .sub{color:#666;margin:0 0 12px;word-break:break-all}
    table{border-collapse:collapse;margin:4px 0 8px}td,th{padding:3px 12px 3px 0;vertical-align:top;text-align:left}
    th{font-weight:600;color:#444;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
    .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px;align-items:start}
    figure{margin:0;border:1px solid #e2e2e2;border-radius:4px;padding:4px;background:#fff}
    figure svg{width:100%;height:auto;display:block}
    svg text{font-family:system-ui,Helvetica,Arial,sans-serif;fill:#333}
    svg .title{font-size:14px;font-weight:600}svg .tick{font-size:11px;fill:#555}
    svg .axis{font-size:12px;fill:#444}svg .legend{font-size:11px}svg .note{font-size:13px;fill:#888}svg .small{font-size:10px}
    ul.missing{color:#666;margin:8px 0;padding-left:20px}ul.missing b{color:#444}
    .warn{color:#a33}pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}
    details{margin:8px 0}summary{cursor:pointer;font-weight:600}
    """

    // MARK: - Summary

    func summaryTable() -> String {
        var rows: [(String, String)] = [("Run directory", htmlEscaped(run.directory.path))]
        let steps = run.steps
        let stepsDone = steps.compactMap(\.step).max() ?? 0
        rows.append(("Status", htmlEscaped(RunStatus.of(run.metrics).summary)))
        if let total = run.totalSteps, total > 0 {
            rows.append(("Steps", String(format: "%d of %d (%.0f%%)", stepsDone, total, 100 * Double(stepsDone) / Double(total))))
        } else {
            rows.append(("Steps", "\(stepsDone) (total not known)"))
        }
        let times = steps.compactMap { $0["time"] }
        if let first = times.min(), let last = times.max() {
            rows.append(("Time", htmlEscaped("\(Self.timestamp(Date(timeIntervalSince1970: first))) to \(Self.timestamp(Date(timeIntervalSince1970: last))) (\(RunLog.duration(last - first)))")))
        }
        if run.configText == nil { rows.append(("Config", "<span class=\"warn\">config.yaml missing</span>")) }
        if var data = run.config("data.dataset") {
            if let path = run.config("data.path"), !path.isEmpty { data += " (\(path))" }
            if let limit = run.config("data.train_limit"), limit != "0" { data += ", first \(limit) training samples" }
            rows.append(("Data", htmlEscaped(data)))
        }
        let world = run.worldSize
        var ranks = "\(world.count) (from the \(world.source))"
        if world.count != run.metrics.ranks.count { ranks += ", \(run.metrics.ranks.count) metrics file(s) so far" }
        if let hosts = run.primary.start?.lists["hosts"], !hosts.isEmpty {
            let distinct = Array(Set(hosts)).sorted()
            ranks += "; host" + (distinct.count == 1 ? " " : "s ") + distinct.prefix(8).joined(separator: ", ") + (distinct.count > 8 ? ", …" : "")
        }
        rows.append(("Ranks", htmlEscaped(ranks)))
        if let perRank = run.config("data.batch_per_rank"), let b = Int(perRank) {
            rows.append(("Batch", "\(b) per rank × \(world.count) = \(b * world.count) per step"))
        }
        let model = [("encoder", "model.encoder"), ("hidden", "model.hidden"), ("representation", "model.representation"),
                     ("projection", "model.projection")].compactMap { name, key in run.config(key).map { "\(name) \($0)" } }
        if !model.isEmpty { rows.append(("Model", htmlEscaped(model.joined(separator: ", ")))) }
        if let loss = run.config("loss.kind") {
            rows.append(("Loss", htmlEscaped(loss + (run.config("loss.temperature").map { ", temperature \($0)" } ?? ""))))
        }
        if let optimizer = run.config("optimizer.kind") {
            var text = optimizer
            if let lr = run.config("optimizer.lr") { text += ", lr \(lr)" }
            if let schedule = run.config("optimizer.schedule") { text += ", \(schedule) schedule" }
            if let warmup = run.config("optimizer.warmup_steps"), warmup != "0" { text += ", \(warmup) warm-up steps" }
            rows.append(("Optimizer", htmlEscaped(text)))
        }
        if world.count == 1 {
            // One process averages nothing: communication.precision never applies.
            rows.append(("Precision", "single process, no all-reduce; fp32 weights"))
        } else if let precision = run.config("communication.precision") {
            rows.append(("Precision", htmlEscaped("\(precision) gradients on the wire, fp32 weights")))
        }
        rows.append(("Best kNN accuracy", bestKNN()))
        let recent = steps.suffix(20)
        let wall = recent.compactMap { $0["time_wall"] }
        if let globalBatch = run.primary.start?["global_batch"].flatMap(MetricsRecord.integer), wall.count == recent.count, !wall.isEmpty {
            // The definition train.log, TensorBoard and tail use (Throughput), over the last steps.
            let rate = Throughput.imagesPerSecond(images: globalBatch * wall.count, wallSeconds: wall.reduce(0, +))
            rows.append(("Throughput", String(format: "%.0f images/s over the last %d steps (global batch over wall time)", rate, wall.count)))
        } else if let median = Statistics.median(recent.compactMap { $0["images_per_second"] }) {
            // Files written before time_wall: the steps' own rates.
            rows.append(("Throughput", String(format: "%.0f images/s (median of the last %d steps)", median, recent.count)))
        }
        let skipped = steps.filter { ($0["skipped"] ?? 0) != 0 }.count
        if skipped > 0 { rows.append(("Skipped updates", "<span class=\"warn\">\(skipped) step(s) with non-finite gradients</span>")) }
        rows.append(("Checkpoints", checkpointList()))
        rows.append(("Metrics files", metricsFiles()))
        return "<table>\n" + rows.map { "<tr><th>\($0.0)</th><td>\($0.1)</td></tr>" }.joined(separator: "\n") + "\n</table>\n"
    }

    func bestKNN() -> String {
        let evals = run.primary.records(.eval).filter { $0["knn_accuracy"] != nil }
        guard let best = evals.max(by: { $0["knn_accuracy"]! < $1["knn_accuracy"]! }) else {
            return knnSkipped.map { "skipped: " + htmlEscaped($0) } ?? "not evaluated yet"
        }
        var text = String(format: "%.2f%%", best["knn_accuracy"]! * 100)
        var at: [String] = []
        if let epoch = best["epoch"].flatMap(MetricsRecord.integer) { at.append("epoch \(epoch)") }
        if let step = best.step { at.append("step \(step)") }
        if !at.isEmpty { text += " (after " + at.joined(separator: ", ") + ")" }
        if let last = evals.last, last.step != best.step, let accuracy = last["knn_accuracy"] {
            text += String(format: "; latest %.2f%%", accuracy * 100)
        }
        return text
    }

    /// Why the run's latest evaluation (or its end) had no kNN accuracy: no test split, no labels.
    var knnSkipped: String? {
        (run.primary.records(.eval) + run.primary.records(.end)).last { $0.texts["knn_skipped"] != nil }?.texts["knn_skipped"]
    }

    func checkpointList() -> String {
        guard !run.checkpoints.isEmpty else { return "none" }
        return run.checkpoints.map { htmlEscaped($0.name) + " (step \($0.step)" + ($0.complete ? ")" : ", <span class=\"warn\">incomplete</span>)") }
            .joined(separator: ", ")
    }

    func metricsFiles() -> String {
        let ranks = run.metrics.ranks
        func line(_ rank: RunMetrics.Rank) -> String {
            var text = "\(htmlEscaped(rank.file.lastPathComponent)): \(Self.count(rank.records.count, "record"))"
            if rank.unparsableLines > 0 {
                text += ", <span class=\"warn\">\(Self.count(rank.unparsableLines, "unparsable line")) skipped</span>"
            }
            return text
        }
        var parts: [String]
        if ranks.count <= 4 {
            parts = ranks.map(line)
        } else {
            // Many ranks: one line for all, then only the files with something to say.
            let records = ranks.reduce(0) { $0 + $1.records.count }
            parts = ["\(ranks.count) files (rank-\(ranks.first!.rank) … rank-\(ranks.last!.rank)), \(Self.count(records, "record"))"]
            parts += ranks.filter { $0.unparsableLines > 0 }.map(line)
        }
        if !run.metrics.pca.isEmpty { parts.append("\(run.metrics.pca.count) PCA file(s) in eval/") }
        if !run.metrics.unparsablePCAFiles.isEmpty {
            parts.append("<span class=\"warn\">unreadable: \(htmlEscaped(run.metrics.unparsablePCAFiles.sorted().joined(separator: ", ")))</span>")
        }
        return parts.joined(separator: "<br>")
    }

    // MARK: - Charts

    func trainingCharts() -> [Figure] {
        let steps = run.steps
        var charts: [Figure] = []
        let loss = steps.series("loss")
        var lossSeries = rawAndSmoothed(loss, name: "loss", color: ChartPalette.color(0))
        // An epoch's mean loss belongs to the middle of its epoch, not its last step.
        let epochEnds = run.primary.records(.epoch).series("epoch_mean_loss")
        let epochMeans = epochEnds.enumerated().map { index, end in
            ((index == 0 ? (steps.compactMap { $0["step"] }.min() ?? 1) - 1 : epochEnds[index - 1].0) / 2 + end.0 / 2, end.1)
        }
        if !epochMeans.isEmpty { lossSeries.append(ChartSeries(name: "epoch mean", points: epochMeans, color: ChartPalette.color(3), style: .dots)) }
        charts.append(chart("Loss", yLabel: "loss", lossSeries, needs: Self.stepField("loss")))
        charts.append(chart("Positive accuracy", yLabel: "fraction",
                            rawAndSmoothed(steps.series("positive_accuracy"), name: "positive accuracy", color: ChartPalette.color(2)),
                            needs: Self.stepField("positive_accuracy"), fractions: true))

        let evals = run.primary.records(.eval)
        var evalSeries: [ChartSeries] = []
        let knn = evals.series("knn_accuracy")
        if !knn.isEmpty { evalSeries.append(ChartSeries(name: "kNN accuracy", points: knn, color: ChartPalette.color(0))) }
        // Image <-> text runs: zero-shot accuracy beside the linear probe it is compared with.
        let zeroShot = evals.series("zero_shot_accuracy")
        if !zeroShot.isEmpty {
            evalSeries.append(ChartSeries(name: "zero-shot accuracy", points: zeroShot, color: ChartPalette.color(5)))
            let linear = evals.series("linear_accuracy")
            if !linear.isEmpty { evalSeries.append(ChartSeries(name: "linear probe", points: linear, color: ChartPalette.color(6), style: .dots)) }
        }
        let recallKeys = Set(evals.flatMap { $0.numbers.keys.filter { $0.hasPrefix("recall_at_") } })
            .sorted { (Self.recallK($0), $0) < (Self.recallK($1), $1) }
        for (index, key) in recallKeys.enumerated() {
            let name = "recall@\(Self.recallK(key)) " + (key.hasSuffix("features_to_pairs") ? "features→pairs" : key.hasSuffix("pairs_to_features") ? "pairs→features" : key)
            evalSeries.append(ChartSeries(name: name, points: evals.series(key), color: ChartPalette.color(index + 1),
                                          style: key.hasSuffix("pairs_to_features") ? .dashed : .line))
        }
        if evalSeries.isEmpty, let skipped = knnSkipped {
            charts.append(missing("kNN accuracy", "skipped: " + htmlEscaped(skipped)))
        } else {
            charts.append(chart(recallKeys.isEmpty ? "kNN accuracy" : "kNN accuracy and recall@K", yLabel: "fraction of test samples",
                                evalSeries, needs: "eval lines (<code>knn_accuracy</code>, <code>recall_at_K_*</code>)", fractions: true))
        }

        charts.append(chart("Learning rate", yLabel: "learning rate",
                            [ChartSeries(name: "lr", points: steps.series("lr"), color: ChartPalette.color(4))], needs: Self.stepField("lr"), includeZero: true, noteIfConstant: true))
        let temperature = steps.series("temperature")
        if temperature.isEmpty, let fixed = run.config("loss.temperature") {
            charts.append(missing("Temperature", "fixed at \(fixed) (loss.temperature); the metrics hold no <code>temperature</code> field"))
        } else {
            charts.append(chart("Temperature", yLabel: "temperature",
                                [ChartSeries(name: "temperature", points: temperature, color: ChartPalette.color(5))], needs: Self.stepField("temperature"),
                                noteIfConstant: true))
        }
        let gradientNorm = steps.series("gradient_norm")
        if !gradientNorm.isEmpty {
            charts.append(chart("Gradient norm", yLabel: "L2 norm", rawAndSmoothed(gradientNorm, name: "gradient norm", color: ChartPalette.color(6)),
                                needs: Self.stepField("gradient_norm")))
        }
        charts.append(chart("Loss scale", yLabel: "scale",
                            [ChartSeries(name: "loss scale", points: steps.series("loss_scale"), color: ChartPalette.color(8))],
                            needs: Self.stepField("loss_scale"), includeZero: true, noteIfConstant: true))
        return charts
    }

    /// A retrieval metric of eval records: its key and how the page names it.
    struct RetrievalMetric {
        var key: String
        var name: String
    }

    /// The retrieval metrics the run's eval records hold, in reading order: the text retrieval of a
    /// text set's held-out split (recall@K, MRR@10, nDCG@10, Spearman), then image <-> caption
    /// recall@K of a two-tower run, each direction.
    func retrievalMetrics() -> (text: [RetrievalMetric], spearman: RetrievalMetric?, pairs: [RetrievalMetric]) {
        let keys = Set(run.primary.records(.eval).flatMap { $0.numbers.keys })
        let recall = keys.filter { $0.hasPrefix("retrieval_recall_at_") }
            .sorted { (Self.recallK(String($0.dropFirst("retrieval_".count))), $0) < (Self.recallK(String($1.dropFirst("retrieval_".count))), $1) }
        var text = recall.map { RetrievalMetric(key: $0, name: "recall@\(Self.recallK(String($0.dropFirst("retrieval_".count))))") }
        if keys.contains("retrieval_mrr_at_10") { text.append(RetrievalMetric(key: "retrieval_mrr_at_10", name: "MRR@10")) }
        if keys.contains("retrieval_ndcg_at_10") { text.append(RetrievalMetric(key: "retrieval_ndcg_at_10", name: "nDCG@10")) }
        let spearman = keys.contains("spearman") ? RetrievalMetric(key: "spearman", name: "Spearman ρ (cosine against score)") : nil
        let pairs = keys.filter { $0.hasPrefix("recall_at_") }.sorted { (Self.recallK($0), $0) < (Self.recallK($1), $1) }
            .map { RetrievalMetric(key: $0, name: pairRecallName($0)) }
        return (text, spearman, pairs)
    }

    /// "recall@5 features → pairs" for `recall_at_5_features_to_pairs`; "image → caption" when the
    /// pair tower is the text encoder (`model.pair_encoder: bert`).
    func pairRecallName(_ key: String) -> String {
        let captions = run.config("model.pair_encoder") == "bert"
        let direction = key.hasSuffix("features_to_pairs") ? (captions ? "image → caption" : "features → pairs")
            : key.hasSuffix("pairs_to_features") ? (captions ? "caption → image" : "pairs → features") : key
        return "recall@\(Self.recallK(key)) " + direction
    }

    /// The "Retrieval" section: text retrieval (recall@K, MRR@10, nDCG@10) by epoch, Spearman's
    /// correlation by epoch, and a table of the latest evaluation's values of these and of the image
    /// <-> caption recall@K (charted with kNN accuracy under Training). Empty for a run without any.
    func retrievalSection() -> String {
        let (text, spearman, pairs) = retrievalMetrics()
        guard !text.isEmpty || spearman != nil || !pairs.isEmpty else { return "" }
        let evals = run.primary.records(.eval)
        var figures: [Figure] = []
        if !text.isEmpty {
            let series = text.enumerated().map { index, metric in
                ChartSeries(name: metric.name, points: evals.series(metric.key, x: "epoch"), color: ChartPalette.color(index),
                            style: metric.key.hasPrefix("retrieval_recall_at_") ? .line : .dashed)
            }
            var chart = LineChart(title: "Text retrieval on the test split", yLabel: "fraction of queries", series: series)
            chart.xLabel = "epoch"
            chart.fractions = true
            figures.append(.chart(chart.svg()))
        }
        if let spearman {
            var chart = LineChart(title: "Spearman correlation", yLabel: "ρ",
                                  series: [ChartSeries(name: spearman.name, points: evals.series(spearman.key, x: "epoch"), color: ChartPalette.color(4))])
            chart.xLabel = "epoch"
            figures.append(.chart(chart.svg()))
        }
        return section("Retrieval", figures) + retrievalTable(text + (spearman.map { [$0] } ?? []) + pairs)
    }

    /// Each metric's value at the latest evaluation that has it, and its best with the epoch.
    func retrievalTable(_ metrics: [RetrievalMetric]) -> String {
        let evals = run.primary.records(.eval)
        func at(_ record: MetricsRecord) -> String {
            var at: [String] = []
            if let epoch = record["epoch"].flatMap(MetricsRecord.integer) { at.append("epoch \(epoch)") }
            if let step = record.step { at.append("step \(step)") }
            return at.joined(separator: ", ")
        }
        var rows: [String] = []
        for metric in metrics {
            let having = evals.filter { $0[metric.key] != nil }
            guard let last = having.last, let best = having.max(by: { $0[metric.key]! < $1[metric.key]! }) else { continue }
            let value = { (record: MetricsRecord) in
                metric.key == "spearman" ? String(format: "%.4f", record[metric.key]!)
                    : metric.key.contains("mrr") || metric.key.contains("ndcg") ? String(format: "%.4f", record[metric.key]!)
                    : String(format: "%.2f%%", record[metric.key]! * 100)
            }
            rows.append("<tr><th>\(htmlEscaped(metric.name))</th><td class=\"n\">\(value(last))</td><td>\(htmlEscaped(at(last)))</td>"
                        + "<td class=\"n\">\(value(best))</td><td>\(htmlEscaped(at(best)))</td></tr>")
        }
        guard !rows.isEmpty else { return "" }
        return "<table><tr><th>metric</th><th>latest</th><th>at</th><th>best</th><th>at</th></tr>\n" + rows.joined(separator: "\n") + "\n</table>\n"
    }

    func speedCharts() -> [Figure] {
        let steps = run.steps
        var charts: [Figure] = []
        charts.append(chart("Throughput", yLabel: "images / s",
                            rawAndSmoothed(steps.series("images_per_second"), name: "images/s", color: ChartPalette.color(0)),
                            needs: Self.stepField("images_per_second"), includeZero: true, clipOutliers: true))

        // Stacked: each area reaches the sum of its part and the parts before it (smoothed, ms).
        let window = Self.smoothingWindow(steps.count)
        var cumulative: [ChartSeries] = []
        var running: [Double: Double] = [:]
        for (index, part) in StepPart.all.enumerated() {
            let points = Self.smoothed(steps.series(part.key), window: window)
            guard !points.isEmpty else { continue }
            let stacked = points.map { step, seconds -> (Double, Double) in
                let top = (running[step] ?? 0) + seconds * 1e3
                running[step] = top
                return (step, top)
            }
            cumulative.append(ChartSeries(name: part.name, points: stacked, color: ChartPalette.color(index), style: .area))
        }
        var split = Array(cumulative.reversed())         // tallest first: each lower area paints over it
        let hidden = Self.smoothed(steps.series("time_communication_hidden"), window: window).map { ($0.0, $0.1 * 1e3) }
        if hidden.contains(where: { $0.1 > 0 }) {
            split.append(ChartSeries(name: "communication hidden (overlapped)", points: hidden, color: "#222", style: .dashed))
        }
        let legendOrder = Array(cumulative) + split.filter { $0.style != .area }
        charts.append(chart("Step time split (stacked" + (window > 1 ? ", smoothed)" : ")"), yLabel: "ms per step", split, needs: "the <code>time_*</code> fields of step lines",
                            includeZero: true, maxPoints: 600, clipOutliers: true, legendOrder: legendOrder))

        // One line per rank: a straggler is the line above the others.
        let ranks = run.metrics.ranks
        guard ranks.count > 1 else {
            return charts + [missing("Step time per rank", "only one metrics file (\(htmlEscaped(ranks.first?.file.lastPathComponent ?? "")))")]
        }
        let perRankWindow = Self.smoothingWindow(ranks.map { $0.records(.step).count }.max() ?? 0)
        var rankSeries: [ChartSeries] = []
        for (index, rank) in ranks.enumerated() {
            let times = Self.smoothed(rank.records(.step).series(RunReport.stepSeconds), window: perRankWindow).map { ($0.0, $0.1 * 1e3) }
            let many = ranks.count > ChartPalette.colors.count
            rankSeries.append(ChartSeries(name: "rank \(rank.rank)", points: times,
                                          color: many ? "#999" : ChartPalette.color(index), style: many ? .faint : .line))
        }
        if ranks.count > ChartPalette.colors.count, let slowest = slowestRank() {
            // Too many ranks to colour each: grey lines, the slowest one in red, one legend entry each.
            if let index = rankSeries.firstIndex(where: { $0.name == "rank \(slowest)" }) {
                var series = rankSeries.remove(at: index)
                series.color = ChartPalette.color(3); series.style = .line; series.name += " (slowest)"
                for i in rankSeries.indices { rankSeries[i].name = "" }
                rankSeries.append(series)
                rankSeries[0].name = "other ranks"
            }
        }
        charts.append(chart("Step time per rank" + (perRankWindow > 1 ? " (smoothed)" : ""), yLabel: "ms per step", rankSeries,
                            needs: "the <code>time_*</code> fields of each rank's step lines", includeZero: true,
                            maxPoints: max(200, 4000 / max(1, ranks.count)), clipOutliers: true))
        return charts
    }

    func representationCharts() -> [Figure] {
        var charts: [Figure] = []
        let geometry = run.metrics.ranks.flatMap { $0.records(.geometry) }
        charts.append(chart("Alignment and uniformity", yLabel: "value", [
            ChartSeries(name: "alignment (lower: positives closer)", points: geometry.series("alignment"), color: ChartPalette.color(0)),
            ChartSeries(name: "uniformity (lower: spread more evenly)", points: geometry.series("uniformity"), color: ChartPalette.color(1)),
        ], needs: "geometry lines (<code>alignment</code>, <code>uniformity</code>)"))
        let cosines = [("positive cosine", "positive_cosine"), ("negative cosine", "negative_cosine"), ("embedding std", "embedding_std")]
            .enumerated().map { ChartSeries(name: $1.0, points: geometry.series($1.1), color: ChartPalette.color($0 + 2)) }
        if cosines.contains(where: { !$0.points.isEmpty }) {
            charts.append(chart("Embedding statistics", yLabel: "value", cosines.filter { !$0.points.isEmpty }, needs: ""))
        }
        let effectiveRank = geometry.series("effective_rank")
        if !effectiveRank.isEmpty {
            charts.append(chart("Effective rank", yLabel: "exp(entropy of singular values)",
                                [ChartSeries(name: "effective rank", points: effectiveRank, color: ChartPalette.color(5))], needs: "", includeZero: true))
        }
        charts += scatters()
        return charts
    }

    func scatters() -> [Figure] {
        let files = run.metrics.pca
        guard !files.isEmpty else {
            let evals = run.primary.records(.eval)
            // Evaluations that skipped kNN and wrote no PCA file had no test split (PCA needs no labels).
            if !evals.isEmpty && evals.allSatisfy({ $0.texts["pca"] == nil && $0.texts["knn_skipped"] != nil }) {
                return [missing("PCA of test representations", "none: the run's evaluations had no test split to draw")]
            }
            return [missing("PCA of test representations", "no eval/pca-step-&lt;S&gt;.json files yet (written at each evaluation)")]
        }
        let chosen: [RunMetrics.PCAPoints]
        if files.count <= Self.maxScatters { chosen = files } else {
            let indices = (0..<Self.maxScatters).map { $0 * (files.count - 1) / (Self.maxScatters - 1) }
            chosen = Array(Set(indices)).sorted().map { files[$0] }
        }
        return chosen.map { file in
            let points = thinned(file.points, to: Self.maxScatterPoints)
            let labels = Set(points.map(\.label)).sorted { ($0 < 0 ? Int.max : $0) < ($1 < 0 ? Int.max : $1) }
            let groups = labels.map { label in
                (name: label < 0 ? "unlabelled" : className(label),
                 color: label < 0 ? ChartPalette.unlabelled : ChartPalette.color(label),
                 points: points.filter { $0.label == label }.map { ($0.x, $0.y) })
            }
            var title = "PCA of test representations, step \(file.step)"
            if let epoch = file.epoch { title += " (epoch \(epoch))" }
            if points.count < file.points.count { title += ", \(points.count) of \(file.points.count) points" }
            return .chart(ScatterChart(title: title, groups: groups).svg())
        }
    }

    /// Fashion-MNIST's class names (Xiao, Rasul & Vollgraf 2017), as its labels number them.
    static let fashionMNISTClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// A label with its class name when the data set has one (`RunReport.classNames`).
    func className(_ label: Int) -> String {
        if let names = run.classNames, label >= 0, label < names.count { return "\(label) \(names[label])" }
        return "class \(label)"
    }

    // MARK: - Tables

    /// Median step time of each rank and how far above the fastest it is.
    func rankTable() -> String {
        let ranks = run.metrics.ranks
        guard ranks.count > 1 else { return "" }
        let medians = ranks.map { ($0.rank, Statistics.median($0.records(.step).suffix(200).compactMap(RunReport.stepSeconds))) }
        guard let fastest = medians.compactMap(\.1).min(), fastest > 0 else { return "" }
        var rows = medians.map { rank, median -> String in
            guard let median else { return "<tr><td class=\"n\">\(rank)</td><td>no steps</td><td></td></tr>" }
            let slower = (median / fastest - 1) * 100
            let flag = slower > 10 ? " class=\"n warn\"" : " class=\"n\""
            return String(format: "<tr><td class=\"n\">%d</td><td class=\"n\">%.1f</td><td%@>+%.0f%%</td></tr>", rank, median * 1e3, flag, slower)
        }
        if rows.count > 64 { rows = Array(rows.prefix(64)) + ["<tr><td colspan=\"3\">… \(rows.count - 64) more</td></tr>"] }
        return "<details><summary>Median step time per rank (last 200 steps)</summary><table><tr><th>rank</th><th>ms / step</th><th>vs fastest</th></tr>\n"
            + rows.joined(separator: "\n") + "\n</table></details>\n"
    }

    func slowestRank() -> Int? {
        run.metrics.ranks.compactMap { rank in Statistics.median(rank.records(.step).suffix(200).compactMap(RunReport.stepSeconds)).map { (rank.rank, $0) } }
            .max { $0.1 < $1.1 }?.0
    }

    /// Event lines of every rank; the same event (step and details) from several ranks is one row.
    func eventsTable() -> String {
        var rows: [(step: Int?, time: Double?, details: String, ranks: [Int])] = []
        var index: [String: Int] = [:]
        for rank in run.metrics.ranks {
            for event in rank.records(.event) {
                var details = event.texts.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
                details += event.lists.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.joined(separator: ", "))" }
                let identity = details.joined(separator: "; ") + " @\(event.step.map(String.init) ?? "")"
                details += event.numbers.filter { $0.key != "step" && $0.key != "time" && $0.key != "rank" }
                    .sorted { $0.key < $1.key }.map { "\($0.key): \(Self.compact($0.value))" }
                // Numbers (durations) differ between ranks; the texts and step say which event it is.
                if let row = index[identity], !event.texts.isEmpty || !event.lists.isEmpty {
                    rows[row].ranks.append(rank.rank)
                } else {
                    index[identity] = rows.count
                    rows.append((event.step, event["time"], details.joined(separator: "; "), [rank.rank]))
                }
            }
        }
        guard !rows.isEmpty else { return "" }
        rows.sort { ($0.step ?? -1, $0.time ?? 0) < ($1.step ?? -1, $1.time ?? 0) }
        let shown = rows.suffix(50)
        let hasTime = shown.contains { $0.time != nil }
        var html = "<h2>Events</h2>\n"
        if rows.count > shown.count { html += "<p>The last \(shown.count) of \(rows.count).</p>\n" }
        html += "<table><tr><th>step</th>" + (hasTime ? "<th>time</th>" : "") + "<th>rank</th><th>details (values of the first rank)</th></tr>\n"
        for row in shown {
            let ranks = row.ranks.count == run.worldSize.count && row.ranks.count > 1 ? "all" : row.ranks.map(String.init).joined(separator: ", ")
            html += "<tr><td class=\"n\">\(row.step.map(String.init) ?? "")</td>"
            if hasTime { html += "<td>\(htmlEscaped(row.time.map { Self.timestamp(Date(timeIntervalSince1970: $0)) } ?? ""))</td>" }
            html += "<td>\(ranks)</td><td>\(htmlEscaped(row.details))</td></tr>\n"
        }
        return html + "</table>\n"
    }

    func configAndLog() -> String {
        guard run.configText != nil || !run.logTail.isEmpty else { return "" }
        var html = "<h2>Config and log</h2>\n"
        if let text = run.configText {
            html += "<details><summary>config.yaml (resolved)</summary><pre>\(htmlEscaped(text))</pre></details>\n"
        }
        if !run.logTail.isEmpty {
            html += "<details><summary>train.log, last \(run.logTail.count) lines</summary><pre>\(htmlEscaped(run.logTail.joined(separator: "\n")))</pre></details>\n"
        }
        return html
    }

    // MARK: - Helpers

    /// Where a chart's values come from, as HTML (`needs` of `chart`).
    static func stepField(_ name: String) -> String { "the <code>\(name)</code> field of step lines" }

    /// A line chart, or a note when there is nothing (or only a constant) to draw.
    /// `needs`: HTML naming the metrics the chart is drawn from.
    func chart(_ title: String, yLabel: String, _ series: [ChartSeries], needs: String, includeZero: Bool = false,
               maxPoints: Int = 2000, clipOutliers: Bool = false, legendOrder: [ChartSeries]? = nil,
               noteIfConstant: Bool = false, fractions: Bool = false) -> Figure {
        guard series.contains(where: { !$0.points.isEmpty }) else {
            return missing(title, needs.isEmpty ? "no values yet" : "no values yet; drawn from \(needs)")
        }
        let points = series.flatMap(\.points)
        if noteIfConstant, let first = points.first, points.allSatisfy({ $0.1 == first.1 }) {
            // A flat line says less than its value does.
            let steps = points.map(\.0)
            return missing(title, "constant at \(Self.compact(first.1)) over steps \(Self.compact(steps.min()!))–\(Self.compact(steps.max()!))")
        }
        var chart = LineChart(title: title, yLabel: yLabel, series: series, includeZero: includeZero, maxPoints: maxPoints)
        chart.legendOrder = legendOrder
        chart.clipOutliers = clipOutliers
        chart.fractions = fractions
        return .chart(chart.svg())
    }

    /// A chart, or a one-line note in its place when there is nothing to draw.
    enum Figure {
        case chart(String)
        /// Title and an HTML note.
        case note(String, String)
    }

    func missing(_ title: String, _ note: String) -> Figure { .note(title, note) }

    /// A heading, the charts two to a row, then the notes about charts left out.
    func section(_ heading: String, _ figures: [Figure]) -> String {
        var charts: [String] = [], notes: [String] = []
        for figure in figures {
            switch figure {
            case .chart(let svg): charts.append("<figure>" + svg + "</figure>")
            case .note(let title, let note): notes.append("<li><b>\(htmlEscaped(title))</b>: \(note)</li>")
            }
        }
        var html = "<h2>\(htmlEscaped(heading))</h2>\n"
        if !charts.isEmpty { html += "<div class=\"grid\">\n" + charts.joined(separator: "\n") + "\n</div>\n" }
        if !notes.isEmpty { html += "<ul class=\"missing\">\n" + notes.joined(separator: "\n") + "\n</ul>\n" }
        return html
    }

    /// The raw values (pale) and their exponential moving average, when there are enough to smooth.
    func rawAndSmoothed(_ points: [(Double, Double)], name: String, color: String) -> [ChartSeries] {
        let window = Self.smoothingWindow(points.count)
        guard window > 1 else { return [ChartSeries(name: name, points: points, color: color)] }
        return [ChartSeries(name: name, points: points, color: color, style: .faint),
                ChartSeries(name: "\(name), smoothed", points: Self.smoothed(points, window: window), color: color)]
    }

    /// About 1/40 of the series, between 1 and 200 steps.
    static func smoothingWindow(_ count: Int) -> Int { min(200, max(1, count / 40)) }

    /// Exponential moving average with weight 2/(window+1), debiased at the start (as in Adam)
    /// so the first values are not pulled toward zero.
    static func smoothed(_ points: [(Double, Double)], window: Int) -> [(Double, Double)] {
        guard window > 1 else { return points }
        let beta = 1 - 2 / (Double(window) + 1)
        var average = 0.0, weight = 0.0
        return points.map { step, value in
            average = beta * average + (1 - beta) * value
            weight = beta * weight + (1 - beta)
            return (step, average / weight)
        }
    }

    /// "1 record", "3 records".
    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }


    /// `recall_at_<K>_...` -> K.
    static func recallK(_ key: String) -> Int {
        Int(key.dropFirst("recall_at_".count).prefix { $0.isNumber }) ?? 0
    }

    static func compact(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%.6g", value)
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}
