#ifndef CONTRAST_CBLAS_SHIM_H
#define CONTRAST_CBLAS_SHIM_H
// OpenBLAS's cblas.h (pkg-config openblas puts its directory on the include path); it also
// declares openblas_set_num_threads / openblas_get_num_threads.
#include <cblas.h>
#endif
