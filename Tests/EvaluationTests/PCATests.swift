import Foundation
import TestSupport
@testable import Config
@testable import RunFiles
@testable import Evaluation
import Testing
@testable import Training

@Suite struct PCATests {
    /// Unit vector of `x`.
    func unit(_ x: [Double]) -> [Double] {
        let norm = x.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return x.map { $0 / norm }
    }

    func dot(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } }

    /// B points in 6-D: spread 5 along `major`, 2 along `minor`, 0.05 elsewhere, around an offset.
    func stretchedCloud(count: Int, major: [Double], minor: [Double]) -> (rows: [Float], s: [Double], t: [Double]) {
        var state: UInt64 = 12345
        func uniform() -> Double {     // in [-1, 1)
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 52) - 1
        }
        let offset: [Double] = [3, -1, 2, 0.5, 7, -4]
        var rows: [Float] = [], s: [Double] = [], t: [Double] = []
        for _ in 0..<count {
            let a = uniform() * 5, b = uniform() * 2
            s.append(a); t.append(b)
            for j in 0..<6 { rows.append(Float(offset[j] + a * major[j] + b * minor[j] + 0.05 * uniform())) }
        }
        return (rows, s, t)
    }

    @Test func findsTheAxesTheCloudWasStretchedAlong() {
        let major = unit([1, 2, 0, -1, 0, 1])
        let raw = [0.0, 1, 1, 0, 1, 0]
        let minor = unit(zip(raw, major).map { $0 - dot(raw, major) * $1 })      // orthogonal to major
        let (rows, s, t) = stretchedCloud(count: 2000, major: major, minor: minor)
        let (centred, _) = rows.withUnsafeBufferPointer { PCA.centre($0.baseAddress!, count: 2000, width: 6) }
        let axes = PCA.principalAxes(centred: centred, count: 2000, width: 6)
        #expect(abs(dot(axes.first, major)) > 0.9999)
        #expect(abs(dot(axes.second, minor)) > 0.999)
        #expect(abs(dot(axes.first, axes.second)) < 1e-9)
        // Uniform on [-w, w] has variance w² / 3.
        #expect(abs(axes.variances.0 - 25.0 / 3) / (25.0 / 3) < 0.08)
        #expect(abs(axes.variances.1 - 4.0 / 3) / (4.0 / 3) < 0.08)
        // Sign: the largest coordinate of `major` (the 2) is positive, so PC1 is +major, not -major.
        #expect(dot(axes.first, major) > 0)

        let projected = rows.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 2000, width: 6) }
        let meanS = s.reduce(0, +) / 2000, meanT = t.reduce(0, +) / 2000
        let sign2 = dot(axes.second, minor) > 0 ? 1.0 : -1.0
        for (index, point) in projected.enumerated() {
            #expect(abs(Double(point.0) - (s[index] - meanS)) < 0.2)
            #expect(abs(Double(point.1) - sign2 * (t[index] - meanT)) < 0.2)
        }
    }

    /// Points on the line y = 2x: PC1 is (1, 2)/√5, PC2 is zero.
    @Test func aLineInThePlane() {
        let rows: [Float] = [-2, -4, -1, -2, 0, 0, 1, 2, 2, 4]
        let projected = rows.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 5, width: 2) }
        for (index, point) in projected.enumerated() {
            #expect(abs(point.0 - Float(index - 2) * 5.0.squareRoot().float) < 1e-5)
            #expect(abs(point.1) < 1e-5)
        }
    }

    /// Same input, same output, bit for bit; mirrored data gives the same axes, so its
    /// coordinates are the mirrored ones (the sign rule does not follow the data's orientation).
    @Test func deterministicAndSignNormalised() {
        let (rows, _, _) = stretchedCloud(count: 500, major: unit([0, 1, 3, 0, 1, 0]), minor: unit([1, 0, 0, 0, 0, 1]))
        let first = rows.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 500, width: 6) }
        let again = rows.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 500, width: 6) }
        #expect(first.map(\.0.bitPattern) == again.map(\.0.bitPattern) && first.map(\.1.bitPattern) == again.map(\.1.bitPattern))
        let mirrored = rows.map { -$0 }
        let flipped = mirrored.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 500, width: 6) }
        for (a, b) in zip(first, flipped) {
            #expect(abs(a.0 + b.0) < 1e-3 && abs(a.1 + b.1) < 1e-3)
        }
    }

    @Test func degenerateInputs() {
        let one: [Float] = [1, 2, 3]
        #expect(one.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 1, width: 3) }.map(\.0) == [0])
        let column: [Float] = [1, 2, 3]
        let projected = column.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 3, width: 1) }
        #expect(projected.map(\.0) == [-1, 0, 1] && projected.map(\.1) == [0, 0, 0])
        let same = [Float](repeating: 2, count: 12)
        #expect(same.withUnsafeBufferPointer { PCA.project2D($0.baseAddress!, count: 4, width: 3) }.allSatisfy { $0 == (0, 0) })
    }

    /// The file the trainer writes at each evaluation is the file the report reads.
    @Test func evalFileRoundTrips() throws {
        let run = temporaryDirectory("pca-file")
        let (rows, _, _) = stretchedCloud(count: 300, major: unit([1, 0, 0, 0, 0, 0]), minor: unit([0, 1, 0, 0, 0, 0]))
        let labels: [Int64] = (0..<300).map { $0 % 7 == 0 ? -1 : Int64($0 % 10) }
        try rows.withUnsafeBufferPointer {
            try PCA.writeEvalFile(runDirectory: run, step: 40, epoch: 2, rows: $0.baseAddress!, count: 300, width: 6, labels: labels, maxPoints: 100)
        }
        var metrics = RunMetrics(directory: run, ranks: [], pca: [], unparsablePCAFiles: [])
        metrics.readPCAFiles()
        #expect(metrics.pca.count == 1 && metrics.unparsablePCAFiles.isEmpty)
        let file = try #require(metrics.pca.first)
        #expect(file.step == 40 && file.epoch == 2)
        #expect(file.points.count == 76)      // every 4th of 300, and the last
        #expect(file.points.first?.label == -1 && file.points[1].label == 4 && file.points.last?.label == 9)
    }
}

private extension Double {
    var float: Float { Float(self) }
}
