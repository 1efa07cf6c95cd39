package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"

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
	rows := window(cf.Top, crop, false)
	cols := window(cf.Left, crop, cf.Flip)
	return transform(img, oh, ow, rows, cols)
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
	return transform(img, size, size, window(0, size, false), window(0, size, false))
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
	var out *torch.Tensor
	err := torch.WithScope(func(s *torch.Scope) {
		out = s.Keep(resample(img, h, w, window(0, h, false), window(0, w, false)))
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

// transform resizes img to oh×ow keeping the output rows and cols listed, then normalises.
func transform(img Image, oh, ow int, rows, cols []int) (*torch.Tensor, error) {
	var out *torch.Tensor
	err := torch.WithScope(func(s *torch.Scope) {
		u8 := resample(img, oh, ow, rows, cols) // (len(rows), len(cols), 3) uint8
		out = s.Keep(normalize(u8))
		runtime.KeepAlive(u8)
	})
	if err != nil {
		return nil, fmt.Errorf("data: transform: %w", err)
	}
	return out, nil
}

// normalize is torchvision's ToTensor then Normalize(ImageNet) on an (H, W, 3) uint8 tensor:
// (x/255 − mean)/std in float32, as (3, H, W).
func normalize(u8 *torch.Tensor) *torch.Tensor {
	var p pins
	defer p.done()
	x := p.t(p.t(p.t(p.t(u8).Permute(2, 0, 1)).Contiguous()).ToDType(torch.Float32))
	x = p.t(x.DivScalar(255))
	mean := p.t(torch.FromSlice(imagenetMean, 3, 1, 1))
	std := p.t(torch.FromSlice(imagenetStd, 3, 1, 1))
	return p.t(x.Sub(mean)).Div(std)
}

// PIL's fixed-point precision for 8-bit resampling (Resample.c: PRECISION_BITS = 32 − 8 − 2).
const precisionBits = 22

// coeffs are one axis's PIL resampling weights for the selected output coordinates: for output
// i, the input window starts at lo[i] and has weights w[i*k : (i+1)*k] (zero past its end).
type coeffs struct {
	k   int
	lo  []int64
	idx []int64 // (n·k) input indices, clamped into range where the weight is 0
	w   []int32 // (n·k) fixed-point weights
}

// pilCoeffs computes PIL's bilinear (triangle, support 1) coefficients for resampling inSize
// to outSize, exactly as Resample.c's precompute_coeffs and normalize_coeffs_8bpc do (double
// arithmetic, then rounding half away from zero to 22 fractional bits), for the outputs sel.
func pilCoeffs(inSize, outSize int, sel []int) coeffs {
	scale := float64(inSize) / float64(outSize)
	filterscale := math.Max(scale, 1)
	support := 1.0 * filterscale
	k := int(math.Ceil(support))*2 + 1
	c := coeffs{k: k, lo: make([]int64, len(sel)), idx: make([]int64, len(sel)*k), w: make([]int32, len(sel)*k)}
	kk := make([]float64, k)
	for i, xx := range sel {
		center := (float64(xx) + 0.5) * scale
		ss := 1.0 / filterscale
		xmin := int(center - support + 0.5) // C's (int) truncates; the value is ≥ −0.5
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := 0; x < xmax; x++ {
			t := math.Abs((float64(x+xmin) - center + 0.5) * ss)
			v := 0.0
			if t < 1 {
				v = 1 - t
			}
			kk[x] = v
			ww += v
		}
		for x := 0; x < k; x++ {
			v := 0.0
			if x < xmax {
				v = kk[x]
				if ww != 0 {
					v /= ww
				}
			}
			var q int32
			if v < 0 {
				q = int32(-0.5 + v*(1<<precisionBits))
			} else {
				q = int32(0.5 + v*(1<<precisionBits))
			}
			j := i*k + x
			c.w[j] = q
			c.idx[j] = int64(min(xmin+x, inSize-1))
		}
		c.lo[i] = int64(xmin)
	}
	return c
}

// pass resamples dimension dim of x (int32, values 0..255) with c: out[..., i, ...] =
// clip8((2^21 + Σ_x w[i,x]·in[..., idx[i,x], ...]) >> 22), PIL's ImagingResample{Horizontal,
// Vertical}_8bpc. Returns int32 with the selected outputs along dim.
func pass(x *torch.Tensor, dim int64, c coeffs) *torch.Tensor {
	var p pins
	defer p.done()
	p.t(x)
	n := int64(len(c.lo))
	k := int64(c.k)
	g := p.t(x.IndexSelect(dim, p.t(torch.FromSlice(c.idx, n*k)))) // dim now has n·k entries
	shape := g.Shape()
	ns := append(append(append([]int64{}, shape[:dim]...), n, k), shape[dim+1:]...)
	g = p.t(g.Reshape(ns...))
	wshape := make([]int64, len(ns))
	for i := range wshape {
		wshape[i] = 1
	}
	wshape[dim], wshape[dim+1] = n, k
	w := p.t(torch.FromSlice(c.w, wshape...))
	s := p.t(p.t(p.t(g.Mul(w)).SumDims([]int64{dim + 1}, false)).AddScalar(1 << (precisionBits - 1)))
	s = p.t(s.FloorDivide(p.t(torch.Scalar(1<<precisionBits, torch.Int32))))
	return s.Clamp(0, 255)
}

// resample is PIL's Image.resize((ow, oh), BILINEAR) on an 8-bit RGB image, restricted to the
// output rows and cols listed (in that order, so a reversed list flips). Each pass rounds to 8
// bits as PIL does, so the order of the passes matters: PIL 13 runs the horizontal pass first,
// except when the height shrinks while the width grows, where it runs the vertical pass first
// (measured on 101 of 101 random such sizes against the venv's Pillow 13.0.0). When both sides
// shrink, Pillow 13 also goes vertical-first for some sizes by a rule we could not pin down; we
// run horizontal first there, which matched every proportional shrink we tried (the train
// transform's case) and most 224×224 test resizes; elsewhere the two orders differ by at most
// one grey level. A side whose size does not change is not resampled (PIL skips it too; its
// coefficients would be the identity anyway). Returns a uint8 (len(rows), len(cols), 3) tensor.
func resample(img Image, oh, ow int, rows, cols []int) *torch.Tensor {
	var p pins
	defer p.done()
	x := p.t(torch.FromBytes(img.Pix, torch.Uint8, []int64{int64(img.H), int64(img.W), 3}, torch.CPU))
	needH, needV := ow != img.W, oh != img.H
	var cv, ch coeffs
	if needV {
		cv = pilCoeffs(img.H, oh, rows)
	}
	if needH {
		ch = pilCoeffs(img.W, ow, cols)
	}
	if needV && needH && oh < img.H && ow > img.W { // vertical pass first
		x = p.t(narrowTo(x, 1, &ch))
		x = p.t(pass(p.t(x.ToDType(torch.Int32)), 0, cv))
		return p.t(pass(x, 1, ch)).ToDType(torch.Uint8)
	}
	if needV {
		// The horizontal pass runs only on the input rows the vertical pass reads.
		x = p.t(narrowTo(x, 0, &cv))
	} else {
		x = p.t(x.IndexSelect(0, p.t(torch.FromSlice(toInt64(rows), int64(len(rows))))))
	}
	if needH {
		x = p.t(pass(p.t(x.ToDType(torch.Int32)), 1, ch))
	} else {
		x = p.t(x.IndexSelect(1, p.t(torch.FromSlice(toInt64(cols), int64(len(cols))))))
	}
	if needV {
		x = p.t(pass(p.t(x.ToDType(torch.Int32)), 0, cv))
	}
	return x.ToDType(torch.Uint8)
}

// narrowTo narrows dimension dim of x to the input range c reads and shifts c's indices to it.
func narrowTo(x *torch.Tensor, dim int64, c *coeffs) *torch.Tensor {
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, v := range c.idx {
		lo, hi = min(lo, v), max(hi, v)
	}
	for i := range c.idx {
		c.idx[i] -= lo
	}
	out := x.Narrow(dim, lo, hi-lo+1)
	runtime.KeepAlive(x)
	return out
}

func toInt64(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// pins holds the intermediate tensors of a computation reachable until it ends.
//
// The torch package frees a tensor from a runtime cleanup once its Go handle is unreachable, and
// a handle used only as the receiver or argument of an operation can become unreachable while
// libtorch is still running that operation (the package does not call runtime.KeepAlive after its
// C calls). Code here therefore passes every intermediate through pins.t and calls pins.done at
// the end, so no cleanup can free a tensor an operation is reading.
type pins struct{ ts []*torch.Tensor }

// t records x and returns it.
func (p *pins) t(x *torch.Tensor) *torch.Tensor {
	p.ts = append(p.ts, x)
	return x
}

// done keeps the recorded tensors alive up to this call.
func (p *pins) done() { runtime.KeepAlive(p.ts) }
