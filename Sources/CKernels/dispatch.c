#include "CKernels.h"
#include "dispatch.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static const char *const level_names[] = { "sse2", "avx2", "avx512" };

/// CK_LEVEL_* for a cap's name ("portable" and "sse2" are the same bodies), or -1.
static int parse_level(const char *name) {
    if (strcasecmp(name, "avx512") == 0) return CK_LEVEL_AVX512;
    if (strcasecmp(name, "avx2") == 0) return CK_LEVEL_AVX2;
    if (strcasecmp(name, "portable") == 0 || strcasecmp(name, "sse2") == 0) return CK_LEVEL_PORTABLE;
    return -1;
}

static int process_level = CK_LEVEL_PORTABLE;
static pthread_once_t process_level_once = PTHREAD_ONCE_INIT;

// The CPU's level (the same test target_clones' resolver made), capped by CONTRAST_KERNELS_ISA.
// An unknown value stops the process: ignoring it would run, say, a CI pass meant to prove the
// AVX2 kernels on the AVX-512 ones and report success.
static void find_process_level(void) {
    __builtin_cpu_init();
    int level = __builtin_cpu_supports("x86-64-v4") ? CK_LEVEL_AVX512
              : __builtin_cpu_supports("x86-64-v3") ? CK_LEVEL_AVX2 : CK_LEVEL_PORTABLE;
    const char *cap = getenv("CONTRAST_KERNELS_ISA");
    if (cap != NULL && cap[0] != '\0') {
        int capped = parse_level(cap);
        if (capped < 0) {
            fprintf(stderr, "contrast: error: CONTRAST_KERNELS_ISA is \"%s\", not one of avx512, avx2, portable; "
                            "set one of those, or unset it for the best kernels this CPU has\n", cap);
            exit(1);
        }
        if (capped < level) level = capped;
    }
    process_level = level;
}

static int get_process_level(void) {
    pthread_once(&process_level_once, find_process_level);
    return process_level;
}

// -1: no cap on this thread.
static _Thread_local int thread_cap = -1;

int ck_level(void) {
    int level = get_process_level();
    return thread_cap >= 0 && thread_cap < level ? thread_cap : level;
}

const char *ck_instruction_set(void) { return level_names[ck_level()]; }

const char *ck_process_instruction_set(void) { return level_names[get_process_level()]; }

int ck_set_thread_instruction_set(const char *name) {
    if (name == NULL) { thread_cap = -1; return 1; }
    int level = parse_level(name);
    if (level < 0) return 0;
    thread_cap = level;
    return 1;
}
