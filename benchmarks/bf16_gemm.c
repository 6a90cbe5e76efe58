// bf16 GEMM study (issue 9): oneDNN's bf16 matmul (AVX-512 BF16, vdpbf16ps) against OpenBLAS
// sgemm on the benchmark MLP's GEMM shapes, one thread, alternating, medians.
// Build and run: benchmarks/bf16_gemm.sh (needs libdnnl-dev and libopenblas-dev).
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, n, sizeof *v, cmp); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }
#define CHECK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) { fprintf(stderr, "%s failed: %d\n", #x, s_); exit(1); } } while (0)

static uint16_t to_bf16(float f) { uint32_t u; memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return (uint16_t)(u >> 16); }

// One matmul primitive C (m x n, f32) = A (m x k) B (k x n), A and B in `dt`, B's layout chosen by oneDNN (any) or plain.
typedef struct { dnnl_primitive_t prim; dnnl_memory_t a, b, c; dnnl_memory_t b_user; dnnl_primitive_t reorder; } mm_t;

static mm_t make(dnnl_engine_t eng, int m, int n, int k, dnnl_data_type_t dt, int packed_b) {
    mm_t r; memset(&r, 0, sizeof r);
    dnnl_memory_desc_t ad, bd, cd, bany;
    dnnl_dims_t adims = {m, k}, bdims = {k, n}, cdims = {m, n};
    CHECK(dnnl_memory_desc_init_by_tag(&ad, 2, adims, dt, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&bd, 2, bdims, dt, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&bany, 2, bdims, dt, packed_b ? dnnl_format_tag_any : dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&cd, 2, cdims, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    CHECK(dnnl_matmul_desc_init(&md, &ad, &bany, NULL, &cd));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const dnnl_memory_desc_t *bchosen = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    CHECK(dnnl_primitive_create(&r.prim, pd));
    CHECK(dnnl_memory_create(&r.a, &ad, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&r.b, bchosen, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&r.c, &cd, eng, DNNL_MEMORY_ALLOCATE));
    CHECK(dnnl_memory_create(&r.b_user, &bd, eng, DNNL_MEMORY_ALLOCATE));
    const char *impl; dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    fprintf(stderr, "  oneDNN %s %dx%dx%d: %s\n", dt == dnnl_bf16 ? "bf16" : "f32", m, n, k, impl);
    dnnl_primitive_desc_destroy(pd);
    return r;
}

static void fill(dnnl_memory_t mem, size_t count, int bf16) {
    void *p; dnnl_memory_get_data_handle(mem, &p);
    for (size_t i = 0; i < count; i++) {
        float v = (float)rand() / RAND_MAX - 0.5f;
        if (bf16) ((uint16_t *)p)[i] = to_bf16(v); else ((float *)p)[i] = v;
    }
}

int main(int argc, char **argv) {
    int repeats = argc > 1 ? atoi(argv[1]) : 30;
    openblas_set_num_threads(1);
    dnnl_engine_t eng; CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    dnnl_stream_t stream; CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    // The benchmark MLP's step on 512 rows: forward (m=512 rows, n=out, k=in), dX (n=in, k=out), dW (m=out, n=in, k=512).
    int shapes[][3] = {
        {512, 1024, 784}, {512, 1024, 1024}, {512, 256, 1024}, {512, 256, 256}, {512, 128, 256},   // forward
        {512, 784, 1024}, {512, 1024, 1024}, {512, 1024, 256}, {512, 256, 256}, {512, 256, 128},   // dX
        {1024, 784, 512}, {1024, 1024, 512}, {256, 1024, 512}, {256, 256, 512}, {128, 256, 512},   // dW
    };
    int count = sizeof shapes / sizeof shapes[0];
    double total_s = 0, total_bf = 0, total_bf_conv = 0, total_df = 0;
    printf("| m x n x k | sgemm (OpenBLAS) | oneDNN f32 | oneDNN bf16 | bf16 + converting A | sgemm / bf16 |\n|---|---|---|---|---|---|\n");
    for (int s = 0; s < count; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *A = malloc(sizeof(float) * m * k), *B = malloc(sizeof(float) * k * n), *C = malloc(sizeof(float) * m * n);
        for (long i = 0; i < (long)m * k; i++) A[i] = (float)rand() / RAND_MAX - 0.5f;
        for (long i = 0; i < (long)k * n; i++) B[i] = (float)rand() / RAND_MAX - 0.5f;
        mm_t bf = make(eng, m, n, k, dnnl_bf16, 1), f32 = make(eng, m, n, k, dnnl_f32, 1);
        fill(bf.a, (size_t)m * k, 1); fill(bf.b, (size_t)k * n, 1); fill(f32.a, (size_t)m * k, 0); fill(f32.b, (size_t)k * n, 0);
        uint16_t *abf; dnnl_memory_get_data_handle(bf.a, (void **)&abf);
        double ts[200], tb[200], tc[200], tf[200];
        for (int r = -5; r < repeats; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, A, k, B, n, 0, C, n);
            double t1 = now();
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, bf.a}, {DNNL_ARG_WEIGHTS, bf.b}, {DNNL_ARG_DST, bf.c}};
            CHECK(dnnl_primitive_execute(bf.prim, stream, 3, args)); dnnl_stream_wait(stream);
            double t2 = now();
            // bf16 with the activations converted from f32 first (what a step with f32 activations pays).
            for (long i = 0; i < (long)m * k; i++) abf[i] = to_bf16(A[i]);
            CHECK(dnnl_primitive_execute(bf.prim, stream, 3, args)); dnnl_stream_wait(stream);
            double t3 = now();
            dnnl_exec_arg_t fargs[3] = {{DNNL_ARG_SRC, f32.a}, {DNNL_ARG_WEIGHTS, f32.b}, {DNNL_ARG_DST, f32.c}};
            CHECK(dnnl_primitive_execute(f32.prim, stream, 3, fargs)); dnnl_stream_wait(stream);
            double t4 = now();
            if (r >= 0) { ts[r] = t1 - t0; tb[r] = t2 - t1; tc[r] = t3 - t2; tf[r] = t4 - t3; }
        }
        double ms = median(ts, repeats), mb = median(tb, repeats), mc = median(tc, repeats), mf = median(tf, repeats);
        double gf = 2.0 * m * n * k * 1e-9;
        printf("| %dx%dx%d | %.3f ms (%.0f GFLOP/s) | %.3f ms | %.3f ms (%.0f GFLOP/s) | %.3f ms | %.2fx |\n",
               m, n, k, ms * 1e3, gf / ms, mf * 1e3, mb * 1e3, gf / mb, mc * 1e3, ms / mb);
        total_s += ms; total_bf += mb; total_bf_conv += mc; total_df += mf;
        free(A); free(B); free(C);
    }
    printf("| **all %d GEMMs of a step** | %.2f ms | %.2f ms | %.2f ms | %.2f ms | **%.2fx** (%.2fx with conversion) |\n",
           count, total_s * 1e3, total_df * 1e3, total_bf * 1e3, total_bf_conv * 1e3, total_s / total_bf, total_s / total_bf_conv);
    return 0;
}
