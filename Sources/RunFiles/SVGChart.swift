import Foundation

// Small, dependency-free SVG charts for `contrast report`: line charts (x = step) and
// scatter plots, with axes, "nice" tick values (1, 2, 5 x 10^k), labels and a legend. The
// output is plain inline SVG: it needs no script, font file or network to display.

/// One line of a chart.
struct ChartSeries {
    enum Style {
        /// A solid line; with few points (≤ 40) also a dot per point.
        case line
        /// A thin, pale line (raw values under a smoothed one).
        case faint
        case dashed
        /// Dots only (sparse values such as epoch means).
        case dots
        /// Filled from the x axis up to the line; series are drawn in order, so list the
        /// tallest (cumulative) first for a stacked-area picture.
        case area
    }

    var name: String
    var points: [(Double, Double)]
    var color: String
    var style: Style = .line
}

/// Colours told apart by most readers (d3's category10, then two lighter ones).
enum ChartPalette {
    static let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78"]
    static let unlabelled = "#b8b8b8"
    static func color(_ index: Int) -> String { colors[((index % colors.count) + colors.count) % colors.count] }
}

/// A line chart of series against the step.
struct LineChart {
    var title: String
    var yLabel: String
    var xLabel = "step"
    var series: [ChartSeries]
    /// Stretch the y axis down (or up) to 0.
    var includeZero = false
    /// Most points drawn per series; longer series keep every n-th point and the last.
    var maxPoints = 2000
    /// Cut the y axis at about the 99th percentile when a few values (a slow first step, a
    /// hiccup) would otherwise flatten everything else; cut values run along the top edge.
    var clipOutliers = false
    /// Values are fractions (accuracies): the axis stays within [0, 1], and a constant value gets
    /// 5 points either side rather than 10% of itself.
    var fractions = false
    /// Legend entries, when they should differ from `series` (order, or fewer); unnamed series get none.
    var legendOrder: [ChartSeries]? = nil
    var width = 560.0
    var height = 320.0

    func svg() -> String {
        let drawn = series.map { s -> ChartSeries in
            var s = s
            s.points = thinned(s.points.filter { $0.0.isFinite && $0.1.isFinite }, to: maxPoints)
            return s
        }
        let all = drawn.flatMap(\.points)
        var out = SVGWriter(width: width, height: height, title: title)
        let legendEntries = (legendOrder ?? series).filter { !$0.name.isEmpty }.map { ($0.name, $0.color, $0.style) }
        let legendRows = out.legend(legendEntries, top: 34, left: 60, right: width - 12)
        let frame = ChartFrame(left: 64, right: width - 14, top: 34 + Double(legendRows) * 16 + 10, bottom: height - 42)
        guard !all.isEmpty else {
            out.text("no values yet", x: (frame.left + frame.right) / 2, y: (frame.top + frame.bottom) / 2, anchor: "middle", cssClass: "note")
            return out.finished()
        }
        var (xMin, xMax) = (all.map(\.0).min()!, all.map(\.0).max()!)
        var (yMin, yMax) = (all.map(\.1).min()!, all.map(\.1).max()!)
        var clipped = false
        if clipOutliers {
            let values = all.map(\.1).sorted()
            let high = values[Int(Double(values.count - 1) * 0.99)]
            if high > 0 && yMax > high * 1.3 { yMax = high * 1.15; clipped = true }
        }
        if includeZero { yMin = min(yMin, 0); yMax = max(yMax, 0) }
        if xMin == xMax { xMin -= 1; xMax += 1 }
        if yMin == yMax {
            let pad = fractions ? 0.05 : yMin == 0 ? 1 : abs(yMin) * 0.1
            yMin -= pad; yMax += pad
        }
        if fractions {
            // One evaluation at 0.98 must not draw an axis up to 1.03 (a fraction above 1); when
            // clamping leaves nothing between the bounds, the other side gives the room.
            (yMin, yMax) = (max(0, yMin), min(1, yMax))
            if yMax - yMin < 0.1 { if yMin == 0 { yMax = max(yMax, 0.1) } else if yMax == 1 { yMin = min(yMin, 0.9) } }
        }
        let xTicks = NiceTicks(min: xMin, max: xMax, target: 6, snapToTicks: false)
        let yTicks = NiceTicks(min: yMin, max: yMax, target: 5, snapToTicks: true)
        let scale = ChartScale(frame: frame, x: xTicks.lower...xTicks.upper, y: yTicks.lower...yTicks.upper)
        out.axes(frame: frame, scale: scale, xTicks: xTicks, yTicks: yTicks, xLabel: xLabel, yLabel: yLabel)
        if clipped {
            out.text("axis cut at the 99th percentile", x: frame.right, y: frame.top - 3, anchor: "end", cssClass: "note small")
        }

        for s in drawn where !s.points.isEmpty {
            let coordinates = s.points.map { (scale.x($0.0), scale.y(min($0.1, yTicks.upper))) }
            switch s.style {
            case .area:
                let baseline = scale.y(max(yTicks.lower, min(0, yTicks.upper)))
                var d = "M" + SVGWriter.number(coordinates[0].0) + " " + SVGWriter.number(baseline)
                for (x, y) in coordinates { d += " " + SVGWriter.number(x) + " " + SVGWriter.number(y) }
                d += " " + SVGWriter.number(coordinates.last!.0) + " " + SVGWriter.number(baseline) + "Z"
                out.raw("<path d=\"\(d)\" fill=\"\(s.color)\" fill-opacity=\"0.85\" stroke=\"none\"/>")
            case .dots:
                out.dots(coordinates, color: s.color, radius: 3.5)
            case .line, .faint, .dashed:
                let d = "M" + coordinates.map { SVGWriter.number($0.0) + " " + SVGWriter.number($0.1) }.joined(separator: " ")
                let attributes: String
                switch s.style {
                case .faint: attributes = "stroke-width=\"1\" stroke-opacity=\"\(coordinates.count > 300 ? "0.25" : "0.4")\""
                case .dashed: attributes = "stroke-width=\"1.5\" stroke-dasharray=\"5 3\""
                default: attributes = "stroke-width=\"1.6\""
                }
                out.raw("<path d=\"\(d)\" fill=\"none\" stroke=\"\(s.color)\" \(attributes) stroke-linejoin=\"round\"/>")
                if s.style == .line && coordinates.count <= 40 { out.dots(coordinates, color: s.color, radius: 3) }
            }
        }
        return out.finished()
    }
}

