import TestSupport
import Testing
@testable import NN
@testable import Tensor

/// Conv2d's oneDNN path (`ConvolutionBackend.onednn`: blocked direct kernels, reorders from and to
/// NCHW) against its im2col + GEMM path, the oracle: forward, backward-data and backward-weights
/// agree to fp32 rounding on odd shapes; finite differences hold; results are bitwise the same in
/// fresh layers and after other convolutions dirtied the shared blocked buffers; the backend rule is
/// a function of the shape alone.
@Suite struct OneDNNConvolutionTests {
    struct Case: CustomStringConvertible, Sendable {
        var batch: Int, c: Int, o: Int, h: Int, w: Int, k: Int, stride: Int, padding: Int, bias: Bool
        var description: String { "B\(batch) \(c)->\(o) \(k)x\(k)/\(stride) pad \(padding) @\(h)x\(w)\(bias ? " +b" : "")" }
    }

    static let cases: [Case] = [
        Case(batch: 3, c: 1, o: 4, h: 7, w: 5, k: 3, stride: 2, padding: 1, bias: true),     // 1 channel, stride 2, padding
        Case(batch: 2, c: 3, o: 5, h: 9, w: 7, k: 3, stride: 1, padding: 1, bias: false),    // 3 channels
        Case(batch: 2, c: 3, o: 8, h: 11, w: 13, k: 7, stride: 2, padding: 3, bias: false),  // the 7x7 stem, odd sizes
        Case(batch: 2, c: 16, o: 8, h: 7, w: 6, k: 1, stride: 2, padding: 0, bias: true),    // 1x1 projection
        Case(batch: 2, c: 16, o: 16, h: 7, w: 7, k: 3, stride: 1, padding: 1, bias: false),  // what the rule sends to oneDNN
        Case(batch: 3, c: 5, o: 6, h: 8, w: 9, k: 3, stride: 2, padding: 0, bias: true),     // a partial last window dropped
        Case(batch: 1, c: 20, o: 3, h: 3, w: 3, k: 3, stride: 2, padding: 1, bias: true),    // output 2x2, C not a multiple of 8
    ]

