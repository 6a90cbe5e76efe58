#include "CKernels.h"
#include "CKernelsReduce.h"
#include "dispatch.h"
#include "exp_poly.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

// ---- Float16, portable path (bit manipulation, round to nearest even) -------------------

static inline uint16_t f32_to_f16_scalar(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) {                     // inf or NaN
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    }
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); // rounds to >= 65520: inf
    if (absx < 0x38800000u) {                      // subnormal half (or zero)
        // Add 0.5 (as a float) so the FPU rounds the mantissa to nearest even for us.
        float a; memcpy(&a, &absx, 4);
        a += 0.5f;
        uint32_t r; memcpy(&r, &a, 4);
        return (uint16_t)(sign | (r - 0x3f000000u));
    }
    uint32_t mant_odd = (absx >> 13) & 1u;
    absx += 0xc8000fffu + mant_odd;                // rebias exponent (-112 << 23) and round
    return (uint16_t)(sign | (absx >> 13));
}

static inline float f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t x;
    if (exp == 0x1f) {
        x = sign | 0x7f800000u | (mant << 13);
    } else if (exp == 0) {
        if (mant == 0) { x = sign; }
        else {                                     // subnormal: value = mant * 2^-24
            float f = (float)mant * 5.9604644775390625e-8f;
            memcpy(&x, &f, 4); x |= sign;
        }
    } else {
        x = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f; memcpy(&f, &x, 4); return f;
}

CK_TARGET_AVX2
static void f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = f32_to_f16_scalar(src[i]);
}

CK_TARGET_AVX2
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

// F16C at AVX2 and above (the AVX-512 level uses the same 256-bit conversions).
void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    if (ck_level() >= CK_LEVEL_AVX2) { f32_to_f16_f16c(src, dst, n); return; }
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_scalar(src[i]);
}

void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (ck_level() >= CK_LEVEL_AVX2) { f16_to_f32_f16c(src, dst, n); return; }
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_scalar(src[i]);
}

// ---- bfloat16: the top 16 bits of a float32, rounded to nearest even --------------------
// Plain integer arithmetic; each compilation lets the compiler vectorise it at its width.

CK_BODY void ck_f32_to_bf16_body(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t x; memcpy(&x, src + i, 4);
        uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
        uint32_t is_nan = (x & 0x7fffffffu) > 0x7f800000u;
        // A NaN keeps its sign and becomes a quiet NaN rather than rounding into inf.
        dst[i] = is_nan ? (uint16_t)((x >> 16) | 0x40u) : (uint16_t)(rounded >> 16);
    }
}
CK_DISPATCH_VOID(ck_f32_to_bf16, (const float *src, uint16_t *dst, size_t n), (src, dst, n))

CK_BODY void ck_bf16_to_f32_body(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)src[i] << 16;
        memcpy(dst + i, &x, 4);
    }
}
CK_DISPATCH_VOID(ck_bf16_to_f32, (const uint16_t *src, float *dst, size_t n), (src, dst, n))

CK_BODY int ck_bf16_to_f32_finite_body(const uint16_t *restrict src, float *restrict dst, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)src[i] << 16;
        bad |= (uint32_t)((x & 0x7f800000u) == 0x7f800000u);
        memcpy(dst + i, &x, 4);
    }
    return bad == 0;
}
CK_DISPATCH(int, ck_bf16_to_f32_finite, (const uint16_t *restrict src, float *restrict dst, size_t n), (src, dst, n))

// ---- layer kernels ----------------------------------------------------------------------

CK_BODY void ck_add_bias_rows_body(float *restrict y, const float *restrict bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict row = y + r * cols;
        for (size_t c = 0; c < cols; c++) row[c] += bias[c];
    }
}
CK_DISPATCH_VOID(ck_add_bias_rows, (float *restrict y, const float *restrict bias, size_t rows, size_t cols), (y, bias, rows, cols))

CK_BODY void ck_add_bias_relu_rows_body(float *restrict y, const float *restrict bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict row = y + r * cols;
        for (size_t c = 0; c < cols; c++) {
            float v = row[c] + bias[c];
            row[c] = v > 0.0f ? v : 0.0f;
        }
    }
}
CK_DISPATCH_VOID(ck_add_bias_relu_rows, (float *restrict y, const float *restrict bias, size_t rows, size_t cols), (y, bias, rows, cols))

