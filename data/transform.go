package data

import (
	"fmt"
	"math/rand/v2"

	"github.com/affgd/affgd/torch"
)

// The released transforms' sizes (METHOD §1): resize the shorter side to 256, crop 224×224 for
// training; resize to 224×224 for testing.
const (
	ResizeSize = 256
	CropSize   = 224
)

// ImageNet normalisation (torchvision's Normalize with these float32 values).
var (
	imagenetMean = []float32{0.485, 0.456, 0.406}
	imagenetStd  = []float32{0.229, 0.224, 0.225}
)

// CropFlip is one training image's random crop offset (in the resized image) and flip.
type CropFlip struct {
	Top, Left int
	Flip      bool
}

// ResizedSize returns the size torchvision's Resize(size) (an int) gives an h×w PIL image:
// the shorter side becomes size and the longer int(size·long/short), floored in float64 as
// Python does; equal sides both become size.
func ResizedSize(h, w, size int) (oh, ow int) {
	short, long := w, h
	if h < w {
		short, long = h, w
	}
	newLong := int(float64(size) * float64(long) / float64(short))
	if w <= h {
		return newLong, size
	}
	return size, newLong
}

// DrawCropFlip draws a crop offset and a flip as torchvision's RandomCrop(crop) and
// RandomHorizontalFlip() do: offsets uniform in [0, h−crop] and [0, w−crop], flip with
// probability 0.5. h and w are the size after the resize. A side smaller than crop gets offset 0
// (TrainTransform then reports the size error).
func DrawCropFlip(rng *rand.Rand, h, w, crop int) CropFlip {
	var cf CropFlip
	if h >= crop {
		cf.Top = rng.IntN(h - crop + 1)
	}
	if w >= crop {
		cf.Left = rng.IntN(w - crop + 1)
	}
	cf.Flip = rng.Float64() < 0.5
	return cf
}

// TrainTransform is the released training transform with a given crop and flip: resize the
// shorter side to resize (PIL's antialiased bilinear, bit for bit, with torchvision's size
// rule, see ResizedSize), crop crop×crop at (cf.Top, cf.Left), flip left-right when cf.Flip,
// to [0,1] and ImageNet normalisation. It returns a CPU float32 (3, crop, crop) tensor in the
// caller's scope. Only the resized pixels inside the crop are computed (each is independent of
// the others in PIL's separable filter, so the result is the same).
func TrainTransform(img Image, resize, crop int, cf CropFlip) (*torch.Tensor, error) {
	px, err := trainPixels(nil, img, resize, crop, cf)
	if err != nil {
		return nil, err
	}
	return normalizeBytes(px, 1, crop, crop, false)
}

// trainPixels is TrainTransform up to the normalisation: it writes the resized, cropped and
// flipped 8-bit pixels, packed crop×crop×3, to dst (crop·crop·3 bytes; nil: a new slice once
// the arguments are checked) and returns them.
func trainPixels(dst []byte, img Image, resize, crop int, cf CropFlip) ([]byte, error) {
	if err := img.validate(); err != nil {
		return nil, err
	}
	if resize <= 0 || crop <= 0 {
		return nil, fmt.Errorf("data: train transform: resize %d and crop %d must be positive", resize, crop)
	}
	oh, ow := ResizedSize(img.H, img.W, resize)
	if oh < crop || ow < crop {
		return nil, fmt.Errorf("data: train transform: a %d×%d image resized to %d×%d is smaller than the %d×%d crop", img.W, img.H, ow, oh, crop, crop)
	}
	if cf.Top < 0 || cf.Left < 0 || cf.Top+crop > oh || cf.Left+crop > ow {
		return nil, fmt.Errorf("data: train transform: crop at (top %d, left %d) of %d×%d leaves the %d×%d resized image", cf.Top, cf.Left, crop, crop, ow, oh)
	}
	if dst == nil {
		dst = make([]byte, crop*crop*3)
	}
	rows := window(cf.Top, crop, false)
	cols := window(cf.Left, crop, cf.Flip)
	if err := resampleInto(dst, img, oh, ow, rows, cols, verticalFirst(img.H, img.W, oh, ow)); err != nil {
		return nil, fmt.Errorf("data: train transform: %w", err)
	}
	return dst, nil
}