    func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int, stream: UInt64) {
        var rng = RandomStream(seed: 23, stream: stream)
        for i in 0..<n { p[i] = rng.nextUniform(-1, 1) }
    }

    /// A layer of `shape` with PyTorch's initial draws (the same for every call) on `backends`.
    func layer(_ s: Case, _ backends: ConvolutionBackends) -> (Conv2d, ParameterArena) {
        let arena = ParameterArena()
        let conv = Conv2d(inChannels: s.c, outChannels: s.o, kernel: s.k, stride: s.stride, padding: s.padding,
                          height: s.h, width: s.w, bias: s.bias, name: "conv", arena: arena)
        arena.seal()
        conv.initialise(seed: 9, stream: 0)
        conv.backends = backends
        return (conv, arena)
    }

    /// y, dx, dW, db of one forward and backward on fixed x and dy (gradients added onto 0.5 / -0.25).
    func run(_ s: Case, _ backends: ConvolutionBackends, inputGradient: Bool = true)
        -> (y: [Float], dx: [Float], dw: [Float], db: [Float], oneDNNBatches: [Int]) {
        let (conv, arena) = layer(s, backends)
        conv.computesInputGradient = inputGradient
        let x = Tensor(zeros: [s.batch * conv.inputWidth]), dy = Tensor(zeros: [s.batch * conv.outputWidth])
        fill(x.data, x.count, stream: 1)
        fill(dy.data, dy.count, stream: 2)
        for i in 0..<conv.weight.count { arena.gradients(conv.weight)[i] = 0.5 }
        if let b = conv.bias { for i in 0..<s.o { arena.gradients(b)[i] = -0.25 } }
        let y = Array(UnsafeBufferPointer(start: conv.forward(x.data, batch: s.batch), count: dy.count))
        let dx = conv.backward(dy.data, batch: s.batch).map { Array(UnsafeBufferPointer(start: $0, count: x.count)) } ?? []
        let dw = Array(UnsafeBufferPointer(start: arena.gradients(conv.weight), count: conv.weight.count))
        let db = conv.bias.map { Array(UnsafeBufferPointer(start: arena.gradients($0), count: s.o)) } ?? []
        return (y, dx, dw, db, conv.oneDNNBatches)
    }

    /// max |a - b| / max |b|: fp32 rounding of sums of C K K (or B P Q) products is ~1e-6 of the largest values.
    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        #expect(a.count == b.count)
        let scale = max(b.map(abs).max() ?? 0, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }

    @Test(arguments: cases) func everyDirectionEqualsIm2colToRounding(_ s: Case) {
        let oracle = run(s, .im2col), fast = run(s, .onednn)
        #expect(relativeError(fast.y, oracle.y) < 2e-6, "\(s) forward: \(relativeError(fast.y, oracle.y))")
        #expect(relativeError(fast.dx, oracle.dx) < 2e-6, "\(s) backward-data: \(relativeError(fast.dx, oracle.dx))")
        #expect(relativeError(fast.dw, oracle.dw) < 2e-6, "\(s) backward-weights: \(relativeError(fast.dw, oracle.dw))")
        #expect(relativeError(fast.db, oracle.db) < 2e-6, "\(s) bias gradient: \(relativeError(fast.db, oracle.db))")
        // The oneDNN path really ran (and the oracle's did not touch oneDNN).
        #expect(fast.oneDNNBatches == [s.batch] && oracle.oneDNNBatches.isEmpty)
    }

    /// `bench step`'s GEMM account sees a oneDNN convolution as the im2col GEMMs it replaces: the same calls
    /// (per image group, each direction) as the im2col path records, so step / GEMM keeps the convolutions' FLOPs.
    @Test(arguments: cases) func oneDNNNotesTheGEMMsItReplaces(_ s: Case) {
        func recorded(_ backends: ConvolutionBackends) -> [String] {
            GEMMRecording.record { _ = run(s, backends) }.calls.map(\.description).sorted()
        }
        let oracle = recorded(.im2col)
        #expect(!oracle.isEmpty)
        #expect(recorded(.onednn) == oracle, "\(s)")
    }

    /// Directions split between the backends (as the rule splits the 7x7 stem and the wide layers), and a
    /// first layer without dx: each direction still equals the oracle's.
    @Test func mixedBackendsAndNoInputGradient() {
        let s = Self.cases[2]
        let oracle = run(s, .im2col)
        for backends in [ConvolutionBackends(forward: .onednn, backwardData: .im2col, backwardWeights: .onednn),
                         ConvolutionBackends(forward: .im2col, backwardData: .onednn, backwardWeights: .im2col)] {
            let mixed = run(s, backends)
            #expect(relativeError(mixed.y, oracle.y) < 2e-6 && relativeError(mixed.dx, oracle.dx) < 2e-6
                    && relativeError(mixed.dw, oracle.dw) < 2e-6, "\(backends)")
        }
        let withoutDX = run(s, .onednn, inputGradient: false)
        #expect(withoutDX.dx.isEmpty)
        #expect(relativeError(withoutDX.dw, oracle.dw) < 2e-6)
    }

    @Test func finiteDifferences() {
        for s in [Self.cases[0], Self.cases[2], Self.cases[3], Self.cases[5]] {
            let (conv, arena) = layer(Case(batch: 2, c: s.c, o: s.o, h: s.h, w: s.w, k: s.k, stride: s.stride, padding: s.padding, bias: s.bias), .onednn)
            ConvLayerTests().check(conv, arena: arena, batch: 2)
        }
    }

    /// Fresh layers (new primitives) give the same bits, and so does the first layer again after a convolution
    /// of another shape wrote other values into the shared blocked buffers: nothing is read that the call did
    /// not write. Single-threaded oneDNN sums in a fixed order.
    @Test func bitwiseReproducible() {
        let s = Self.cases[4]
        let first = run(s, .onednn)
        _ = run(Self.cases[2], .onednn)
        let second = run(s, .onednn)
        #expect(first.y.map(\.bitPattern) == second.y.map(\.bitPattern))
        #expect(first.dx.map(\.bitPattern) == second.dx.map(\.bitPattern))
        #expect(first.dw.map(\.bitPattern) == second.dw.map(\.bitPattern))
    }

    /// One primitive set per batch size, made on its first call and kept (no allocation in later steps).
    @Test func primitivesAreMadeOncePerBatchSize() {
        let (conv, _) = layer(Self.cases[4], .onednn)
        let made = conv.convolution(batch: 2)
        #expect(conv.convolution(batch: 2) === made)
        #expect(conv.convolution(batch: 3) !== made)
        #expect(made.implementation(.forward).hasPrefix("jit"), "\(made.implementation(.forward))")
    }

    /// The rule depends on the shape only: the CNN of configs/fmnist-simclr-cnn.yaml gets the same backends in
    /// every build, its 3x3 layers on oneDNN, the 1-channel stem and the 1x1 projections on im2col; bf16 compute
    /// runs im2col.
    @Test func backendsFollowTheShapeRule() {
        func chosen(_ c: Int, _ o: Int, _ k: Int, _ stride: Int) -> ConvolutionBackends {
            ConvolutionBackends.chosen(inChannels: c, outChannels: o, kernel: k, stride: stride, padding: k / 2, height: 28, width: 28)
        }
        #expect(chosen(1, 16, 3, 1) == .im2col)
        #expect(chosen(16, 16, 3, 1) == .onednn && chosen(64, 64, 3, 1) == .onednn && chosen(128, 256, 3, 2) == .onednn)
        #expect(chosen(16, 32, 1, 2) == .im2col)
        #expect(chosen(256, 256, 3, 1) == ConvolutionBackends(forward: .onednn, backwardData: .onednn, backwardWeights: .im2col))
        #expect(chosen(3, 64, 7, 2) == ConvolutionBackends(forward: .onednn, backwardData: .im2col, backwardWeights: .onednn))
        let arena = ParameterArena()
        let encoder = CNN.make(channels: [16, 32, 64], inputHeight: 28, inputWidth: 28, representation: 0, poolCells: 3, poolStages: 2,
                               name: "encoder", arena: arena)
        let convolutions = allConvolutions(in: encoder)
        #expect(convolutions.count == 9)
        #expect(convolutions.filter { $0.backends == .onednn }.count == 6)
        #expect(convolutions.filter { $0.backends == .im2col }.map { "\($0.inChannels)x\($0.kernel)" } == ["1x3", "16x1", "32x1"])
        convolutions[1].computePrecision = .bf16
        #expect(convolutions[1].backends == .im2col)
    }

    /// `OneDNNConvolution(algorithm: .winograd)` (what `bench conv`'s winograd column times): where oneDNN
    /// has Winograd (fp32 on avx512_core) every direction equals im2col to the 1e-5 of the largest value
    /// `bench conv` measured it within; elsewhere creating it fails as unimplemented, so the column reads '-'.
    @Test func winogradEqualsIm2colWhereOneDNNHasIt() throws {
        let s = Case(batch: 2, c: 32, o: 32, h: 6, w: 5, k: 3, stride: 1, padding: 1, bias: true)
        let oracle = run(s, .im2col)
        let shape = OneDNNConvolution.Shape(batch: s.batch, inChannels: s.c, outChannels: s.o, height: s.h, width: s.w,
                                            kernel: s.k, stride: s.stride, padding: s.padding, bias: s.bias)
        let direct = try OneDNNConvolution(shape, layout: .blocked)
        guard direct.implementation(.forward).contains("avx512") else {
            #expect(throws: OneDNNFailure.self) { try OneDNNConvolution(shape, layout: .blocked, algorithm: .winograd) }
            return
        }
        let winograd = try OneDNNConvolution(shape, layout: .blocked, algorithm: .winograd)
        #expect(OneDNNConvolution.Direction.allCases.allSatisfy { winograd.implementation($0).contains("wino") })
        let (conv, arena) = layer(s, .im2col)
        let x = Tensor(zeros: [s.batch * conv.inputWidth]), dy = Tensor(zeros: [s.batch * conv.outputWidth])
        fill(x.data, x.count, stream: 1)
        fill(dy.data, dy.count, stream: 2)
        let y = Tensor(zeros: [dy.count]), dx = Tensor(zeros: [x.count])
        let dw = Tensor(shape: [conv.weight.count], repeating: 0.5), db = Tensor(shape: [s.o], repeating: -0.25)
        winograd.forward(output: y.data, input: x.data, weight: arena.parameters(conv.weight), bias: arena.parameters(conv.bias!))
        winograd.backward(inputGradient: dx.data, weightGradient: dw.data, biasGradient: db.data, outputGradient: dy.data,
                          input: x.data, weight: arena.parameters(conv.weight))
        func array(_ t: Tensor) -> [Float] { Array(UnsafeBufferPointer(start: t.data, count: t.count)) }
        #expect(relativeError(array(y), oracle.y) < 1e-5, "forward: \(relativeError(array(y), oracle.y))")
        #expect(relativeError(array(dx), oracle.dx) < 1e-5, "backward-data: \(relativeError(array(dx), oracle.dx))")
        #expect(relativeError(array(dw), oracle.dw) < 1e-5, "backward-weights: \(relativeError(array(dw), oracle.dw))")
        #expect(relativeError(array(db), oracle.db) < 1e-5, "bias gradient: \(relativeError(array(db), oracle.db))")
    }
}

/// Every Conv2d of `layer`, in order, through sequences, residual blocks (their projections too) and multi-scale pools.
func allConvolutions(in layer: Layer) -> [Conv2d] {
    switch layer {
    case let conv as Conv2d: [conv]
    case let sequence as Sequential: sequence.layers.flatMap { allConvolutions(in: $0) }
    case let block as ResidualBlock: allConvolutions(in: block.main) + (block.projection.map { allConvolutions(in: $0) } ?? [])
    case let multiScale as MultiScalePool: allConvolutions(in: multiScale.stage) + allConvolutions(in: multiScale.inner)
    default: []
    }
}
