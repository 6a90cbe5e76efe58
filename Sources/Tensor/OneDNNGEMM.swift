import CDNNL
import CKernels
import Foundation

/// What a `gemm` multiplies in: fp32 (OpenBLAS sgemm or oneDNN, `FP32GEMM`) or bf16 inputs with
/// fp32 accumulation and output (oneDNN matmul on AVX-512 BF16, `vdpbf16ps`).
public enum GEMMPrecision: String, Sendable, CaseIterable {
    case fp32, bf16
}

/// GEMM through oneDNN's matmul: C = alpha * op(A) op(B) + beta * C, C in fp32, A and B either
/// fp32 as given or rounded to bf16 (`GEMMPrecision`).
///
/// Row-major, the layout of `gemm`: op(A) is M x K, op(B) is K x N, C is M x N; `lda`, `ldb`,
/// `ldc` are the row strides of the stored (untransposed) matrices; a transpose is a strided
/// oneDNN memory descriptor, not a copy.
/// - fp32: oneDNN reads A and B where they are (its AVX-512 brgemm kernels run the benchmark's
///   GEMMs about 6 % faster than OpenBLAS's sgemm; `FP32GEMM` chooses the library).
/// - bf16: A and B are rounded to bf16 (nearest even, `ck_f32_to_bf16`) into scratch buffers that
///   only grow, packed densely in their stored orientation. Products are accumulated in fp32, so
///   the error of an element is about 2^-8 sum_p |a_ip| |b_pj| (the two input roundings), not K
///   times that.
///
/// One oneDNN matmul primitive per (precision, M, N, K, strides, transposes, alpha, beta) is
/// created on first use and kept: the steady state allocates nothing. oneDNN is touched only by a
/// call that asks for it, so OpenBLAS-only runs never load its state. Calls are serialised by a
/// lock (one set of scratch buffers).
public final class OneDNNGEMM: @unchecked Sendable {
    /// The one instance (created, with oneDNN's engine and stream, on the first call).
    public static let shared = OneDNNGEMM()

    /// nil when this CPU runs bf16 matmuls in oneDNN, otherwise why not. The probe creates a
    /// 64 x 64 x 64 bf16 matmul primitive; oneDNN refuses one without AVX-512 (avx512_core).
    public static let unavailableReason: String? = shared.probe(.bf16)

    /// nil when oneDNN has an fp32 matmul for this CPU (any x86-64 with SSE4.1), otherwise why not.
    public static let fp32UnavailableReason: String? = shared.probe(.fp32)

    /// The oneDNN implementation the bf16 probe got (`brg:avx512_core_bf16` with the bf16
    /// instructions, `gemm:jit` where oneDNN emulates them on plain AVX-512), or nil when unavailable.
    public static var implementation: String? { unavailableReason == nil ? shared.probeImplementation[.bf16] : nil }

    /// The oneDNN implementation of fp32 matmuls (`brg:avx512_core` on AVX-512), or nil.
    public static var fp32Implementation: String? { fp32UnavailableReason == nil ? shared.probeImplementation[.fp32] : nil }

    /// OpenMP threads oneDNN uses (`BLASThreads.set` sets it with OpenBLAS's count). OpenMP's
    /// thread count is per calling thread, so every call checks it on its own thread.
    nonisolated(unsafe) public static var threads = 1

    struct Key: Hashable {
        var precision: GEMMPrecision
        var m, n, k, lda, ldb, ldc: Int
        var transposeA, transposeB: Bool
        var alpha, beta: Float
    }

    /// A primitive and the memory objects of its three arguments and of its scratchpad (their
    /// data handles set per call); `scratchpadBytes` is 0 when it needs none.
    final class Plan {
        let primitive: dnnl_primitive_t
        let a, b, c, scratchpad: dnnl_memory_t
        let scratchpadBytes: Int
        init(primitive: dnnl_primitive_t, a: dnnl_memory_t, b: dnnl_memory_t, c: dnnl_memory_t, scratchpad: dnnl_memory_t, scratchpadBytes: Int) {
            (self.primitive, self.a, self.b, self.c, self.scratchpad, self.scratchpadBytes) = (primitive, a, b, c, scratchpad, scratchpadBytes)
        }
    }

