// Dropout masks from Philox-4x32-10, in C so that each instruction set gets its own compilation
// (dispatch.h): a BERT mini step draws ~100M masks (attention probabilities forward and again in
// backward, the hidden states after the embeddings and each block's two branches), and one draw
// at a time through RandomStream cost a tenth of the step.
//
// Draw i of stream s under seed k is Philox(key (k.lo, k.hi), counter (i/4 lo, i/4 hi, s.lo,
// s.hi))[i % 4]: RandomStream.nextUInt32's formula (tests compare them bit for bit).
#include "CKernels.h"
#include "dispatch.h"

enum { BLOCKS = 16 };   // Philox blocks side by side: 16 lanes of uint32 (one zmm, two ymm)

CK_BODY void ck_dropout_mask_body(float *restrict m, float *restrict y, const float *restrict x, uint64_t seed, uint64_t stream,
                                  uint64_t position, size_t n, uint32_t threshold, float kept) {
    const uint32_t key0 = (uint32_t)seed, key1 = (uint32_t)(seed >> 32);
    const uint32_t stream0 = (uint32_t)stream, stream1 = (uint32_t)(stream >> 32);
    size_t skip = (size_t)(position & 3), done = 0;
    for (uint64_t block = position >> 2; done < n; block += BLOCKS) {
        uint32_t c0[BLOCKS], c1[BLOCKS], c2[BLOCKS], c3[BLOCKS];
        for (int l = 0; l < BLOCKS; l++) {
            uint64_t index = block + (uint64_t)l;
            c0[l] = (uint32_t)index;
            c1[l] = (uint32_t)(index >> 32);
            c2[l] = stream0;
            c3[l] = stream1;
        }
        uint32_t k0 = key0, k1 = key1;
        for (int round = 0; round < 10; round++) {
            if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
            for (int l = 0; l < BLOCKS; l++) {
                uint64_t p0 = (uint64_t)0xD2511F53u * c0[l], p1 = (uint64_t)0xCD9E8D57u * c2[l];
                uint32_t next0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0, next2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
                c1[l] = (uint32_t)p1;
                c3[l] = (uint32_t)p0;
                c0[l] = next0;
                c2[l] = next2;
            }
        }
        // Factors in draw order: block l gives draws 4l .. 4l + 3.
        float f[4 * BLOCKS];
        for (int l = 0; l < BLOCKS; l++) {
            f[4 * l] = c0[l] >= threshold ? kept : 0.0f;
            f[4 * l + 1] = c1[l] >= threshold ? kept : 0.0f;
            f[4 * l + 2] = c2[l] >= threshold ? kept : 0.0f;
            f[4 * l + 3] = c3[l] >= threshold ? kept : 0.0f;
        }
        size_t count = 4 * BLOCKS - skip;
        if (count > n - done) count = n - done;
        const float *from = f + skip;
        float *mo = m + done;
        if (y != NULL) {
            const float *xo = x + done;
            float *yo = y + done;
            for (size_t i = 0; i < count; i++) {
                mo[i] = from[i];
                yo[i] = xo[i] * from[i];
            }
        } else {
            for (size_t i = 0; i < count; i++) mo[i] = from[i];
        }
        done += count;
        skip = 0;
    }
}
CK_DISPATCH_VOID(ck_dropout_mask,
                 (float *restrict m, float *restrict y, const float *restrict x, uint64_t seed, uint64_t stream, uint64_t position,
                  size_t n, uint32_t threshold, float kept),
                 (m, y, x, seed, stream, position, n, threshold, kept))
