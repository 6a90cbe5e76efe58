// The libFuzzer driver, compiled only by launch/fuzz.sh (-DFUZZING, libFuzzer linked): SwiftPM's
// executable main wins over libFuzzer's, so main.swift hands control to LLVMFuzzerRunDriver with
// a closure over `FuzzTarget.run` as the test function. The target comes from CONTRAST_FUZZ_TARGET.

#if FUZZING
import CFuzzer
import FuzzTargets
import Foundation

nonisolated(unsafe) private var target: FuzzTarget!
nonisolated(unsafe) private var workspace: FuzzWorkspace!

/// Runs libFuzzer with the command line (corpus folders, -max_total_time=..., ...); returns its exit code.
func runFuzzer() -> Int32 {
    let name = ProcessInfo.processInfo.environment["CONTRAST_FUZZ_TARGET"] ?? ""
    guard let chosen = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set CONTRAST_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue)), got '\(name)'\n".utf8))
        return 2
    }
    target = chosen
    workspace = try! FuzzWorkspace()
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        let outcome = target.run(bytes, in: workspace)
        // An error that is not contrast's own (a Foundation error, say) would reach the user unexplained.
        if !outcome.isClear, case .rejected(let error) = outcome {
            fatalError("\(target.rawValue): unclear error \(type(of: error)): \(error)")
        }
        return 0
    }
}
#endif