/// A scatter plot with equal scales on both axes (distances in the picture mean something),
/// one colour per group.
struct ScatterChart {
    var title: String
    var xLabel = "PC1"
    var yLabel = "PC2"
    var groups: [(name: String, color: String, points: [(Double, Double)])]
    var width = 560.0
    var height = 500.0

    func svg() -> String {
        var out = SVGWriter(width: width, height: height, title: title)
        let legendRows = out.legend(groups.map { ($0.name, $0.color, ChartSeries.Style.dots) }, top: 34, left: 60, right: width - 12)
        let top = 34 + Double(legendRows) * 16 + 10, bottom = height - 42
        let side = min(width - 64 - 14, bottom - top)
        let left = 64 + (width - 64 - 14 - side) / 2
        let frame = ChartFrame(left: left, right: left + side, top: top, bottom: top + side)
        let all = groups.flatMap(\.points)
        guard !all.isEmpty else {
            out.text("no points", x: (frame.left + frame.right) / 2, y: (frame.top + frame.bottom) / 2, anchor: "middle", cssClass: "note")
            return out.finished()
        }
        let (xMin, xMax) = (all.map(\.0).min()!, all.map(\.0).max()!)
        let (yMin, yMax) = (all.map(\.1).min()!, all.map(\.1).max()!)
        let half = max(xMax - xMin, yMax - yMin, 1e-12) / 2 * 1.05
        let (xMid, yMid) = ((xMin + xMax) / 2, (yMin + yMax) / 2)
        let xTicks = NiceTicks(min: xMid - half, max: xMid + half, target: 5, snapToTicks: false)
        let yTicks = NiceTicks(min: yMid - half, max: yMid + half, target: 5, snapToTicks: false)
        let scale = ChartScale(frame: frame, x: xTicks.lower...xTicks.upper, y: yTicks.lower...yTicks.upper)
        out.axes(frame: frame, scale: scale, xTicks: xTicks, yTicks: yTicks, xLabel: xLabel, yLabel: yLabel)
        for group in groups where !group.points.isEmpty {
            out.dots(group.points.map { (scale.x($0.0), scale.y($0.1)) }, color: group.color, radius: 2.2)
        }
        return out.finished()
    }
}

