import CDNNL
import Foundation

/// One 2-D convolution shape run through oneDNN's convolution primitives (fp32, direct or Winograd
/// algorithm): forward, backward-data and backward-weights, each created once and kept.
///
/// Shapes (NCHW rows, as `Conv2d`): B batch, C input channels, O output channels, H x W input,
/// K kernel, P x Q output. x: B x C x H x W, y: B x O x P x Q, W: O x C x K x K, b: O.
///
/// The caller's weights are plain `oihw`; its activations are `nchw`, or (`activationBlock`, and
/// `inputBlock` for x and dx) already in the blocked layout nChw16c / nChw8c that an encoder keeping
/// blocked activations passes between layers. `Layout.plain` gives the primitives exactly the
/// caller's layouts, so they read and write the caller's memory and nothing is copied.
/// `Layout.blocked` lets oneDNN choose (`format_tag_any`: nChw16c / OIhw16i16o on AVX-512,
/// 8c on AVX2), and every call reorders the operands that differ from the caller's layout into
/// buffers of that layout and the result back (with NCHW activations: every activation; with
/// blocked ones: only the weights); `runPrimitive` times the kernel without the reorders
/// (`contrast bench conv`), `reorderClock` adds up the reorders' time (`contrast bench step`).
///
/// Memory: the primitives, the blocked weight buffers, the diff_weights / diff_bias buffers (backward
/// adds them into the caller's gradients) and one user-mode scratchpad are allocated here, once;
/// blocked activations live in three buffers all convolutions share (`Port`); a call only sets data handles. Single-threaded (OpenMP threads `OneDNNGEMM.threads`, 1 in
/// training) a primitive's summation order is fixed, so results are bitwise run-to-run.
public final class OneDNNConvolution {
    public struct Shape: Hashable, Sendable, CustomStringConvertible {
        public var batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int
        public var kernel: Int, stride: Int, padding: Int
        public var bias: Bool
        public init(batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int,
                    kernel: Int, stride: Int, padding: Int, bias: Bool) {
            (self.batch, self.inChannels, self.outChannels, self.height, self.width) = (batch, inChannels, outChannels, height, width)
            (self.kernel, self.stride, self.padding, self.bias) = (kernel, stride, padding, bias)
        }
        public var outputHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
        public var outputWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
        /// Multiply-adds of one direction over the batch (each direction does as many).
        public var multiplyAdds: Int { batch * outChannels * inChannels * kernel * kernel * outputHeight * outputWidth }
        public var description: String {
            "\(inChannels)->\(outChannels) \(kernel)x\(kernel)/\(stride) pad \(padding) @\(height)x\(width), B \(batch)"
        }
    }

    public enum Layout: String, Sendable, CaseIterable { case plain, blocked }
    public enum Direction: String, Sendable, CaseIterable { case forward, backwardData, backwardWeights }
    /// `winograd`: oneDNN's F(4x4, 3x3) Winograd kernels (`jit_wino_4x3`), fewer multiplies for 3x3 stride 1
    /// but a different (less exact) summation; oneDNN 2.6 has fp32 ones for avx512_core only, elsewhere
    /// creating them fails with `unimplemented`. Needs `Layout.blocked` (it picks its own weight layout).
    public enum Algorithm: String, Sendable, CaseIterable { case direct, winograd }

    public let shape: Shape
    public let layout: Layout
    public let algorithm: Algorithm
    /// The layout of the caller's activations (y, dy; x and dx too unless `inputBlock` says otherwise):
    /// 0 for NCHW, 8 or 16 for oneDNN's blocked nChw8c / nChw16c (`blockedActivationBlock`), which
    /// the blocked primitives read and write in place.
    public let activationBlock: Int
    /// The layout of x and dx (an encoder's first convolution reads NCHW images and writes blocked maps).
    public let inputBlock: Int

