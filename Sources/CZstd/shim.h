#ifndef CONTRAST_CZSTD_SHIM_H
#define CONTRAST_CZSTD_SHIM_H
#include <zstd.h>
// ZSTD_CONTENTSIZE_ERROR / _UNKNOWN are macros over unsigned long long constants.
static inline unsigned long long CZstd_CONTENTSIZE_UNKNOWN(void) { return ZSTD_CONTENTSIZE_UNKNOWN; }
static inline unsigned long long CZstd_CONTENTSIZE_ERROR(void) { return ZSTD_CONTENTSIZE_ERROR; }
#endif
