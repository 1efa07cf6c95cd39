/* The released evaluation's metrics, step for step (see metrics.h and METHOD §7).
 *
 * Every float operation below is written in the dtype and order in which NumPy (2.x) and OpenCV
 * run the released utils/util.py normalize_map and utils/evaluation.py cal_kl, cal_sim and
 * cal_nss; the file must be compiled without floating-point contraction (the pragmas below;
 * cgo does not accept -ffp-contract), since a fused multiply-add where the original rounds twice
 * changes the bits, e.g. under CGO_CFLAGS=-march=native. The fused operations IPP does perform
 * are written as fma() calls. */
#pragma STDC FP_CONTRACT OFF
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

/* ---- NumPy's sum -------------------------------------------------------------------------
 * numpy.add.reduce over a contiguous array (any number of axes: the iterator coalesces them
 * into one) starts from the identity 0 and adds the pairwise sum of all n elements, computed in
 * the array's dtype: below 8 elements a plain loop (from -0.0); up to 128 elements eight
 * accumulators, combined ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the remainder one by one;
 * above 128 elements the two halves (the first rounded down to a multiple of 8) recursively.
 * (numpy/_core/src/umath/loops_utils.h.src, pairwise_sum; checked bit for bit against np.sum
 * by tests/metrics/gen_metrics.py.) */
#define PAIRWISE(NAME, T)                                                              \
	static T NAME(const T *a, long n) {                                                \
		if (n < 8) {                                                                   \
			T res = (T)-0.0;                                                           \
			for (long i = 0; i < n; i++) res += a[i];                                  \
			return res;                                                                \
		}                                                                              \
		if (n <= 128) {                                                                \
			T r[8];                                                                    \
			long i;                                                                    \
			for (int j = 0; j < 8; j++) r[j] = a[j];                                   \
			for (i = 8; i < n - (n % 8); i += 8)                                       \
				for (int j = 0; j < 8; j++) r[j] += a[i + j];                          \
			T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
			for (; i < n; i++) res += a[i];                                            \
			return res;                                                                \
		}                                                                              \
		long n2 = n / 2;                                                               \
		n2 -= n2 % 8;                                                                  \
		return NAME(a, n2) + NAME(a + n2, n - n2);                                     \
	}
PAIRWISE(pairwise_f32, float)
PAIRWISE(pairwise_f64, double)

float affgd_np_sum_f32(const float *a, long n) { return (float)0 + pairwise_f32(a, n); }
double affgd_np_sum_f64(const double *a, long n) { return 0.0 + pairwise_f64(a, n); }

/* np.mean and np.std (population) of a float32 array (numpy/_core/_methods.py _mean, _var):
 * the mean is the float32 sum divided by the count (in float64, rounded to float32: the same
 * bits as a float32 division); the variance is the float32 sum of the float32 squares of the
 * float32 deviations from that mean, divided likewise; the std its float32 square root. tmp
 * holds n floats. */
void affgd_np_mean_std_f32(const float *a, long n, float *tmp, float *mean, float *std) {
	float u = (float)((double)affgd_np_sum_f32(a, n) / (double)n);
	for (long i = 0; i < n; i++) {
		float x = a[i] - u;
		tmp[i] = x * x;
	}
	*mean = u;
	*std = sqrtf((float)((double)affgd_np_sum_f32(tmp, n) / (double)n));
}

