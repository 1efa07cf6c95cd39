package data

/*
#cgo CFLAGS: -O3
#include <stdlib.h>
#include "resample.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// resampleInto is PIL's Image.resize((ow, oh), BILINEAR) on the 8-bit RGB image img, bit for
// bit, restricted to the output rows and cols listed (in that order, so a reversed list
// mirrors): it writes the len(rows)×len(cols)×3 packed pixels to dst, which must hold exactly
// that many bytes. It runs resample.c on img.Pix directly (no tensor): PIL's 22-bit fixed-point
// triangle-filter weights, two separable passes each rounding to 8 bits, vertical first when
// vFirst and both sides change; a side whose size does not change is copied, not filtered (PIL
// skips it too). Only the input rows (or columns) the second pass reads go through the first.
// img must be valid (validate).
func resampleInto(dst []byte, img Image, oh, ow int, rows, cols []int, vFirst bool) error {
	if len(rows) == 0 || len(cols) == 0 {
		return fmt.Errorf("data: resample: empty output window (%d rows, %d columns)", len(rows), len(cols))
	}
	if len(dst) != len(rows)*len(cols)*3 {
		return fmt.Errorf("data: resample: output buffer of %d bytes; want %d×%d×3 = %d", len(dst), len(cols), len(rows), len(rows)*len(cols)*3)
	}
	if oh <= 0 || ow <= 0 {
		return fmt.Errorf("data: resample: target size %d×%d must be positive", ow, oh)
	}
	r, err := cInts(rows, oh, "row")
	if err != nil {
		return err
	}
	c, err := cInts(cols, ow, "column")
	if err != nil {
		return err
	}
	rc := C.affgd_resample_rgb((*C.uchar)(unsafe.Pointer(&img.Pix[0])), C.int(img.H), C.int(img.W), C.int(oh), C.int(ow),
		&r[0], C.int(len(r)), &c[0], C.int(len(c)), cBool(vFirst), (*C.uchar)(unsafe.Pointer(&dst[0])))
	switch rc {
	case C.AFFGD_RESAMPLE_OK:
		return nil
	case C.AFFGD_RESAMPLE_NOMEM:
		return fmt.Errorf("data: resample: out of memory resizing %d×%d to %d×%d", img.W, img.H, ow, oh)
	}
	return fmt.Errorf("data: resample: resample.c refused resizing %d×%d to %d×%d (code %d)", img.W, img.H, ow, oh, int(rc))
}

// cInts converts output coordinates (what names them) for C, checking each lies in [0, n).
func cInts(v []int, n int, what string) ([]C.int, error) {
	out := make([]C.int, len(v))
	for i, x := range v {
		if x < 0 || x >= n {
			return nil, fmt.Errorf("data: resample: output %s %d lies outside the resized image's 0..%d", what, x, n-1)
		}
		out[i] = C.int(x)
	}
	return out, nil
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
