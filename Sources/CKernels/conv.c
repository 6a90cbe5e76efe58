#include "CKernels.h"
#include "CKernelsConv.h"
#include "dispatch.h"
#include <math.h>
#include <string.h>

// No a * b + c contracted into one FMA: the AVX2 and AVX-512 compilations would round differently
// from the portable one (and from the Swift references), and every level must give the same bits.
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)

// ---- im2col / col2im --------------------------------------------------------------------
// The output columns q whose input column v = q stride - pad + j is inside the image form one
// range [lower, upper): the inner loops need no bounds test.

static inline void valid_columns(ck_conv_shape s, size_t j, size_t *lower, size_t *upper) {
    long numerator = (long)s.padding - (long)j;
    long lo = numerator <= 0 ? 0 : (numerator + (long)s.stride - 1) / (long)s.stride;
    long upper_numerator = (long)s.width - 1 + (long)s.padding - (long)j;
    long up = upper_numerator < 0 ? 0 : upper_numerator / (long)s.stride + 1;
    if (up > (long)s.out_width) up = (long)s.out_width;
    if (up < lo) up = lo;
    *lower = (size_t)lo; *upper = (size_t)up;
}

CK_BODY void ck_im2col_body(float *restrict cols, const float *restrict x, size_t images, size_t column_stride,
                            ck_conv_shape s) {
    const size_t K = s.kernel, Q = s.out_width, pq = s.out_height * s.out_width, image_size = s.channels * s.height * s.width;
    for (size_t g = 0; g < images; g++) {
        const float *restrict image = x + g * image_size;
        size_t row = 0;
        for (size_t c = 0; c < s.channels; c++) {
            const float *restrict channel = image + c * s.height * s.width;
            for (size_t i = 0; i < K; i++) {
                for (size_t j = 0; j < K; j++, row++) {
                    float *restrict out = cols + row * column_stride + g * pq;
                    size_t lower, upper;
                    valid_columns(s, j, &lower, &upper);
                    if (s.stride == 1 && Q == s.width && upper > lower) {
                        // A "same" convolution: row (c, i, j) is the channel shifted by a constant
                        // offset, so one long copy covers every in-image line (short per-line copies
                        // were most of im2col's time); the columns it wrapped in from the next or
                        // previous line are zeroed after, and the lines above and below the image.
                        long first = (long)s.padding - (long)i, last = (long)s.height + (long)s.padding - (long)i;
                        size_t p0 = first < 0 ? 0 : (size_t)first;
                        size_t p1 = last > (long)s.out_height ? s.out_height : (last < 0 ? 0 : (size_t)last);
                        if (p1 <= p0) { for (size_t t = 0; t < s.out_height * Q; t++) out[t] = 0.0f; continue; }
                        for (size_t t = 0; t < p0 * Q + lower; t++) out[t] = 0.0f;
                        size_t t0 = p0 * Q + lower, t1 = (p1 - 1) * Q + upper;
                        const float *restrict source = channel + (p0 + i - s.padding) * s.width + lower + j - s.padding;
                        memcpy(out + t0, source, (t1 - t0) * sizeof(float));
                        for (size_t p = p0; p + 1 < p1; p++) {
                            for (size_t q = upper; q < Q; q++) out[p * Q + q] = 0.0f;
                            for (size_t q = 0; q < lower; q++) out[(p + 1) * Q + q] = 0.0f;
                        }
                        for (size_t t = t1; t < s.out_height * Q; t++) out[t] = 0.0f;
                        continue;
                    }
                    for (size_t p = 0; p < s.out_height; p++) {
                        float *restrict line = out + p * Q;
                        long h = (long)(p * s.stride) - (long)s.padding + (long)i;
                        if (h < 0 || h >= (long)s.height || upper == lower) {
                            for (size_t q = 0; q < Q; q++) line[q] = 0.0f;
                            continue;
                        }
                        for (size_t q = 0; q < lower; q++) line[q] = 0.0f;
                        for (size_t q = upper; q < Q; q++) line[q] = 0.0f;
                        const float *restrict source = channel + (size_t)h * s.width + lower * s.stride - s.padding + j;
                        if (s.stride == 1) {
                            for (size_t q = 0; q < upper - lower; q++) line[lower + q] = source[q];
                        } else {
                            for (size_t q = 0; q < upper - lower; q++) line[lower + q] = source[q * s.stride];
                        }
                    }
                }
            }
        }
    }
}
CK_DISPATCH_VOID(ck_im2col, (float *restrict cols, const float *restrict x, size_t images, size_t column_stride, ck_conv_shape s),
                 (cols, x, images, column_stride, s))