    private let lock = NSLock()
    private var engine: dnnl_engine_t?
    private var stream: dnnl_stream_t?
    private var plans: [Key: Plan] = [:]
    private var scratchA = UnsafeMutablePointer<UInt16>.allocate(capacity: 1), capacityA = 1
    private var scratchB = UnsafeMutablePointer<UInt16>.allocate(capacity: 1), capacityB = 1
    /// One scratchpad for every primitive (scratchpad mode `user`), as large as the largest needs:
    /// in the library's mode each primitive keeps its own, and a step's dozens of shapes hold
    /// megabytes each (brgemm packs B into it).
    private var scratchpad = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), scratchpadCapacity = 64
    /// Bytes of the shared scratchpad now (tests: it grows to the largest primitive's need).
    var scratchpadBytes: Int { lock.lock(); defer { lock.unlock() }; return scratchpadCapacity }
    /// Bytes of scratchpad each primitive created so far asked for (tests; 0 where none, as oneDNN's
    /// gemm:jit on AVX2 needs none while brgemm on AVX-512 packs B into it).
    var requiredScratchpadBytes: [Int] { lock.lock(); defer { lock.unlock() }; return plans.values.map(\.scratchpadBytes) }
    private var probeImplementation: [GEMMPrecision: String] = [:]

    /// `shared` is the one the library uses; tests make fresh ones to compare against.
    init() {}

    deinit {
        for plan in plans.values {
            for memory in [plan.a, plan.b, plan.c, plan.scratchpad] { dnnl_memory_destroy(memory) }
            dnnl_primitive_destroy(plan.primitive)
        }
        if let stream { dnnl_stream_destroy(stream) }
        if let engine { dnnl_engine_destroy(engine) }
        scratchA.deallocate()
        scratchB.deallocate()
        scratchpad.deallocate()
    }

    /// Creates the engine and stream and a probe primitive; the failure's reason, or nil.
    private func probe(_ precision: GEMMPrecision) -> String? {
        lock.lock()
        defer { lock.unlock() }
        do {
            try start()
            let key = Key(precision: precision, m: 64, n: 64, k: 64, lda: 64, ldb: 64, ldc: 64,
                          transposeA: false, transposeB: false, alpha: 1, beta: 0)
            let descriptor = try primitiveDescriptor(key)
            defer { dnnl_primitive_desc_destroy(descriptor) }
            var name: UnsafePointer<CChar>? = nil
            dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &name)
            probeImplementation[precision] = name.map { String(cString: $0) } ?? "unknown"
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// This file's oneDNN status codes as `OneDNNFailure`s.
    private func check(_ status: dnnl_status_t, _ call: String) throws {
        try OneDNNFailure.check(status, call, unimplemented: "no matmul of this precision for this CPU")
    }

    private func start() throws {
        if engine != nil { return }
        var engine: dnnl_engine_t? = nil
        try check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create")
        var stream: dnnl_stream_t? = nil
        try check(dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue)), "dnnl_stream_create")
        (self.engine, self.stream) = (engine, stream)
    }

    /// op(A) M x K and op(B) K x N with row strides lda, ldb of the stored matrices (a transpose is
    /// the column-major strides); C M x N fp32 with row stride ldc. alpha is an output scale, beta
    /// a sum post-op.
    private func primitiveDescriptor(_ key: Key) throws -> dnnl_primitive_desc_t {
        var a = dnnl_memory_desc_t(), b = dnnl_memory_desc_t(), c = dnnl_memory_desc_t()
        let type = key.precision == .bf16 ? dnnl_bf16 : dnnl_f32
        // dnnl_dims_t arguments are C arrays (int64_t *): Swift arrays, whose storage is contiguous.
        let aStrides = key.transposeA ? dims(1, key.lda) : dims(key.lda, 1)
        let bStrides = key.transposeB ? dims(1, key.ldb) : dims(key.ldb, 1)
        try check(dnnl_memory_desc_init_by_strides(&a, 2, dims(key.m, key.k), type, aStrides), "dnnl_memory_desc_init_by_strides (A)")
        try check(dnnl_memory_desc_init_by_strides(&b, 2, dims(key.k, key.n), type, bStrides), "dnnl_memory_desc_init_by_strides (B)")
        try check(dnnl_memory_desc_init_by_strides(&c, 2, dims(key.m, key.n), dnnl_f32, dims(key.ldc, 1)), "dnnl_memory_desc_init_by_strides (C)")
        var matmul = dnnl_matmul_desc_t()
        try check(dnnl_matmul_desc_init(&matmul, &a, &b, nil, &c), "dnnl_matmul_desc_init")
        var attributes: dnnl_primitive_attr_t? = nil
        try check(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attributes) }
        try check(dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user), "dnnl_primitive_attr_set_scratchpad_mode")
        if key.alpha != 1 {
            var alpha = key.alpha
            try check(dnnl_primitive_attr_set_output_scales(attributes, 1, 0, &alpha), "dnnl_primitive_attr_set_output_scales")
        }
        if key.beta != 0 {
            var postOps: dnnl_post_ops_t? = nil
            try check(dnnl_post_ops_create(&postOps), "dnnl_post_ops_create")
            defer { dnnl_post_ops_destroy(postOps) }
            try check(dnnl_post_ops_append_sum(postOps, key.beta), "dnnl_post_ops_append_sum")
            try check(dnnl_primitive_attr_set_post_ops(attributes, postOps), "dnnl_primitive_attr_set_post_ops")
        }
        var descriptor: dnnl_primitive_desc_t? = nil
        try check(dnnl_primitive_desc_create(&descriptor, &matmul, attributes, engine, nil),
                  "dnnl_primitive_desc_create (\(key.precision) matmul)")
        return descriptor!
    }

    /// Two dimensions (or strides) as a dnnl_dims_t: DNNL_MAX_NDIMS (12) int64s.
    private func dims(_ x: Int, _ y: Int) -> [Int64] {
        [Int64(x), Int64(y)] + [Int64](repeating: 0, count: Int(DNNL_MAX_NDIMS) - 2)
    }

    private func plan(_ key: Key) throws -> Plan {
        if let plan = plans[key] { return plan }
        try start()
        let descriptor = try primitiveDescriptor(key)
        defer { dnnl_primitive_desc_destroy(descriptor) }
        var primitive: dnnl_primitive_t? = nil
        try check(dnnl_primitive_create(&primitive, descriptor), "dnnl_primitive_create")
        func memory(_ what: dnnl_query_t, _ name: String) throws -> dnnl_memory_t {
            var memory: dnnl_memory_t? = nil
            let md = dnnl_primitive_desc_query_md(descriptor, what, 0)
            // DNNL_MEMORY_NONE: no buffer of its own; the handle is set on every call.
            try check(dnnl_memory_create(&memory, md, engine, nil), "dnnl_memory_create (\(name))")
            return memory!
        }
        let scratchpadBytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0))
        let plan = Plan(primitive: primitive!, a: try memory(dnnl_query_src_md, "A"),
                        b: try memory(dnnl_query_weights_md, "B"), c: try memory(dnnl_query_dst_md, "C"),
                        scratchpad: try memory(dnnl_query_scratchpad_md, "scratchpad"), scratchpadBytes: scratchpadBytes)
        plans[key] = plan
        return plan
    }

    /// Rounds the stored `rows` x `columns` matrix (row stride `ld`) to bf16, densely, into `scratch`.
    private static func convert(_ source: UnsafePointer<Float>, rows: Int, columns: Int, ld: Int,
                                into scratch: inout UnsafeMutablePointer<UInt16>, capacity: inout Int) {
        let count = rows * columns
        if count > capacity {
            scratch.deallocate()
            scratch = .allocate(capacity: count)
            capacity = count
        }
        if ld == columns {
            ck_f32_to_bf16(source, scratch, count)
        } else {
            for row in 0..<rows { ck_f32_to_bf16(source + row * ld, scratch + row * columns, columns) }
        }
    }

    /// C = alpha * op(A) op(B) + beta * C in `precision` (see the type). Throws when oneDNN cannot
    /// create the primitive (bf16 without AVX-512).
    public func multiply(
        precision: GEMMPrecision = .bf16,
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) throws {
        if m == 0 || n == 0 { return }
        if k == 0 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        lock.lock()
        defer { lock.unlock() }
        let plan: Plan
        if precision == .bf16 {
            // The scratch copies are dense: their strides are the stored matrices' widths.
            let (rowsA, columnsA) = transposeA ? (k, m) : (m, k), (rowsB, columnsB) = transposeB ? (n, k) : (k, n)
            plan = try self.plan(Key(precision: .bf16, m: m, n: n, k: k, lda: columnsA, ldb: columnsB, ldc: ldc,
                                     transposeA: transposeA, transposeB: transposeB, alpha: alpha, beta: beta))
            Self.convert(a, rows: rowsA, columns: columnsA, ld: lda, into: &scratchA, capacity: &capacityA)
            Self.convert(b, rows: rowsB, columns: columnsB, ld: ldb, into: &scratchB, capacity: &capacityB)
            try check(dnnl_memory_set_data_handle(plan.a, scratchA), "dnnl_memory_set_data_handle (A)")
            try check(dnnl_memory_set_data_handle(plan.b, scratchB), "dnnl_memory_set_data_handle (B)")
        } else {
            plan = try self.plan(Key(precision: .fp32, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
                                     transposeA: transposeA, transposeB: transposeB, alpha: alpha, beta: beta))
            // oneDNN only reads A and B (they are the matmul's inputs).
            try check(dnnl_memory_set_data_handle(plan.a, UnsafeMutablePointer(mutating: a)), "dnnl_memory_set_data_handle (A)")
            try check(dnnl_memory_set_data_handle(plan.b, UnsafeMutablePointer(mutating: b)), "dnnl_memory_set_data_handle (B)")
        }
        try check(dnnl_memory_set_data_handle(plan.c, c), "dnnl_memory_set_data_handle (C)")
        if plan.scratchpadBytes > scratchpadCapacity {
            scratchpad.deallocate()
            scratchpad = .allocate(byteCount: plan.scratchpadBytes, alignment: 64)
            scratchpadCapacity = plan.scratchpadBytes
        }
        try check(dnnl_memory_set_data_handle(plan.scratchpad, scratchpad), "dnnl_memory_set_data_handle (scratchpad)")
        let threads = Int32(max(1, Self.threads))
        if omp_get_max_threads() != threads { omp_set_num_threads(threads) }
        var arguments = (dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: plan.a),
                         dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: plan.b),
                         dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: plan.c),
                         dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: plan.scratchpad))
        try withUnsafePointer(to: &arguments) { pointer in
            try pointer.withMemoryRebound(to: dnnl_exec_arg_t.self, capacity: 4) { arguments in
                try check(dnnl_primitive_execute(plan.primitive, stream, 4, arguments), "dnnl_primitive_execute")
            }
        }
        try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }
}

/// A oneDNN call that did not succeed, for GEMMs and convolutions alike; `unimplemented` says what
/// oneDNN lacks on this CPU when it answers so.
public struct OneDNNFailure: Error, CustomStringConvertible {
    public let call: String
    let status: dnnl_status_t
    let unimplemented: String

    public var description: String {
        let meaning = switch status {
        case dnnl_unimplemented: "unimplemented: \(unimplemented)"
        case dnnl_out_of_memory: "out of memory"
        case dnnl_invalid_arguments: "invalid arguments"
        default: "status \(status.rawValue)"
        }
        return "oneDNN \(call) failed (\(meaning))"
    }

    /// The one place oneDNN's status codes become Swift errors.
    static func check(_ status: dnnl_status_t, _ call: String, unimplemented: String) throws {
        if status != dnnl_success { throw OneDNNFailure(call: call, status: status, unimplemented: unimplemented) }
    }
}
