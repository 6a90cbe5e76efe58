// swift-tools-version:6.0
import PackageDescription

// Layers (dependencies point down only; docs/architecture.md draws the graph):
//   contrast (CLI)   argument parsing
//   Bench            speed figures, collective and reducer self-checks
//   Training         the trainer loop, the step, objectives, training data and checkpoints
//   Evaluation       kNN, linear probe, PCA, CKA, retrieval; trained models, weights, export
//   Config  RunFiles the config document | run log, metrics, TensorBoard, tail, report
//   Checkpoint Data Text  sharded checkpoints | data sets, readers, sampler, views | WordPiece tokenizer, vocabularies
//   Storage          atomic files, zstd frames, crc32, byte shuffle, JSON text (for Checkpoint, Data, RunFiles)
//   Distributed      communicators, gradient reducer, watchdog
//   Contrastive NN   losses | layers, models, arena, optimizers
//   Tensor           storage, GEMM, kernels, RNG
//   C modules
let package = Package(
    name: "contrast",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Contrast", targets: ["Tensor", "NN", "Contrastive", "Distributed", "Storage", "Data", "Text", "Checkpoint", "Config", "RunFiles", "Evaluation", "Training", "Bench"]),
        .executable(name: "contrast", targets: ["contrast"]),
        .executable(name: "contrast-fuzz", targets: ["contrast-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libopenmpi-dev, libopenblas-dev, libzstd-dev, zlib1g-dev).
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Image decoding for `contrast prepare images` (Debian: libjpeg62-turbo-dev, libpng-dev), and the C
        // wrappers that turn the libraries' error callbacks (exit / longjmp) into error returns.
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .target(name: "CImageCodecs", dependencies: ["CJPEG", "CPNG"]),
        // oneDNN (Debian: libdnnl-dev) for bf16 GEMMs on AVX-512 BF16; it ships no pkg-config file: the
        // header is on the default include path, the module map links dnnl and its OpenMP runtime (gomp).
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // Hot element-wise kernels in C: per-function target attributes with runtime dispatch (F16C, AVX2, AVX-512).
        .target(name: "CKernels", cSettings: [.define("NDEBUG")]),

        .target(name: "Tensor", dependencies: ["CBLAS", "CKernels", "CDNNL"]),
        .target(name: "NN", dependencies: ["Tensor"]),
        .target(name: "Contrastive", dependencies: ["Tensor"]),
        .target(name: "Distributed", dependencies: ["CMPI", "Tensor"]),
        .target(name: "Storage", dependencies: ["CZstd", "CZlib"]),
        .target(name: "Data", dependencies: ["CZlib", "CImageCodecs", "Storage", "Tensor"]),
        .target(name: "Text", dependencies: ["Storage"]),
        .target(name: "Checkpoint", dependencies: ["Storage", "Distributed"]),
        .target(name: "Config", dependencies: [.product(name: "Yams", package: "Yams")]),
        .target(name: "RunFiles", dependencies: ["Tensor", "Storage", "Config", .product(name: "Yams", package: "Yams")]),
        .target(name: "Evaluation", dependencies: ["Tensor", "NN", "Distributed", "Storage", "Data", "Text", "Checkpoint", "Config", "RunFiles"]),
        .target(name: "Training", dependencies: [
            "Tensor", "NN", "Contrastive", "Distributed", "Storage", "Data", "Checkpoint", "Config", "RunFiles", "Evaluation",
        ]),
        .target(name: "Bench", dependencies: ["Tensor", "NN", "Contrastive", "Distributed", "Data", "Text", "Checkpoint", "Config", "RunFiles", "Evaluation", "Training"]),
        .executableTarget(name: "contrast", dependencies: [
            "Bench", "Training", "Evaluation", "RunFiles", "Config", "Tensor", "NN", "Contrastive", "Storage", "Data", "Text", "Checkpoint", "Distributed",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Fuzz targets over the readers of untrusted files; contrast-fuzz replays corpora, or is a
        // libFuzzer binary when launch/fuzz.sh builds it (-DFUZZING, libFuzzer linked).
        .target(name: "FuzzTargets", dependencies: ["Checkpoint", "Data", "Config", "Evaluation", "Training", "Distributed", "CZlib"]),
        .systemLibrary(name: "CFuzzer"),
        .executableTarget(name: "contrast-fuzz", dependencies: ["FuzzTargets", "CFuzzer"]),

        // Helpers every test target shares (temporary folders, running `contrast`, finite differences).
        .target(name: "TestSupport", dependencies: ["Tensor", "NN", "Config", "RunFiles", "Evaluation", "Training"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CKernels", "CBLAS", "TestSupport"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Tensor", "TestSupport"]),
        .testTarget(name: "ContrastiveTests", dependencies: ["Contrastive", "Tensor", "TestSupport"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "CMPI", "TestSupport"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "CZstd"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Storage", "Tensor", "TestSupport"]),
        .testTarget(name: "TextTests", dependencies: ["Text", "TestSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Storage", "Tensor", "Distributed", "TestSupport"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "TestSupport"]),
        .testTarget(name: "RunFilesTests", dependencies: ["RunFiles", "Config", "TestSupport"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Config", "NN", "Data", "Tensor", "TestSupport"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets", "Checkpoint", "Data", "Config", "Training", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Config", "RunFiles", "Evaluation", "NN", "Tensor", "Data", "Contrastive", "Checkpoint", "TestSupport"]),
        .testTarget(name: "BenchTests", dependencies: ["Bench", "Training", "Config", "TestSupport"]),
    ]
)