CK_BODY void ck_col2im_body(float *restrict x, const float *restrict cols, size_t images, size_t column_stride,
                            ck_conv_shape s) {
    const size_t K = s.kernel, Q = s.out_width, pq = s.out_height * s.out_width, image_size = s.channels * s.height * s.width;
    for (size_t g = 0; g < images; g++) {
        float *restrict image = x + g * image_size;
        size_t row = 0;
        for (size_t c = 0; c < s.channels; c++) {
            float *restrict channel = image + c * s.height * s.width;
            for (size_t i = 0; i < K; i++) {
                for (size_t j = 0; j < K; j++, row++) {
                    const float *restrict from = cols + row * column_stride + g * pq;
                    size_t lower, upper;
                    valid_columns(s, j, &lower, &upper);
                    if (upper == lower) continue;
                    for (size_t p = 0; p < s.out_height; p++) {
                        long h = (long)(p * s.stride) - (long)s.padding + (long)i;
                        if (h < 0 || h >= (long)s.height) continue;
                        float *restrict target = channel + (size_t)h * s.width + lower * s.stride - s.padding + j;
                        const float *restrict line = from + p * Q + lower;
                        if (s.stride == 1) {
                            for (size_t q = 0; q < upper - lower; q++) target[q] += line[q];
                        } else {
                            for (size_t q = 0; q < upper - lower; q++) target[q * s.stride] += line[q];
                        }
                    }
                }
            }
        }
    }
}
CK_DISPATCH_VOID(ck_col2im, (float *restrict x, const float *restrict cols, size_t images, size_t column_stride, ck_conv_shape s),
                 (x, cols, images, column_stride, s))

// ---- group normalisation -------------------------------------------------------------------
// Sums over a group run in LANES explicit lanes (so the compiler vectorises them without
// reassociating), added up in lane order at the end: the same bits at every instruction set.

enum { LANES = 16 };

CK_BODY double sum_double(const float *restrict x, size_t n) {
    double lanes[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) lanes[l] += (double)x[i + l];
    double sum = 0;
    for (int l = 0; l < LANES; l++) sum += lanes[l];
    for (; i < n; i++) sum += (double)x[i];
    return sum;
}

CK_BODY double squares_double(const float *restrict x, size_t n, float m) {
    double lanes[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) { double d = (double)(x[i + l] - m); lanes[l] += d * d; }
    double sum = 0;
    for (int l = 0; l < LANES; l++) sum += lanes[l];
    for (; i < n; i++) { double d = (double)(x[i] - m); sum += d * d; }
    return sum;
}

CK_BODY void ck_group_norm_forward_body(float *restrict y, float *restrict mean, float *restrict inv,
                                        const float *restrict x, const float *restrict gamma, const float *restrict beta,
                                        size_t batch, size_t channels, size_t groups, size_t hw, float eps) {
    const size_t per_group = channels / groups, n = per_group * hw, width = channels * hw;
    for (size_t b = 0; b < batch; b++) {
        for (size_t g = 0; g < groups; g++) {
            const size_t start = b * width + g * n;
            const float *restrict xg = x + start;
            float m = (float)(sum_double(xg, n) / (double)n);
            float s = 1.0f / sqrtf((float)(squares_double(xg, n, m) / (double)n) + eps);
            mean[b * groups + g] = m;
            inv[b * groups + g] = s;
            for (size_t cc = 0; cc < per_group; cc++) {
                size_t c = g * per_group + cc;
                float a = s * gamma[c], shift = beta[c] - m * a;
                const float *restrict xc = xg + cc * hw;
                float *restrict yc = y + start + cc * hw;
                for (size_t i = 0; i < hw; i++) yc[i] = xc[i] * a + shift;
            }
        }
    }
}
CK_DISPATCH_VOID(ck_group_norm_forward,
                 (float *restrict y, float *restrict mean, float *restrict inv, const float *restrict x,
                  const float *restrict gamma, const float *restrict beta, size_t batch, size_t channels, size_t groups,
                  size_t hw, float eps),
                 (y, mean, inv, x, gamma, beta, batch, channels, groups, hw, eps))

