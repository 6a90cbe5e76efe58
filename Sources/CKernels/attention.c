// Plain multi-head attention of one (sample, head), forward and backward, in one call each.
//
// The attention products are tiny (T x T x E with T ~ 50-65 tokens, E = 32-64): through the
// global sgemm each one pays the BLAS's dispatch and packing, and a step of vit-small-28 makes
// ~74K of them. Here every product is one register-tiled loop nest over operands that stay in L1:
// blocks of 4 output rows x 16 or 32 columns accumulate in registers (the constant bounds let the
// compiler unroll them and vectorise the columns for each target), the softmax's scale rides
// on the product, and mask, row maximum, exp, sum and normalisation run over the row while it is
// still in L1. Each body is compiled per instruction set (dispatch.h), with its own block width:
// 4 rows x 32 columns at AVX-512 (eight zmm accumulators: two per row halve the broadcasts per
// FMA against 16 columns; about 1.25x on BERT mini's 128 x 128 x 64 products), 4 x 16 at AVX2 and
// the baseline (eight ymm accumulators; 32 columns would spill). The block width changes which
// outputs a block holds, never the order an output's sum is taken in: any width gives the same
// bits at a given instruction set.
#include "CKernels.h"
#include "dispatch.h"
#include "exp_poly.h"
#include <math.h>

enum { ROWS = 4, MAX_COLUMNS = 32 };

/// CK_DISPATCH_VOID whose body takes the block width last: 32 columns at AVX-512, 16 below.
#define CK_DISPATCH_VOID_TILED(name, params, args)                                  \
    CK_TARGET_AVX512 static void name##_avx512 params { name##_body(CK_UNPAREN args, 32); } \
    CK_TARGET_AVX2 static void name##_avx2 params { name##_body(CK_UNPAREN args, 16); }     \
    static void name##_portable params { name##_body(CK_UNPAREN args, 16); }               \
    void name params {                                                              \
        switch (ck_level()) {                                                       \
        case CK_LEVEL_AVX512: name##_avx512 args; break;                            \
        case CK_LEVEL_AVX2: name##_avx2 args; break;                                \
        default: name##_portable args; break;                                       \
        }                                                                           \
    }
#define CK_UNPAREN(...) __VA_ARGS__

// c[r, w] = alpha * sum_x a(r, x) b[x, w] for r < R, w < W, a(r, x) = a[r ars + x axs].
// R and W are constants where it matters (ROWS, the body's block width), so acc lives in registers.
static inline __attribute__((always_inline))
void block(size_t R, size_t W, size_t depth, const float *a, size_t ars, size_t axs,
           const float *b, size_t ldb, float *c, size_t ldc, float alpha) {
    float acc[ROWS][MAX_COLUMNS];
    for (size_t r = 0; r < R; r++)
        for (size_t w = 0; w < W; w++) acc[r][w] = 0;
    for (size_t x = 0; x < depth; x++) {
        const float *row = b + x * ldb;
        for (size_t r = 0; r < R; r++) {
            float factor = a[r * ars + x * axs];
            for (size_t w = 0; w < W; w++) acc[r][w] += factor * row[w];
        }
    }
    for (size_t r = 0; r < R; r++)
        for (size_t w = 0; w < W; w++) c[r * ldc + w] = alpha * acc[r][w];
}

