import Foundation
import NN
import Tensor

extension Bench {
    /// A network whose convolutions `contrast bench conv` times.
    public enum ConvolutionWorkload: String, Sendable, CaseIterable {
        /// The encoder of configs/fmnist-simclr-cnn.yaml (`CNN.make`, channels 16/32/64) on 28 x 28 x 1, 512 views.
        case cnn
        /// The `resnet18` preset (`ResNet.Shape.resnet18`) on 32 x 32 x 3, 256 views (128 images x 2).
        case resnet18

        public var views: Int { self == .cnn ? 512 : 256 }

        /// The workload's convolution layers, in forward order (built on a throwaway arena).
        public func layers() -> [Conv2d] {
            let arena = ParameterArena()
            let encoder: Layer = switch self {
            case .cnn: CNN.make(channels: [16, 32, 64], inputHeight: 28, inputWidth: 28, representation: 0, poolCells: 3, poolStages: 2,
                                name: "encoder", arena: arena)
            case .resnet18: ResNet.make(.resnet18(channels: 3, height: 32, width: 32), representation: 0, name: "encoder", arena: arena)
            }
            var found: [Conv2d] = []
            func visit(_ layer: Layer) {
                switch layer {
                case let conv as Conv2d: found.append(conv)
                case let sequence as Sequential: sequence.layers.forEach(visit)
                case let block as ResidualBlock:
                    visit(block.main)
                    if let projection = block.projection { visit(projection) }
                case let multiScale as MultiScalePool: visit(multiScale.stage); visit(multiScale.inner)
                default: break
                }
            }
            visit(encoder)
            return found
        }
    }

    /// Median seconds of one layer shape's three directions in each implementation.
    public struct ConvolutionTimes: Sendable {
        public var im2col: [OneDNNConvolution.Direction: Double]
        /// Today's backward (both directions in one pass over the image groups).
        public var im2colBackward: Double
        public var plain: [OneDNNConvolution.Direction: Double]
        public var blocked: [OneDNNConvolution.Direction: Double]
        public var blockedPrimitive: [OneDNNConvolution.Direction: Double]
        /// oneDNN's backward in one call (`OneDNNConvolution.backward`: dy reordered once), as the layer runs it.
        public var blockedBackward: Double
        public var plainImplementation: [OneDNNConvolution.Direction: String]
        public var blockedImplementation: [OneDNNConvolution.Direction: String]
        /// oneDNN's Winograd kernels on their own layouts, reorders included (and the primitive alone); nil
        /// where oneDNN has none (a shape that is not 3x3 stride 1, or a CPU without avx512_core).
        public var winograd: [OneDNNConvolution.Direction: Double]?
        public var winogradPrimitive: [OneDNNConvolution.Direction: Double]?
        public var winogradImplementation: [OneDNNConvolution.Direction: String]?
        /// Max |result - im2col's| / max |im2col's| per direction (y, dx, dW): how far each kernel's
        /// summation order moves the result from the oracle's.
        public var blockedError: [OneDNNConvolution.Direction: Double]
        public var winogradError: [OneDNNConvolution.Direction: Double]?
    }