CK_BODY void ck_group_norm_backward_body(float *restrict dx, float *restrict dgamma, float *restrict dbeta,
                                         const float *restrict dy, const float *restrict x,
                                         const float *restrict mean, const float *restrict inv, const float *restrict gamma,
                                         size_t batch, size_t channels, size_t groups, size_t hw) {
    const size_t per_group = channels / groups, n = per_group * hw, width = channels * hw;
    for (size_t b = 0; b < batch; b++) {
        for (size_t g = 0; g < groups; g++) {
            const size_t start = b * width + g * n;
            const float m = mean[b * groups + g], s = inv[b * groups + g];
            float sum_dxh = 0, sum_dxh_xh = 0;
            for (size_t cc = 0; cc < per_group; cc++) {
                size_t c = g * per_group + cc;
                const float *restrict xc = x + start + cc * hw, *restrict dyc = dy + start + cc * hw;
                float dy_lanes[LANES] = {0}, dyxh_lanes[LANES] = {0};
                size_t i = 0;
                for (; i + LANES <= hw; i += LANES)
                    for (int l = 0; l < LANES; l++) {
                        float xh = (xc[i + l] - m) * s;
                        dy_lanes[l] += dyc[i + l];
                        dyxh_lanes[l] += dyc[i + l] * xh;
                    }
                float sum_dy = 0, sum_dy_xh = 0;
                for (int l = 0; l < LANES; l++) { sum_dy += dy_lanes[l]; sum_dy_xh += dyxh_lanes[l]; }
                for (; i < hw; i++) {
                    float xh = (xc[i] - m) * s;
                    sum_dy += dyc[i];
                    sum_dy_xh += dyc[i] * xh;
                }
                dgamma[c] += sum_dy_xh;
                dbeta[c] += sum_dy;
                sum_dxh += sum_dy * gamma[c];
                sum_dxh_xh += sum_dy_xh * gamma[c];
            }
            if (dx == NULL) continue;
            const float factor = s / (float)n, count = (float)n;
            for (size_t cc = 0; cc < per_group; cc++) {
                size_t c = g * per_group + cc;
                const float gc = gamma[c];
                const float *restrict xc = x + start + cc * hw, *restrict dyc = dy + start + cc * hw;
                float *restrict dxc = dx + start + cc * hw;
                for (size_t i = 0; i < hw; i++) {
                    float xh = (xc[i] - m) * s;
                    dxc[i] = factor * (count * dyc[i] * gc - sum_dxh - xh * sum_dxh_xh);
                }
            }
        }
    }
}
CK_DISPATCH_VOID(ck_group_norm_backward,
                 (float *restrict dx, float *restrict dgamma, float *restrict dbeta, const float *restrict dy,
                  const float *restrict x, const float *restrict mean, const float *restrict inv, const float *restrict gamma,
                  size_t batch, size_t channels, size_t groups, size_t hw),
                 (dx, dgamma, dbeta, dy, x, mean, inv, gamma, batch, channels, groups, hw))

// ---- residual add + ReLU ---------------------------------------------------------------------

CK_BODY void ck_add_relu_body(float *y, const float *a, const float *restrict b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}
CK_DISPATCH_VOID(ck_add_relu, (float *y, const float *a, const float *restrict b, size_t n), (y, a, b, n))

/// y = max(x, 0) out of place: the ReLU layer's copy and clamp in one pass.
CK_BODY void ck_relu_copy_body(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
CK_DISPATCH_VOID(ck_relu_copy, (float *restrict y, const float *restrict x, size_t n), (y, x, n))
