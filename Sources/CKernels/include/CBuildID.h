#ifndef CONTRAST_CBUILDID_H
#define CONTRAST_CBUILDID_H
#include <stddef.h>

/// Copies the running executable's GNU build id (the linker's hash of the binary, NT_GNU_BUILD_ID)
/// into `out` (at most `capacity` bytes) and returns its length; 0 when the binary has none.
int ck_build_id(unsigned char *out, size_t capacity);

#endif
