import Foundation
@testable import Training

/// The repository root, found from this file's path (Tests/TrainingTests/Support.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fresh, empty temporary directory.
func temporaryDirectory(_ label: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("contrast-\(label)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// configs/smoke.yaml with its run directory moved into a temporary directory.
func smokeConfig(_ overrides: [String] = []) throws -> TrainingConfig {
    let runDirectory = temporaryDirectory("run").appendingPathComponent("run").path
    return try ConfigLoader.load(file: repositoryRoot.appendingPathComponent("configs/smoke.yaml").path,
                                 overrides: ["run_dir=\(runDirectory)"] + overrides)
}
