import Data
import Foundation
import TestSupport
import Config
import RunFiles
import Evaluation
import Testing

/// The `contrast` executable as a user meets it: a mistake gives one line on standard error
/// naming the problem, and exit status 1; never a stack trace.
@Suite(.serialized) struct CLITests {
    typealias Outcome = ProcessOutcome

    func run(_ arguments: [String]) throws -> Outcome { try runProcess(contrastExecutable, arguments, timeout: 120) }

    func expectOneLineError(_ outcome: Outcome, mentioning words: [String]) {
        #expect(outcome.status == 1)
        let lines = outcome.error.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(outcome.error)")
        for word in words { #expect(outcome.error.contains(word), "\(outcome.error) should mention \(word)") }
    }

    /// CONTRAST_KERNELS_ISA caps the C kernels (a cap above the CPU is the CPU) and `bench
    /// kernels` names the ones that ran; a value that names no instruction set is one line.
    @Test func kernelInstructionSetCap() throws {
        func reported(_ cap: String) throws -> String {
            let outcome = try runProcess(contrastExecutable, ["bench", "kernels", "--elements", "64", "--repeats", "1", "--warmup", "0"],
                                         environment: ["CONTRAST_KERNELS_ISA": cap], timeout: 120)
            #expect(outcome.status == 0, "\(outcome.error)")
            // "memory-bound kernels, one thread, kernels avx2; GB/s = ..."
            let words = outcome.output.split(whereSeparator: { $0 == " " || $0 == ";" || $0 == "\n" })
            return words.firstIndex(of: "kernels").map { String(words[words.index(after: $0)]) } ?? "none"
        }
        let best = try reported("")       // empty is unset: the CPU's best
        #expect(["avx512", "avx2", "sse2"].contains(best))
        #expect(try reported("portable") == "sse2")
        #expect(try reported("avx2") == (best == "sse2" ? "sse2" : "avx2"))
        #expect(try reported("AVX512") == best)
        expectOneLineError(try runProcess(contrastExecutable, ["bench", "kernels"], environment: ["CONTRAST_KERNELS_ISA": "avx-2"]),
                           mentioning: ["CONTRAST_KERNELS_ISA", "avx-2", "portable"])
    }

    @Test func missingConfigFile() throws {
        expectOneLineError(try run(["train", "--config", "configs/no-such.yaml"]), mentioning: ["configs/no-such.yaml", "not found"])
    }

    @Test func wrongTypeInOverride() throws {
        expectOneLineError(try run(["train", "--set", "optimizer.lr=fast"]), mentioning: ["optimizer.lr", "fast"])
    }

    @Test func unknownKey() throws {
        expectOneLineError(try run(["train", "--set", "optimiser.lr=0.1"]), mentioning: ["optimiser"])
    }

    @Test func missingDataSet() throws {
        let runDirectory = temporaryDirectory("cli").appendingPathComponent("run").path
        let outcome = try run(["train", "--config", "configs/smoke.yaml", "--set", "run_dir=\(runDirectory)",
                               "--set", "data.path=/nonexistent/fmnist"])
        expectOneLineError(outcome, mentioning: ["/nonexistent/fmnist"])
        #expect(!FileManager.default.fileExists(atPath: runDirectory), "a failed start must leave no run directory behind")
    }

    @Test func evalOfSomethingThatIsNotARun() throws {
        expectOneLineError(try run(["eval", "knn", "--run", "/nonexistent/run"]), mentioning: ["/nonexistent/run", "does not exist", "run directory"])
    }

    @Test func pixelBaselinePrintsAnAccuracy() throws {
        let outcome = try run(["eval", "knn", "--baseline", "pixels", "--set", "data.train_limit=2000", "--set", "data.test_limit=300"])
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output.contains("kNN accuracy:"))
    }

    @Test func prepareWritesAShardedDataSetThatVerifies() throws {
        let out = temporaryDirectory("prepare").appendingPathComponent("fmnist").path
        let outcome = try run(["prepare", "fashion-mnist", "--out", out, "--shard-size", "4000", "--limit", "9000"])
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(FileManager.default.fileExists(atPath: out + "/train/dataset.json"))
        #expect(FileManager.default.fileExists(atPath: out + "/train/shard-00002.bin"))
        #expect(outcome.output.contains("verified"))
    }

    @Test func prepareCutsSixtyFourShardsByDefault() throws {
        let out = temporaryDirectory("prepare-count").appendingPathComponent("fmnist").path
        let outcome = try run(["prepare", "fashion-mnist", "--out", out, "--limit", "300"])
        #expect(outcome.status == 0, "\(outcome.error)")
        let manifest = try ShardedDataset(directory: out + "/train").manifest
        #expect(manifest.shards.count == 64 && Set(manifest.shards.map(\.sampleCount)) == [4, 5])
        #expect(manifest.shards[1].firstSample == 300 / 64)
    }

    @Test func prepareRejectsShardsWithShardSize() throws {
        let out = temporaryDirectory("prepare-conflict").appendingPathComponent("fmnist").path
        let outcome = try run(["prepare", "fashion-mnist", "--out", out, "--limit", "300", "--shards", "3", "--shard-size", "100"])
        #expect(outcome.status != 0)
        #expect(outcome.error.contains("--shards") && outcome.error.contains("--shard-size"), "\(outcome.error)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test func prepareRejectsMoreShardsThanSamples() throws {
        let out = temporaryDirectory("prepare-many").appendingPathComponent("fmnist").path
        expectOneLineError(try run(["prepare", "fashion-mnist", "--out", out, "--limit", "30"]), mentioning: ["30 samples", "64 shards", "--shards 30"])
        #expect(!FileManager.default.fileExists(atPath: out + "/train/dataset.json"))
    }

    @Test func preparedPairsAreDeterministicAndPerSample() throws {
        func pairs(_ name: String) throws -> (ShardedDataset, [Float]) {
            let out = temporaryDirectory("prepare-pairs").appendingPathComponent(name).path
            let outcome = try run(["prepare", "fashion-mnist", "--out", out, "--limit", "300", "--shards", "4",
                                   "--pairs", "projection", "--pair-width", "24", "--pair-seed", "5"])
            #expect(outcome.status == 0, "\(outcome.error)")
            let dataset = try ShardedDataset(directory: out + "/test")
            return (dataset, try (0..<dataset.shardCount).flatMap { try dataset.readShard($0).pairs ?? [] })
        }
        let (dataset, first) = try pairs("a")
        let (_, second) = try pairs("b")
        #expect(dataset.manifest.pairs == FieldLayout(dtype: .float32, shape: [24]) && dataset.sampleCount == 300)
        #expect(first.count == 300 * 24 && first.map(\.bitPattern) == second.map(\.bitPattern))
        let rows: [[UInt32]] = (0..<300).map { (sample: Int) -> [UInt32] in first[(sample * 24)..<(sample * 24 + 24)].map(\.bitPattern) }
        #expect(Set(rows).count == 300, "two samples share a pair")
    }

    @Test func prepareOfAMissingArrayNamesIt() throws {
        let out = temporaryDirectory("prepare-npy").appendingPathComponent("set").path
        expectOneLineError(try run(["prepare", "npy", "--features", "/nonexistent/x.npy", "--out", out]), mentioning: ["/nonexistent/x.npy"])
        #expect(!FileManager.default.fileExists(atPath: out + "/dataset.json"))
    }
}