CK_BODY void ck_relu_bias_backward_body(float *restrict dy, const float *restrict y, float *restrict db, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict g = dy + r * cols;
        const float *restrict out = y + r * cols;
        for (size_t c = 0; c < cols; c++) {
            float v = out[c] > 0.0f ? g[c] : 0.0f;
            g[c] = v;
            db[c] += v;
        }
    }
}
CK_DISPATCH_VOID(ck_relu_bias_backward, (float *restrict dy, const float *restrict y, float *restrict db, size_t rows, size_t cols),
                 (dy, y, db, rows, cols))

CK_BODY void ck_relu_inplace_body(float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}
CK_DISPATCH_VOID(ck_relu_inplace, (float *restrict y, size_t n), (y, n))

// dx == dy (Linear's and the residual block's in-place masking) has its own loop: with dx and dy
// unqualified the compiler guards its vector loop with an overlap test that an in-place call fails,
// so in place the whole pass ran scalar.
CK_BODY void relu_mask_in_place(float *restrict g, const float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}
CK_BODY void ck_relu_backward_body(float *dx, const float *dy, const float *restrict y, size_t n) {
    if (dx == dy) { relu_mask_in_place(dx, y, n); return; }
    for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
CK_DISPATCH_VOID(ck_relu_backward, (float *dx, const float *dy, const float *restrict y, size_t n), (dx, dy, y, n))

CK_BODY void ck_bias_gradient_body(float *restrict db, const float *restrict dy, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *restrict row = dy + r * cols;
        for (size_t c = 0; c < cols; c++) db[c] += row[c];
    }
}
CK_DISPATCH_VOID(ck_bias_gradient, (float *restrict db, const float *restrict dy, size_t rows, size_t cols), (db, dy, rows, cols))

CK_BODY void ck_adamw_body(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                           size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                           float correction1, float correction2) {
    const float decay = 1.0f - lr * weight_decay;
    const float step = lr / correction1;
    const float sqrt_c2 = sqrtf(correction2);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi; v[i] = vi;
        p[i] = p[i] * decay - step * mi / ((__builtin_elementwise_sqrt(vi) / sqrt_c2 + eps));
    }
}
CK_DISPATCH_VOID(ck_adamw,
                 (float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay, float correction1, float correction2),
                 (p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, correction1, correction2))

// ---- checks -----------------------------------------------------------------------------

CK_BODY int ck_all_finite_body(const float *restrict x, size_t n) {
    // Exponent bits all ones = inf or NaN; OR the test over the buffer (vectorises, no branches).
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits; memcpy(&bits, x + i, 4);
        bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}
CK_DISPATCH(int, ck_all_finite, (const float *restrict x, size_t n), (x, n))

// ---- softmax helpers ---------------------------------------------------------------------
// Reductions use 16 explicit lanes so the compiler vectorises them without -ffast-math.

CK_BODY float ck_max_body(const float *restrict x, size_t n) {
    float lanes[16];
    for (int l = 0; l < 16; l++) lanes[l] = -INFINITY;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];
    float m = -INFINITY;
    for (int l = 0; l < 16; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
CK_DISPATCH(float, ck_max, (const float *restrict x, size_t n), (x, n))

CK_BODY float ck_exp_sum_body(const float *x, float *y, size_t n, float shift) {
    // Each block of 16 is loaded into registers before any store, so y may alias x (softmax in
    // place) without the compiler falling back to scalar code for possible overlap.
    float lanes[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float block[16];
        for (int l = 0; l < 16; l++) block[l] = x[i + l] - shift;
        for (int l = 0; l < 16; l++) {
            float v = block[l] < -87.0f ? 0.0f : exp_poly(block[l]);
            block[l] = v;
            lanes[l] += v;
        }
        for (int l = 0; l < 16; l++) y[i + l] = block[l];
    }
    float sum = 0;
    for (int l = 0; l < 16; l++) sum += lanes[l];
    for (; i < n; i++) {
        float v = (x[i] - shift) < -87.0f ? 0.0f : exp_poly(x[i] - shift);
        y[i] = v;
        sum += v;
    }
    return sum;
}
CK_DISPATCH(float, ck_exp_sum, (const float *x, float *y, size_t n, float shift), (x, y, n, shift))

// ---- GELU, exact form ---------------------------------------------------------------------
// erf as Eigen's rational approximation (x p(x^2) / q(x^2) on [-4, 4]; erf(4) is 1 in float),
// which vectorises where libm's erff, called per element, does not: a ViT's MLP runs GELU over
// B T x 4D values forward and backward, and scalar erff was a fifth of the step.

static inline float erf_rational(float x) {
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return x * p / q;
}

CK_BODY void ck_gelu_body(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erf_rational(x[i] * 0.70710678118654752f));
}
CK_DISPATCH_VOID(ck_gelu, (float *restrict y, const float *restrict x, size_t n), (y, x, n))

