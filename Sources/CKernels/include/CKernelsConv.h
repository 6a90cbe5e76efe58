// Kernels of the convolutional encoder: im2col / col2im over a group of images, group
// normalisation forward and backward (alone, with the following ReLU, or with the residual
// block's add + ReLU), and the residual block's add + ReLU. Each runs at the
// thread's instruction set (ck_instruction_set) and gives the same bits at every level: the
// reductions use fixed lanes and the file is compiled without FMA contraction.
#ifndef CONTRAST_CKERNELS_CONV_H
#define CONTRAST_CKERNELS_CONV_H
#include <stddef.h>

/// Shape of one convolution: C input channels of H x W, square kernel K, one stride and padding,
/// P x Q output (P = (H + 2 pad - K) / stride + 1, Q likewise).
typedef struct {
    size_t channels, height, width, kernel, stride, padding, out_height, out_width;
} ck_conv_shape;

/// For each of `images` NCHW images (image g at x + g * C H W): its column matrix
/// cols[(c K + i) K + j, g P Q + p Q + q] = x_g[c, p stride - pad + i, q stride - pad + j], 0 outside
/// the image; rows of `column_stride` floats (images P Q columns apart).
void ck_im2col(float *cols, const float *x, size_t images, size_t column_stride, ck_conv_shape shape);
/// The adjoint of ck_im2col: adds every column entry back into the pixel it was copied from,
/// image by image, rows (c, i, j) in order, so each pixel's sum runs in the plain loop's order.
void ck_col2im(float *x, const float *cols, size_t images, size_t column_stride, ck_conv_shape shape);

/// What follows a group normalisation in the same pass (the layers it stands for, fused):
/// nothing; a ReLU; the residual block's add of the skip then its ReLU.
enum { CK_GROUP_NORM_PLAIN = 0, CK_GROUP_NORM_RELU = 1, CK_GROUP_NORM_ADD_RELU = 2 };

/// Group normalisation forward over B samples of C channels x HW pixels in G groups:
/// per (sample, group) of N = (C / G) HW values, mean and variance (biased) accumulated in double,
/// inv = 1 / sqrt(var + eps), v = x a + (beta - mean a) with a = inv gamma[c]; then y = v (PLAIN),
/// max(v, 0) (RELU) or max(v + residual, 0) (ADD_RELU; residual B x C HW, NULL otherwise), the
/// separate passes' bits. Saves mean and inv per (b, g) (B x G each).
void ck_group_norm_forward(float *y, float *mean, float *inv, const float *x, const float *gamma, const float *beta,
                           int activation, const float *residual, size_t batch, size_t channels, size_t groups, size_t hw,
                           float eps);
/// Its backward: with g = dy masked by the activation's ReLU (g = dy for PLAIN), dgamma[c] +=
/// sum g x-hat, dbeta[c] += sum g, and (dx non-NULL) dx = inv / N (N g gamma[c] - sum(g gamma) -
/// x-hat sum(g gamma x-hat)) over each (sample, group): the ReLU backward then the plain
/// normalisation's, bit for bit. RELU recomputes the ReLU's sides from x, gamma and beta (`out`
/// unused); ADD_RELU reads them from the block's output `out` (> 0) and overwrites dy with g, the
/// skip path's gradient.
void ck_group_norm_backward(float *dx, float *dgamma, float *dbeta, float *dy, const float *x,
                            const float *mean, const float *inv, const float *gamma, const float *beta, int activation,
                            const float *out, size_t batch, size_t channels, size_t groups, size_t hw);

/// ck_group_norm_forward on oneDNN's blocked layout (`block` 8 or 16 channels side by side at each
/// pixel: nChw8c, nChw16c; channels a multiple of it): the same operations per value, the sums in
/// another order (per channel, then the group's channels), so equal to the NCHW kernel to rounding.
void ck_group_norm_blocked_forward(float *y, float *mean, float *inv, const float *x, const float *gamma, const float *beta,
                                   int activation, const float *residual, size_t batch, size_t channels, size_t groups, size_t hw,
                                   float eps, size_t block);
/// ck_group_norm_backward on the blocked layout (as ck_group_norm_blocked_forward).
void ck_group_norm_blocked_backward(float *dx, float *dgamma, float *dbeta, float *dy, const float *x,
                                    const float *mean, const float *inv, const float *gamma, const float *beta, int activation,
                                    const float *out, size_t batch, size_t channels, size_t groups, size_t hw, size_t block);

/// y = max(a + b, 0) (y may be a).
void ck_add_relu(float *y, const float *a, const float *b, size_t n);
/// y = max(x, 0) out of place (y and x do not overlap).
void ck_relu_copy(float *y, const float *x, size_t n);

#endif
