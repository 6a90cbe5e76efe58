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

// The normalised value x a + shift (a = inv gamma[c], shift = beta[c] - mean a) of one channel's n
// pixels, then the activation: the plain layer's, the ReLU layer's and the residual block's
// add + ReLU operations in their order, so the fused forms give the unfused sequence's bits.
CK_BODY void group_norm_apply(float *restrict y, const float *restrict x, const float *restrict residual,
                              float a, float shift, size_t n, int activation) {
    switch (activation) {
    case CK_GROUP_NORM_RELU:
        for (size_t i = 0; i < n; i++) { float v = x[i] * a + shift; y[i] = v > 0.0f ? v : 0.0f; }
        break;
    case CK_GROUP_NORM_ADD_RELU:
        for (size_t i = 0; i < n; i++) { float v = x[i] * a + shift; v = v + residual[i]; y[i] = v > 0.0f ? v : 0.0f; }
        break;
    default:
        for (size_t i = 0; i < n; i++) y[i] = x[i] * a + shift;
    }
}

CK_BODY void ck_group_norm_forward_body(float *restrict y, float *restrict mean, float *restrict inv,
                                        const float *restrict x, const float *restrict gamma, const float *restrict beta,
                                        int activation, const float *restrict residual,
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
                group_norm_apply(y + start + cc * hw, xg + cc * hw, residual ? residual + start + cc * hw : NULL, a, shift, hw,
                                 activation);
            }
        }
    }
}
CK_DISPATCH_VOID(ck_group_norm_forward,
                 (float *restrict y, float *restrict mean, float *restrict inv, const float *restrict x,
                  const float *restrict gamma, const float *restrict beta, int activation, const float *restrict residual,
                  size_t batch, size_t channels, size_t groups, size_t hw, float eps),
                 (y, mean, inv, x, gamma, beta, activation, residual, batch, channels, groups, hw, eps))

// dy through the activation's ReLU at pixel i: kept where the ReLU's output is positive, else 0 (what
// the ReLU layer's backward hands the normalisation). RELU recomputes the pre-activation x a + shift
// (the forward's bits, so the forward's sides) instead of reading the output; ADD_RELU's output also
// depends on the skip, so it reads the output and writes the masked gradient back for the skip path.
CK_BODY float group_norm_gradient(int activation, float *restrict dy, const float *restrict x, const float *restrict out,
                                  size_t i, float a, float shift) {
    switch (activation) {
    case CK_GROUP_NORM_RELU: { float v = x[i] * a + shift; return v > 0.0f ? dy[i] : 0.0f; }
    case CK_GROUP_NORM_ADD_RELU: { float d = out[i] > 0.0f ? dy[i] : 0.0f; dy[i] = d; return d; }
    default: return dy[i];
    }
}

