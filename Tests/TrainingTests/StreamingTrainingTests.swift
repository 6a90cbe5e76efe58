import Checkpoint
import Distributed
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
@testable import Data
@testable import NN
import Testing
@testable import Training

/// `data.hold: stream` through `contrast train`: a killed run resumes exactly (bit for bit at
/// the same rank count, on the same loss curve at another), a data set 4x the memory the run
/// may use trains, evaluation reads the streamed shards, and what cannot be streamed is refused.
@Suite(.serialized) struct StreamingTrainingTests {
    /// The first 1,024 samples of the prepared 2,048 (4 shard files of 256), global batch 64:
    /// k = 16, 16 steps an epoch; shuffle buffers of 32 samples, far fewer than a shard.
    func arguments(_ run: String, ranks: Int, steps: Int, _ extra: [String]) -> [String] {
        ["train", "--config", "configs/smoke.yaml"] + ([
            "run_dir=\(run)", "data.dataset=prepared", "data.path=\(PreparedDataTests.prepared)", "data.train_limit=1024",
            "data.hold=stream", "data.shuffle_buffer=32", "data.batch_per_rank=\(64 / ranks)", "train.max_steps=\(steps)",
            "communication.precision=fp32", "eval.knn_every_epochs=0", "data.test_limit=200", "checkpoint.every_steps=6",
        ] + extra).flatMap { ["--set", $0] }
    }

    func train(_ run: String, ranks: Int, steps: Int = 20, _ extra: [String] = [], fault: String? = nil) throws -> ProcessOutcome {
        try runContrast(ranks: ranks, arguments(run, ranks: ranks, steps: steps, extra),
                        environment: fault.map { ["CONTRAST_FAULT": $0] } ?? [:], timeout: 180)
    }

