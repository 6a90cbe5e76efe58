// contrast-fuzz: the fuzz targets of FuzzTargets as a program.
//
// Built by launch/fuzz.sh (-DFUZZING, libFuzzer and AddressSanitizer), it is a libFuzzer binary (Entry.swift).
// Built normally (swift build), it replays files through a target and writes seed corpora:
//
//   contrast-fuzz replay TARGET PATH...   every file under each PATH through TARGET; exit 1 on an unclear error
//   contrast-fuzz pack OUT FILE...        a FuzzContainer of the files (a checkpoint or data-set directory)
//   contrast-fuzz seeds DIR               small valid inputs from contrast's own writers into DIR/TARGET/

#if FUZZING
import Foundation
exit(runFuzzer())
#else
import FuzzTargets
import Foundation

func usage() -> Never {
    FileHandle.standardError.write(Data("""
        usage: contrast-fuzz replay TARGET PATH... | pack OUT FILE... | seeds DIR
        targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))

        """.utf8))
    exit(2)
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { usage() }
switch command {
case "replay":
    guard arguments.count >= 3, let target = FuzzTarget(rawValue: arguments[1]) else { usage() }
    let workspace = try FuzzWorkspace()
    var accepted = 0, rejected = 0, unclear = 0
    for path in arguments.dropFirst(2).flatMap(fuzzInputFiles) {
        let bytes = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
        let outcome = target.run(bytes, in: workspace)
        switch outcome {
        case .accepted: accepted += 1
        case .rejected(let error):
            rejected += 1
            if !outcome.isClear {
                unclear += 1
                print("\(path): unclear error \(type(of: error)): \(error)")
            }
        }
    }
    print("\(target.rawValue): \(accepted + rejected) inputs, \(accepted) accepted, \(rejected) rejected, \(unclear) unclear")
    exit(unclear == 0 ? 0 : 1)
case "pack":
    guard arguments.count >= 3 else { usage() }
    let files = arguments.dropFirst(2).map { [UInt8](FileManager.default.contents(atPath: $0) ?? Data()) }
    guard FileManager.default.createFile(atPath: arguments[1], contents: Data(FuzzContainer.join(files))) else {
        fatalError("cannot write \(arguments[1])")
    }
case "seeds":
    guard arguments.count == 2 else { usage() }
    try FuzzSeeds.write(to: arguments[1])
default:
    usage()
}
#endif