// The backward over every (sample, group) for one activation, a constant where it is inlined below,
// so each activation gets its own vectorised loops. The sums and dx are the plain layer's
// arithmetic on the masked gradient, in the plain layer's lanes and order.
CK_BODY void group_norm_backward_groups(float *restrict dx, float *restrict dgamma, float *restrict dbeta, float *restrict dy,
                                        const float *restrict x, const float *restrict mean, const float *restrict inv,
                                        const float *restrict gamma, const float *restrict beta, const float *restrict out,
                                        const int activation, size_t batch, size_t channels, size_t groups, size_t hw) {
    const size_t per_group = channels / groups, n = per_group * hw, width = channels * hw;
    for (size_t b = 0; b < batch; b++) {
        for (size_t g = 0; g < groups; g++) {
            const size_t start = b * width + g * n;
            const float m = mean[b * groups + g], s = inv[b * groups + g];
            float sum_dxh = 0, sum_dxh_xh = 0;
            for (size_t cc = 0; cc < per_group; cc++) {
                size_t c = g * per_group + cc;
                // The forward's a and shift (only RELU's mask reads them).
                const float a = s * gamma[c], shift = beta[c] - m * a;
                const float *restrict xc = x + start + cc * hw, *restrict outc = out ? out + start + cc * hw : NULL;
                float *restrict dyc = dy + start + cc * hw;
                float dy_lanes[LANES] = {0}, dyxh_lanes[LANES] = {0};
                size_t i = 0;
                for (; i + LANES <= hw; i += LANES)
                    for (int l = 0; l < LANES; l++) {
                        float d = group_norm_gradient(activation, dyc, xc, outc, i + l, a, shift);
                        float xh = (xc[i + l] - m) * s;
                        dy_lanes[l] += d;
                        dyxh_lanes[l] += d * xh;
                    }
                float sum_dy = 0, sum_dy_xh = 0;
                for (int l = 0; l < LANES; l++) { sum_dy += dy_lanes[l]; sum_dy_xh += dyxh_lanes[l]; }
                for (; i < hw; i++) {
                    float d = group_norm_gradient(activation, dyc, xc, outc, i, a, shift);
                    float xh = (xc[i] - m) * s;
                    sum_dy += d;
                    sum_dy_xh += d * xh;
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
                const float gc = gamma[c], a = s * gc, shift = beta[c] - m * a;
                const float *restrict xc = x + start + cc * hw;
                float *restrict dyc = dy + start + cc * hw;
                float *restrict dxc = dx + start + cc * hw;
                for (size_t i = 0; i < hw; i++) {
                    // ADD_RELU's dy is masked by now.
                    float d = activation == CK_GROUP_NORM_RELU ? group_norm_gradient(activation, dyc, xc, NULL, i, a, shift) : dyc[i];
                    float xh = (xc[i] - m) * s;
                    dxc[i] = factor * (count * d * gc - sum_dxh - xh * sum_dxh_xh);
                }
            }
        }
    }
}

CK_BODY void ck_group_norm_backward_body(float *restrict dx, float *restrict dgamma, float *restrict dbeta, float *restrict dy,
                                         const float *restrict x, const float *restrict mean, const float *restrict inv,
                                         const float *restrict gamma, const float *restrict beta, int activation,
                                         const float *restrict out, size_t batch, size_t channels, size_t groups, size_t hw) {
    switch (activation) {
    case CK_GROUP_NORM_RELU:
        group_norm_backward_groups(dx, dgamma, dbeta, dy, x, mean, inv, gamma, beta, NULL, CK_GROUP_NORM_RELU,
                                   batch, channels, groups, hw);
        break;
    case CK_GROUP_NORM_ADD_RELU:
        group_norm_backward_groups(dx, dgamma, dbeta, dy, x, mean, inv, gamma, beta, out, CK_GROUP_NORM_ADD_RELU,
                                   batch, channels, groups, hw);
        break;
    default:
        group_norm_backward_groups(dx, dgamma, dbeta, dy, x, mean, inv, gamma, beta, NULL, CK_GROUP_NORM_PLAIN,
                                   batch, channels, groups, hw);
    }
}
CK_DISPATCH_VOID(ck_group_norm_backward,
                 (float *restrict dx, float *restrict dgamma, float *restrict dbeta, float *restrict dy,
                  const float *restrict x, const float *restrict mean, const float *restrict inv, const float *restrict gamma,
                  const float *restrict beta, int activation, const float *restrict out,
                  size_t batch, size_t channels, size_t groups, size_t hw),
                 (dx, dgamma, dbeta, dy, x, mean, inv, gamma, beta, activation, out, batch, channels, groups, hw))

// ---- group normalisation on oneDNN's blocked layout (nChw8c / nChw16c) -----------------------
// Sample b, channel c, pixel p at x[b C HW + (c / K) HW K + p K + c % K]: the K channels of a block
// sit side by side at each pixel, so the kernels run across the K lanes of a block (one vector at
// K = 16 on AVX-512, K = 8 on AVX2) and along the pixels, and a group's statistics are summed from
// per-channel sums (a group may be part of a block or span several). K is a constant in each
// instantiation below, so the lane loops vectorise. The sums run in another order than the NCHW
// kernels' (per channel, then channels in order), so the two layouts agree to rounding, not bitwise.

CK_BODY void group_norm_blocked_forward_k(float *restrict y, float *restrict mean, float *restrict inv,
                                          const float *restrict x, const float *restrict gamma, const float *restrict beta,
                                          const int activation, const float *restrict residual,
                                          size_t batch, size_t channels, size_t groups, size_t hw, float eps, const size_t K) {
    const size_t blocks = channels / K, per_group = channels / groups, n = per_group * hw, width = channels * hw;
    double sums[channels];
    float channel_mean[channels], a[channels], shift[channels];
    for (size_t b = 0; b < batch; b++) {
        const float *restrict xb = x + b * width;
        float *restrict yb = y + b * width;
        const float *restrict rb = residual ? residual + b * width : NULL;
        for (size_t cb = 0; cb < blocks; cb++) {
            double lanes[16] = {0};
            const float *restrict xc = xb + cb * hw * K;
            for (size_t p = 0; p < hw; p++)
                for (size_t l = 0; l < K; l++) lanes[l] += (double)xc[p * K + l];
            for (size_t l = 0; l < K; l++) sums[cb * K + l] = lanes[l];
        }
        for (size_t g = 0; g < groups; g++) {
            double sum = 0;
            for (size_t c = g * per_group; c < (g + 1) * per_group; c++) sum += sums[c];
            float m = (float)(sum / (double)n);
            for (size_t c = g * per_group; c < (g + 1) * per_group; c++) channel_mean[c] = m;
            mean[b * groups + g] = m;
        }
        for (size_t cb = 0; cb < blocks; cb++) {
            double lanes[16] = {0};
            const float *restrict xc = xb + cb * hw * K, *restrict m = channel_mean + cb * K;
            for (size_t p = 0; p < hw; p++)
                for (size_t l = 0; l < K; l++) { double d = (double)(xc[p * K + l] - m[l]); lanes[l] += d * d; }
            for (size_t l = 0; l < K; l++) sums[cb * K + l] = lanes[l];
        }
        for (size_t g = 0; g < groups; g++) {
            double squares = 0;
            for (size_t c = g * per_group; c < (g + 1) * per_group; c++) squares += sums[c];
            float s = 1.0f / sqrtf((float)(squares / (double)n) + eps), m = mean[b * groups + g];
            inv[b * groups + g] = s;
            for (size_t c = g * per_group; c < (g + 1) * per_group; c++) { a[c] = s * gamma[c]; shift[c] = beta[c] - m * a[c]; }
        }
        for (size_t cb = 0; cb < blocks; cb++) {
            const size_t offset = cb * hw * K;
            const float *restrict xc = xb + offset, *restrict ac = a + cb * K, *restrict sc = shift + cb * K;
            float *restrict yc = yb + offset;
            switch (activation) {
            case CK_GROUP_NORM_RELU:
                for (size_t p = 0; p < hw; p++)
                    for (size_t l = 0; l < K; l++) { float v = xc[p * K + l] * ac[l] + sc[l]; yc[p * K + l] = v > 0.0f ? v : 0.0f; }
                break;
            case CK_GROUP_NORM_ADD_RELU: {
                const float *restrict rc = rb + offset;
                for (size_t p = 0; p < hw; p++)
                    for (size_t l = 0; l < K; l++) {
                        float v = xc[p * K + l] * ac[l] + sc[l];
                        v = v + rc[p * K + l];
                        yc[p * K + l] = v > 0.0f ? v : 0.0f;
                    }
                break;
            }
            default:
                for (size_t p = 0; p < hw; p++)
                    for (size_t l = 0; l < K; l++) yc[p * K + l] = xc[p * K + l] * ac[l] + sc[l];
            }
        }
    }
}

CK_BODY void ck_group_norm_blocked_forward_body(float *restrict y, float *restrict mean, float *restrict inv,
                                                const float *restrict x, const float *restrict gamma, const float *restrict beta,
                                                int activation, const float *restrict residual,
                                                size_t batch, size_t channels, size_t groups, size_t hw, float eps, size_t block) {
    // Each (activation, K) pair its own instantiation: the switch inside the pixel loop folds away.
#define CK_GN_FORWARD(ACT, K) group_norm_blocked_forward_k(y, mean, inv, x, gamma, beta, ACT, residual, batch, channels, groups, hw, eps, K)
    if (block == 16) {
        if (activation == CK_GROUP_NORM_RELU) CK_GN_FORWARD(CK_GROUP_NORM_RELU, 16);
        else if (activation == CK_GROUP_NORM_ADD_RELU) CK_GN_FORWARD(CK_GROUP_NORM_ADD_RELU, 16);
        else CK_GN_FORWARD(CK_GROUP_NORM_PLAIN, 16);
    } else {
        if (activation == CK_GROUP_NORM_RELU) CK_GN_FORWARD(CK_GROUP_NORM_RELU, 8);
        else if (activation == CK_GROUP_NORM_ADD_RELU) CK_GN_FORWARD(CK_GROUP_NORM_ADD_RELU, 8);
        else CK_GN_FORWARD(CK_GROUP_NORM_PLAIN, 8);
    }
#undef CK_GN_FORWARD
}
CK_DISPATCH_VOID(ck_group_norm_blocked_forward,
                 (float *restrict y, float *restrict mean, float *restrict inv, const float *restrict x,
                  const float *restrict gamma, const float *restrict beta, int activation, const float *restrict residual,
                  size_t batch, size_t channels, size_t groups, size_t hw, float eps, size_t block),
                 (y, mean, inv, x, gamma, beta, activation, residual, batch, channels, groups, hw, eps, block))

CK_BODY void group_norm_blocked_backward_k(float *restrict dx, float *restrict dgamma, float *restrict dbeta, float *restrict dy,
                                           const float *restrict x, const float *restrict mean, const float *restrict inv,
                                           const float *restrict gamma, const float *restrict beta, const int activation,
                                           const float *restrict out, size_t batch, size_t channels, size_t groups, size_t hw,
                                           const size_t K) {
    const size_t blocks = channels / K, per_group = channels / groups, n = per_group * hw, width = channels * hw;
    float channel_mean[channels], channel_inv[channels], a[channels], shift[channels];
    float sum_dy[channels], sum_dy_xh[channels], factor[channels], group_dxh[channels], group_dxh_xh[channels];
    const float count = (float)n;
    for (size_t b = 0; b < batch; b++) {
        const size_t base = b * width;
        for (size_t c = 0; c < channels; c++) {
            const size_t g = c / per_group;
            const float m = mean[b * groups + g], s = inv[b * groups + g];
            channel_mean[c] = m; channel_inv[c] = s;
            a[c] = s * gamma[c]; shift[c] = beta[c] - m * a[c];
        }
        // Per-channel sums of the masked gradient and of it times x-hat (ADD_RELU writes the mask into dy).
        for (size_t cb = 0; cb < blocks; cb++) {
            const size_t offset = base + cb * hw * K;
            const float *restrict xc = x + offset, *restrict m = channel_mean + cb * K, *restrict s = channel_inv + cb * K;
            const float *restrict ac = a + cb * K, *restrict sc = shift + cb * K;
            const float *restrict oc = out ? out + offset : NULL;
            float *restrict dyc = dy + offset;
            float dy_lanes[16] = {0}, dyxh_lanes[16] = {0};
            for (size_t p = 0; p < hw; p++)
                for (size_t l = 0; l < K; l++) {
                    const size_t i = p * K + l;
                    float d;
                    if (activation == CK_GROUP_NORM_RELU) { float v = xc[i] * ac[l] + sc[l]; d = v > 0.0f ? dyc[i] : 0.0f; }
                    else if (activation == CK_GROUP_NORM_ADD_RELU) { d = oc[i] > 0.0f ? dyc[i] : 0.0f; dyc[i] = d; }
                    else d = dyc[i];
                    float xh = (xc[i] - m[l]) * s[l];
                    dy_lanes[l] += d;
                    dyxh_lanes[l] += d * xh;
                }
            for (size_t l = 0; l < K; l++) {
                const size_t c = cb * K + l;
                sum_dy[c] = dy_lanes[l]; sum_dy_xh[c] = dyxh_lanes[l];
                dgamma[c] += dyxh_lanes[l];
                dbeta[c] += dy_lanes[l];
            }
        }
        if (dx == NULL) continue;
        for (size_t g = 0; g < groups; g++) {
            float sum_dxh = 0, sum_dxh_xh = 0;
            for (size_t c = g * per_group; c < (g + 1) * per_group; c++) {
                sum_dxh += sum_dy[c] * gamma[c];
                sum_dxh_xh += sum_dy_xh[c] * gamma[c];
            }
            for (size_t c = g * per_group; c < (g + 1) * per_group; c++) {
                group_dxh[c] = sum_dxh; group_dxh_xh[c] = sum_dxh_xh; factor[c] = channel_inv[c] / count;
            }
        }
        for (size_t cb = 0; cb < blocks; cb++) {
            const size_t offset = base + cb * hw * K, k0 = cb * K;
            const float *restrict xc = x + offset, *restrict dyc = dy + offset;
            const float *restrict m = channel_mean + k0, *restrict s = channel_inv + k0, *restrict ac = a + k0, *restrict sc = shift + k0;
            const float *restrict gc = gamma + k0, *restrict fc = factor + k0, *restrict gd = group_dxh + k0, *restrict gdx = group_dxh_xh + k0;
            float *restrict dxc = dx + offset;
            for (size_t p = 0; p < hw; p++)
                for (size_t l = 0; l < K; l++) {
                    const size_t i = p * K + l;
                    float d;
                    if (activation == CK_GROUP_NORM_RELU) { float v = xc[i] * ac[l] + sc[l]; d = v > 0.0f ? dyc[i] : 0.0f; }
                    else d = dyc[i];   // ADD_RELU's dy is masked by now
                    float xh = (xc[i] - m[l]) * s[l];
                    dxc[i] = fc[l] * (count * d * gc[l] - gd[l] - xh * gdx[l]);
                }
        }
    }
}

CK_BODY void ck_group_norm_blocked_backward_body(float *restrict dx, float *restrict dgamma, float *restrict dbeta, float *restrict dy,
                                                 const float *restrict x, const float *restrict mean, const float *restrict inv,
                                                 const float *restrict gamma, const float *restrict beta, int activation,
                                                 const float *restrict out, size_t batch, size_t channels, size_t groups, size_t hw,
                                                 size_t block) {
#define CK_GN_BACKWARD(ACT, K) group_norm_blocked_backward_k(dx, dgamma, dbeta, dy, x, mean, inv, gamma, beta, ACT, out, batch, channels, groups, hw, K)
    if (block == 16) {
        if (activation == CK_GROUP_NORM_RELU) CK_GN_BACKWARD(CK_GROUP_NORM_RELU, 16);
        else if (activation == CK_GROUP_NORM_ADD_RELU) CK_GN_BACKWARD(CK_GROUP_NORM_ADD_RELU, 16);
        else CK_GN_BACKWARD(CK_GROUP_NORM_PLAIN, 16);
    } else {
        if (activation == CK_GROUP_NORM_RELU) CK_GN_BACKWARD(CK_GROUP_NORM_RELU, 8);
        else if (activation == CK_GROUP_NORM_ADD_RELU) CK_GN_BACKWARD(CK_GROUP_NORM_ADD_RELU, 8);
        else CK_GN_BACKWARD(CK_GROUP_NORM_PLAIN, 8);
    }
#undef CK_GN_BACKWARD
}
CK_DISPATCH_VOID(ck_group_norm_blocked_backward,
                 (float *restrict dx, float *restrict dgamma, float *restrict dbeta, float *restrict dy,
                  const float *restrict x, const float *restrict mean, const float *restrict inv, const float *restrict gamma,
                  const float *restrict beta, int activation, const float *restrict out,
                  size_t batch, size_t channels, size_t groups, size_t hw, size_t block),
                 (dx, dgamma, dbeta, dy, x, mean, inv, gamma, beta, activation, out, batch, channels, groups, hw, block))

// ---- residual add + ReLU ---------------------------------------------------------------------

// y == a has its own loop: with y and a unqualified the compiler guards its vector loop with an
// overlap test that an in-place call fails, so in place the whole pass ran scalar.
CK_BODY void add_relu_in_place(float *restrict y, const float *restrict b, size_t n) {
    for (size_t i = 0; i < n; i++) { float v = y[i] + b[i]; y[i] = v > 0.0f ? v : 0.0f; }
}
CK_BODY void ck_add_relu_body(float *y, const float *a, const float *restrict b, size_t n) {
    if (y == a) { add_relu_in_place(y, b, n); return; }
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
