/* PIL-exact antialiased bilinear resampling of packed 8-bit RGB images, in plain C, for
 * package data (resample.go). The algorithm is the one Pillow's Image.resize(size, BILINEAR)
 * runs on 8-bit images: a triangle filter whose support grows with the downscale factor,
 * weights normalised per output pixel in double precision and rounded to 22-bit fixed point,
 * two separable passes that each round back to 8 bits, and Pillow 13's pass order. */
#ifndef AFFGD_RESAMPLE_H
#define AFFGD_RESAMPLE_H

/* Return codes of affgd_resample_rgb. */
enum {
    AFFGD_RESAMPLE_OK = 0,
    AFFGD_RESAMPLE_BADARG = 1, /* a size is not positive or a selected index is out of range */
    AFFGD_RESAMPLE_NOMEM = 2   /* a working buffer could not be allocated */
};

/* affgd_resample_rgb resizes the in_h×in_w packed RGB image src (row-major, 3 bytes a pixel,
 * no padding) to out_h×out_w and writes only the output pixels at rows rows[0..nrows) and
 * columns cols[0..ncols) (in those orders, so a reversed list mirrors) to dst, packed
 * nrows×ncols×3. Every written pixel equals Pillow's. vertical_first selects the pass order
 * when both sides change (Pillow 13's rule is decided by the caller); an unchanged side is not
 * filtered. The function keeps no pointer to its arguments. */
int affgd_resample_rgb(const unsigned char *src, int in_h, int in_w, int out_h, int out_w,
                       const int *rows, int nrows, const int *cols, int ncols,
                       int vertical_first, unsigned char *dst);

#endif
