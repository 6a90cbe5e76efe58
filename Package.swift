// swift-tools-version:6.0
import PackageDescription

// Layers (dependencies point down only):
//   contrast (CLI) -> Training -> Checkpoint, Data -> Distributed -> Contrastive -> NN -> Tensor -> C modules
let package = Package(
    name: "contrast",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Contrast", targets: ["Tensor", "NN", "Contrastive", "Distributed", "Data", "Checkpoint", "Training"]),
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
        // oneDNN (Debian: libdnnl-dev) for bf16 GEMMs on AVX-512 BF16; it ships no pkg-config file: the
        // header is on the default include path, the module map links dnnl and its OpenMP runtime (gomp).
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // Hot element-wise kernels in C: per-function target attributes with runtime dispatch (F16C, AVX2, AVX-512).
        .target(name: "CKernels", cSettings: [.define("NDEBUG")]),

        .target(name: "Tensor", dependencies: ["CBLAS", "CKernels", "CDNNL"]),
        .target(name: "NN", dependencies: ["Tensor"]),
        .target(name: "Contrastive", dependencies: ["Tensor"]),
        .target(name: "Distributed", dependencies: ["CMPI", "Tensor"]),
        .target(name: "Data", dependencies: ["CZlib", "CZstd", "Tensor"]),
        .target(name: "Checkpoint", dependencies: ["CZstd", "CZlib", "Tensor", "Distributed"]),
        .target(name: "Training", dependencies: [
            "Tensor", "NN", "Contrastive", "Distributed", "Data", "Checkpoint",
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "contrast", dependencies: [
            "Training", "Tensor", "NN", "Contrastive", "Data", "Checkpoint", "Distributed",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Fuzz targets over the readers of untrusted files; contrast-fuzz replays corpora, or is a
        // libFuzzer binary when launch/fuzz.sh builds it (-DFUZZING, libFuzzer linked).
        .target(name: "FuzzTargets", dependencies: ["Checkpoint", "Data", "Training", "Distributed", "CZlib"]),
        .systemLibrary(name: "CFuzzer"),
        .executableTarget(name: "contrast-fuzz", dependencies: ["FuzzTargets", "CFuzzer"]),

        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CKernels", "CBLAS"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Tensor"]),
        .testTarget(name: "ContrastiveTests", dependencies: ["Contrastive", "Tensor"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "CMPI"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Tensor"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Tensor", "Distributed"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets", "Checkpoint", "Data", "Training"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "NN", "Tensor", "Data", "Contrastive", "Checkpoint"]),
    ]
)
