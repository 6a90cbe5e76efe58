#include "CImageCodecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr manager;   // first: libjpeg passes a pointer to it
    jmp_buf escape;
    char *message;
} error_state;

static void fail(j_common_ptr info) {
    error_state *state = (error_state *)info->err;
    (*info->err->format_message)(info, state->message);
    longjmp(state->escape, 1);
}

// Warnings (level -1) come here too: a truncated file is only a warning to libjpeg, which then
// fills the rest with grey; PIL refuses such a file, and so do we. Extraneous bytes before a
// marker are common in camera files and harmless. Trace messages (level >= 0) are dropped.
static void emit(j_common_ptr info, int level) {
    if (level == -1 && info->err->msg_code != JWRN_EXTRANEOUS_DATA) fail(info);
}

static void quiet(j_common_ptr info) { (void)info; }

int contrast_jpeg_decode(const uint8_t *data, size_t size, size_t max_pixels, contrast_image *image) {
    memset(image, 0, sizeof *image);
    struct jpeg_decompress_struct info;
    error_state state;
    info.err = jpeg_std_error(&state.manager);
    state.manager.error_exit = fail;
    state.manager.emit_message = emit;
    state.manager.output_message = quiet;
    state.message = image->message;
    uint8_t *volatile pixels = NULL;
    if (setjmp(state.escape)) {
        jpeg_destroy_decompress(&info);
        free(pixels);
        return 1;
    }
    jpeg_create_decompress(&info);
    if (size == 0) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "empty file");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    switch (info.jpeg_color_space) {
    case JCS_GRAYSCALE: info.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK:
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES,
                 "CMYK JPEG is not supported; convert it to RGB (e.g. PIL: Image.open(f).convert(\"RGB\").save(f))");
        jpeg_destroy_decompress(&info);
        return 1;
    default: info.out_color_space = JCS_RGB; break;
    }
    if (info.image_width == 0 || info.image_height == 0
        || (size_t)info.image_width > max_pixels / info.image_height) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "%u x %u pixels is more than the %zu this reader accepts",
                 info.image_width, info.image_height, max_pixels);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    jpeg_start_decompress(&info);
    int channels = info.output_components;
    size_t stride = (size_t)info.output_width * (size_t)channels;
    pixels = malloc(stride * info.output_height);
    if (!pixels) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "out of memory");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = pixels + stride * info.output_scanline;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    image->pixels = pixels;
    image->width = (int)info.output_width;
    image->height = (int)info.output_height;
    image->channels = channels;
    jpeg_destroy_decompress(&info);
    return 0;
}

void contrast_image_free(contrast_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}