    /// Times one convolution shape: im2col + GEMM (`Conv2d` with every direction on im2col), oneDNN
    /// on plain nchw / oihw, and oneDNN on its blocked layout with the reorders from and to plain
    /// tensors (and the primitive alone).
    public static func timeConvolution(_ layer: Conv2d, batch: Int, repeats: Int, warmup: Int) throws -> ConvolutionTimes {
        let arena = ParameterArena()
        let conv = Conv2d(inChannels: layer.inChannels, outChannels: layer.outChannels, kernel: layer.kernel, stride: layer.stride,
                          padding: layer.padding, height: layer.height, width: layer.width, bias: layer.bias != nil, name: "conv", arena: arena)
        arena.seal()
        conv.initialise(seed: 0, stream: 0)
        conv.backends = .im2col
        let x = Tensor(shape: [batch * conv.inputWidth], repeating: 0)
        let dy = Tensor(shape: [batch * conv.outputWidth], repeating: 0)
        let dx = Tensor(shape: [batch * conv.inputWidth], repeating: 0)
        let y = Tensor(shape: [batch * conv.outputWidth], repeating: 0)
        for i in 0..<x.count { x[i] = Float(i % 251) / 251 - 0.5 }
        for i in 0..<dy.count { dy[i] = Float(i % 241) / 2410 - 0.05 }
        typealias D = OneDNNConvolution.Direction
        var im2col: [D: Double] = [:]
        im2col[.forward] = measure(repeats: repeats, warmup: warmup) { _ = conv.forward(x.data, batch: batch) }.median
        im2col[.backwardWeights] = measure(repeats: repeats, warmup: warmup) {
            conv.backwardIm2col(dy.data, input: x.data, batch: batch, weights: true, inputGradient: nil)
        }.median
        im2col[.backwardData] = measure(repeats: repeats, warmup: warmup) {
            conv.backwardIm2col(dy.data, input: x.data, batch: batch, weights: false, inputGradient: dx.data)
        }.median
        let both = measure(repeats: repeats, warmup: warmup) {
            conv.backwardIm2col(dy.data, input: x.data, batch: batch, weights: true, inputGradient: dx.data)
        }.median

        let w = arena.parameters(conv.weight), dw = arena.gradients(conv.weight)
        let b = conv.bias.map { UnsafePointer(arena.parameters($0)) }, db = conv.bias.map { arena.gradients($0) }
        let shape = OneDNNConvolution.Shape(batch: batch, inChannels: conv.inChannels, outChannels: conv.outChannels, height: conv.height,
                                            width: conv.width, kernel: conv.kernel, stride: conv.stride, padding: conv.padding, bias: b != nil)
        func time(_ primitives: OneDNNConvolution, alone: Bool) -> [D: Double] {
            var times: [D: Double] = [:]
            // One full call binds the operands (and fills the blocked buffers) before the primitive is timed alone.
            primitives.forward(output: y.data, input: x.data, weight: w, bias: b)
            primitives.backwardData(inputGradient: dx.data, outputGradient: dy.data, weight: w)
            primitives.backwardWeights(weightGradient: dw, biasGradient: db, outputGradient: dy.data, input: x.data)
            if alone {
                for direction in D.allCases {
                    times[direction] = measure(repeats: repeats, warmup: warmup) { primitives.runPrimitive(direction) }.median
                }
                return times
            }
            times[.forward] = measure(repeats: repeats, warmup: warmup) {
                primitives.forward(output: y.data, input: x.data, weight: w, bias: b)
            }.median
            times[.backwardData] = measure(repeats: repeats, warmup: warmup) {
                primitives.backwardData(inputGradient: dx.data, outputGradient: dy.data, weight: w)
            }.median
            times[.backwardWeights] = measure(repeats: repeats, warmup: warmup) {
                primitives.backwardWeights(weightGradient: dw, biasGradient: db, outputGradient: dy.data, input: x.data)
            }.median
            return times
        }
        let plain = try OneDNNConvolution(shape, layout: .plain)
        let blocked = try OneDNNConvolution(shape, layout: .blocked)
        func implementations(_ c: OneDNNConvolution) -> [D: String] {
            Dictionary(uniqueKeysWithValues: D.allCases.map { ($0, c.implementation($0) + (c.reorders($0) ? "+reorder" : "")) })
        }
        // The oracle's results: y, dx, and dW alone (dW accumulates, so it is zeroed around each call).
        let count = conv.outChannels * conv.inChannels * conv.kernel * conv.kernel
        func zeroWeightGradient() { for i in 0..<count { dw[i] = 0 } }
        let yReference = Array(UnsafeBufferPointer(start: conv.forward(x.data, batch: batch), count: y.count))
        conv.backwardIm2col(dy.data, input: x.data, batch: batch, weights: false, inputGradient: dx.data)
        let dxReference = Array(UnsafeBufferPointer(start: dx.data, count: dx.count))
        zeroWeightGradient()
        conv.backwardIm2col(dy.data, input: x.data, batch: batch, weights: true, inputGradient: nil)
        let dwReference = Array(UnsafeBufferPointer(start: dw, count: count))
        func relativeError(_ reference: [Float], _ result: UnsafePointer<Float>) -> Double {
            var largest: Float = 0, error: Float = 0
            for i in reference.indices {
                largest = max(largest, abs(reference[i]))
                error = max(error, abs(result[i] - reference[i]))
            }
            return Double(error / max(largest, .leastNormalMagnitude))
        }
        func errors(_ primitives: OneDNNConvolution) -> [D: Double] {
            primitives.forward(output: y.data, input: x.data, weight: w, bias: b)
            primitives.backwardData(inputGradient: dx.data, outputGradient: dy.data, weight: w)
            zeroWeightGradient()
            primitives.backwardWeights(weightGradient: dw, biasGradient: db, outputGradient: dy.data, input: x.data)
            return [.forward: relativeError(yReference, y.data), .backwardData: relativeError(dxReference, dx.data),
                    .backwardWeights: relativeError(dwReference, dw)]
        }
        let blockedError = errors(blocked)
        // oneDNN has Winograd only for 3x3 stride 1 (and fp32 only on avx512_core): elsewhere creation fails.
        let winograd = conv.kernel == 3 && conv.stride == 1 ? try? OneDNNConvolution(shape, layout: .blocked, algorithm: .winograd) : nil
        let winogradError = winograd.map(errors)
        let winogradTimes = winograd.map { time($0, alone: false) }, winogradAlone = winograd.map { time($0, alone: true) }
        let blockedTimes = time(blocked, alone: false), blockedAlone = time(blocked, alone: true)
        let blockedBackward = measure(repeats: repeats, warmup: warmup) {
            blocked.backward(inputGradient: dx.data, weightGradient: dw, biasGradient: db, outputGradient: dy.data, input: x.data, weight: w)
        }.median
        return ConvolutionTimes(im2col: im2col, im2colBackward: both, plain: time(plain, alone: false), blocked: blockedTimes,
                                blockedPrimitive: blockedAlone, blockedBackward: blockedBackward, plainImplementation: implementations(plain),
                                blockedImplementation: implementations(blocked), winograd: winogradTimes, winogradPrimitive: winogradAlone,
                                winogradImplementation: winograd.map(implementations), blockedError: blockedError, winogradError: winogradError)
    }

