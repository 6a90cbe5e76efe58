// Element-wise sums of 16-bit wire formats, the bodies of the user-defined MPI reductions
// that all-reduce fp16 / bf16 gradients (DESIGN.md decision 4): each pairwise sum is done in
// float32 and rounded once to the wire format, so the reduction is commutative.
#ifndef CONTRAST_CKERNELS_REDUCE_H
#define CONTRAST_CKERNELS_REDUCE_H
#include <stddef.h>
#include <stdint.h>

/// inout[i] = f16(f32(in[i]) + f32(inout[i])), round to nearest even (IEEE binary16 bit
/// patterns); overflow gives inf, NaN stays NaN. F16C at the avx2 and avx512 levels, else portable
/// (ck_instruction_set).
void ck_f16_sum_into(const uint16_t *in, uint16_t *inout, size_t n);
/// inout[i] = bf16(f32(in[i]) + f32(inout[i])), round to nearest even; NaN stays NaN.
void ck_bf16_sum_into(const uint16_t *in, uint16_t *inout, size_t n);

#endif