CK_BODY void ck_gelu_backward_body(float *restrict dx, const float *restrict dy, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erf_rational(v * 0.70710678118654752f));
        float pdf = exp_poly(-0.5f * v * v) * 0.39894228040143268f;
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}
CK_DISPATCH_VOID(ck_gelu_backward, (float *restrict dx, const float *restrict dy, const float *restrict x, size_t n), (dx, dy, x, n))

// ---- LayerNorm over rows ------------------------------------------------------------------
// Row sums in 16 explicit lanes (vectorised without -ffast-math); one call for all B T rows.

static inline __attribute__((always_inline)) float lane_sum(const float *lanes) {
    float sum = 0;
    for (int l = 0; l < 16; l++) sum += lanes[l];
    return sum;
}

CK_BODY void ck_layer_norm_body(float *restrict y, float *restrict xhat, float *restrict inverse_std, const float *restrict x,
                                const float *restrict gamma, const float *restrict beta, size_t rows, size_t w, float epsilon) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * w;
        float lanes[16] = {0};
        size_t c = 0;
        for (; c + 16 <= w; c += 16)
            for (int l = 0; l < 16; l++) lanes[l] += row[c + l];
        float sum = lane_sum(lanes);
        for (; c < w; c++) sum += row[c];
        float mean = sum / (float)w;
        float squares[16] = {0};
        for (c = 0; c + 16 <= w; c += 16)
            for (int l = 0; l < 16; l++) { float d = row[c + l] - mean; squares[l] += d * d; }
        float variance = lane_sum(squares);
        for (; c < w; c++) { float d = row[c] - mean; variance += d * d; }
        float s = 1.0f / sqrtf(variance / (float)w + epsilon);
        inverse_std[r] = s;
        float *yr = y + r * w, *xr = xhat + r * w;
        for (c = 0; c < w; c++) {
            float n = (row[c] - mean) * s;
            xr[c] = n;
            yr[c] = n * gamma[c] + beta[c];
        }
    }
}
CK_DISPATCH_VOID(ck_layer_norm,
                 (float *restrict y, float *restrict xhat, float *restrict inverse_std, const float *restrict x,
                  const float *restrict gamma, const float *restrict beta, size_t rows, size_t w, float epsilon),
                 (y, xhat, inverse_std, x, gamma, beta, rows, w, epsilon))

CK_BODY void ck_layer_norm_backward_body(float *restrict dx, float *restrict dgamma, float *restrict dbeta, const float *restrict dy,
                                         const float *restrict xhat, const float *restrict inverse_std, const float *restrict gamma,
                                         size_t rows, size_t w) {
    for (size_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * w, *xh = xhat + r * w;
        float sums[16] = {0}, dots[16] = {0};
        size_t c = 0;
        for (; c + 16 <= w; c += 16)
            for (int l = 0; l < 16; l++) {
                float g = dyr[c + l], n = xh[c + l], dxh = g * gamma[c + l];
                dgamma[c + l] += g * n;
                dbeta[c + l] += g;
                sums[l] += dxh;
                dots[l] += dxh * n;
            }
        float sum = lane_sum(sums), dot = lane_sum(dots);
        for (; c < w; c++) {
            float g = dyr[c], n = xh[c], dxh = g * gamma[c];
            dgamma[c] += g * n;
            dbeta[c] += g;
            sum += dxh;
            dot += dxh * n;
        }
        if (dx == NULL) continue;
        float s = inverse_std[r] / (float)w, width = (float)w;
        float *dxr = dx + r * w;
        for (c = 0; c < w; c++) dxr[c] = s * (width * dyr[c] * gamma[c] - sum - xh[c] * dot);
    }
}
CK_DISPATCH_VOID(ck_layer_norm_backward,
                 (float *restrict dx, float *restrict dgamma, float *restrict dbeta, const float *restrict dy,
                  const float *restrict xhat, const float *restrict inverse_std, const float *restrict gamma, size_t rows, size_t w),
                 (dx, dgamma, dbeta, dy, xhat, inverse_std, gamma, rows, w))
