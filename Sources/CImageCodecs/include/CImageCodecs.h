#ifndef CONTRAST_IMAGE_CODECS_H
#define CONTRAST_IMAGE_CODECS_H
// JPEG and PNG decoding of untrusted bytes for `contrast prepare images`. libjpeg and libpng
// report errors by calling a handler that must not return (their default ones print to stderr
// and exit the process); these wrappers install handlers that longjmp back, so a corrupt or
// truncated file becomes a non-zero return with a message, never an exit or output on stderr.
#include <stddef.h>
#include <stdint.h>

#define CONTRAST_IMAGE_MESSAGE_BYTES 200

/// A decoded image: height x width x channels bytes, row-major, interleaved (1: gray, 3: RGB).
typedef struct {
    uint8_t *pixels;   // malloc'ed; free with contrast_image_free
    int width;
    int height;
    int channels;
    char message[CONTRAST_IMAGE_MESSAGE_BYTES];   // why decoding failed (when the call returns non-zero)
} contrast_image;

/// Decodes a baseline or progressive JPEG into gray (1 channel) or RGB (3). CMYK and YCCK are
/// refused. Any libjpeg warning but extraneous bytes before a marker (a premature end of the
/// file above all) is an error, as in PIL. Images over `max_pixels` pixels are refused before
/// decoding. Returns 0 on success.
int contrast_jpeg_decode(const uint8_t *data, size_t size, size_t max_pixels, contrast_image *image);

/// Decodes a PNG into gray (1 channel: gray and gray+alpha without the alpha) or RGB (3:
/// RGB, RGBA without the alpha, palette through its colours). 16-bit samples keep their high
/// byte (as PIL's 16-bit RGB reading does), 1/2/4-bit gray is scaled to 0...255, tRNS is
/// ignored. Returns 0 on success.
int contrast_png_decode(const uint8_t *data, size_t size, size_t max_pixels, contrast_image *image);

void contrast_image_free(contrast_image *image);

#endif
