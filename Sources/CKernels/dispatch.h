// How the kernels pick their instruction set (private to CKernels).
//
// Each kernel's body is written once, as an always-inline function, and compiled three times:
// for AVX-512 (x86-64-v4), for AVX2 (x86-64-v3: AVX2, FMA, F16C) and for the x86-64 baseline
// (SSE2, "portable"). A small dispatcher calls the compilation for ck_level(): the best the CPU
// has, capped by CONTRAST_KERNELS_ISA (for the process) and by ck_set_thread_instruction_set (for
// one thread, in tests). target_clones would pick once at load time through an ifunc and could
// not be capped; a switch on a cached level costs a load and a branch per call of a kernel that
// then runs over a whole buffer.
#ifndef CONTRAST_CKERNELS_DISPATCH_H
#define CONTRAST_CKERNELS_DISPATCH_H

enum { CK_LEVEL_PORTABLE = 0, CK_LEVEL_AVX2 = 1, CK_LEVEL_AVX512 = 2 };

/// The level the calling thread's kernels run at now.
int ck_level(void);

// Feature lists, not "arch=x86-64-v4": an arch target also sets that CPU's tuning, which prefers
// 256-bit vectors, and the AVX-512 bodies are meant to use 512-bit ones (as target_clones did).
#define CK_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2,lzcnt,movbe")))
#define CK_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi,bmi2,lzcnt,movbe")))
/// A kernel body: inlined into each compilation, so the compiler vectorises it for that target.
#define CK_BODY static inline __attribute__((always_inline))

/// Defines `ret name params` as the dispatcher over three compilations of `name##_body`.
/// `args` is the parameter list as call arguments.
#define CK_DISPATCH(ret, name, params, args)                                \
    CK_TARGET_AVX512 static ret name##_avx512 params { return name##_body args; } \
    CK_TARGET_AVX2 static ret name##_avx2 params { return name##_body args; }     \
    static ret name##_portable params { return name##_body args; }               \
    ret name params {                                                       \
        switch (ck_level()) {                                               \
        case CK_LEVEL_AVX512: return name##_avx512 args;                    \
        case CK_LEVEL_AVX2: return name##_avx2 args;                        \
        default: return name##_portable args;                               \
        }                                                                   \
    }

/// CK_DISPATCH for a kernel that returns nothing (C has no `return f();` of a void f).
#define CK_DISPATCH_VOID(name, params, args)                                \
    CK_TARGET_AVX512 static void name##_avx512 params { name##_body args; } \
    CK_TARGET_AVX2 static void name##_avx2 params { name##_body args; }     \
    static void name##_portable params { name##_body args; }               \
    void name params {                                                      \
        switch (ck_level()) {                                               \
        case CK_LEVEL_AVX512: name##_avx512 args; break;                    \
        case CK_LEVEL_AVX2: name##_avx2 args; break;                        \
        default: name##_portable args; break;                               \
        }                                                                   \
    }

#endif