/* ---- cv2.resize INTER_LINEAR ---------------------------------------------------------------
 * Both modes map destination index d to the source coordinate (d+0.5)·(src/dst)−0.5 (half-pixel
 * centres) and clamp at the edges; they differ in precision and order:
 *
 * IPP (the default of the opencv-python wheels on x86-64, 4.x and 5.0): the coordinate c is
 * fma(d+0.5, scale, −0.5) in double for float64 images, (d+0.5)·scale − 0.5 (rounded twice) for
 * float32 ones, its fraction f = c − floor(c) in double; each
 * pass is the lerp fma(x1−x0, f, x0), in double for float64 images and in float (with f rounded
 * to float) for float32 images; columns first, then rows; a coordinate below 0 or at or past the
 * last pixel takes the edge pixel.
 *
 * OpenCV 4.x (imgproc/src/resize.cpp, resizeGeneric_ with HResizeLinear/VResizeLinear): the
 * coordinate is (float)((d+0.5)·scale−0.5), its fraction in float, the weights (1−f, f) are
 * float; each pass computes x0·w0 + x1·w1 in the image's dtype, columns first, then rows. A
 * column left of 0 or at or past the last takes the edge pixel (weight 1); a row outside is
 * clamped to the edge but still weighted (so x·(1−f) + x·f, not x). When both sides shrink by
 * exactly 2 it averages 2×2 blocks instead: (((a+b)+c)+d)·0.25.
 *
 * A side whose size does not change is not special: OpenCV copies only when both sides are
 * unchanged, which affgd_released_metrics handles by the same rule. */

typedef struct {
	int *ofs;   /* first source index */
	double *fd; /* fraction (OpenCV 5) */
	float *w0, *w1; /* weights (OpenCV 4) */
	int *edge;  /* 1: copy the pixel at ofs, no interpolation */
} axis_t;

static void axis_free(axis_t *a) {
	free(a->ofs);
	free(a->fd);
	free(a->w0);
	free(a->w1);
	free(a->edge);
}

/* axis_make computes one axis's source indices and weights; rows says whether this is the
 * vertical axis (OpenCV 4 weights clamped rows instead of copying them). */
static int axis_make(axis_t *a, int src, int dst, int mode, int rows, int f32) {
	a->ofs = malloc(sizeof(int) * dst);
	a->fd = malloc(sizeof(double) * dst);
	a->w0 = malloc(sizeof(float) * dst);
	a->w1 = malloc(sizeof(float) * dst);
	a->edge = malloc(sizeof(int) * dst);
	if (!a->ofs || !a->fd || !a->w0 || !a->w1 || !a->edge) {
		axis_free(a);
		return -2;
	}
	double scale = (double)src / (double)dst;
	for (int d = 0; d < dst; d++) {
		a->edge[d] = 0;
		a->fd[d] = 0;
		a->w0[d] = 1;
		a->w1[d] = 0;
		if (mode == AFFGD_RESIZE_OPENCV5) {
			double c = f32 ? ((double)d + 0.5) * scale - 0.5 : fma((double)d + 0.5, scale, -0.5);
			double fl = floor(c);
			int s = (int)fl;
			if (s < 0) {
				a->ofs[d] = 0;
				a->edge[d] = 1;
			} else if (s >= src - 1) {
				a->ofs[d] = src - 1;
				a->edge[d] = 1;
			} else {
				a->ofs[d] = s;
				a->fd[d] = c - fl;
			}
		} else {
			float fx = (float)(((double)d + 0.5) * scale - 0.5);
			int s = (int)floorf(fx);
			fx -= (float)s;
			if (!rows) {
				if (s < 0) {
					s = 0;
					fx = 0;
				}
				if (s >= src - 1) {
					a->ofs[d] = src - 1;
					a->edge[d] = 1;
					continue;
				}
			}
			a->ofs[d] = s; /* rows: clamped when read */
			a->w0[d] = 1.f - fx;
			a->w1[d] = fx;
		}
	}
	return 0;
}

