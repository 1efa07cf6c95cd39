/* JPEG decoding through libjpeg(-turbo)'s classic jpeglib.h API, with the settings PIL and
 * OpenCV use (defaults: ISLOW IDCT, fancy upsampling). Every libjpeg error comes back as a
 * return code and a message; nothing calls exit() or prints. */
#ifndef AFFGD_JPEG_DECODE_H
#define AFFGD_JPEG_DECODE_H

#include <stddef.h>

/* Output modes of affgd_jpeg_decode. */
enum {
    AFFGD_JPEG_RGB = 0,    /* 8-bit RGB as PIL's Image.open(p).convert("RGB") */
    AFFGD_JPEG_GREY_CV = 1 /* 8-bit grey as cv2.imread(p, cv2.IMREAD_GRAYSCALE) */
};

/* Return codes. */
enum {
    AFFGD_JPEG_OK = 0,
    AFFGD_JPEG_ERR = 1,       /* libjpeg refused the data; msg holds its message */
    AFFGD_JPEG_TRUNCATED = 2, /* the data ended before the image did */
    AFFGD_JPEG_UNSUPPORTED = 3, /* a component count other than 1, 3 or 4; msg says which */
    AFFGD_JPEG_BADBUF = 4     /* the output buffer does not have the size the header gives */
};

typedef struct {
    int width, height;
    int components; /* colour components in the file */
    char msg[200]; /* libjpeg's message (JMSG_LENGTH_MAX = 200) */
} affgd_jpeg_info;

/* affgd_jpeg_header reads the header of the len bytes at buf into info. */
int affgd_jpeg_header(const unsigned char *buf, size_t len, affgd_jpeg_info *info);

/* affgd_jpeg_decode decodes the whole image into out, which must hold exactly
 * width·height·3 bytes (AFFGD_JPEG_RGB) or width·height bytes (AFFGD_JPEG_GREY_CV). */
int affgd_jpeg_decode(const unsigned char *buf, size_t len, int mode, unsigned char *out,
                      size_t outlen, affgd_jpeg_info *info);

#endif
