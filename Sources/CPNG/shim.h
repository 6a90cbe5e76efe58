#ifndef CONTRAST_CPNG_SHIM_H
#define CONTRAST_CPNG_SHIM_H
#include <png.h>
#endif