static inline int clampi(int v, int hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

#define RESIZE(NAME, T, LERP5)                                                                \
	int NAME(const T *src, int h, int w, T *dst, int dh, int dw, int mode) {                  \
		if (mode != AFFGD_RESIZE_OPENCV5 && mode != AFFGD_RESIZE_OPENCV4) return -1;          \
		if (mode == AFFGD_RESIZE_OPENCV5 && (h < 2 || w < 2))                                 \
			mode = AFFGD_RESIZE_OPENCV4; /* IPP declines a single row or column */            \
		if (h == dh && w == dw) {                                                             \
			for (long i = 0; i < (long)h * w; i++) dst[i] = src[i];                           \
			return 0;                                                                         \
		}                                                                                     \
		if (mode == AFFGD_RESIZE_OPENCV4 && h == 2 * dh && w == 2 * dw) {                     \
			for (int y = 0; y < dh; y++)                                                      \
				for (int x = 0; x < dw; x++) {                                                \
					const T *s0 = src + (long)(2 * y) * w + 2 * x, *s1 = s0 + w;              \
					T sum = 0;                                                                \
					if (sizeof(T) == 4 && x < dw - dw % 4) /* the SIMD loop's order */        \
						sum = (s0[0] + s0[1]) + (s1[0] + s1[1]);                              \
					else                                                                      \
						sum += ((s0[0] + s0[1]) + s1[0]) + s1[1];                             \
					dst[(long)y * dw + x] = sum * (T)0.25f;                                   \
				}                                                                             \
			return 0;                                                                         \
		}                                                                                     \
		axis_t ax, ay;                                                                        \
		if (axis_make(&ax, w, dw, mode, 0, sizeof(T) == 4)) return -2;                        \
		if (axis_make(&ay, h, dh, mode, 1, sizeof(T) == 4)) {                                 \
			axis_free(&ax);                                                                   \
			return -2;                                                                        \
		}                                                                                     \
		T *hb = malloc(sizeof(T) * (size_t)h * dw);                                           \
		if (!hb) {                                                                            \
			axis_free(&ax);                                                                   \
			axis_free(&ay);                                                                   \
			return -2;                                                                        \
		}                                                                                     \
		for (int y = 0; y < h; y++) {                                                         \
			const T *s = src + (long)y * w;                                                   \
			T *o = hb + (long)y * dw;                                                         \
			for (int x = 0; x < dw; x++) {                                                    \
				int i = ax.ofs[x];                                                            \
				if (ax.edge[x]) {                                                             \
					o[x] = s[i];                                                              \
				} else if (mode == AFFGD_RESIZE_OPENCV5) {                                    \
					o[x] = LERP5(s[i], s[i + 1], ax.fd[x]);                                   \
				} else {                                                                      \
					T w0 = ax.w0[x], w1 = ax.w1[x];                                           \
					o[x] = s[i] * w0 + s[i + 1] * w1;                                         \
				}                                                                             \
			}                                                                                 \
		}                                                                                     \
		for (int y = 0; y < dh; y++) {                                                        \
			T *o = dst + (long)y * dw;                                                        \
			if (mode == AFFGD_RESIZE_OPENCV5) {                                               \
				const T *r0 = hb + (long)ay.ofs[y] * dw;                                      \
				if (ay.edge[y]) {                                                             \
					for (int x = 0; x < dw; x++) o[x] = r0[x];                                \
				} else {                                                                      \
					const T *r1 = r0 + dw;                                                    \
					for (int x = 0; x < dw; x++) o[x] = LERP5(r0[x], r1[x], ay.fd[y]);        \
				}                                                                             \
			} else {                                                                          \
				const T *r0 = hb + (long)clampi(ay.ofs[y], h - 1) * dw;                       \
				const T *r1 = hb + (long)clampi(ay.ofs[y] + 1, h - 1) * dw;                   \
				T b0 = ay.w0[y], b1 = ay.w1[y];                                               \
				for (int x = 0; x < dw; x++) o[x] = r0[x] * b0 + r1[x] * b1;                  \
			}                                                                                 \
		}                                                                                     \
		free(hb);                                                                             \
		axis_free(&ax);                                                                       \
		axis_free(&ay);                                                                       \
		return 0;                                                                             \
	}

#define LERP5_F64(x0, x1, f) fma((x1) - (x0), (f), (x0))
#define LERP5_F32(x0, x1, f) fmaf((x1) - (x0), (float)(f), (x0))
RESIZE(affgd_cv_resize_f32, float, LERP5_F32)
RESIZE(affgd_cv_resize_f64, double, LERP5_F64)

/* ---- the released metrics ----------------------------------------------------------------- */

static float minf_np(const float *a, long n) { /* np.min: a NaN propagates */
	float m = a[0];
	for (long i = 1; i < n; i++)
		if (a[i] < m || isnan(a[i])) m = isnan(m) ? m : a[i];
	return m;
}
static float maxf_np(const float *a, long n) {
	float m = a[0];
	for (long i = 1; i < n; i++)
		if (a[i] > m || isnan(a[i])) m = isnan(m) ? m : a[i];
	return m;
}
static double mind_np(const double *a, long n) {
	double m = a[0];
	for (long i = 1; i < n; i++)
		if (a[i] < m || isnan(a[i])) m = isnan(m) ? m : a[i];
	return m;
}
static double maxd_np(const double *a, long n) {
	double m = a[0];
	for (long i = 1; i < n; i++)
		if (a[i] > m || isnan(a[i])) m = isnan(m) ? m : a[i];
	return m;
}

int affgd_released_metrics(const float *pred, int ph, int pw, const uint8_t *gt, int gh, int gw,
                           int s, int mode, double *out) {
	if (mode != AFFGD_RESIZE_OPENCV5 && mode != AFFGD_RESIZE_OPENCV4) return -1;
	long n = (long)s * s;
	float *m = malloc(sizeof(float) * n), *f1 = malloc(sizeof(float) * n);
	double *g0 = malloc(sizeof(double) * (size_t)gh * gw), *g = malloc(sizeof(double) * n),
	       *t = malloc(sizeof(double) * n);
	int rc = -2;
	if (!m || !f1 || !g0 || !g || !t) goto done;

	/* normalize_map: cv2.resize of the float32 map, then (m − min)/(max − min + 1e-10), float32 */
	if ((rc = affgd_cv_resize_f32(pred, ph, pw, m, s, s, mode))) goto done;
	float lo = minf_np(m, n), hi = maxf_np(m, n);
	float den = (hi - lo) + 1e-10f;
	for (long i = 0; i < n; i++) m[i] = (m[i] - lo) / den;

	/* GT_mask / 255.0 (float64), cv2.resize */
	for (long i = 0; i < (long)gh * gw; i++) g0[i] = (double)gt[i] / 255.0;
	if ((rc = affgd_cv_resize_f64(g0, gh, gw, g, s, s, mode))) goto done;

	/* cal_kl, cal_sim: map1 = pred/(pred.sum() + eps) in float32, map2 = gt/(gt.sum() + eps) */
	float s1 = affgd_np_sum_f32(m, n) + 1e-12f;
	double s2 = affgd_np_sum_f64(g, n) + 1e-12;
	for (long i = 0; i < n; i++) f1[i] = m[i] / s1;
	for (long i = 0; i < n; i++) {
		double q = g[i] / s2;
		t[i] = q * log(q / (double)(f1[i] + 1e-12f) + 1e-12);
	}
	out[0] = affgd_np_sum_f64(t, n);
	for (long i = 0; i < n; i++) {
		double p = f1[i], q = g[i] / s2; /* np.minimum: a NaN propagates */
		t[i] = isnan(p) ? p : (p < q || isnan(q) ? (isnan(q) ? q : p) : q);
	}
	out[1] = affgd_np_sum_f64(t, n);

	/* cal_nss: pred/255 (float32); std and mean in float32 (np.std: population, via the mean and
	 * the sum of squared deviations); gt/255 again (float64), min-max with 1e-12, > 0.1 */
	for (long i = 0; i < n; i++) m[i] = m[i] / 255.0f;
	float u, sd;
	affgd_np_mean_std_f32(m, n, f1, &u, &sd);
	for (long i = 0; i < n; i++) g[i] = g[i] / 255.0;
	double glo = mind_np(g, n), ghi = maxd_np(g, n);
	double gden = (ghi - glo) + 1e-12;
	for (long i = 0; i < n; i++) {
		double fix = (g[i] - glo) / gden > 0.1 ? 1.0 : 0.0;
		float z = (m[i] - u) / sd;
		t[i] = (double)z * fix;
		g[i] = fix + 1e-12;
	}
	out[2] = affgd_np_sum_f64(t, n) / affgd_np_sum_f64(g, n);
	rc = 0;
done:
	free(m);
	free(f1);
	free(g0);
	free(g);
	free(t);
	return rc;
}
