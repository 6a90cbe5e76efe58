import Foundation
import TestSupport
import Testing
@testable import NN
@testable import Tensor
@testable import Evaluation
import RunFiles

@Suite struct WeightsFileTests {
    func arena() -> ParameterArena {
        let arena = ParameterArena()
        _ = arena.allocate(name: "w", shape: [3, 5], kind: .weight)
        arena.seal()
        for i in 0..<arena.count { arena.parameters[i] = Float(i) * 0.25 }
        return arena
    }

    @Test func roundTripsAndDetectsDamage() throws {
        let url = temporaryDirectory("weights").appendingPathComponent("weights.bin")
        let original = arena()
        try WeightsFile.write(original, to: url)
        let copy = arena()
        copy.parameters.zero()
        try WeightsFile.read(into: copy, from: url)
        #expect(copy.parameters.array == original.parameters.array)

        var bytes = try Data(contentsOf: url)
        bytes[30] ^= 0x40
        try bytes.write(to: url)
        #expect(throws: RunDirectory.Failure.self) { try WeightsFile.read(into: copy, from: url) }
        try bytes.prefix(40).write(to: url)
        #expect(throws: RunDirectory.Failure.self) { try WeightsFile.read(into: copy, from: url) }
    }
}
