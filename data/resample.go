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
	r, c := cInts(rows), cInts(cols)
	rc := C.affgd_resample_rgb((*C.uchar)(unsafe.Pointer(&img.Pix[0])), C.int(img.H), C.int(img.W), C.int(oh), C.int(ow),
		&r[0], C.int(len(r)), &c[0], C.int(len(c)), cBool(vFirst), (*C.uchar)(unsafe.Pointer(&dst[0])))
	switch rc {
	case C.AFFGD_RESAMPLE_OK:
		return nil
	case C.AFFGD_RESAMPLE_NOMEM:
		return fmt.Errorf("data: resample: out of memory resizing %d×%d to %d×%d", img.W, img.H, ow, oh)
	}
	return fmt.Errorf("data: resample: bad arguments: %d×%d image to %d×%d, output rows and columns must lie inside it", img.W, img.H, ow, oh)
}

// cInts converts output coordinates for C.
func cInts(v []int) []C.int {
	out := make([]C.int, len(v))
	for i, x := range v {
		out[i] = C.int(x)
	}
	return out
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
