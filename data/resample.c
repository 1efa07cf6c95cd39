/* PIL-exact bilinear resampling for package data: see resample.h and resample.go.
 *
 * Written from the description of Pillow's algorithm (not its source). For each output
 * coordinate o of an axis resized from in to out: scale = in/out, the filter is stretched by
 * fs = max(scale, 1) (antialiasing when shrinking), its support is fs, and the window is the
 * input range [(int)(c − fs + 0.5), (int)(c + fs + 0.5)) clipped to [0, in) around the centre
 * c = (o + 0.5)·scale. Each input x in the window gets the triangle weight
 * max(0, 1 − |(x − c + 0.5)/fs|), the weights are divided by their sum (double precision) and
 * rounded half away from zero to 22 fractional bits. A pass computes
 * out = clip(0, 255, (2^21 + Σ w·in) >> 22) in 32-bit integers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"

#define PRECISION_BITS 22
#define HALF (1 << (PRECISION_BITS - 1))

/* coeffs holds one axis's fixed-point weights for the selected outputs. */
typedef struct {
    int n;      /* selected outputs */
    int k;      /* weight slots per output (the longest window) */
    int *lo;    /* first input index of each output's window */
    int *len;   /* length of each output's window */
    int32_t *w; /* n·k weights; output i uses w[i·k .. i·k + len[i]) */
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->lo);
    free(c->len);
    free(c->w);
}

static int coeffs_alloc(coeffs *c, int n, int k) {
    c->n = n;
    c->k = k;
    c->lo = malloc(sizeof(int) * (size_t)n);
    c->len = malloc(sizeof(int) * (size_t)n);
    c->w = malloc(sizeof(int32_t) * (size_t)n * (size_t)k);
    if (!c->lo || !c->len || !c->w) {
        coeffs_free(c);
        return AFFGD_RESAMPLE_NOMEM;
    }
    return AFFGD_RESAMPLE_OK;
}

/* fixed rounds a normalised weight to PRECISION_BITS fractional bits, half away from zero. */
static int32_t fixed(double v) {
    if (v < 0) {
        return (int32_t)(-0.5 + v * (1 << PRECISION_BITS));
    }
    return (int32_t)(0.5 + v * (1 << PRECISION_BITS));
}

/* coeffs_make fills c for resampling an axis of in_size to out_size at the n outputs sel.
 * An unchanged axis gets the identity (one weight of 1.0 per output), which a pass turns into
 * an exact copy. */
static int coeffs_make(coeffs *c, int in_size, int out_size, const int *sel, int n) {
    if (in_size == out_size) {
        if (coeffs_alloc(c, n, 1)) {
            return AFFGD_RESAMPLE_NOMEM;
        }
        for (int i = 0; i < n; i++) {
            c->lo[i] = sel[i];
            c->len[i] = 1;
            c->w[i] = 1 << PRECISION_BITS;
        }
        return AFFGD_RESAMPLE_OK;
    }
    double scale = (double)in_size / (double)out_size;
    double fs = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * fs; /* the bilinear (triangle) filter's support is 1 */
    double inv = 1.0 / fs;
    int k = (int)ceil(support) * 2 + 1;
    if (coeffs_alloc(c, n, k)) {
        return AFFGD_RESAMPLE_NOMEM;
    }
    double *tmp = malloc(sizeof(double) * (size_t)k);
    if (!tmp) {
        coeffs_free(c);
        return AFFGD_RESAMPLE_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        double center = ((double)sel[i] + 0.5) * scale;
        /* (int) truncates toward zero, as the reference does; values in (−1, 0) become 0. */
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) {
            xmin = 0;
        }
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) {
            xmax = in_size;
        }
        int len = xmax - xmin;
        if (len > k) { /* cannot happen: the window spans at most 2·support + 1 inputs */
            len = k;
        }
        double sum = 0.0;
        for (int x = 0; x < len; x++) {
            double t = fabs(((double)(x + xmin) - center + 0.5) * inv);
            double v = t < 1.0 ? 1.0 - t : 0.0;
            tmp[x] = v;
            sum += v;
        }
        int32_t *w = c->w + (size_t)i * (size_t)k;
        for (int x = 0; x < k; x++) {
            double v = 0.0;
            if (x < len) {
                v = tmp[x];
                if (sum != 0.0) {
                    v /= sum;
                }
            }
            w[x] = fixed(v);
        }
        c->lo[i] = xmin;
        c->len[i] = len;
    }
    free(tmp);
    return AFFGD_RESAMPLE_OK;
}

/* clip8 turns a pass's fixed-point sum into an 8-bit sample. */
static inline uint8_t clip8(int32_t v) {
    if (v < 0) {
        return 0;
    }
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* hpass resamples the rows of in (nrows rows of packed RGB, in_stride bytes apart) along x with
 * c, whose window starts are shifted left by shift columns, into out (nrows × c->n × 3). */
static void hpass(const uint8_t *in, size_t in_stride, int nrows, const coeffs *c, int shift,
                  uint8_t *out) {
    size_t out_stride = (size_t)c->n * 3;
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = in + (size_t)y * in_stride;
        uint8_t *o = out + (size_t)y * out_stride;
        for (int i = 0; i < c->n; i++) {
            const uint8_t *p = row + (size_t)(c->lo[i] - shift) * 3;
            const int32_t *w = c->w + (size_t)i * (size_t)c->k;
            int32_t s0 = HALF, s1 = HALF, s2 = HALF;
            for (int x = 0; x < c->len[i]; x++) {
                s0 += (int32_t)p[3 * x] * w[x];
                s1 += (int32_t)p[3 * x + 1] * w[x];
                s2 += (int32_t)p[3 * x + 2] * w[x];
            }
            o[3 * i] = clip8(s0);
            o[3 * i + 1] = clip8(s1);
            o[3 * i + 2] = clip8(s2);
        }
    }
}