    /// One argument of a primitive: the caller's plain memory (handle set per call) and, when the
    /// primitive wants another layout, memory of that layout with the reorder between them. A weight
    /// port's blocked buffer is its own (`innerBuffer`); an activation port's is slot `slot` of the
    /// process-wide `ActivationScratch`, shared by every convolution (calls never overlap), so a model's
    /// blocked activations cost three buffers of the largest, not six per layer and batch size.
    final class Port {
        let argument: Int32
        let user: dnnl_memory_t
        let inner: dnnl_memory_t?
        let reorder: dnnl_primitive_t?       // user -> inner for inputs, inner -> user for outputs
        let innerBuffer: UnsafeMutableRawPointer?
        let slot: Int?, innerBytes: Int
        let isOutput: Bool
        /// The layout the primitive wants (nil when it is the plain one).
        var innerDescriptor: UnsafePointer<dnnl_memory_desc_t>? {
            inner.flatMap { memory in
                var md: UnsafePointer<dnnl_memory_desc_t>? = nil
                dnnl_memory_get_memory_desc(memory, &md)
                return md
            }
        }
        var memory: dnnl_memory_t { inner ?? user }
        init(argument: Int32, user: dnnl_memory_t, inner: dnnl_memory_t?, reorder: dnnl_primitive_t?,
             innerBuffer: UnsafeMutableRawPointer?, slot: Int?, innerBytes: Int, isOutput: Bool) {
            (self.argument, self.user, self.inner, self.reorder, self.innerBuffer) = (argument, user, inner, reorder, innerBuffer)
            (self.slot, self.innerBytes, self.isOutput) = (slot, innerBytes, isOutput)
        }
        deinit {
            if let reorder { dnnl_primitive_destroy(reorder) }
            if let inner { dnnl_memory_destroy(inner) }
            dnnl_memory_destroy(user)
            innerBuffer?.deallocate()
        }
    }

    /// A primitive with its ports and the implementation oneDNN chose (`jit:avx512_core`, `gemm:jit`, ...).
    final class Step {
        let primitive: dnnl_primitive_t
        let ports: [Port]
        let implementation: String
        /// The execute arguments (memory objects are fixed; only their data handles change), scratchpad last.
        var arguments: [dnnl_exec_arg_t] = []
        init(primitive: dnnl_primitive_t, ports: [Port], implementation: String) {
            (self.primitive, self.ports, self.implementation) = (primitive, ports, implementation)
        }
        deinit { dnnl_primitive_destroy(primitive) }
        func port(_ argument: Int32) -> Port { ports.first { $0.argument == argument }! }
    }

    private(set) var steps: [Direction: Step] = [:]
    private let scratchpad: dnnl_memory_t
    private let scratchpadBuffer: UnsafeMutableRawPointer
    private let weightGradient: UnsafeMutablePointer<Float>
    private let biasGradient: UnsafeMutablePointer<Float>

    /// The implementation oneDNN runs each direction with.
    public func implementation(_ direction: Direction) -> String { steps[direction]!.implementation }

    /// This file's oneDNN status codes as `OneDNNFailure`s.
    private static func check(_ status: dnnl_status_t, _ call: String) throws {
        try OneDNNFailure.check(status, call, unimplemented: "no fp32 convolution of this shape for this CPU")
    }

