// Plain multi-head attention of one (sample, head), forward and backward, in one call each.
//
// The attention products are tiny (T x T x E with T ~ 50-65 tokens, E = 32-64): through the
// global sgemm each one pays the BLAS's dispatch and packing, and a step of vit-small-28 makes
// ~74K of them. Here every product is one register-tiled loop nest over operands that stay in L1:
// blocks of 4 output rows x 16 columns accumulate in registers (the constant bounds let the
// compiler unroll them and vectorise the 16 columns for each target), the softmax's scale rides
// on the product, and mask, row maximum, exp, sum and normalisation run over the row while it is
// still in L1. Each body is compiled per instruction set (dispatch.h).
#include "CKernels.h"
#include "dispatch.h"
#include "exp_poly.h"
#include <math.h>

enum { ROWS = 4, COLUMNS = 16 };

// c[r, w] = alpha * sum_x a(r, x) b[x, w] for r < R, w < W, a(r, x) = a[r ars + x axs].
// R and W are constants where it matters (ROWS, COLUMNS), so acc lives in registers.
static inline __attribute__((always_inline))
void block(size_t R, size_t W, size_t depth, const float *a, size_t ars, size_t axs,
           const float *b, size_t ldb, float *c, size_t ldc, float alpha) {
    float acc[ROWS][COLUMNS];
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
// A^T without a copy), B depth x n with row stride ldb.
static inline __attribute__((always_inline))
void small_gemm(size_t m, size_t n, size_t depth, const float *a, size_t ars, size_t axs,
                const float *b, size_t ldb, float *c, size_t ldc, float alpha) {
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
                                       float *p, float *o, size_t ldo, size_t t, size_t e, float *scratch) {
    float *kt = scratch, *weights = scratch + e * t;
    transpose(kt, k, ld, t, e);
    small_gemm(t, t, e, q, ld, 1, kt, t, p, t, scale);          // S = scale q k^T
    for (size_t i = 0; i < t; i++) softmax_row(p + i * t, t, key_mask);
    const float *a = p;
    if (drop != NULL) {
        for (size_t i = 0; i < t * t; i++) weights[i] = p[i] * drop[i];
        a = weights;
    }
    small_gemm(t, e, t, a, t, 1, v, ld, o, ldo, 1);              // o = (P * M) v
}
CK_DISPATCH_VOID(ck_attention_forward,
                 (const float *q, const float *k, const float *v, size_t ld, const uint8_t *key_mask, const float *drop,
                  float scale, float *p, float *o, size_t ldo, size_t t, size_t e, float *scratch),
                 (q, k, v, ld, key_mask, drop, scale, p, o, ldo, t, e, scratch))

CK_BODY void ck_attention_backward_body(const float *q, const float *k, const float *v, size_t ld,
                                        const float *p, const float *drop, const float *dout, size_t ldo, float scale,
                                        float *dq, float *dk, float *dv, size_t t, size_t e, float *scratch) {
    float *vt = scratch, *dp = scratch + e * t, *weights = dp + t * t;
    transpose(vt, v, ld, t, e);
    small_gemm(t, t, e, dout, ldo, 1, vt, t, dp, t, 1);          // dP = dO v^T
    const float *a = p;
    if (drop != NULL) {
        for (size_t i = 0; i < t * t; i++) {
            dp[i] *= drop[i];
            weights[i] = p[i] * drop[i];
        }
        a = weights;
    }
    small_gemm(t, e, t, a, 1, t, dout, ldo, dv, ld, 1);          // dv = (P * M)^T dO
    for (size_t i = 0; i < t; i++) {                              // dS = P (dP - rowsum(P dP))
        const float *pr = p + i * t;
        float *dr = dp + i * t;
        float dot = 0;
        for (size_t j = 0; j < t; j++) dot += pr[j] * dr[j];
        for (size_t j = 0; j < t; j++) dr[j] = pr[j] * (dr[j] - dot);
    }
    small_gemm(t, e, t, dp, t, 1, k, ld, dq, ld, scale);         // dq = scale dS k
    small_gemm(t, e, t, dp, 1, t, q, ld, dk, ld, scale);         // dk = scale dS^T q
}
CK_DISPATCH_VOID(ck_attention_backward,
                 (const float *q, const float *k, const float *v, size_t ld, const float *p, const float *drop,
                  const float *dout, size_t ldo, float scale, float *dq, float *dk, float *dv, size_t t, size_t e,
                  float *scratch),
                 (q, k, v, ld, p, drop, dout, ldo, scale, dq, dk, dv, t, e, scratch))
