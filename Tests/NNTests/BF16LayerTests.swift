import Testing
@testable import NN
@testable import Tensor

/// Linear and Conv2d with bf16 GEMMs against the same layers in fp32 (whose backward the
/// finite-difference tests check). Element (i, j) of a GEMM rounds both of its inputs to bf16
/// (relative 2^-9 each) and accumulates in fp32, so it is off by at most 2^-8 sum_p |a_ip| |b_pj|.
@Suite(.enabled(if: OneDNNGEMM.unavailableReason == nil, "needs AVX-512 (avx512_core): oneDNN has no bf16 matmul on this CPU"))
struct BF16LayerTests {
    func fill(_ p: UnsafeMutablePointer<Float>, _ n: Int, stream: UInt64) {
        var rng = RandomStream(seed: 21, stream: stream)
        for i in 0..<n { p[i] = rng.nextUniform(-1, 1) }
    }

    /// Two copies of a layer over arenas with the same parameters: fp32 and bf16.
    func pair<L: Layer>(_ make: (ParameterArena) -> L, initialise: (L) -> Void) -> (L, ParameterArena, L, ParameterArena) {
        let fp32Arena = ParameterArena(), bf16Arena = ParameterArena()
        let fp32 = make(fp32Arena), bf16 = make(bf16Arena)
        fp32Arena.seal()
        bf16Arena.seal()
        initialise(fp32)
        initialise(bf16)
        return (fp32, fp32Arena, bf16, bf16Arena)
    }

    /// y = x W^T + b (identity, so the bound is exact), dW += dy^T x, dx = dy W; B = 33, I = 45, O = 27.
    @Test func linearStaysWithinTheRoundingBound() {
        let b = 33, i = 45, o = 27
        let (fp32, fp32Arena, bf16, bf16Arena) = pair({ Linear(inputDimensions: i, outputDimensions: o, name: "fc", arena: $0) },
                                                      initialise: { $0.initialise(seed: 3, stream: 0) })
        bf16.computePrecision = .bf16
        let x = Tensor(zeros: [b, i]), dy = Tensor(zeros: [b, o])
        fill(x.data, x.count, stream: 1)
        fill(dy.data, dy.count, stream: 2)
        let w = fp32Arena.parameters(fp32.weight)
        let y32 = fp32.forward(x.data, batch: b), y16 = bf16.forward(x.data, batch: b)
        for r in 0..<b {
            for c in 0..<o {
                let bound = (0..<i).reduce(Float(0)) { $0 + abs(x[r * i + $1] * w[c * i + $1]) }
                #expect(abs(y16[r * o + c] - y32[r * o + c]) <= 0x1p-8 * bound + 1e-5 * bound, "y[\(r), \(c)]")
            }
        }
        #expect((0..<(b * o)).contains { y16[$0] != y32[$0] }, "the bf16 layer rounded nothing")
        fp32Arena.zeroGradients()
        bf16Arena.zeroGradients()
        let dy32 = dy.clone(), dy16 = dy.clone()
        let dx32 = fp32.backward(dy32.data, batch: b)!, dx16 = bf16.backward(dy16.data, batch: b)!
        let dw32 = fp32Arena.gradients(fp32.weight), dw16 = bf16Arena.gradients(bf16.weight)
        for r in 0..<o {
            for c in 0..<i {
                let bound = (0..<b).reduce(Float(0)) { $0 + abs(dy[$1 * o + r] * x[$1 * i + c]) }
                #expect(abs(dw16[r * i + c] - dw32[r * i + c]) <= 0x1p-8 * bound + 1e-5 * bound, "dW[\(r), \(c)]")
            }
        }
        for r in 0..<b {
            for c in 0..<i {
                let bound = (0..<o).reduce(Float(0)) { $0 + abs(dy[r * o + $1] * w[$1 * i + c]) }
                #expect(abs(dx16[r * i + c] - dx32[r * i + c]) <= 0x1p-8 * bound + 1e-5 * bound, "dx[\(r), \(c)]")
            }
        }
        // The bias gradient is a fp32 column sum in both.
        let db32 = fp32Arena.gradients(fp32.bias!), db16 = bf16Arena.gradients(bf16.bias!)
        for c in 0..<o { #expect(db16[c] == db32[c]) }
    }

    /// Conv2d (3x3, padding 1, two input channels, B = 5 images of 9 x 7): output, dW and dx agree
    /// with fp32 norm-wise to 2^-6 (each element to 2^-8 of its sum of |products|, which random
    /// signs make a few times the element's own size).
    @Test func convolutionTracksFP32() {
        let batch = 5
        let (fp32, fp32Arena, bf16, bf16Arena) = pair({
            Conv2d(inChannels: 2, outChannels: 3, kernel: 3, padding: 1, height: 9, width: 7, name: "conv", arena: $0)
        }, initialise: { $0.initialise(seed: 4, stream: 0) })
        bf16.computePrecision = .bf16
        let x = Tensor(zeros: [batch, fp32.inputWidth]), dy = Tensor(zeros: [batch, fp32.outputWidth])
        fill(x.data, x.count, stream: 5)
        fill(dy.data, dy.count, stream: 6)
        func relative(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
            var difference: Float = 0, size: Float = 0
            for k in 0..<n { difference += (a[k] - b[k]) * (a[k] - b[k]); size += b[k] * b[k] }
            return (difference / size).squareRoot()
        }
        let y32 = fp32.forward(x.data, batch: batch), y16 = bf16.forward(x.data, batch: batch)
        let forwardError = relative(y16, y32, batch * fp32.outputWidth)
        #expect(forwardError > 0 && forwardError <= 0x1p-6)
        fp32Arena.zeroGradients()
        bf16Arena.zeroGradients()
        let dy32 = dy.clone(), dy16 = dy.clone()
        let dx32 = fp32.backward(dy32.data, batch: batch)!, dx16 = bf16.backward(dy16.data, batch: batch)!
        #expect(relative(dx16, dx32, batch * fp32.inputWidth) <= 0x1p-6)
        #expect(relative(bf16Arena.gradients(bf16.weight), fp32Arena.gradients(fp32.weight), fp32.weight.count) <= 0x1p-6)
    }
}

/// `ContrastiveModel.computePrecision` reaches every GEMM layer, including the convolutions of the later
/// stages that a multi-scale h (pool_stages >= 2) holds inside its `MultiScalePool` (they stayed fp32).
@Suite struct ModelComputePrecisionTests {
    @Test(arguments: [1, 2, 3]) func bf16ReachesEveryConvolution(poolStages: Int) {
        let model = ContrastiveModel(inputWidth: 64, hidden: [], representation: 0, projection: [8], activation: .relu,
                                     convolution: (channels: [4, 8, 8], imageShape: [8, 8], poolCells: 1, poolStages: poolStages))
        let convolutions = allConvolutions(in: model.encoder)
        #expect(convolutions.count >= 7, "found \(convolutions.count) convolutions")
        model.computePrecision = .bf16
        #expect(convolutions.allSatisfy { $0.computePrecision == .bf16 },
                "fp32 still: \(convolutions.filter { $0.computePrecision != .bf16 }.map { "\($0.inChannels)->\($0.outChannels)" })")
    }
}
