package data

/*
#cgo CFLAGS: -O3
#include "normalize.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// normalizeInto is torchvision's ToTensor then Normalize(ImageNet) on n packed h×w×3 8-bit
// images px, written as n×3×h×w float32 to dst (which must hold exactly that many values):
// byte/255, minus the channel mean, divided by the channel std, each rounded to float32 — the
// operations and order of libtorch's div_/sub_/div_, so the same bits. It runs in C on Go
// memory, so the loader's workers build whole batches without libtorch (no intra-op thread pool
// per worker on top of the model's).
func normalizeInto(dst []float32, px []byte, n, h, w int) error {
	if n <= 0 || h <= 0 || w <= 0 {
		return fmt.Errorf("data: normalise: %d images of %d×%d", n, h, w)
	}
	if len(px) != n*h*w*3 || len(dst) != n*h*w*3 {
		return fmt.Errorf("data: normalise: %d bytes in, %d values out; want %d×%d×%d×3 = %d each", len(px), len(dst), n, h, w, n*h*w*3)
	}
	C.affgd_normalize((*C.uchar)(unsafe.Pointer(&px[0])), C.int(n), C.int(h), C.int(w),
		(*C.float)(unsafe.Pointer(&imagenetMean[0])), (*C.float)(unsafe.Pointer(&imagenetStd[0])),
		(*C.float)(unsafe.Pointer(&dst[0])))
	return nil
}

// floatBytes views a float32 slice as its bytes (little-endian machine order, as tensors hold them).
func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}