// C (m x n, row stride ldc) = alpha A B; A(r, x) = a[r ars + x axs] (m x depth; strides give A or
// A^T without a copy), B depth x n with row stride ldb. COLUMNS (<= MAX_COLUMNS) is a constant
// after inlining: the block width of the instruction set.
static inline __attribute__((always_inline))
void small_gemm(size_t m, size_t n, size_t depth, const float *a, size_t ars, size_t axs,
                const float *b, size_t ldb, float *c, size_t ldc, float alpha, size_t COLUMNS) {
    size_t i = 0;
    for (; i + ROWS <= m; i += ROWS) {
        size_t j = 0;
        for (; j + COLUMNS <= n; j += COLUMNS)
            block(ROWS, COLUMNS, depth, a + i * ars, ars, axs, b + j, ldb, c + i * ldc + j, ldc, alpha);
        if (j < n) block(ROWS, n - j, depth, a + i * ars, ars, axs, b + j, ldb, c + i * ldc + j, ldc, alpha);
    }
    for (; i < m; i++) {
        size_t j = 0;
        for (; j + COLUMNS <= n; j += COLUMNS)
            block(1, COLUMNS, depth, a + i * ars, ars, axs, b + j, ldb, c + i * ldc + j, ldc, alpha);
        if (j < n) block(1, n - j, depth, a + i * ars, ars, axs, b + j, ldb, c + i * ldc + j, ldc, alpha);
    }
}

// dst (e x t, row stride t) = src^T, src t x e with row stride ld: k^T or v^T, so that the
// products over the head width read contiguous rows.
static inline __attribute__((always_inline))
void transpose(float *dst, const float *src, size_t ld, size_t t, size_t e) {
    for (size_t j = 0; j < t; j++)
        for (size_t c = 0; c < e; c++) dst[c * t + j] = src[j * ld + c];
}

// dst (t x e, dense) = src's t rows of e floats, row stride ld.
static inline __attribute__((always_inline))
void copy_rows(float *dst, const float *src, size_t ld, size_t t, size_t e) {
    for (size_t j = 0; j < t; j++)
        for (size_t c = 0; c < e; c++) dst[j * e + c] = src[j * ld + c];
}

// Softmax of one row in place: masked keys -inf, the maximum subtracted, exp, normalised.
// A row with no real key becomes 0. 16 explicit lanes vectorise the reductions without -ffast-math.
static inline __attribute__((always_inline))
void softmax_row(float *row, size_t n, const uint8_t *key_mask) {
    if (key_mask != NULL)
        for (size_t j = 0; j < n; j++) row[j] = key_mask[j] ? row[j] : -INFINITY;
    float lanes[16];
    for (int l = 0; l < 16; l++) lanes[l] = -INFINITY;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lanes[l] = row[i + l] > lanes[l] ? row[i + l] : lanes[l];
    float maximum = -INFINITY;
    for (int l = 0; l < 16; l++) maximum = lanes[l] > maximum ? lanes[l] : maximum;
    for (; i < n; i++) maximum = row[i] > maximum ? row[i] : maximum;
    if (!(maximum > -INFINITY)) {
        for (size_t j = 0; j < n; j++) row[j] = 0;
        return;
    }
    float sums[16] = {0};
    for (i = 0; i + 16 <= n; i += 16) {
        float values[16];
        for (int l = 0; l < 16; l++) values[l] = row[i + l] - maximum;
        for (int l = 0; l < 16; l++) {
            float v = values[l] < -87.0f ? 0.0f : exp_poly(values[l]);
            values[l] = v;
            sums[l] += v;
        }
        for (int l = 0; l < 16; l++) row[i + l] = values[l];
    }
    float sum = 0;
    for (int l = 0; l < 16; l++) sum += sums[l];
    for (; i < n; i++) {
        float v = (row[i] - maximum) < -87.0f ? 0.0f : exp_poly(row[i] - maximum);
        row[i] = v;
        sum += v;
    }
    float inverse = 1 / sum;
    for (size_t j = 0; j < n; j++) row[j] *= inverse;
}

size_t ck_attention_scratch(size_t t, size_t e) { return e * t + 2 * t * t; }