// TestTransform is the released test transform: resize to exactly size×size (PIL's antialiased
// bilinear, bit for bit), to [0,1], ImageNet normalisation → CPU float32 (3, size, size).
func TestTransform(img Image, size int) (*torch.Tensor, error) {
	if err := img.validate(); err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("data: test transform: size %d must be positive", size)
	}
	px := make([]byte, size*size*3)
	w := window(0, size, false)
	if err := resampleInto(px, img, size, size, w, w, verticalFirst(img.H, img.W, size, size)); err != nil {
		return nil, fmt.Errorf("data: test transform: %w", err)
	}
	return normalizeBytes(px, 1, size, size, false)
}

// Resize resizes img to h×w with PIL's antialiased bilinear filter (Image.resize((w, h),
// BILINEAR)), bit for bit, and returns a CPU uint8 (h, w, 3) tensor.
func Resize(img Image, h, w int) (*torch.Tensor, error) {
	if err := img.validate(); err != nil {
		return nil, err
	}
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("data: resize: target size %d×%d must be positive", w, h)
	}
	px := make([]byte, h*w*3)
	if err := resampleInto(px, img, h, w, window(0, h, false), window(0, w, false), verticalFirst(img.H, img.W, h, w)); err != nil {
		return nil, fmt.Errorf("data: resize: %w", err)
	}
	var out *torch.Tensor
	err := torch.Try(func() {
		out = torch.FromBytes(px, torch.Uint8, []int64{int64(h), int64(w), 3}, torch.CPU)
	})
	if err != nil {
		return nil, fmt.Errorf("data: resize: %w", err)
	}
	return out, nil
}

// window lists the output coordinates start, start+1, ..., start+k−1, reversed when flip.
func window(start, k int, flip bool) []int {
	idx := make([]int, k)
	for i := range idx {
		if flip {
			idx[i] = start + k - 1 - i
		} else {
			idx[i] = start + i
		}
	}
	return idx
}

// normalizeBytes is torchvision's ToTensor then Normalize(ImageNet) on n packed h×w×3 8-bit
// images: (x/255 − mean)/std in float32, the same float32 operations in the same order, so bit
// for bit. It returns a CPU float32 (n, 3, h, w) tensor, or (3, h, w) when n is 1 and !batch,
// in the caller's scope (the temporaries are freed at once).
func normalizeBytes(px []byte, n, h, w int, batch bool) (*torch.Tensor, error) {
	f := make([]float32, n*h*w*3)
	if err := normalizeInto(f, px, n, h, w); err != nil {
		return nil, err
	}
	shape := []int64{int64(n), 3, int64(h), int64(w)}
	if n == 1 && !batch {
		shape = shape[1:]
	}
	var out *torch.Tensor
	if err := torch.Try(func() { out = torch.FromBytes(floatBytes(f), torch.Float32, shape, torch.CPU) }); err != nil {
		return nil, fmt.Errorf("data: normalise: %w", err)
	}
	return out, nil
}

// verticalFirst reports whether Pillow 13 runs the vertical pass before the horizontal one when
// resizing inH×inW to outH×outW with both sizes changing. Its ImagingResample (read from the
// venv's compiled _imaging module and confirmed bit for bit on random sizes, tests/data) goes
// vertical-first exactly when the height shrinks by more than twice what the width shrinks:
// inH − outH > 0 and inH − outH > 2·(inW − outW). So a growing height is always horizontal-first,
// and a shrinking height with a growing width always vertical-first.
func verticalFirst(inH, inW, outH, outW int) bool {
	dy := inH - outH
	return dy > 0 && dy > 2*(inW-outW)
}

// resampleOrder is PIL's Image.resize((ow, oh), BILINEAR) on an 8-bit RGB image restricted to
// the output rows and cols listed, with the pass order given (vertical first when vFirst and
// both sides change; Pillow's own order is verticalFirst's). Returns a uint8 (len(rows),
// len(cols), 3) tensor; it panics with a *torch.Error on bad arguments (a test helper).
func resampleOrder(img Image, oh, ow int, rows, cols []int, vFirst bool) *torch.Tensor {
	px := make([]byte, len(rows)*len(cols)*3)
	if err := resampleInto(px, img, oh, ow, rows, cols, vFirst); err != nil {
		torch.Raise(err)
	}
	return torch.FromBytes(px, torch.Uint8, []int64{int64(len(rows)), int64(len(cols)), 3}, torch.CPU)
}