/// The plot area inside an SVG, in pixels.
struct ChartFrame {
    var left, right, top, bottom: Double
}

/// Data -> pixel mapping.
struct ChartScale {
    var frame: ChartFrame
    var xDomain: ClosedRange<Double>
    var yDomain: ClosedRange<Double>

    init(frame: ChartFrame, x: ClosedRange<Double>, y: ClosedRange<Double>) {
        self.frame = frame; xDomain = x; yDomain = y
    }

    func x(_ value: Double) -> Double {
        frame.left + (value - xDomain.lowerBound) / (xDomain.upperBound - xDomain.lowerBound) * (frame.right - frame.left)
    }
    func y(_ value: Double) -> Double {
        frame.bottom - (value - yDomain.lowerBound) / (yDomain.upperBound - yDomain.lowerBound) * (frame.bottom - frame.top)
    }
}

/// Tick values at 1, 2 or 5 x 10^k (Heckbert, "Nice numbers for graph labels", Graphics Gems, 1990).
struct NiceTicks {
    var values: [Double]
    var step: Double
    /// The axis range: the data range, or widened to whole ticks with `snapToTicks`.
    var lower: Double
    var upper: Double

    init(min: Double, max: Double, target: Int, snapToTicks: Bool) {
        let span = Swift.max(max - min, Swift.max(abs(max), 1) * 1e-12)
        step = Self.nice(span / Double(Swift.max(1, target - 1)))
        let first = (min / step).rounded(.down) * step, last = (max / step).rounded(.up) * step
        lower = snapToTicks ? first : min
        upper = snapToTicks ? last : max
        var values: [Double] = []
        var index = (lower / step).rounded(.up)
        while index * step <= upper + step * 1e-9 && values.count < 50 {
            values.append(index * step == 0 ? 0 : index * step)    // no "-0"
            index += 1
        }
        self.values = values
    }

    /// The 1, 2, 5 or 10 x 10^k nearest `x`.
    static func nice(_ x: Double) -> Double {
        let exponent = log10(x).rounded(.down)
        let fraction = x / pow(10, exponent)
        let niceFraction: Double = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        return niceFraction * pow(10, exponent)
    }

    /// Labels that tell the ticks apart without needless digits: 0.05, 1.2k, 3e-4.
    func labels() -> [String] {
        let largest = values.map(abs).max() ?? 0
        if largest >= 1e4 {
            let (scale, suffix) = largest >= 1e9 ? (1e9, "G") : largest >= 1e6 ? (1e6, "M") : (1e3, "k")
            return values.map { Self.fixed($0 / scale, decimals: Self.decimals(step / scale)) + ($0 == 0 ? "" : suffix) }
        }
        if largest > 0 && step < 1e-3 {
            let exponent = log10(largest).rounded(.down)
            let unit = pow(10, exponent)
            return values.map { $0 == 0 ? "0" : Self.fixed($0 / unit, decimals: Self.decimals(step / unit)) + "e" + String(Int(exponent)) }
        }
        return values.map { Self.fixed($0, decimals: Self.decimals(step)) }
    }

    static func decimals(_ step: Double) -> Int { Swift.max(0, Int((-log10(step) - 1e-9).rounded(.up))) }
    static func fixed(_ value: Double, decimals: Int) -> String { String(format: "%.\(decimals)f", value) }
}

/// Builds one `<svg>` element.
struct SVGWriter {
    private(set) var body = ""
    let width: Double, height: Double

    init(width: Double, height: Double, title: String) {
        self.width = width; self.height = height
        body = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">"
        body += "<title>\(htmlEscaped(title))</title>"
        body += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
        text(title, x: 12, y: 20, anchor: "start", cssClass: "title")
    }

    mutating func raw(_ element: String) { body += element }

    mutating func text(_ string: String, x: Double, y: Double, anchor: String, cssClass: String? = nil, rotate: Bool = false) {
        let transform = rotate ? " transform=\"rotate(-90 \(Self.number(x)) \(Self.number(y)))\"" : ""
        let css = cssClass.map { " class=\"\($0)\"" } ?? ""
        body += "<text x=\"\(Self.number(x))\" y=\"\(Self.number(y))\" text-anchor=\"\(anchor)\"\(css)\(transform)>\(htmlEscaped(string))</text>"
    }

