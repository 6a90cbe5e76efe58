#include "CKernels.h"
#include "CKernelsReduce.h"
#include "dispatch.h"
#include <string.h>
#include <immintrin.h>

// Blocks small enough to stay in L1 on the stack; the conversions dispatch on their own.
enum { BLOCK = 256 };

// Portable path (and F16C tails): widen both blocks, add in float32, narrow once.
static void f16_sum_blocks(const uint16_t *in, uint16_t *inout, size_t n) {
    float a[BLOCK], b[BLOCK];
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t m = n - start < BLOCK ? n - start : BLOCK;
        ck_f16_to_f32(in + start, a, m);
        ck_f16_to_f32(inout + start, b, m);
        for (size_t i = 0; i < m; i++) a[i] += b[i];
        ck_f32_to_f16(a, inout + start, m);
    }
}

CK_TARGET_AVX2
static void f16_sum_f16c(const uint16_t *in, uint16_t *inout, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(inout + i)));
        __m128i sum = _mm256_cvtps_ph(_mm256_add_ps(a, b), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(inout + i), sum);
    }
    f16_sum_blocks(in + i, inout + i, n - i);
}

// F16C at AVX2 and above, like the conversions.
void ck_f16_sum_into(const uint16_t *in, uint16_t *inout, size_t n) {
    if (ck_level() >= CK_LEVEL_AVX2) f16_sum_f16c(in, inout, n);
    else f16_sum_blocks(in, inout, n);
}

// Integer arithmetic only (the same rounding as ck_f32_to_bf16): each compilation vectorises it.
CK_BODY void ck_bf16_sum_into_body(const uint16_t *in, uint16_t *inout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t xa = (uint32_t)in[i] << 16, xb = (uint32_t)inout[i] << 16;
        float a, b; memcpy(&a, &xa, 4); memcpy(&b, &xb, 4);
        float s = a + b;
        uint32_t x; memcpy(&x, &s, 4);
        uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
        uint32_t is_nan = (x & 0x7fffffffu) > 0x7f800000u;
        inout[i] = is_nan ? (uint16_t)((x >> 16) | 0x40u) : (uint16_t)(rounded >> 16);
    }
}
CK_DISPATCH_VOID(ck_bf16_sum_into, (const uint16_t *in, uint16_t *inout, size_t n), (in, inout, n))
