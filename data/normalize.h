/* torchvision's ToTensor + Normalize on packed 8-bit RGB images, in plain C, for package data
 * (normalize.go): the same float32 operations in the same order, so the same bits. */
#ifndef AFFGD_NORMALIZE_H
#define AFFGD_NORMALIZE_H

/* affgd_normalize writes n images of h×w packed RGB bytes (src) as n×3×h×w float32 (dst):
 * v = (float)byte / 255, then (v − mean[c]) / std[c], each step rounded to float32. */
void affgd_normalize(const unsigned char *src, int n, int h, int w, const float *mean,
                     const float *std, float *dst);

#endif