    /// The CPU engine and the stream every convolution runs on (created on first use, never destroyed).
    final class Runtime: @unchecked Sendable {
        let engine: dnnl_engine_t, stream: dnnl_stream_t
        init() throws {
            var engine: dnnl_engine_t? = nil
            try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
            var stream: dnnl_stream_t? = nil
            try check(dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue)), "dnnl_stream_create")
            (self.engine, self.stream) = (engine!, stream!)
        }
    }
    static let runtime = Result { try Runtime() }

    /// nil when oneDNN has fp32 convolutions here, otherwise why not (probed on a small shape).
    public static let unavailableReason: String? = {
        do {
            _ = try OneDNNConvolution(Shape(batch: 2, inChannels: 3, outChannels: 8, height: 8, width: 8,
                                            kernel: 3, stride: 1, padding: 1, bias: true), layout: .plain)
            return nil
        } catch {
            return "\(error)"
        }
    }()

    /// The oneDNN format tag of activations in blocks of `block` channels (0: NCHW).
    static func activationTag(block: Int) -> dnnl_format_tag_t {
        switch block {
        case 16: dnnl_nChw16c
        case 8: dnnl_nChw8c
        default: dnnl_nchw
        }
    }

    /// The channel block of the activation layout oneDNN's direct fp32 convolutions pick on this CPU
    /// (16 for nChw16c at AVX-512, 8 for nChw8c at AVX2, under ONEDNN_MAX_CPU_ISA), asked of a probe
    /// 16 -> 16 3x3 convolution; nil when oneDNN is unavailable or picks neither (then layers stay NCHW).
    public static let blockedActivationBlock: Int? = {
        guard unavailableReason == nil,
              let probe = try? OneDNNConvolution(Shape(batch: 2, inChannels: 16, outChannels: 16, height: 8, width: 8,
                                                       kernel: 3, stride: 1, padding: 1, bias: false), layout: .blocked),
              let wanted = probe.steps[.forward]!.port(DNNL_ARG_SRC).innerDescriptor else { return nil }
        for block in [16, 8] {
            var md = dnnl_memory_desc_t()
            let dims = OneDNNConvolution.dims(2, 16, 8, 8)
            guard dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, activationTag(block: block)) == dnnl_success else { continue }
            if dnnl_memory_desc_equal(wanted, &md) != 0 { return block }
        }
        return nil
    }()

    /// Four dimensions (or strides, paddings) as a dnnl_dims_t: DNNL_MAX_NDIMS (12) int64s.
    private static func dims(_ values: Int...) -> [Int64] {
        values.map(Int64.init) + [Int64](repeating: 0, count: Int(DNNL_MAX_NDIMS) - values.count)
    }

    /// `activationBlock` (0, 8 or 16): the caller's activations are NCHW (0) or already in the blocked
    /// layout nChw8c / nChw16c; a primitive that wants another layout still gets a reorder.
    public init(_ shape: Shape, layout: Layout, algorithm: Algorithm = .direct, activationBlock: Int = 0, inputBlock: Int? = nil) throws {
        precondition(algorithm == .direct || layout == .blocked, "OneDNNConvolution: Winograd needs Layout.blocked")
        precondition([0, 8, 16].contains(activationBlock) && [0, 8, 16].contains(inputBlock ?? 0),
                     "OneDNNConvolution: activation blocks \(activationBlock), \(inputBlock ?? activationBlock) are not 0, 8 or 16")
        self.inputBlock = inputBlock ?? activationBlock
        self.shape = shape
        self.layout = layout
        self.algorithm = algorithm
        self.activationBlock = activationBlock
        let kind = algorithm == .direct ? dnnl_convolution_direct : dnnl_convolution_winograd
        let engine = try Self.runtime.get().engine
        // oneDNN plans a primitive's work split (backward-weights: over how many threads the batch is
        // reduced) for the OpenMP thread count at creation; created under another count than it runs
        // with, backward-weights was not even reproducible. So create under the count of every call.
        Self.setThreads()
        let s = shape
        func descriptor(_ dimensions: [Int64], _ count: Int32, _ tag: dnnl_format_tag_t) throws -> dnnl_memory_desc_t {
            var md = dnnl_memory_desc_t()
            try Self.check(dnnl_memory_desc_init_by_tag(&md, count, dimensions, dnnl_f32, tag), "dnnl_memory_desc_init_by_tag")
            return md
        }
        let sourceDims = Self.dims(s.batch, s.inChannels, s.height, s.width)
        let weightDims = Self.dims(s.outChannels, s.inChannels, s.kernel, s.kernel)
        let outputDims = Self.dims(s.batch, s.outChannels, s.outputHeight, s.outputWidth)
        let biasDims = Self.dims(s.outChannels)
        // The caller's activations: "plain" below means the caller's layout, NCHW or blocked.
        let plainSource = try descriptor(sourceDims, 4, Self.activationTag(block: self.inputBlock)), plainWeights = try descriptor(weightDims, 4, dnnl_oihw)
        let plainOutput = try descriptor(outputDims, 4, Self.activationTag(block: activationBlock)), plainBias = try descriptor(biasDims, 1, dnnl_a)
        let tag = layout == .plain ? (dnnl_nchw, dnnl_oihw) : (dnnl_format_tag_any, dnnl_format_tag_any)
        var source = try descriptor(sourceDims, 4, tag.0), weights = try descriptor(weightDims, 4, tag.1)
        var output = try descriptor(outputDims, 4, tag.0)
        let bias = UnsafeMutablePointer<dnnl_memory_desc_t>.allocate(capacity: 1)
        defer { bias.deallocate() }
        bias.initialize(to: plainBias)
        let biasOrNil: UnsafePointer<dnnl_memory_desc_t>? = s.bias ? UnsafePointer(bias) : nil
        let strides = Self.dims(s.stride, s.stride), padding = Self.dims(s.padding, s.padding)
        // Right padding: what the last window reaches past the image (PyTorch drops a partial window).
        let right = Self.dims((s.outputHeight - 1) * s.stride + s.kernel - s.height - s.padding,
                              (s.outputWidth - 1) * s.stride + s.kernel - s.width - s.padding)

        var attributes: dnnl_primitive_attr_t? = nil
        try Self.check(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attributes) }
        try Self.check(dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user), "dnnl_primitive_attr_set_scratchpad_mode")

        var forwardDescriptor = dnnl_convolution_desc_t()
        try Self.check(dnnl_convolution_forward_desc_init(&forwardDescriptor, dnnl_forward_training, kind,
                                                          &source, &weights, biasOrNil, &output, strides, padding, right),
                       "dnnl_convolution_forward_desc_init")
        var forwardPrimitive: dnnl_primitive_desc_t? = nil
        try Self.check(dnnl_primitive_desc_create(&forwardPrimitive, &forwardDescriptor, attributes, engine, nil),
                       "dnnl_primitive_desc_create (convolution forward \(s))")
        defer { dnnl_primitive_desc_destroy(forwardPrimitive) }
        var backwardDataDescriptor = dnnl_convolution_desc_t()
        try Self.check(dnnl_convolution_backward_data_desc_init(&backwardDataDescriptor, kind,
                                                                &source, &weights, &output, strides, padding, right),
                       "dnnl_convolution_backward_data_desc_init")
        var backwardWeightsDescriptor = dnnl_convolution_desc_t()
        try Self.check(dnnl_convolution_backward_weights_desc_init(&backwardWeightsDescriptor, kind,
                                                                   &source, &weights, biasOrNil, &output, strides, padding, right),
                       "dnnl_convolution_backward_weights_desc_init")

        var largestScratchpad = 0
        /// Builds a primitive from `descriptor` and a port for each (argument, its plain layout, output?).
        func step(_ descriptor: dnnl_primitive_desc_t, _ arguments: [(Int32, dnnl_memory_desc_t, Bool)]) throws -> Step {
            var primitive: dnnl_primitive_t? = nil
            try Self.check(dnnl_primitive_create(&primitive, descriptor), "dnnl_primitive_create (convolution \(s))")
            var name: UnsafePointer<CChar>? = nil
            dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &name)
            largestScratchpad = max(largestScratchpad, dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0)))
            var ports: [Port] = []
            for (argument, plainDescriptor, isOutput) in arguments {
                var plain = plainDescriptor
                var user: dnnl_memory_t? = nil
                try Self.check(dnnl_memory_create(&user, &plain, engine, nil), "dnnl_memory_create (user)")
                let wanted = dnnl_primitive_desc_query_md(descriptor, dnnl_query_exec_arg_md, argument)!
                if dnnl_memory_desc_equal(wanted, &plain) != 0 {
                    ports.append(Port(argument: argument, user: user!, inner: nil, reorder: nil, innerBuffer: nil, slot: nil, innerBytes: 0,
                                      isOutput: isOutput))
                    continue
                }
                let bytes = dnnl_memory_desc_get_size(wanted)
                let isActivation = [DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_DST].contains(argument)
                // Activation slots by argument: x 0, dy 1, the output 2, so both backward steps find dy in slot 1.
                let slot: Int? = isActivation ? (isOutput ? 2 : argument == DNNL_ARG_SRC ? 0 : 1) : nil
                let buffer: UnsafeMutableRawPointer? = isActivation ? nil : .allocate(byteCount: max(bytes, 64), alignment: 64)
                var inner: dnnl_memory_t? = nil
                try Self.check(dnnl_memory_create(&inner, wanted, engine, buffer), "dnnl_memory_create (blocked)")
                var reorderDescriptor: dnnl_primitive_desc_t? = nil
                try Self.check(isOutput ? dnnl_reorder_primitive_desc_create(&reorderDescriptor, wanted, engine, &plain, engine, nil)
                                        : dnnl_reorder_primitive_desc_create(&reorderDescriptor, &plain, engine, wanted, engine, nil),
                               "dnnl_reorder_primitive_desc_create")
                defer { dnnl_primitive_desc_destroy(reorderDescriptor) }
                var reorder: dnnl_primitive_t? = nil
                try Self.check(dnnl_primitive_create(&reorder, reorderDescriptor), "dnnl_primitive_create (reorder)")
                ports.append(Port(argument: argument, user: user!, inner: inner, reorder: reorder, innerBuffer: buffer, slot: slot, innerBytes: bytes,
                                  isOutput: isOutput))
            }
            return Step(primitive: primitive!, ports: ports, implementation: name.map { String(cString: $0) } ?? "unknown")
        }

        var forwardArguments = [(DNNL_ARG_SRC, plainSource, false), (DNNL_ARG_WEIGHTS, plainWeights, false), (DNNL_ARG_DST, plainOutput, true)]
        if s.bias { forwardArguments.append((DNNL_ARG_BIAS, plainBias, false)) }
        steps[.forward] = try step(forwardPrimitive!, forwardArguments)

        var backwardData: dnnl_primitive_desc_t? = nil
        try Self.check(dnnl_primitive_desc_create(&backwardData, &backwardDataDescriptor, attributes, engine, forwardPrimitive),
                       "dnnl_primitive_desc_create (convolution backward data \(s))")
        defer { dnnl_primitive_desc_destroy(backwardData) }
        steps[.backwardData] = try step(backwardData!, [(DNNL_ARG_DIFF_DST, plainOutput, false), (DNNL_ARG_WEIGHTS, plainWeights, false),
                                                        (DNNL_ARG_DIFF_SRC, plainSource, true)])

        var backwardWeights: dnnl_primitive_desc_t? = nil
        try Self.check(dnnl_primitive_desc_create(&backwardWeights, &backwardWeightsDescriptor, attributes, engine, forwardPrimitive),
                       "dnnl_primitive_desc_create (convolution backward weights \(s))")
        defer { dnnl_primitive_desc_destroy(backwardWeights) }
        var backwardWeightsArguments = [(DNNL_ARG_SRC, plainSource, false), (DNNL_ARG_DIFF_DST, plainOutput, false),
                                        (DNNL_ARG_DIFF_WEIGHTS, plainWeights, true)]
        if s.bias { backwardWeightsArguments.append((DNNL_ARG_DIFF_BIAS, plainBias, true)) }
        steps[.backwardWeights] = try step(backwardWeights!, backwardWeightsArguments)

        scratchpadBuffer = .allocate(byteCount: max(largestScratchpad, 64), alignment: 64)
        var scratchpadDescriptor = try descriptor(Self.dims(max(largestScratchpad, 64)), 1, dnnl_a)
        scratchpadDescriptor.data_type = dnnl_u8
        var memory: dnnl_memory_t? = nil
        try Self.check(dnnl_memory_create(&memory, &scratchpadDescriptor, engine, scratchpadBuffer), "dnnl_memory_create (scratchpad)")
        scratchpad = memory!
        for step in steps.values {
            step.arguments = step.ports.map { dnnl_exec_arg_t(arg: $0.argument, memory: $0.memory) }
                + [dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: memory)]
        }
        weightGradient = .allocate(capacity: s.outChannels * s.inChannels * s.kernel * s.kernel)
        biasGradient = .allocate(capacity: s.outChannels)
    }

    deinit {
        steps.removeAll()
        dnnl_memory_destroy(scratchpad)
        scratchpadBuffer.deallocate()
        weightGradient.deallocate()
        biasGradient.deallocate()
    }

    private func bind(_ step: Step, _ argument: Int32, _ pointer: UnsafeRawPointer) {
        dnnl_memory_set_data_handle(step.port(argument).user, UnsafeMutableRawPointer(mutating: pointer))
    }

    /// y = conv(x, W) + b (y overwritten).
    public func forward(output y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
                        weight w: UnsafePointer<Float>, bias b: UnsafePointer<Float>?) {
        let step = steps[.forward]!
        bind(step, DNNL_ARG_SRC, x); bind(step, DNNL_ARG_WEIGHTS, w); bind(step, DNNL_ARG_DST, y)
        if shape.bias, let b { bind(step, DNNL_ARG_BIAS, b) }
        precondition(shape.bias == (b != nil), "OneDNNConvolution \(shape): bias given \(b != nil), shape says \(shape.bias)")
        run(.forward)
    }

    /// dx = conv^T(dy, W) (dx overwritten).
    public func backwardData(inputGradient dx: UnsafeMutablePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                             weight w: UnsafePointer<Float>) {
        let step = steps[.backwardData]!
        bind(step, DNNL_ARG_DIFF_DST, dy); bind(step, DNNL_ARG_WEIGHTS, w); bind(step, DNNL_ARG_DIFF_SRC, dx)
        run(.backwardData)
    }

    /// dW += sum over the batch of dy (x) x; db += sum of dy over (B, P, Q) when the shape has a bias.
    /// oneDNN overwrites its diff_weights, so it writes into this object's buffers and they are added.
    public func backwardWeights(weightGradient dw: UnsafeMutablePointer<Float>, biasGradient db: UnsafeMutablePointer<Float>?,
                                outputGradient dy: UnsafePointer<Float>, input x: UnsafePointer<Float>) {
        let step = steps[.backwardWeights]!
        bind(step, DNNL_ARG_SRC, x); bind(step, DNNL_ARG_DIFF_DST, dy); bind(step, DNNL_ARG_DIFF_WEIGHTS, weightGradient)
        if shape.bias { bind(step, DNNL_ARG_DIFF_BIAS, biasGradient) }
        run(.backwardWeights)
        let count = shape.outChannels * shape.inChannels * shape.kernel * shape.kernel
        for i in 0..<count { dw[i] += weightGradient[i] }
        if shape.bias, let db { for o in 0..<shape.outChannels { db[o] += biasGradient[o] } }
    }

    /// Both backward directions, backward-weights first: dx = conv^T(dy, W) (overwritten; skipped when nil),
    /// dW += ..., db += ... as `backwardWeights`. When both steps want dy in the same blocked layout it is
    /// reordered once (slot 1 holds it from the first step to the second).
    public func backward(inputGradient dx: UnsafeMutablePointer<Float>?, weightGradient dw: UnsafeMutablePointer<Float>,
                         biasGradient db: UnsafeMutablePointer<Float>?, outputGradient dy: UnsafePointer<Float>,
                         input x: UnsafePointer<Float>, weight w: UnsafePointer<Float>) {
        guard let dx else {
            backwardWeights(weightGradient: dw, biasGradient: db, outputGradient: dy, input: x)
            return
        }
        let weights = steps[.backwardWeights]!, data = steps[.backwardData]!
        bind(weights, DNNL_ARG_SRC, x); bind(weights, DNNL_ARG_DIFF_DST, dy); bind(weights, DNNL_ARG_DIFF_WEIGHTS, weightGradient)
        if shape.bias { bind(weights, DNNL_ARG_DIFF_BIAS, biasGradient) }
        bind(data, DNNL_ARG_DIFF_DST, dy); bind(data, DNNL_ARG_WEIGHTS, w); bind(data, DNNL_ARG_DIFF_SRC, dx)
        Self.activationScratch.lock.lock()
        run(.backwardWeights, locked: true)
        run(.backwardData, locked: true, outputGradientReordered: sharesOutputGradient)
        Self.activationScratch.lock.unlock()
        let count = shape.outChannels * shape.inChannels * shape.kernel * shape.kernel
        for i in 0..<count { dw[i] += weightGradient[i] }
        if shape.bias, let db { for o in 0..<shape.outChannels { db[o] += biasGradient[o] } }
    }

    /// Whether both backward steps read dy in the same non-plain layout (then `backward` reorders it once).
    private var sharesOutputGradient: Bool {
        let a = steps[.backwardWeights]!.port(DNNL_ARG_DIFF_DST), b = steps[.backwardData]!.port(DNNL_ARG_DIFF_DST)
        guard a.reorder != nil, b.reorder != nil else { return false }
        return dnnl_memory_desc_equal(a.innerDescriptor, b.innerDescriptor) != 0
    }

    /// The blocked activation buffers every convolution shares (slots 0, 1: inputs; 2: output), grown
    /// to the largest need; the lock keeps two threads' calls (training and, say, a test) apart.
    final class ActivationScratch: @unchecked Sendable {
        let lock = NSLock()
        var buffers: [UnsafeMutableRawPointer?] = [nil, nil, nil]
        var capacities = [0, 0, 0]
        func buffer(_ slot: Int, bytes: Int) -> UnsafeMutableRawPointer {
            if capacities[slot] < bytes {
                buffers[slot]?.deallocate()
                buffers[slot] = .allocate(byteCount: bytes, alignment: 64)
                capacities[slot] = bytes
            }
            return buffers[slot]!
        }
    }
    static let activationScratch = ActivationScratch()

    /// Points the step's blocked activation memories at the shared slots.
    private func bindSlots(_ step: Step) {
        for port in step.ports {
            guard let slot = port.slot, let inner = port.inner else { continue }
            dnnl_memory_set_data_handle(inner, Self.activationScratch.buffer(slot, bytes: port.innerBytes))
        }
    }

    /// Reorders the inputs that need it, runs the primitive, reorders the outputs back.
    /// `locked`: the caller holds the scratch lock; `outputGradientReordered`: slot 1 already holds dy in this step's layout.
    public func run(_ direction: Direction) { run(direction, locked: false) }

    private func run(_ direction: Direction, locked: Bool, outputGradientReordered: Bool = false) {
        let step = steps[direction]!
        let stream = try! Self.runtime.get().stream
        if !locked { Self.activationScratch.lock.lock() }
        defer { if !locked { Self.activationScratch.lock.unlock() } }
        bindSlots(step)
        Self.setThreads()
        for port in step.ports where !port.isOutput && !(outputGradientReordered && port.argument == DNNL_ARG_DIFF_DST) { reorder(port, stream) }
        execute(step, stream)
        for port in step.ports where port.isOutput { reorder(port, stream) }
        wait(stream)
    }

    /// The primitive alone on the operands of the last call (blocked buffers as they are, the shared
    /// slots as the last call of any convolution left them): the kernel's time without the reorders.
    public func runPrimitive(_ direction: Direction) {
        let stream = try! Self.runtime.get().stream
        Self.activationScratch.lock.lock()
        defer { Self.activationScratch.lock.unlock() }
        bindSlots(steps[direction]!)
        Self.setThreads()
        execute(steps[direction]!, stream)
        wait(stream)
    }

    /// Whether `direction` reorders anything (false for `Layout.plain`, and for a blocked layout oneDNN kept plain).
    public func reorders(_ direction: Direction) -> Bool { steps[direction]!.ports.contains { $0.reorder != nil } }

    static func setThreads() {
        let threads = Int32(max(1, OneDNNGEMM.threads))
        if omp_get_max_threads() != threads { omp_set_num_threads(threads) }
    }

    /// Seconds spent in reorders between the caller's NCHW and the primitives' blocked layouts since
    /// the process started, activations (x, y, dy, dx) and weights (W, dW) apart: `bench step` reads
    /// the difference over a step to say what keeping activations blocked across layers could save.
    /// Read and written under the scratch lock (every reorder runs under it).
    public struct ReorderClock: Sendable {
        public var activations: Double, weights: Double
        public init(activations: Double = 0, weights: Double = 0) { (self.activations, self.weights) = (activations, weights) }
    }
    nonisolated(unsafe) static var clock = ReorderClock()
    public static var reorderClock: ReorderClock {
        activationScratch.lock.lock()
        defer { activationScratch.lock.unlock() }
        return clock
    }

    private func reorder(_ port: Port, _ stream: dnnl_stream_t) {
        guard let reorder = port.reorder, let inner = port.inner else { return }
        // A CPU stream executes in order and returns when done (OpenMP runtime), so the clock around
        // the call is the reorder's time.
        let start = monotonicSeconds()
        defer {
            let seconds = monotonicSeconds() - start
            if port.slot != nil { Self.clock.activations += seconds } else { Self.clock.weights += seconds }
        }
        let (from, to) = port.isOutput ? (inner, port.user) : (port.user, inner)
        var arguments = (dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: from), dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: to))
        let status = withUnsafePointer(to: &arguments) {
            $0.withMemoryRebound(to: dnnl_exec_arg_t.self, capacity: 2) { dnnl_primitive_execute(reorder, stream, 2, $0) }
        }
        precondition(status == dnnl_success, "oneDNN reorder failed (status \(status.rawValue)) for \(shape)")
    }

    private func execute(_ step: Step, _ stream: dnnl_stream_t) {
        let status = step.arguments.withUnsafeBufferPointer {
            dnnl_primitive_execute(step.primitive, stream, Int32($0.count), $0.baseAddress)
        }
        precondition(status == dnnl_success, "oneDNN convolution failed (status \(status.rawValue)) for \(shape)")
    }

    private func wait(_ stream: dnnl_stream_t) {
        let status = dnnl_stream_wait(stream)
        precondition(status == dnnl_success, "oneDNN stream wait failed (status \(status.rawValue))")
    }
}
