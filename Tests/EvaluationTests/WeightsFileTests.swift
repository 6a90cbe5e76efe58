import Foundation
import TestSupport
import Testing
@testable import NN
@testable import Tensor
@testable import Evaluation
import RunFiles
import Config
import Data

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
        let inputs = ModelInputs(features: [28, 28], image: true, pairs: [64])
        try WeightsFile.write(original, inputs: inputs, to: url)
        let copy = arena()
        copy.parameters.zero()
        try WeightsFile.read(into: copy, from: url)
        #expect(copy.parameters.array == original.parameters.array)
        #expect(try WeightsFile.inputs(at: url) == inputs)

        var bytes = try Data(contentsOf: url)
        bytes[bytes.count - 10] ^= 0x40
        try bytes.write(to: url)
        #expect(throws: RunDirectory.Failure.self) { try WeightsFile.read(into: copy, from: url) }
        try bytes.prefix(40).write(to: url)
        #expect(throws: RunDirectory.Failure.self) { try WeightsFile.read(into: copy, from: url) }
    }

    /// A version 1 file (no header, written before the input shape was recorded) still loads;
    /// it records no input shape, so the model's comes from its data set.
    @Test func readsVersionOneFiles() throws {
        let url = temporaryDirectory("weights-v1").appendingPathComponent("weights.bin")
        let original = arena()
        let values = UnsafeRawBufferPointer(start: original.parameters.data, count: original.count * 4)
        var data = Data("CTRWGT01".utf8)
        withUnsafeBytes(of: UInt64(original.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: WeightsFile.checksum(values).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: values)
        try data.write(to: url)
        let copy = arena()
        copy.parameters.zero()
        try WeightsFile.read(into: copy, from: url)
        #expect(copy.parameters.array == original.parameters.array)
        #expect(try WeightsFile.inputs(at: url) == nil)
    }

    /// A run whose weights.bin records no input shape (version 1) and whose data folder is gone:
    /// loading names the folder and --data as the fix; with --data it loads.
    @Test func aModelWithoutItsShapeAndItsDataNamesData() throws {
        let run = temporaryDirectory("weights-old-run")
        var config = TrainingConfig()
        config.model.hidden = [8]
        config.model.representation = 4
        config.model.projection = [4, 2]
        config.data.path = "/nonexistent/fmnist-\(UUID().uuidString)"
        try config.yaml().write(to: run.appendingPathComponent("config.yaml"), atomically: true, encoding: .utf8)
        let model = ContrastiveModel(config.model, inputWidth: 784)
        model.initialise(seed: 1)
        let values = UnsafeRawBufferPointer(start: model.arena.parameters.data, count: model.arena.count * 4)
        var data = Data("CTRWGT01".utf8)
        withUnsafeBytes(of: UInt64(model.arena.count).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: WeightsFile.checksum(values).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: values)
        try data.write(to: run.appendingPathComponent("weights.bin"))
        let error = try #require(throws: RunDirectory.Failure.self) { try TrainedModel.load(run.path) }
        #expect(error.description.contains(config.data.path) && error.description.contains("--data"), "\(error)")
        let loaded = try TrainedModel.load(run.path, data: FashionMNIST.defaultDirectory)
        #expect(loaded.inputs == ModelInputs(features: [28, 28], image: true))
        #expect(loaded.model.arena.parameters.array == model.arena.parameters.array)
    }
}