CK_BODY void ck_attention_forward_body(const float *q, const float *k, const float *v, size_t ld,
                                       const uint8_t *key_mask, const float *drop, float scale,
                                       float *p, float *o, size_t ldo, size_t t, size_t e, float *scratch,
                                       size_t columns) {
    float *kt = scratch, *weights = scratch + e * t;
    transpose(kt, k, ld, t, e);
    small_gemm(t, t, e, q, ld, 1, kt, t, p, t, scale, columns);          // S = scale q k^T
    // Each row's dropout product while the row is in L1.
    for (size_t i = 0; i < t; i++) {
        float *row = p + i * t;
        softmax_row(row, t, key_mask);
        if (drop != NULL) {
            float *w = weights + i * t;
            const float *m = drop + i * t;
            for (size_t j = 0; j < t; j++) w[j] = row[j] * m[j];
        }
    }
    const float *a = drop != NULL ? weights : p;
    // v's rows are 3 D floats apart, so a strip of them falls into a few cache sets: the product
    // reads them copied into one dense t x e block (the scratch k^T used, free again).
    float *dense = scratch;
    copy_rows(dense, v, ld, t, e);
    small_gemm(t, e, t, a, t, 1, dense, e, o, ldo, 1, columns);           // o = (P * M) v

}
CK_DISPATCH_VOID_TILED(ck_attention_forward,
                       (const float *q, const float *k, const float *v, size_t ld, const uint8_t *key_mask, const float *drop,
                        float scale, float *p, float *o, size_t ldo, size_t t, size_t e, float *scratch),
                       (q, k, v, ld, key_mask, drop, scale, p, o, ldo, t, e, scratch))

CK_BODY void ck_attention_backward_body(const float *q, const float *k, const float *v, size_t ld,
                                        const float *p, const float *drop, const float *dout, size_t ldo, float scale,
                                        float *dq, float *dk, float *dv, size_t t, size_t e, float *scratch,
                                        size_t columns) {
    float *vt = scratch, *dp = scratch + e * t, *weights = dp + t * t;
    transpose(vt, v, ld, t, e);
    small_gemm(t, t, e, dout, ldo, 1, vt, t, dp, t, 1, columns);          // dP = dO v^T
    const float *a = p;
    if (drop != NULL) {
        for (size_t i = 0; i < t * t; i++) {
            dp[i] *= drop[i];
            weights[i] = p[i] * drop[i];
        }
        a = weights;
    }
    // The B operands below are rows of q, k, v or dO a power-of-two-ish stride apart (3 D or D
    // floats): a strip of them falls into a few cache sets and evicts itself. Each is first copied
    // into one dense t x e block (the scratch v^T used, free again), which costs t e moves and
    // reads as fast as the transposes above.
    float *dense = scratch;
    copy_rows(dense, dout, ldo, t, e);
    small_gemm(t, e, t, a, 1, t, dense, e, dv, ld, 1, columns);           // dv = (P * M)^T dO
    for (size_t i = 0; i < t; i++) {                              // dS = P (dP - rowsum(P dP))
        const float *pr = p + i * t;
        float *dr = dp + i * t;
        // 16 explicit lanes (summed in lane order) vectorise the row's dot without -ffast-math.
        float lanes[16] = {0};
        size_t j = 0;
        for (; j + 16 <= t; j += 16)
            for (int l = 0; l < 16; l++) lanes[l] += pr[j + l] * dr[j + l];
        float dot = 0;
        for (int l = 0; l < 16; l++) dot += lanes[l];
        for (; j < t; j++) dot += pr[j] * dr[j];
        for (j = 0; j < t; j++) dr[j] = pr[j] * (dr[j] - dot);
    }
    copy_rows(dense, k, ld, t, e);
    small_gemm(t, e, t, dp, t, 1, dense, e, dq, ld, scale, columns);      // dq = scale dS k
    copy_rows(dense, q, ld, t, e);
    small_gemm(t, e, t, dp, 1, t, dense, e, dk, ld, scale, columns);      // dk = scale dS^T q
}
CK_DISPATCH_VOID_TILED(ck_attention_backward,
                       (const float *q, const float *k, const float *v, size_t ld, const float *p, const float *drop,
                        const float *dout, size_t ldo, float scale, float *dq, float *dk, float *dv, size_t t, size_t e,
                        float *scratch),
                       (q, k, v, ld, p, drop, dout, ldo, scale, dq, dk, dv, t, e, scratch))
