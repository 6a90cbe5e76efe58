#ifndef CONTRAST_CZLIB_SHIM_H
#define CONTRAST_CZLIB_SHIM_H
#include <zlib.h>
#endif
