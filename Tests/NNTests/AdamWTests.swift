import Foundation
import Testing
import NN
import Tensor

/// torch.optim.AdamW, written out in Double for the tiny arena.
private func expectedAdamW(beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double,
                           learningRate: Double, steps: Int) -> [Double] {
    var p = (initialWeight + initialBias).map(Double.init)
    var m = [Double](repeating: 0, count: p.count), v = m
    for t in 1...steps {
        let c1 = 1 - pow(beta1, Double(t)), c2 = 1 - pow(beta2, Double(t))
        for i in p.indices {
            let g = Double(gradientSteps[t - 1][i])
            p[i] *= 1 - learningRate * weightDecay
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            p[i] -= learningRate / c1 * m[i] / (v[i].squareRoot() / c2.squareRoot() + epsilon)
        }
    }
    return p
}

@Suite struct AdamWTests {
    @Test func matchesHandComputedSteps() {
        for steps in 1...3 {
            let (arena, optimizer) = runTiny({ AdamW(for: $0, betas: (0.9, 0.999), epsilon: 1e-8, weightDecay: 0.1) },
                                             learningRate: 1e-2, steps: steps)
            let expected = expectedAdamW(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1, learningRate: 1e-2, steps: steps)
            let actual = values(arena.parameters, arena: arena)
            for i in actual.indices { #expect(isClose(actual[i], expected[i]), "step \(steps) element \(i): \(actual[i]) vs \(expected[i])") }
            #expect(optimizer.stepCount == steps)
        }
    }

    /// Golden values from real PyTorch (Debian python3-torch 1.13.0a0, CPU, float32), produced
    /// once with:
    ///
    ///     w = torch.tensor([[0.5, -1.25, 2.0], [0.0, 0.75, -0.3]], requires_grad=True)
    ///     b = torch.tensor([0.1, -0.2, 0.0], requires_grad=True)
    ///     opt = torch.optim.AdamW([w, b], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    ///     for t in range(3):
    ///         w.grad, b.grad = <gradientSteps[t] as float32 tensors>; opt.step()
    ///         print([float.hex(x) for x in w.flatten().tolist() + b.tolist()])
    ///
    /// Rows: parameters (w then b) after steps 1, 2, 3.
    static let torchGolden: [[Float]] = [
        [0x1.f53f7ep-2, -0x1.3d1eb8p+0, 0x1.fced92p+0, -0x1.47ae16p-7, 0x1.7f9db2p-1, -0x1.28a72p-2, 0x1.703afcp-4, -0x1.84b5dcp-3, 0],
        [0x1.f34452p-2, -0x1.3e3c38p+0, 0x1.fa086p+0, -0x1.42a8ap-6, 0x1.7b6c24p-1, -0x1.1e2ff2p-2, 0x1.46e088p-4, -0x1.80665ap-3, -0x1.e79bccp-8],
        [0x1.efea6ap-2, -0x1.3f60ecp+0, 0x1.f9bc9p+0, -0x1.9cc20cp-6, 0x1.7727e8p-1, -0x1.160a5ep-2, 0x1.2a736cp-4, -0x1.81656p-3, -0x1.c4e576p-7],
    ]

    /// PyTorch fuses some multiply-adds (its vectorised `add(alpha:)` is an FMA) and rounds its
    /// scalars in Double; we agree to within 4 ulps per element over 3 steps.
    @Test func matchesPyTorchGolden() {
        let arena = makeTinyArena()
        let optimizer = AdamW(for: arena, betas: (0.9, 0.999), epsilon: 1e-8, weightDecay: 0.1)
        for t in 0..<3 {
            setValues(arena.gradients, arena: arena, gradientSteps[t])
            optimizer.step(arena, learningRate: 1e-2)
            let actual = values(arena.parameters, arena: arena)
            for i in actual.indices {
                #expect(ulpDistance(actual[i], Self.torchGolden[t][i]) <= 4,
                        "step \(t + 1) element \(i): \(actual[i]) vs torch \(Self.torchGolden[t][i])")
            }
        }
    }

    @Test func decaysEveryParameterKind() {
        // Zero gradients: m = v = 0, so the only change is p (1 - lr·wd), biases included.
        let arena = makeTinyArena()
        let optimizer = AdamW(for: arena, weightDecay: 0.5)
        optimizer.step(arena, learningRate: 0.1)
        let actual = values(arena.parameters, arena: arena)
        let expected = (initialWeight + initialBias).map { $0 * (1 - Float(0.1) * 0.5) }
        #expect(actual == expected)
    }
}
