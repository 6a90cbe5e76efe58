#ifndef CONTRAST_CDNNL_SHIM_H
#define CONTRAST_CDNNL_SHIM_H
// oneDNN's C API (Debian: libdnnl-dev, no pkg-config file; the header is on the default include
// path). Debian builds oneDNN with OpenMP (libgomp): its thread count is OpenMP's, per calling
// thread, so the two calls that set it are declared here rather than through omp.h, which lives
// in GCC's private include directory.
#include <oneapi/dnnl/dnnl.h>

int omp_get_max_threads(void);
void omp_set_num_threads(int count);
#endif