    /// Round dots as zero-length segments with round caps: about 12 bytes a point.
    mutating func dots(_ points: [(Double, Double)], color: String, radius: Double) {
        guard !points.isEmpty else { return }
        let d = points.map { "M" + Self.number($0.0) + " " + Self.number($0.1) + "h0" }.joined()
        body += "<path d=\"\(d)\" stroke=\"\(color)\" stroke-width=\"\(Self.number(radius * 2))\" stroke-linecap=\"round\" fill=\"none\"/>"
    }

    /// Legend entries left to right, wrapping; returns the number of rows used.
    mutating func legend(_ entries: [(String, String, ChartSeries.Style)], top: Double, left: Double, right: Double) -> Int {
        guard !entries.isEmpty else { return 0 }
        var x = left, row = 0
        for (name, color, style) in entries {
            let itemWidth = 22 + Double(name.count) * 6.3 + 14
            if x + itemWidth > right && x > left { row += 1; x = left }
            let y = top + Double(row) * 16
            switch style {
            case .dots: dots([(x + 8, y - 4)], color: color, radius: 3.5)
            case .area: body += "<rect x=\"\(Self.number(x))\" y=\"\(Self.number(y - 9))\" width=\"16\" height=\"10\" fill=\"\(color)\"/>"
            default:
                let dash = style == .dashed ? " stroke-dasharray=\"4 2\"" : ""
                let opacity = style == .faint ? " stroke-opacity=\"0.45\"" : ""
                body += "<path d=\"M\(Self.number(x)) \(Self.number(y - 4))h16\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)\(opacity)/>"
            }
            text(name, x: x + 20, y: y, anchor: "start", cssClass: "legend")
            x += itemWidth
        }
        return row + 1
    }

    mutating func axes(frame: ChartFrame, scale: ChartScale, xTicks: NiceTicks, yTicks: NiceTicks, xLabel: String, yLabel: String) {
        var grid = ""
        for (value, label) in zip(yTicks.values, yTicks.labels()) {
            let y = Self.number(scale.y(value))
            grid += "M\(Self.number(frame.left)) \(y)H\(Self.number(frame.right))"
            text(label, x: frame.left - 6, y: scale.y(value) + 4, anchor: "end", cssClass: "tick")
        }
        var marks = ""
        for (value, label) in zip(xTicks.values, xTicks.labels()) {
            let x = scale.x(value)
            marks += "M\(Self.number(x)) \(Self.number(frame.bottom))v5"
            text(label, x: x, y: frame.bottom + 17, anchor: "middle", cssClass: "tick")
        }
        body += "<path d=\"\(grid)\" stroke=\"#e4e4e4\" stroke-width=\"1\"/>"
        body += "<path d=\"M\(Self.number(frame.left)) \(Self.number(frame.top))V\(Self.number(frame.bottom))H\(Self.number(frame.right))\(marks)\" stroke=\"#555\" fill=\"none\" stroke-width=\"1\"/>"
        text(xLabel, x: (frame.left + frame.right) / 2, y: frame.bottom + 34, anchor: "middle", cssClass: "axis")
        text(yLabel, x: 14, y: (frame.top + frame.bottom) / 2, anchor: "middle", cssClass: "axis", rotate: true)
    }

    func finished() -> String { body + "</svg>" }

    /// A pixel coordinate with one decimal, trailing ".0" dropped.
    static func number(_ value: Double) -> String {
        guard value.isFinite, abs(value) < 1e9 else { return "0" }     // never for pixel coordinates of finite data
        let tenths = (value * 10).rounded()
        return tenths.truncatingRemainder(dividingBy: 10) == 0 ? String(Int(tenths / 10)) : String(tenths / 10)
    }
}

/// Every n-th point, and always the last, so at most about `limit` remain.
public func thinned<T>(_ points: [T], to limit: Int) -> [T] {
    guard points.count > limit, limit > 1 else { return points }
    let stride = (points.count + limit - 2) / (limit - 1)
    var out: [T] = []
    out.reserveCapacity(limit + 1)
    for index in Swift.stride(from: 0, to: points.count, by: stride) { out.append(points[index]) }
    if (points.count - 1) % stride != 0 { out.append(points[points.count - 1]) }
    return out
}

/// Text made safe for HTML (and SVG) content and attribute values.
func htmlEscaped(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(character)
        }
    }
    return out
}