    /// `bench conv`: per convolution shape of each workload and per direction, im2col + GEMM against
    /// oneDNN's primitives (plain, and blocked with reorders), ms and GFLOP/s (2 x multiply-adds / median),
    /// the backend `ConvolutionBackends.chosen` gives the layer, and the workloads' totals.
    public static func convolutions(workloads: [ConvolutionWorkload], repeats: Int, warmup: Int, threads: Int) throws -> BenchOutput {
        BLASThreads.set(threads)
        let out = BenchOutput(bench: "conv")
        out.line("fp32 convolutions, \(threads) thread(s), \(BLASThreads.configuration), kernels \(Kernels.instructionSet); median of \(repeats) after \(warmup) warm-up")
        out.line("im2col = contrast's im2col + GEMM (\(FP32GEMM.library.rawValue)); nchw = oneDNN on plain nchw/oihw (no reorder);"
                 + " blocked = oneDNN on its own layout incl. reorders from/to nchw (primitive alone in brackets); x n = layers of that shape")
        out.line("winograd = oneDNN's Winograd F(4x4, 3x3) the same way (3x3 stride 1 on avx512_core only, else -); err = max |result - im2col's| / max |im2col's|"
                 + " (y, dx, dW) of blocked / winograd")
        typealias D = OneDNNConvolution.Direction
        let label: [D: String] = [.forward: "fwd", .backwardData: "bwd-data", .backwardWeights: "bwd-weights"]
        for workload in workloads {
            let batch = workload.views
            let layers = workload.layers()
            // Unique shapes in first-seen order, with how many layers have each (the stem's dX is never computed).
            var shapes: [(layer: Conv2d, count: Int, first: Bool)] = []
            for (i, layer) in layers.enumerated() {
                if let k = shapes.firstIndex(where: { s in
                    let l = s.layer
                    return l.inChannels == layer.inChannels && l.outChannels == layer.outChannels && l.kernel == layer.kernel
                        && l.stride == layer.stride && l.padding == layer.padding && l.height == layer.height && l.width == layer.width
                        && (l.bias != nil) == (layer.bias != nil) && !s.first && i != 0
                }) {
                    shapes[k].count += 1
                } else {
                    shapes.append((layer, 1, i == 0))
                }
            }
            out.line("")
            out.line("\(workload.rawValue): \(batch) views")
            out.line("  " + padded("shape", 40) + padded("direction", 12) + "   im2col ms GF/s     nchw ms GF/s    blocked ms (alone) GF/s   winograd ms (alone) GF/s   err blocked / winograd   chosen   oneDNN impl (nchw / blocked / winograd)")
            var totals: [String: Double] = [:]
            for (layer, count, first) in shapes {
                let t = try timeConvolution(layer, batch: batch, repeats: repeats, warmup: warmup)
                let flops = 2 * Double(batch * layer.multiplyAddsPerImage)
                let name = "\(layer.inChannels)->\(layer.outChannels) \(layer.kernel)x\(layer.kernel)/\(layer.stride) @\(layer.height)x\(layer.width)"
                    + (layer.bias != nil ? " +b" : "") + (count > 1 ? " x\(count)" : "")
                for direction in D.allCases {
                    let needed = !(first && direction == .backwardData)
                    let chosen: ConvolutionBackend = switch direction {
                    case .forward: layer.backends.forward
                    case .backwardData: layer.backends.backwardData
                    case .backwardWeights: layer.backends.backwardWeights
                    }
                    let a = t.im2col[direction]!, p = t.plain[direction]!, bl = t.blocked[direction]!, alone = t.blockedPrimitive[direction]!
                    let wino = t.winograd?[direction]
                    out.line("  " + padded(name, 40) + padded(label[direction]! + (needed ? "" : "*"), 12)
                             + String(format: " %8.2f %5.1f  %8.2f %5.1f  %8.2f (%7.2f) %5.1f   ", a * 1e3, flops / a / 1e9, p * 1e3, flops / p / 1e9,
                                      bl * 1e3, alone * 1e3, flops / bl / 1e9)
                             + (wino.map { String(format: "%8.2f (%7.2f) %5.1f   ", $0 * 1e3, t.winogradPrimitive![direction]! * 1e3, flops / $0 / 1e9) }
                                ?? padded("       -", 29))
                             + String(format: "%.1e / ", t.blockedError[direction]!)
                             + (t.winogradError.map { String(format: "%.1e   ", $0[direction]!) } ?? "-         ")
                             + padded(chosen.rawValue, 8) + " " + t.plainImplementation[direction]! + " / " + t.blockedImplementation[direction]!
                             + " / " + (t.winogradImplementation?[direction] ?? "-"))
                    out.record(["workload": workload.rawValue, "shape": name, "direction": label[direction]!, "batch": batch, "layers": count,
                                "in_channels": layer.inChannels, "out_channels": layer.outChannels, "kernel": layer.kernel, "stride": layer.stride,
                                "padding": layer.padding, "height": layer.height, "width": layer.width, "needed": needed, "threads": threads,
                                "im2col_ms": a * 1e3, "onednn_nchw_ms": p * 1e3, "onednn_blocked_ms": bl * 1e3, "onednn_blocked_primitive_ms": alone * 1e3,
                                "flops": flops, "chosen": chosen.rawValue, "onednn_nchw_impl": t.plainImplementation[direction]!,
                                "onednn_blocked_impl": t.blockedImplementation[direction]!, "repeats": repeats, "warmup": warmup,
                                "onednn_winograd_ms": wino.map { $0 * 1e3 } ?? NSNull(), "onednn_winograd_primitive_ms": t.winogradPrimitive.map { $0[direction]! * 1e3 } ?? NSNull(),
                                "onednn_winograd_impl": t.winogradImplementation?[direction] ?? NSNull(),
                                "onednn_blocked_error": t.blockedError[direction]!, "onednn_winograd_error": t.winogradError?[direction] ?? NSNull(),
                                "median_ms": (chosen == .im2col ? a : bl) * 1e3])
                    guard needed else { continue }
                    let n = Double(count)
                    totals["im2col", default: 0] += n * a
                    totals["nchw", default: 0] += n * p
                    totals["blocked", default: 0] += n * bl
                    totals["alone", default: 0] += n * alone
                    totals["best", default: 0] += n * min(a, bl)
                    // Winograd where it exists and is faster than blocked direct (the rest as "best").
                    totals["withWinograd", default: 0] += n * min(a, bl, wino ?? .infinity)
                    // The layer runs oneDNN blocked, reorders included.
                    totals["chosen", default: 0] += n * (chosen == .im2col ? a : bl)
                    totals["flops", default: 0] += n * flops
                }
                // Today's backward runs both directions in one pass (dy gathered once): what the split above costs it.
                if !first {
                    out.line("  " + padded("", 40) + padded("bwd both", 12) + String(format: " %8.2f %5.1f                    %8.2f           %5.1f   (one call each; split: im2col %.2f, blocked %.2f)",
                             t.im2colBackward * 1e3, 2 * flops / t.im2colBackward / 1e9, t.blockedBackward * 1e3, 2 * flops / t.blockedBackward / 1e9,
                             (t.im2col[.backwardData]! + t.im2col[.backwardWeights]!) * 1e3, (t.blocked[.backwardData]! + t.blocked[.backwardWeights]!) * 1e3))
                }
            }
            let f = totals["flops"] ?? 0
            out.line(String(format: "  all convolutions of a step (x layers, no stem dX): im2col %.1f ms (%.1f GF/s), oneDNN nchw %.1f ms (%.1f), blocked %.1f ms (%.1f; alone %.1f),"
                            + " faster of im2col/blocked per direction %.1f ms, fastest of im2col/blocked/winograd %.1f ms, chosen %.1f ms",
                            totals["im2col"]! * 1e3, f / totals["im2col"]! / 1e9, totals["nchw"]! * 1e3, f / totals["nchw"]! / 1e9,
                            totals["blocked"]! * 1e3, f / totals["blocked"]! / 1e9, totals["alone"]! * 1e3, totals["best"]! * 1e3, totals["withWinograd"]! * 1e3, totals["chosen"]! * 1e3))
            out.record(["workload": workload.rawValue, "shape": "all", "im2col_ms": totals["im2col"]! * 1e3, "onednn_nchw_ms": totals["nchw"]! * 1e3,
                        "onednn_blocked_ms": totals["blocked"]! * 1e3, "onednn_blocked_primitive_ms": totals["alone"]! * 1e3,
                        "best_ms": totals["best"]! * 1e3, "best_with_winograd_ms": totals["withWinograd"]! * 1e3, "chosen_ms": totals["chosen"]! * 1e3, "flops": f, "threads": threads,
                        "repeats": repeats, "warmup": warmup, "median_ms": totals["chosen"]! * 1e3])
        }
        return out
    }
}
