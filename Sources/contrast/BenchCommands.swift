import Bench
import Evaluation
import ArgumentParser
import Distributed
import Foundation
import Training

/// `contrast bench ...`: the benchmark suite (docs/benchmarks.md, "The benchmark suite").
/// Every subcommand prints a table, or with `--json` one JSON object per result carrying the
/// machine (CPU, cores, OpenBLAS, MPI), repeats, warm-up and the median.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Measure speed (figures for docs/benchmarks.md).",
        subcommands: [GEMM.self, Convolution.self, Kernels.self, Loss.self, Step.self, BenchAllReduce.self, BenchAllGather.self,
                      BenchCheckpoint.self, DataPipeline.self, Tokenizer.self])

    struct GEMM: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "gemm",
            abstract: "fp32 GEMM GFLOP/s at the model's shapes in OpenBLAS and oneDNN, and the Linear layers as a fraction of it.")
        @Option(help: "Timed repeats per measurement (median reported).") var repeats = 20
        @Option(help: "Warm-up repeats of the layers, not timed (each GEMM shape has one).") var warmup = 1
        @Option(help: "OpenBLAS threads.") var threads = 1
        @Flag(help: "One JSON object per result instead of the table.") var json = false
        @OptionGroup var options: ConfigOptions

        func run() throws {
            try reportingErrors {
                say(try Bench.gemmReport(config: try options.load(), repeats: repeats, warmup: warmup, threads: threads).rendered(json: json))
            }
        }
    }

    struct Convolution: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "conv",
            abstract: "Each convolution shape of the CNN and resnet18 encoders: im2col + GEMM against oneDNN's primitives (direct, and Winograd where it exists), per direction.",
            discussion: "cnn: configs/fmnist-simclr-cnn.yaml's encoder on 28x28x1, 512 views; resnet18: the preset on 32x32x3, 256 views.")
        @Option(help: ArgumentHelp("Workload to time: cnn or resnet18; repeat for both (default: both).", valueName: "name"))
        var workload: [String] = Bench.ConvolutionWorkload.allCases.map(\.rawValue)
        @Option(help: "Timed repeats per direction and implementation (median reported).") var repeats = 10
        @Option(help: "Warm-up calls, not timed.") var warmup = 2
        @Option(help: "OpenBLAS and oneDNN threads.") var threads = 1
        @Flag(help: "One JSON object per result instead of the table.") var json = false

        func validate() throws {
            if let bad = workload.first(where: { Bench.ConvolutionWorkload(rawValue: $0) == nil }) {
                throw ValidationError("--workload must be cnn or resnet18, got '\(bad)'")
            }
            if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
            if threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        }

        func run() throws {
            try reportingErrors {
                say(try Bench.convolutions(workloads: workload.compactMap(Bench.ConvolutionWorkload.init(rawValue:)), repeats: repeats,
                                           warmup: warmup, threads: threads).rendered(json: json))
            }
        }
    }

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "kernels",
            abstract: "Element-wise, normalisation and fp16/bf16 conversion kernels: GB/s against a memory copy of the same size.")
        @Option(help: ArgumentHelp("Floats per operand; repeat for several sizes (default: 32,768 in cache and 16,777,216 = 64 MB).",
                                   valueName: "n")) var elements: [Int] = [32_768, 16_777_216]
        @Option(help: "Timed repeats per kernel (median reported).") var repeats = 10
        @Option(help: "Warm-up calls, not timed.") var warmup = 2
        @Flag(help: "One JSON object per result instead of the table.") var json = false

        func validate() throws {
            if let bad = elements.first(where: { $0 < 1 }) { throw ValidationError("--elements must be at least 1, got \(bad)") }
            if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        }

        func run() throws {
            say(Bench.kernels(elements: elements, repeats: repeats, warmup: warmup).rendered(json: json))
        }
    }

    struct Loss: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "loss",
            abstract: "NT-Xent forward + backward, chunked and not: time, working memory, and a memory sweep over the global batch.")
        @Option(help: "Local anchors A (the views of one rank).") var anchors = 512
        @Option(help: ArgumentHelp("Global candidates N to time; repeat for several.", valueName: "N"))
        var candidates: [Int] = [512, 1024, 2048, 4096, 8192]
        @Option(help: ArgumentHelp("Global candidates N of the memory sweep; repeat for several.", valueName: "N"))
        var sweep: [Int] = [1024, 2048, 4096, 8192, 16_384]
        @Flag(help: "Skip the memory sweep.") var noSweep = false
        @Option(help: "Candidate columns per chunk for the chunked rows (loss.logit_chunk).") var chunk = 512
        @Option(help: "Embedding width D.") var dimension = 128
        @Option(help: "Softmax temperature.") var temperature: Float = 0.2
        @Option(help: "Timed repeats per case (median reported).") var repeats = 5
        @Option(help: "Warm-up calls, not timed.") var warmup = 1
        @Flag(help: "One JSON object per result instead of the table.") var json = false

        func validate() throws {
            if anchors < 2 || anchors % 2 != 0 { throw ValidationError("--anchors must be even and at least 2 (two views a sample), got \(anchors)") }
            if let bad = (candidates + (noSweep ? [] : sweep)).first(where: { $0 < anchors }) {
                throw ValidationError("every --candidates / --sweep value must be at least --anchors (\(anchors)), got \(bad)")
            }
            if chunk < 1 { throw ValidationError("--chunk must be at least 1, got \(chunk)") }
            if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        }

        func run() throws {
            say(Bench.loss(anchors: anchors, candidates: candidates, sweep: noSweep ? [] : sweep, chunk: chunk, dimension: dimension,
                                    temperature: temperature, repeats: repeats, warmup: warmup).rendered(json: json))
        }
    }

    struct Tokenizer: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "tokenizer",
            abstract: "WordPiece tokenizer throughput on one thread: MB/s of UTF-8 text encoded, every line of FILE a text, in batches of 256.",
            discussion: "benchmarks/tokenizer_vs_hf.sh runs it beside the tokenizers package on the same corpus and vocabulary.")
        @Option(help: ArgumentHelp("The vocab.txt to tokenize with.", valueName: "path")) var vocab: String
        @Flag(help: "Keep case (the default lower-cases and strips accents, as BertTokenizerFast's do_lower_case=True).") var cased = false
        @Option(help: "Timed passes over the corpus (median reported).") var repeats = 5
        @Option(help: "Warm-up passes, not timed.") var warmup = 1
        @Flag(help: "One JSON object instead of the table.") var json = false
        @Argument(help: ArgumentHelp("A UTF-8 text file, one text a line.", valueName: "FILE")) var corpus: String

        func validate() throws {
            if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        }

        func run() throws {
            try reportingErrors {
                say(try Bench.tokenizer(vocabulary: vocab, corpus: corpus, lowercase: !cased, repeats: repeats, warmup: warmup).rendered(json: json))
            }
        }
    }

    struct DataPipeline: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "data",
            abstract: "Data pipeline alone (read, decode, augment; one thread) against the step's consumption.",
            discussion: "--synthetic-images CxHxW (repeatable) measures the image views alone instead, on random images of each "
                + "shape: views/s on one thread (one data.prefetch thread) for the config's views section and for each step alone, "
                + "e.g. --synthetic-images 3x32x32 --synthetic-images 3x64x64 --set views.preset=simclr.")
        @Option(help: "Timed batches (median reported).") var repeats = 30
        @Option(help: "Warm-up batches, not timed.") var warmup = 3
        @Flag(help: "One JSON object per result instead of the table.") var json = false
        @Option(help: ArgumentHelp("Time the image views of random images of channels (1 or 3) x height x width, without a data set.",
                                   valueName: "CxHxW")) var syntheticImages: [String] = []
        @OptionGroup var options: ConfigOptions

        func run() throws {
            try reportingErrors {
                let shapes = try syntheticImages.map { text -> [Int] in
                    let parts = text.split(separator: "x", omittingEmptySubsequences: false)
                    let shape = parts.compactMap { Int($0) }
                    guard parts.count == 3 && shape.count == 3 && (shape[0] == 1 || shape[0] == 3) && shape[1] >= 1 && shape[2] >= 1 else {
                        throw ValidationError("--synthetic-images must be channels (1 or 3) x height x width, e.g. 3x32x32, got \(text)")
                    }
                    return shape
                }
                if shapes.isEmpty {
                    say(try Bench.data(config: try options.load(), repeats: repeats, warmup: warmup).rendered(json: json))
                } else {
                    say(try Bench.views(config: try options.load(), shapes: shapes, repeats: repeats, warmup: warmup).rendered(json: json))
                }
            }
        }
    }

    struct Step: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "step",
            abstract: "Training step time and its split, its GEMM account, memory account and hidden communication.",
            discussion: "--ranks N starts N ranks through mpirun (or run it under mpirun / srun yourself). With --json, one JSON object. "
                + "--synthetic-images CxHxW steps on one fixed batch of random images of that shape instead of the config's data set "
                + "(e.g. 3x32x32 for resnet or vit, whose data sets do not hold 3-channel images yet; SimCLR only). "
                + "--synthetic-text steps the text encoder (model.encoder bert) on one fixed batch of random token ids, every one of "
                + "model.bert.max_length positions a real token, with the config's loss (views: the anchors then the positives); "
                + "benchmarks/bert_step_vs_torch.sh sets it beside PyTorch.")
        @Option(help: "Timed steps (median reported).") var repeats = 30
        @Option(help: "Warm-up steps, not timed.") var warmup = 5
        @Option(help: "Ranks to start through mpirun when not already under a launcher.") var ranks = 1
        @Flag(help: "With --ranks: TCP between ranks instead of shared memory.") var tcp = false
        @Flag(help: "Print one JSON object instead of the table.") var json = false
        @Option(help: ArgumentHelp("Step on random images of channels x height x width instead of the config's data set (no augmentation).",
                                   valueName: "CxHxW")) var syntheticImages: String?
        @Flag(help: "Step the text encoder on random token ids instead of the config's data set (model.encoder bert).")
        var syntheticText = false
        @OptionGroup var options: ConfigOptions

        /// --synthetic-images as [channels, height, width].
        var syntheticShape: [Int]? {
            get throws {
                guard let syntheticImages else { return nil }
                let shape = syntheticImages.split(separator: "x", omittingEmptySubsequences: false).compactMap { Int($0) }
                guard shape.count == 3 && syntheticImages.split(separator: "x", omittingEmptySubsequences: false).count == 3
                      && shape.allSatisfy({ $0 >= 1 }) else {
                    throw ValidationError("--synthetic-images must be channels x height x width of positive numbers, e.g. 3x32x32, got \(syntheticImages)")
                }
                return shape
            }
        }

        func run() throws {
            // Checked before any rank starts: one line, once, exit 1 (reportingErrors), not the usage text.
            var synthetic: [Int]?
            try reportingErrors {
                synthetic = try syntheticShape
                if syntheticText && synthetic != nil { throw ValidationError("give --synthetic-images or --synthetic-text, not both") }
            }
            try runOnRanks(relaunchingAs: ranks, tcp: tcp) { communicator in
                let (_, out) = try Bench.step(config: try options.load(), communicator: communicator,
                                                       repeats: repeats, warmup: warmup, syntheticImages: synthetic,
                                                       syntheticText: syntheticText)
                if communicator.rank == 0 { say(out.rendered(json: json)) }
            }
        }
    }
}

