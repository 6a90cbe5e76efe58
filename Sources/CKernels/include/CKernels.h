// Hot element-wise kernels of contrast, in C so that each can be compiled for several
// instruction sets (AVX-512, AVX2 with F16C, the portable x86-64 baseline) and picked at run
// time: Swift cannot do this without unsafe flags, which would make the package unusable as a
// dependency. Every kernel here has a plain Swift reference beside its wrapper and a test
// comparing them under every instruction set.
#ifndef CONTRAST_CKERNELS_H
#define CONTRAST_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// The instruction set the calling thread's kernels run at: "avx512", "avx2" or "sse2" (the
/// portable bodies, compiled for the x86-64 baseline). The best this CPU has, capped for the
/// process by the environment variable CONTRAST_KERNELS_ISA=avx512|avx2|portable (read once; a cap
/// above the CPU means the CPU's best; any other value stops the process, exit status 1, with
/// one line on stderr) and for the thread by ck_set_thread_instruction_set.
const char *ck_instruction_set(void);
/// ck_instruction_set without the calling thread's cap: what the CPU and CONTRAST_KERNELS_ISA allow.
const char *ck_process_instruction_set(void);
/// Caps the calling thread's kernels at `name` ("avx512", "avx2", "portable" or "sse2", as
/// CONTRAST_KERNELS_ISA; never above the process's level), or lifts the cap (NULL). Returns 0 for
/// an unknown name, leaving the cap as it was, else 1. For tests of every path in one process.
int ck_set_thread_instruction_set(const char *name);

// Float32 <-> IEEE half (binary16) and bfloat16, round to nearest even. NaN stays NaN.
void ck_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void ck_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void ck_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void ck_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/// ck_bf16_to_f32 that also reports whether every value is finite (1) or not (0), in one pass.
int ck_bf16_to_f32_finite(const uint16_t *src, float *dst, size_t n);

/// y[r, c] += bias[c] for r < rows, c < cols (row-major, row stride cols).
void ck_add_bias_rows(float *y, const float *bias, size_t rows, size_t cols);
/// y = max(y, 0) in place.
void ck_relu_inplace(float *y, size_t n);
/// dx[i] = y[i] > 0 ? dy[i] : 0 (y is the ReLU output); dx may alias dy.
void ck_relu_backward(float *dx, const float *dy, const float *y, size_t n);
/// y[r, c] = max(y[r, c] + bias[c], 0): bias and ReLU in one pass.
void ck_add_bias_relu_rows(float *y, const float *bias, size_t rows, size_t cols);
/// Backward of a fused bias + ReLU: dy[r, c] = y[r, c] > 0 ? dy[r, c] : 0 (in place), then
/// db[c] += sum_r dy[r, c], in one pass.
void ck_relu_bias_backward(float *dy, const float *y, float *db, size_t rows, size_t cols);
/// db[c] += sum_r dy[r, c].
void ck_bias_gradient(float *db, const float *dy, size_t rows, size_t cols);

/// One AdamW step over a flat range (PyTorch semantics: decoupled decay, bias correction).
///   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
///   p -= lr * (m / c1) / (sqrt(v / c2) + eps),  c1 = 1 - b1^t, c2 = 1 - b2^t.
void ck_adamw(float *p, const float *g, float *m, float *v, size_t n,
              float lr, float beta1, float beta2, float eps, float weight_decay,
              float correction1, float correction2);

/// 1 if every x[i] is finite (no inf, no NaN), else 0.
int ck_all_finite(const float *x, size_t n);
/// max_i x[i] (n > 0).
float ck_max(const float *x, size_t n);
/// y[i] = exp(x[i] - shift); returns sum_i y[i]. exp is a Cephes-style polynomial (within
/// 2 ulp of expf over the range softmax uses; inputs below -87 give 0). y may be x.
float ck_exp_sum(const float *x, float *y, size_t n, float shift);

/// y = x Φ(x) = x/2 (1 + erf(x/√2)) (exact GELU; erf a rational approximation within ~1e-7).
void ck_gelu(float *y, const float *x, size_t n);
/// dx = dy (Φ(x) + x φ(x)) (overwritten; dx must not alias dy or x).
void ck_gelu_backward(float *dx, const float *dy, const float *x, size_t n);

/// LayerNorm of `rows` rows of width w: inverse_std[r] = 1/sqrt(var + eps) (var biased),
/// xhat = (x - mean) inverse_std, y = xhat gamma + beta.
void ck_layer_norm(float *y, float *xhat, float *inverse_std, const float *x, const float *gamma, const float *beta,
                   size_t rows, size_t w, float epsilon);
/// Its backward: dgamma += sum_r dy xhat, dbeta += sum_r dy, and (dx not NULL)
/// dx = inverse_std/w (w dxh - sum(dxh) - xhat sum(dxh xhat)), dxh = dy gamma.
void ck_layer_norm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *xhat,
                            const float *inverse_std, const float *gamma, size_t rows, size_t w);

// Plain attention of one (sample, head) (attention.c; NN's SelfAttention). q, k, v: t x e with row
// stride ld (slices of one token-major [q | k | v] row); o and dout: t x e with row stride ldo;
// p: t x t (row stride t); key_mask: t bytes, nonzero = a real key (NULL: all real); drop: t x t
// dropout factors 0 or 1/(1 - rate) (NULL: none); scratch: ck_attention_scratch(t, e) floats.
/// Floats of scratch the two kernels below need.
size_t ck_attention_scratch(size_t t, size_t e);
/// p = softmax(scale q k^T, masked keys -inf; row maximum subtracted; a row with no real key is 0);
/// o = (p * drop) v.
void ck_attention_forward(const float *q, const float *k, const float *v, size_t ld, const uint8_t *key_mask,
                          const float *drop, float scale, float *p, float *o, size_t ldo, size_t t, size_t e,
                          float *scratch);
/// From p and drop of the forward and dL/do: dv = (p * drop)^T dout, dP = (dout v^T) * drop,
/// dS = p (dP - rowsum(p dP)), dq = scale dS k, dk = scale dS^T q (dq, dk, dv overwritten, row stride ld).
void ck_attention_backward(const float *q, const float *k, const float *v, size_t ld, const float *p, const float *drop,
                           const float *dout, size_t ldo, float scale, float *dq, float *dk, float *dv, size_t t, size_t e,
                           float *scratch);

/// Dropout factors of draws position .. position + n - 1 of Philox stream `stream` under `seed`
/// (RandomStream's draws: Philox-4x32-10 of key seed, counter (i / 4, stream)): m[i] = kept where
/// draw position + i >= threshold, else 0; and y[i] = x[i] m[i] when y is not NULL. Any position.
void ck_dropout_mask(float *m, float *y, const float *x, uint64_t seed, uint64_t stream, uint64_t position, size_t n,
                     uint32_t threshold, float kept);

// SwiftPM takes this header as the module's umbrella: the others are reached from here.
#include "CKernelsReduce.h"
#include "CKernelsConv.h"
#include "CBuildID.h"

#endif
