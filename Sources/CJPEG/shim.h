#ifndef CONTRAST_CJPEG_SHIM_H
#define CONTRAST_CJPEG_SHIM_H
#include <stdio.h>
#include <jpeglib.h>
#endif