/// Options of the two collective benchmarks.
struct CollectiveOptions: ParsableArguments {
    @Option(help: "Largest size of the sweep in bytes (sizes 4 KB, 16 KB, ... up to it).") var maxBytes = 64 << 20
    @Option(help: "Timed repeats per size and format (median reported).") var repeats = 20
    @Option(help: "Warm-up repeats, not timed.") var warmup = 3
    @Option(help: "Ranks to start through mpirun when not already under a launcher.") var ranks = 1
    @Flag(help: "With --ranks: TCP between ranks instead of shared memory.") var tcp = false
    @Flag(help: "One JSON object per result instead of the table.") var json = false

    func validate() throws {
        if maxBytes < 4096 { throw ValidationError("--max-bytes must be at least 4096, got \(maxBytes)") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    }
}

/// `contrast bench allreduce`: the gradient all-reduce alone, per wire precision; by default at
/// the benchmark model's gradient count, with `--sweep` at 4 KB ... 64 MB.
struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "allreduce",
        abstract: "All-reduce time, algorithm and bus bandwidth for fp32, bf16 and fp16 on the wire (under mpirun, or --ranks N).")
    @Option(help: "Values to reduce without --sweep (default: the benchmark model's gradient count).") var count = 2_214_528
    @Flag(help: "Sweep the buffer size from 4 KB to --max-bytes instead of --count values.") var sweep = false
    @OptionGroup var options: CollectiveOptions

    func validate() throws {
        if count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
    }

    func run() throws {
        try runOnRanks(relaunchingAs: options.ranks, tcp: options.tcp) { communicator in
            let out = try Bench.collective(.allReduce, communicator: communicator,
                                                    sizes: sweep ? Bench.collectiveSizes(maxBytes: options.maxBytes) : [count * 4],
                                                    sameValues: !sweep, repeats: options.repeats, warmup: options.warmup)
            if communicator.isRoot { say(out.rendered(json: options.json)) }
        }
    }
}

