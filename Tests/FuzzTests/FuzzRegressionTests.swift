import Foundation
import FuzzTargets
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing

/// Tests/Fuzz, found from this file's path.
private let fuzzFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fuzz").path

/// Replays the committed seed corpus and every input the fuzzer ever crashed on (Tests/Fuzz/regressions,
/// one folder per target) through the fuzz targets: each must be read or rejected with one of
/// contrast's own errors. A trap would end the test process, which fails the suite.
@Suite struct FuzzRegressionTests {
    @Test(arguments: FuzzTarget.allCases)
    func corpusAndRegressionsAreReadOrRejectedClearly(target: FuzzTarget) throws {
        let workspace = try FuzzWorkspace()
        let files = fuzzInputFiles(fuzzFolder + "/corpus/" + target.rawValue)
            + fuzzInputFiles(fuzzFolder + "/regressions/" + target.rawValue)
        #expect(!files.isEmpty, "no seed corpus for \(target.rawValue)")
        for path in files {
            let bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
            let outcome = target.run(bytes, in: workspace)
            #expect(outcome.isClear, "\(path): \(outcome)")
        }
    }

    /// The seeds that writers and real runs made are accepted: a target that rejected everything
    /// would pass the test above while fuzzing nothing behind its first check.
    @Test(arguments: FuzzTarget.allCases)
    func validSeedsAreAccepted(target: FuzzTarget) throws {
        let workspace = try FuzzWorkspace()
        let valid = fuzzInputFiles(fuzzFolder + "/corpus/" + target.rawValue).filter {
            let name = ($0 as NSString).lastPathComponent
            return name.hasPrefix("writer") || name.hasPrefix("real")
        }
        #expect(!valid.isEmpty, "no valid seeds for \(target.rawValue)")
        for path in valid {
            let bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
            if case .rejected(let error) = target.run(bytes, in: workspace) {
                Issue.record("\(path) was rejected: \(error)")
            }
        }
    }

    @Test func containerRoundTrips() {
        let files: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 300)]
        #expect(FuzzContainer.split(FuzzContainer.join(files)) == files)
        // A length past the end takes what is left.
        #expect(FuzzContainer.split([5, 0, 0, 0, 9, 9]) == [[9, 9]])
    }
}