/* vpass resamples in (rows of width bytes, in_stride bytes apart) along y with c, whose window
 * starts are shifted up by shift rows, into out (c->n rows of width bytes, out_stride apart).
 * acc holds width 32-bit sums. */
static void vpass(const uint8_t *in, size_t in_stride, size_t width, const coeffs *c, int shift,
                  uint8_t *out, size_t out_stride, int32_t *restrict acc) {
    for (int i = 0; i < c->n; i++) {
        for (size_t j = 0; j < width; j++) {
            acc[j] = HALF;
        }
        const int32_t *w = c->w + (size_t)i * (size_t)c->k;
        for (int t = 0; t < c->len[i]; t++) {
            const uint8_t *restrict row = in + (size_t)(c->lo[i] - shift + t) * in_stride;
            int32_t wt = w[t];
            for (size_t j = 0; j < width; j++) {
                acc[j] += (int32_t)row[j] * wt;
            }
        }
        uint8_t *restrict o = out + (size_t)i * out_stride;
        for (size_t j = 0; j < width; j++) {
            o[j] = clip8(acc[j]);
        }
    }
}

/* span returns the input range [*first, *end) that c's windows read. */
static void span(const coeffs *c, int *first, int *end) {
    int a = c->lo[0], b = c->lo[0] + c->len[0];
    for (int i = 1; i < c->n; i++) {
        if (c->lo[i] < a) {
            a = c->lo[i];
        }
        if (c->lo[i] + c->len[i] > b) {
            b = c->lo[i] + c->len[i];
        }
    }
    *first = a;
    *end = b;
}

int affgd_resample_rgb(const unsigned char *src, int in_h, int in_w, int out_h, int out_w,
                       const int *rows, int nrows, const int *cols, int ncols,
                       int vertical_first, unsigned char *dst) {
    if (in_h <= 0 || in_w <= 0 || out_h <= 0 || out_w <= 0 || nrows <= 0 || ncols <= 0) {
        return AFFGD_RESAMPLE_BADARG;
    }
    for (int i = 0; i < nrows; i++) {
        if (rows[i] < 0 || rows[i] >= out_h) {
            return AFFGD_RESAMPLE_BADARG;
        }
    }
    for (int i = 0; i < ncols; i++) {
        if (cols[i] < 0 || cols[i] >= out_w) {
            return AFFGD_RESAMPLE_BADARG;
        }
    }
    int need_v = in_h != out_h, need_h = in_w != out_w;
    size_t in_stride = (size_t)in_w * 3, out_stride = (size_t)ncols * 3;
    coeffs cv, ch;
    if (coeffs_make(&ch, in_w, out_w, cols, ncols)) {
        return AFFGD_RESAMPLE_NOMEM;
    }
    if (!need_v) {
        /* Only x changes (or nothing): filter the selected rows straight into dst. */
        for (int i = 0; i < nrows; i++) {
            hpass(src + (size_t)rows[i] * in_stride, in_stride, 1, &ch, 0, dst + (size_t)i * out_stride);
        }
        coeffs_free(&ch);
        return AFFGD_RESAMPLE_OK;
    }
    if (coeffs_make(&cv, in_h, out_h, rows, nrows)) {
        coeffs_free(&ch);
        return AFFGD_RESAMPLE_NOMEM;
    }
    int rc = AFFGD_RESAMPLE_OK;
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    if (vertical_first && need_h) {
        /* The vertical pass runs only on the input columns the horizontal pass reads. */
        int c0, c1;
        span(&ch, &c0, &c1);
        size_t width = (size_t)(c1 - c0) * 3;
        tmp = malloc(width * (size_t)nrows);
        acc = malloc(sizeof(int32_t) * width);
        if (!tmp || !acc) {
            rc = AFFGD_RESAMPLE_NOMEM;
        } else {
            vpass(src + (size_t)c0 * 3, in_stride, width, &cv, 0, tmp, width, acc);
            hpass(tmp, width, nrows, &ch, c0, dst);
        }
    } else {
        /* The horizontal pass runs only on the input rows the vertical pass reads. */
        int r0, r1;
        span(&cv, &r0, &r1);
        tmp = malloc(out_stride * (size_t)(r1 - r0));
        acc = malloc(sizeof(int32_t) * out_stride);
        if (!tmp || !acc) {
            rc = AFFGD_RESAMPLE_NOMEM;
        } else {
            hpass(src + (size_t)r0 * in_stride, in_stride, r1 - r0, &ch, 0, tmp);
            vpass(tmp, out_stride, out_stride, &cv, r0, dst, out_stride, acc);
        }
    }
    free(tmp);
    free(acc);
    coeffs_free(&cv);
    coeffs_free(&ch);
    return rc;
}
