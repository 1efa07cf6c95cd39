package data

/*
#cgo LDFLAGS: -ljpeg
#include <stdlib.h>
#include "jpeg_decode.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// maxImagePixels is PIL's decompression-bomb limit (2·Image.MAX_IMAGE_PIXELS): larger images
// are refused before their pixels are allocated, as PIL refuses them.
const maxImagePixels = 2 * 89478485

// jpegMode selects what decodeJPEG returns.
type jpegMode int

const (
	// jpegRGB is PIL's Image.open(p).convert("RGB"): (H, W, 3) bytes.
	jpegRGB jpegMode = C.AFFGD_JPEG_RGB
	// jpegGreyCV is cv2.imread(p, cv2.IMREAD_GRAYSCALE): (H, W) bytes.
	jpegGreyCV jpegMode = C.AFFGD_JPEG_GREY_CV
)

// decodeJPEG decodes the JPEG file contents b (read from path, which errors name) with
// libjpeg(-turbo) and the settings PIL and OpenCV use: the default ISLOW integer IDCT and fancy
// (triangular) chroma upsampling, libjpeg's own YCbCr → RGB conversion, and for 4-component
// files libjpeg's CMYK output (YCCK converted by libjpeg) followed by PIL's (or OpenCV's)
// CMYK conversion. It returns the width, height and packed pixels. A file that ends before its
// image does is an error (PIL's "image file is truncated"), as is any error libjpeg reports;
// libjpeg's recoverable warnings are ignored, as PIL ignores them.
func decodeJPEG(path string, b []byte, mode jpegMode) (w, h int, pix []byte, err error) {
	if len(b) == 0 {
		return 0, 0, nil, fmt.Errorf("data: %s: empty file; want a JPEG image", path)
	}
	var info C.affgd_jpeg_info
	buf := (*C.uchar)(unsafe.Pointer(&b[0]))
	if rc := C.affgd_jpeg_header(buf, C.size_t(len(b)), &info); rc != C.AFFGD_JPEG_OK {
		return 0, 0, nil, jpegError(path, rc, &info)
	}
	w, h = int(info.width), int(info.height)
	if w <= 0 || h <= 0 {
		return 0, 0, nil, fmt.Errorf("data: %s: empty JPEG image (%d×%d)", path, w, h)
	}
	if w*h > maxImagePixels {
		return 0, 0, nil, fmt.Errorf("data: %s: JPEG image of %d×%d = %d pixels exceeds the limit of %d (PIL's decompression-bomb limit)", path, w, h, w*h, maxImagePixels)
	}
	px := 3
	if mode == jpegGreyCV {
		px = 1
	}
	pix = make([]byte, w*h*px)
	rc := C.affgd_jpeg_decode(buf, C.size_t(len(b)), C.int(mode), (*C.uchar)(unsafe.Pointer(&pix[0])), C.size_t(len(pix)), &info)
	if rc != C.AFFGD_JPEG_OK {
		return 0, 0, nil, jpegError(path, rc, &info)
	}
	return w, h, pix, nil
}

// jpegError turns a decoder return code into one error naming the file.
func jpegError(path string, rc C.int, info *C.affgd_jpeg_info) error {
	msg := C.GoString(&info.msg[0])
	switch rc {
	case C.AFFGD_JPEG_TRUNCATED:
		return fmt.Errorf("data: %s: image file is truncated: the JPEG data ends before the image does (libjpeg: %s)", path, msg)
	case C.AFFGD_JPEG_UNSUPPORTED:
		return fmt.Errorf("data: %s: unsupported JPEG: %s", path, msg)
	case C.AFFGD_JPEG_BADBUF:
		return fmt.Errorf("data: %s: internal error: JPEG output buffer does not match the %d×%d header", path, info.width, info.height)
	}
	return fmt.Errorf("data: %s: corrupt or unsupported JPEG file (libjpeg: %s)", path, msg)
}
