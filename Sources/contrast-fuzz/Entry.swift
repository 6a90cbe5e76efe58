// The libFuzzer entry points, compiled only by launch/fuzz.sh (-sanitize=fuzzer -DFUZZING).
// libFuzzer supplies main; the target comes from CONTRAST_FUZZ_TARGET.

#if FUZZING
import FuzzTargets
import Foundation

nonisolated(unsafe) private var target: FuzzTarget?
nonisolated(unsafe) private var workspace: FuzzWorkspace?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    let name = ProcessInfo.processInfo.environment["CONTRAST_FUZZ_TARGET"] ?? ""
    guard let chosen = FuzzTarget(rawValue: name) else {
        fatalError("set CONTRAST_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue)), got '\(name)'")
    }
    target = chosen
    workspace = try! FuzzWorkspace()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let outcome = target!.run(bytes, in: workspace!)
    // An error that is not contrast's own (a Foundation error, say) would reach the user unexplained.
    if !outcome.isClear, case .rejected(let error) = outcome {
        fatalError("\(target!.rawValue): unclear error \(type(of: error)): \(error)")
    }
    return 0
}
#endif
