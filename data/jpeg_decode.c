/* JPEG decoding for package data: see jpeg_decode.h and jpeg.go. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "jpeg_decode.h"

_Static_assert(JMSG_LENGTH_MAX <= sizeof(((affgd_jpeg_info *)0)->msg), "message buffer too small");

/* errmgr replaces libjpeg's default error handling (print, then exit()) with a longjmp back into
 * the function that started the decode. The premature-end-of-file warning aborts the same way:
 * PIL raises "image file is truncated" where libjpeg would pad the image with grey. Other
 * warnings (corrupt entropy data it can resynchronise past, extraneous bytes) are ignored, as
 * PIL's decoder ignores them. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
} errmgr;

static void on_error_exit(j_common_ptr c) {
    longjmp(((errmgr *)c->err)->jump, 1);
}

static void on_emit_message(j_common_ptr c, int level) {
    if (level < 0) {
        c->err->num_warnings++;
        if (c->err->msg_code == JWRN_JPEG_EOF) {
            ((errmgr *)c->err)->truncated = 1;
            longjmp(((errmgr *)c->err)->jump, 1);
        }
    }
}

static void on_output_message(j_common_ptr c) {
    (void)c;
}

/* start sets up cinfo and err for reading buf; the caller has done setjmp(err->jump). */
static void start(struct jpeg_decompress_struct *cinfo, errmgr *err, const unsigned char *buf,
                  size_t len) {
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, buf, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
}

/* fail fills info->msg after a longjmp and releases cinfo. */
static int fail(struct jpeg_decompress_struct *cinfo, errmgr *err, affgd_jpeg_info *info) {
    int code = AFFGD_JPEG_ERR;
    if (err->truncated) {
        code = AFFGD_JPEG_TRUNCATED;
    }
    err->pub.format_message((j_common_ptr)cinfo, info->msg);
    jpeg_destroy_decompress(cinfo);
    return code;
}

static void init_err(struct jpeg_decompress_struct *cinfo, errmgr *err, affgd_jpeg_info *info) {
    memset(info, 0, sizeof *info);
    memset(err, 0, sizeof *err);
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error_exit;
    err->pub.emit_message = on_emit_message;
    err->pub.output_message = on_output_message;
}

int affgd_jpeg_header(const unsigned char *buf, size_t len, affgd_jpeg_info *info) {
    struct jpeg_decompress_struct cinfo;
    errmgr err;
    init_err(&cinfo, &err, info);
    if (setjmp(err.jump)) {
        return fail(&cinfo, &err, info);
    }
    start(&cinfo, &err, buf, len);
    info->width = (int)cinfo.image_width;
    info->height = (int)cinfo.image_height;
    info->components = cinfo.num_components;
    jpeg_destroy_decompress(&cinfo);
    return AFFGD_JPEG_OK;
}

/* PIL's MULDIV255: a·b/255 rounded, in integers. */
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static inline unsigned char clip8(int v) {
    return v < 0 ? 0 : v > 255 ? 255 : (unsigned char)v;
}

/* cmyk_to_rgb is PIL's "CMYK;I" unpacking (libjpeg hands back Adobe's inverted samples; PIL
 * inverts them whether or not the file has an Adobe marker) followed by its CMYK → RGB
 * conversion: nk = 255 − k, R = nk − MULDIV255(c, nk), likewise G and B. */
static void cmyk_to_rgb(const JSAMPLE *in, unsigned char *out, int w) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = in[3]; /* 255 − (255 − raw k) */
        for (int c = 0; c < 3; c++) {
            out[c] = clip8(nk - muldiv255(255 - in[c], nk));
        }
    }
}

/* cmyk_to_grey is OpenCV's icvCvt_CMYK2Gray_8u_C4C1R on libjpeg's raw CMYK samples:
 * c' = k − ((255 − c)·k >> 8) for each of c, m, y, then grey = (4899·c' + 9617·m' + 1868·y' +
 * 8192) >> 14. */
static void cmyk_to_grey(const JSAMPLE *in, unsigned char *out, int w) {
    for (int x = 0; x < w; x++, in += 4) {
        int k = in[3];
        int c = k - (((255 - in[0]) * k) >> 8);
        int m = k - (((255 - in[1]) * k) >> 8);
        int y = k - (((255 - in[2]) * k) >> 8);
        out[x] = (unsigned char)((y * 1868 + m * 9617 + c * 4899 + (1 << 13)) >> 14);
    }
}

int affgd_jpeg_decode(const unsigned char *buf, size_t len, int mode, unsigned char *out,
                      size_t outlen, affgd_jpeg_info *info) {
    struct jpeg_decompress_struct cinfo;
    errmgr err;
    init_err(&cinfo, &err, info);
    if (setjmp(err.jump)) {
        return fail(&cinfo, &err, info);
    }
    start(&cinfo, &err, buf, len);
    info->width = (int)cinfo.image_width;
    info->height = (int)cinfo.image_height;
    info->components = cinfo.num_components;
    const int w = info->width, h = info->height, ncomp = cinfo.num_components;
    const size_t px = mode == AFFGD_JPEG_RGB ? 3 : 1;
    if (ncomp != 1 && ncomp != 3 && ncomp != 4) {
        snprintf(info->msg, sizeof info->msg, "%d colour components; want 1 (grey), 3 (YCbCr or RGB) or 4 (CMYK or YCCK)", ncomp);
        jpeg_destroy_decompress(&cinfo);
        return AFFGD_JPEG_UNSUPPORTED;
    }
    if (outlen != (size_t)w * (size_t)h * px) {
        jpeg_destroy_decompress(&cinfo);
        return AFFGD_JPEG_BADBUF;
    }
    /* PIL and OpenCV keep libjpeg's defaults: JDCT_ISLOW, fancy upsampling, block smoothing. */
    if (ncomp == 4) {
        cinfo.out_color_space = JCS_CMYK; /* libjpeg converts YCCK to CMYK */
    } else if (mode == AFFGD_JPEG_RGB && ncomp == 3) {
        cinfo.out_color_space = JCS_RGB;
    } else {
        cinfo.out_color_space = JCS_GRAYSCALE; /* grey files; colour files for OpenCV's grey */
    }
    jpeg_start_decompress(&cinfo);
    JSAMPARRAY tmp = NULL;
    if (ncomp == 4) {
        tmp = cinfo.mem->alloc_sarray((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)w * 4, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *row = out + (size_t)cinfo.output_scanline * (size_t)w * px;
        if (ncomp == 4) {
            jpeg_read_scanlines(&cinfo, tmp, 1);
            if (mode == AFFGD_JPEG_RGB) {
                cmyk_to_rgb(tmp[0], row, w);
            } else {
                cmyk_to_grey(tmp[0], row, w);
            }
            continue;
        }
        JSAMPROW r = row;
        jpeg_read_scanlines(&cinfo, &r, 1);
        if (mode == AFFGD_JPEG_RGB && ncomp == 1) {
            /* Grey → RGB as PIL's convert("RGB"): replicate, from the end so nothing is
             * overwritten before it is read. */
            for (int x = w - 1; x >= 0; x--) {
                row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return AFFGD_JPEG_OK;
}