/// `contrast bench allgather`: the embeddings' all-gather alone, 4 KB ... 64 MB of output.
struct BenchAllGather: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "allgather",
        abstract: "All-gather time, algorithm and bus bandwidth for fp32 and 16-bit values, 4 KB to 64 MB (under mpirun, or --ranks N).")
    @OptionGroup var options: CollectiveOptions

    func run() throws {
        try runOnRanks(relaunchingAs: options.ranks, tcp: options.tcp) { communicator in
            let out = try Bench.collective(.allGather, communicator: communicator,
                                                    sizes: Bench.collectiveSizes(maxBytes: options.maxBytes),
                                                    repeats: options.repeats, warmup: options.warmup)
            if communicator.isRoot { say(out.rendered(json: options.json)) }
        }
    }
}

/// `contrast bench checkpoint [--ranks N]`.
struct BenchCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "checkpoint",
        abstract: "Save and load time of the full training state, and zstd compression with and without byte shuffling.")
    @Option(help: "Timed saves and loads per setting (median reported).") var repeats = 5
    @Option(help: "Warm-up saves and loads per setting, not timed.") var warmup = 1
    @Option(help: "Ranks to start through mpirun when not already under a launcher.") var ranks = 1
    @Flag(help: "One JSON object per result instead of the table.") var json = false
    @OptionGroup var options: ConfigOptions

    func run() throws {
        try runOnRanks(relaunchingAs: ranks) { communicator in
            let out = try Bench.checkpoint(config: try options.load(), communicator: communicator, repeats: repeats, warmup: warmup)
            if communicator.rank == 0 { say(out.rendered(json: json)) }
        }
    }
}
