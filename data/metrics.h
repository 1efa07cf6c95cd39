/* The released evaluation's metrics (METHOD §7) in plain C for package data (metrics.go): the
 * same float32 and float64 operations in the same order as NumPy and OpenCV run them, so the
 * same bits (see metrics.c for what each step reproduces). */
#ifndef AFFGD_METRICS_H
#define AFFGD_METRICS_H

#include <stdint.h>

/* How cv2.resize(INTER_LINEAR) computes, which is what makes two OpenCV versions give different
 * figures for one map (METHOD §7). */
enum {
	/* OpenCV 5.0 (opencv-python-headless 5.0.0.93, the pinned stack) on x86-64: its Intel IPP
	 * HAL resizes float images with double-precision source coordinates and a fused lerp. */
	AFFGD_RESIZE_OPENCV5 = 0,
	/* OpenCV 4.x's own code: float32 interpolation weights (also for float64 images), products
	 * and sums in the image's dtype; an exact 2× shrink of both sides averages 2×2 blocks. */
	AFFGD_RESIZE_OPENCV4 = 1,
};

/* affgd_cv_resize_f32 / _f64 are cv2.resize(src, (dw, dh), interpolation=INTER_LINEAR) on the
 * h×w row-major image src into the dh×dw image dst, for the given mode. Returns 0, or -1 for a
 * mode it does not know. They allocate (and free) a dh×w or h×dw buffer. */
int affgd_cv_resize_f32(const float *src, int h, int w, float *dst, int dh, int dw, int mode);
int affgd_cv_resize_f64(const double *src, int h, int w, double *dst, int dh, int dw, int mode);

/* affgd_np_sum_f32 / _f64 are numpy.sum of a contiguous array of n elements: NumPy's pairwise
 * summation in the array's dtype. */
float affgd_np_sum_f32(const float *a, long n);
double affgd_np_sum_f64(const double *a, long n);

/* affgd_np_mean_std_f32 is numpy.mean and numpy.std (ddof 0) of a contiguous float32 array of
 * n elements, in float32 as NumPy computes them; tmp is scratch space for n floats. */
void affgd_np_mean_std_f32(const float *a, long n, float *tmp, float *mean, float *std);

/* affgd_released_metrics computes the released cal_kl, cal_sim and cal_nss (out[0..2]) of the
 * ph×pw float32 map pred against the gh×gw 8-bit ground truth gt, after the released
 * normalize_map (resize to s×s and min-max, in float32) and GT_mask/255 resized to s×s (float64).
 * Returns 0, -1 for an unknown mode, -2 when memory runs out. */
int affgd_released_metrics(const float *pred, int ph, int pw, const uint8_t *gt, int gh, int gw,
                           int s, int mode, double *out);

#endif
