#include "normalize.h"

/* Each operation is rounded to float32 as libtorch's elementwise div_/sub_/div_ round it: a
 * division, a subtraction and a division leave nothing to fuse into a multiply-add, and without
 * -ffast-math the compiler may not turn the divisions into reciprocal multiplications. */
void affgd_normalize(const unsigned char *src, int n, int h, int w, const float *mean,
                     const float *std, float *dst) {
    const long hw = (long)h * w;
    for (int i = 0; i < n; i++) {
        const unsigned char *s = src + (long)i * hw * 3;
        float *d = dst + (long)i * hw * 3;
        for (int c = 0; c < 3; c++) {
            const float m = mean[c], sd = std[c];
            float *dc = d + c * hw;
            for (long p = 0; p < hw; p++) {
                float v = (float)s[p * 3 + c] / 255.0f;
                v = v - m;
                dc[p] = v / sd;
            }
        }
    }
}