    /// Killed (SIGKILL on rank 1 in step 14's all-reduce) mid-epoch, a streamed run resumes from
    /// its step-12 checkpoint (epoch 0, batch 12) and ends bit for bit as the uninterrupted run:
    /// every buffer of the last checkpoint and the step records of steps 13 ... 20, which cross
    /// into epoch 1. The same checkpoint resumed on 1 and 4 ranks follows the same loss curve
    /// (to 1e-5: another rank count sums the gradients in another order; the samples are the
    /// same, as StreamingTests shows batch by batch). Without prefetching the run is the same too.
    @Test func killedStreamedRunResumesExactly() throws {
        let checkpoints = CheckpointResumeTests()
        let straight = temporaryDirectory("stream-straight").appendingPathComponent("run").path
        let outcome = try train(straight, ranks: 2)
        #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
        let log = try String(contentsOfFile: straight + "/train.log", encoding: .utf8)
        #expect(log.contains("samples streamed from the 2 shard file(s) in order every epoch through shuffle buffers of 32 samples each"))

        let inLoop = temporaryDirectory("stream-no-prefetch").appendingPathComponent("run").path
        #expect(try train(inLoop, ranks: 2, ["data.prefetch=0"]).status == 0)
        #expect(try checkpoints.newestState(inLoop) == checkpoints.newestState(straight))

        let killed = temporaryDirectory("stream-killed").appendingPathComponent("run").path
        let crash = try train(killed, ranks: 2, fault: "kill@rank=1@step=14@phase=allreduce")
        #expect(crash.status != 0 && crash.error.contains("kill at step 14"), "\(crash.error.suffix(1500))")
        let checkpoint = try #require(CheckpointStore.list(runDirectory: URL(fileURLWithPath: killed)).first)
        #expect(checkpoint.lastPathComponent == "step-000000012")
        let resumed = try train(killed, ranks: 2)
        #expect(resumed.status == 0, "\(resumed.error.suffix(1500))")
        #expect(try checkpoints.newestState(killed) == checkpoints.newestState(straight))
        #expect(try checkpoints.stepRecords(killed, from: 13) == checkpoints.stepRecords(straight, from: 13))

        let reference = try checkpoints.stepRecords(straight, from: 13).map { try checkpoints.lossOf($0) }
        for ranks in [1, 4] {
            let run = temporaryDirectory("stream-reshard-\(ranks)").appendingPathComponent("run").path
            let outcome = try train(run, ranks: ranks, ["resume=\(checkpoint.path)"])
            #expect(outcome.status == 0, "\(outcome.error.suffix(1500))")
            let losses = try checkpoints.stepRecords(run, from: 13).map { try checkpoints.lossOf($0) }
            #expect(losses.count == 8)
            for (a, b) in zip(losses, reference) { #expect(abs(a - b) <= 1e-5 * abs(b), "P=\(ranks): \(a) vs \(b)") }
        }
    }

    /// Evaluation of a streamed run reads its shards one at a time: the kNN memory (each rank's
    /// evaluated samples, gathered) is the one the held samples give, value for value.
    @Test func streamedEvaluationEmbedsTheSameSamples() throws {
        var config = try smokeConfig(["data.dataset=prepared", "data.path=\(PreparedDataTests.prepared)", "data.train_limit=1024"])
        let held = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        config.data.hold = .stream
        let streamed = try TrainingData(config: config, rank: 0, worldSize: 1, loadTest: false)
        #expect(streamed.streamed != nil && streamed.train.count == 0 && streamed.train.totalCount == 1024)
        let model = ContrastiveModel(config.model, inputWidth: 784)
        let communicator = SingleProcessCommunicator()
        let a = try #require(try Evaluation.gatherRepresentations(model: model, train: held.train, evaluated: held.evaluated,
                                                                  communicator: communicator))
        let (own, labels) = try streamed.streamedRepresentations(model: model, progress: nil)
        let b = try #require(try Evaluation.gatherRepresentations(model: model, own: own, ownLabels: labels, communicator: communicator))
        #expect(a.labels == b.labels && a.labels.count == 1024)
        #expect(a.features.array == b.features.array)
    }

    /// Streaming needs shard files: Fashion-MNIST's IDX files are refused before the run
    /// directory exists, with one line naming the key and the fix.
    @Test func streamingWhatIsNotPreparedIsRefused() throws {
        let run = temporaryDirectory("stream-refused").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: 1, ["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(run)",
                                                 "--set", "data.hold=stream"])
        #expect(outcome.status != 0)
        let lines = outcome.error.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("data.hold") && lines[0].contains("contrast prepare fashion-mnist --out DIR"),
                "\(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: run))
    }

    /// A damaged shard stops a streamed run with one line naming the file (found while reading,
    /// after the start: the run directory exists then, its log says why), on one rank and, on
    /// two, the rank that reads it ends the job.
    @Test(arguments: [1, 2])
    func damagedShardStopsAStreamedRun(ranks: Int) throws {
        let copy = temporaryDirectory("stream-damaged").appendingPathComponent("fmnist").path
        try FileManager.default.copyItem(atPath: PreparedDataTests.prepared, toPath: copy)
        let shard = copy + "/train/shard-00001.bin"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: shard)))
        bytes[bytes.count / 3] ^= 0x5A
        try Data(bytes).write(to: URL(fileURLWithPath: shard))
        let run = temporaryDirectory("stream-damaged-run").appendingPathComponent("run").path
        let outcome = try runContrast(ranks: ranks, arguments(run, ranks: ranks, steps: 20, ["data.path=\(copy)"]), timeout: 120)
        #expect(outcome.status != 0 && !outcome.timedOut)
        #expect(outcome.error.contains(shard) && !outcome.error.contains("Fatal error"), "\(outcome.error.suffix(1500))")
    }

    /// Peak memory is bounded: with the process's data limit (RLIMIT_DATA, `ulimit -d`) at 300 MB,
    /// a data set of 1.26 GB of decoded samples (Fashion-MNIST's 60,000 training images 27 times)
    /// trains streamed, and held in memory it cannot start. RLIMIT_DATA, not a cgroup: this
    /// machine mounts cgroup v1 (no memory.max), its memory hierarchy belongs to whatever runs the
    /// tests; and not RLIMIT_AS, which counts the address space OpenBLAS, oneDNN and the thread
    /// stacks reserve without using. RLIMIT_DATA counts the private writable memory a process maps
    /// (Linux 4.7 and later): heap and anonymous mmaps, what held samples would take.
    @Test func streamingTrainsADataSetFourTimesTheMemoryLimit() throws {
        let limitMB = 300, copies = 27
        let directory = temporaryDirectory("stream-big")
        defer { try? FileManager.default.removeItem(at: directory) }
        let images = try FashionMNIST.load(split: .train).images
        let count = images.count / 784 * copies
        #expect(count * 784 >= 4 * limitMB * 1_000_000)
        // .npy 1.0: the header padded with spaces to a multiple of 64 bytes, ending in a newline.
        var header = "{'descr': '|u1', 'fortran_order': False, 'shape': (\(count), 28, 28), }"
        header += String(repeating: " ", count: 63 - (10 + header.utf8.count) % 64) + "\n"
        let npy = directory.appendingPathComponent("x.npy").path
        FileManager.default.createFile(atPath: npy, contents: nil)
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: npy))
        file.write(Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count % 256), UInt8(header.utf8.count / 256)] + Array(header.utf8)))
        for _ in 0..<copies { file.write(Data(images)) }
        try file.close()
        let prepared = directory.appendingPathComponent("big").path
        let prepare = try runProcess(contrastExecutable, ["prepare", "npy", "--features", npy, "--out", prepared, "--shards", "8"], timeout: 600)
        #expect(prepare.status == 0, "\(prepare.error.suffix(1000))")
        try FileManager.default.removeItem(atPath: npy)

        func limited(_ hold: String) throws -> ProcessOutcome {
            let run = directory.appendingPathComponent("run-\(hold)").path
            let command = ([contrastExecutable.path, "train", "--config", "configs/smoke.yaml"] + [
                "run_dir=\(run)", "data.dataset=prepared", "data.path=\(prepared)", "data.train_limit=0", "data.hold=\(hold)",
                "data.batch_per_rank=64", "train.max_steps=4", "eval.knn_every_epochs=0", "train.blas_threads=1",
            ].flatMap { ["--set", $0] }).map { "'\($0)'" }.joined(separator: " ")
            // SIGKILL on a timeout: a process that cannot make a thread under the limit must not hang the test.
            return try runProcess(URL(fileURLWithPath: "/usr/bin/timeout"),
                                  ["-s", "KILL", "300", "/bin/sh", "-c", "ulimit -d \(limitMB * 1024) && exec \(command)"], timeout: 320)
        }
        let streamed = try limited("stream")
        #expect(streamed.status == 0, "\(streamed.error.suffix(1500))")
        #expect(streamed.output.contains("done: 4 steps") || streamed.error.contains("done: 4 steps"))
        let held = try limited("memory")
        #expect(held.status != 0, "held in memory, \(count * 784 / 1_000_000) MB of samples fit in \(limitMB) MB: the limit does not bite")
    }
}
