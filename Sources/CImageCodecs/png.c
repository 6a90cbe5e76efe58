#include "CImageCodecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    char *message;
} png_source;

static void fail(png_structp png, png_const_charp text) {
    png_source *source = png_get_error_ptr(png);
    snprintf(source->message, CONTRAST_IMAGE_MESSAGE_BYTES, "%s", text);
    png_longjmp(png, 1);
}

// libpng's warnings (a bad ancillary chunk, an unknown colour profile) leave the pixels intact.
static void warn(png_structp png, png_const_charp text) { (void)png; (void)text; }

static void read_bytes(png_structp png, png_bytep out, size_t count) {
    png_source *source = png_get_io_ptr(png);
    if (count > source->size - source->offset) png_error(png, "file ends early (truncated)");
    memcpy(out, source->data + source->offset, count);
    source->offset += count;
}

int contrast_png_decode(const uint8_t *data, size_t size, size_t max_pixels, contrast_image *image) {
    memset(image, 0, sizeof *image);
    png_source source = {data, size, 0, image->message};
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "not a PNG file (no PNG signature)");
        return 1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, fail, warn);
    if (!png) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "out of memory");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        if (!info) snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "out of memory");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(pixels);
        free(rows);
        return 1;
    }
    png_set_read_fn(png, &source, read_bytes);
    // The image's size is checked below; libpng's own limit only guards its row allocation.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_chunk_malloc_max(png, 64u << 20);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if (width == 0 || height == 0 || (size_t)width > max_pixels / height) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "%u x %u pixels is more than the %zu this reader accepts",
                 width, height, max_pixels);
        png_longjmp(png, 1);
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    // Also the alpha a palette's tRNS chunk gains when expanded to RGB.
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    if (channels != 1 && channels != 3) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "unexpected %d channels after conversion", channels);
        png_longjmp(png, 1);
    }
    size_t stride = (size_t)width * (size_t)channels;
    if (png_get_rowbytes(png, info) != stride) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "unexpected row size after conversion");
        png_longjmp(png, 1);
    }
    pixels = malloc(stride * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) {
        snprintf(image->message, CONTRAST_IMAGE_MESSAGE_BYTES, "out of memory");
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + stride * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    image->pixels = pixels;
    image->width = (int)width;
    image->height = (int)height;
    image->channels = channels;
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}
