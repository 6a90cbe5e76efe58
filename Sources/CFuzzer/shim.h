#ifndef CONTRAST_CFUZZER_SHIM_H
#define CONTRAST_CFUZZER_SHIM_H
// libFuzzer's driver (compiler-rt FuzzerInterface.h), called by contrast-fuzz's main when
// launch/fuzz.sh builds it with -sanitize=fuzzer, which links libFuzzer. A declaration only:
// nothing refers to it in a normal build.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test_one_input)(const uint8_t *data, size_t size));
#endif
