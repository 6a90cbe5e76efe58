#include "CKernels.h"
#include "CKernelsReduce.h"
#include "dispatch.h"
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

CK_BODY void ck_relu_backward_body(float *dx, const float *dy, const float *restrict y, size_t n) {
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

static inline float exp_poly(float x) {
    // exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts).
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_roundevenf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale; memcpy(&scale, &e, 4);
    return p * scale;
}

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
