package report

import (
	"fmt"
	"image"
	"image/png"
	"io"
	"math"

	"github.com/affgd/affgd/torch"
)

// Jet colours x with the jet colormap: x (any shape, floating point) is clamped to [0, 1] and the
// result has one more trailing dimension of 3, the red, green and blue intensities in [0, 1], in
// x's dtype and on its device. The colormap is OpenCV's COLORMAP_JET (GNU Octave's "jet"), the
// piecewise-linear
//
//	red = clamp(1.5 − |4x − 3|, 0, 1), green = clamp(1.5 − |4x − 2|, 0, 1), blue = clamp(1.5 − |4x − 1|, 0, 1)
//
// running dark blue (x = 0), blue, cyan, yellow, red to dark red (x = 1). On the 256 grey levels
// it matches cv2.applyColorMap(COLORMAP_JET) to within one level after rounding (see the test).
// Like any tensor operation it panics with a *torch.Error on bad input (a nil or non-float
// tensor); run it under torch.Try.
func Jet(x *torch.Tensor) *torch.Tensor {
	if x == nil || x.Released() {
		torch.Fail("report.Jet", "nil or freed tensor")
	}
	if !x.DType().IsFloat() {
		torch.Fail("report.Jet", "want a floating-point tensor, got %v", x.DType())
	}
	// 1.5 − |4x − c| clamped to [0, 1], for c = 3, 2, 1 (red, green, blue) along a new last axis
	centres := torch.FromSlice([]float32{3, 2, 1}).To(x.Device()).ToDType(x.DType())
	v := x.Clamp(0, 1).MulScalar_(4).Unsqueeze(int64(x.Dim()))
	return v.Sub(centres).Abs_().Neg_().AddScalar_(1.5).Clamp_(0, 1)
}

// checkRGB validates a uint8 (H, W, 3) image tensor.
func checkRGB(what string, img *torch.Tensor) error {
	if img == nil || img.Released() {
		return fmt.Errorf("%s is nil or freed", what)
	}
	if img.DType() != torch.Uint8 || img.Dim() != 3 || img.Size(2) != 3 {
		return fmt.Errorf("%s must be a uint8 (H, W, 3) RGB tensor, got %v %v", what, img.DType(), img.Shape())
	}
	if img.Size(0) == 0 || img.Size(1) == 0 {
		return fmt.Errorf("%s is empty (%v)", what, img.Shape())
	}
	return nil
}

// checkHeat validates an (h, w) floating-point map.
func checkHeat(heat *torch.Tensor) error {
	if heat == nil || heat.Released() {
		return fmt.Errorf("heat map is nil or freed")
	}
	if heat.Dim() != 2 || !heat.DType().IsFloat() {
		return fmt.Errorf("heat map must be an (h, w) floating-point tensor, got %v %v", heat.DType(), heat.Shape())
	}
	if heat.Numel() == 0 {
		return fmt.Errorf("heat map is empty (%v)", heat.Shape())
	}
	return nil
}

// finiteRange returns the smallest and largest value of h; a NaN or infinite value fails with a
// *torch.Error.
func finiteRange(op string, h *torch.Tensor) (lo, hi float64) {
	lo, hi = h.Min().Item(), h.Max().Item()
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		torch.Fail(op, "heat map has non-finite values (min %v, max %v)", lo, hi)
	}
	return lo, hi
}

// minMax returns heat (h, w) as float32 min-max normalised to [0, 1]; a constant map gives zeros.
// Non-finite values fail with a *torch.Error.
func minMax(op string, heat *torch.Tensor) *torch.Tensor {
	h := heat.ToDType(torch.Float32)
	lo, hi := finiteRange(op, h)
	if hi <= lo {
		return torch.Zeros(heat.Shape(), torch.Float32, heat.Device())
	}
	return h.SubScalar(lo).DivScalar(hi - lo)
}

// Overlay draws heat over img: heat, an (h, w) floating-point map of any range, is resized in
// float32 to the image's H×W with bilinear interpolation (half-pixel centres, edge clamping:
// align_corners=False, no antialias, as cv2.resize INTER_LINEAR), min-max normalised to [0, 1]
// (after the resize, so the hottest pixel shown is full red; a constant map becomes all zeros,
// i.e. all dark blue), coloured with Jet and blended over img, a uint8 (H, W, 3) RGB tensor:
//
//	out = round(255 · ((1 − alpha) · img/255 + alpha · jet(heat)))
//
// as cv2.addWeighted(img, 1−alpha, colormap, alpha) on a float colormap. alpha must lie in
// [0, 1] (0 returns the image, 1 the colormap alone). The result is a new uint8 (H, W, 3) tensor
// on img's device; heat may be on any device. Bad shapes, dtypes, alpha or non-finite heat values
// give an error.
func Overlay(img *torch.Tensor, heat *torch.Tensor, alpha float64) (*torch.Tensor, error) {
	if err := checkRGB("image", img); err != nil {
		return nil, fmt.Errorf("report: overlay: %w", err)
	}
	if err := checkHeat(heat); err != nil {
		return nil, fmt.Errorf("report: overlay: %w", err)
	}
	if !(alpha >= 0 && alpha <= 1) {
		return nil, fmt.Errorf("report: overlay: alpha must be in [0, 1], got %v", alpha)
	}
	var out *torch.Tensor
	err := torch.WithScope(func(s *torch.Scope) {
		H, W := img.Size(0), img.Size(1)
		h := heat.To(img.Device()).ToDType(torch.Float32)
		lo, hi := finiteRange("report.Overlay", h)
		if hi > lo {
			h = torch.Interpolate(h.Reshape(1, 1, h.Size(0), h.Size(1)), torch.InterpolateOptions{
				Size: [2]int64{H, W}, Mode: torch.Bilinear,
			}).Reshape(H, W)
			h = minMax("report.Overlay", h)
		} else { // constant: resizing could add rounding noise that min-max would blow up
			h = torch.Zeros([]int64{H, W}, torch.Float32, img.Device())
		}
		col := Jet(h) // (H, W, 3) in [0, 1]
		mix := img.ToDType(torch.Float32).DivScalar(255).MulScalar_(1 - alpha).Add_(col.MulScalar_(alpha))
		out = s.Keep(mix.MulScalar_(255).Round().Clamp_(0, 255).ToDType(torch.Uint8).Contiguous())
	})
	if err != nil {
		return nil, fmt.Errorf("report: overlay: %w", err)
	}
	return out, nil
}

// WritePNG writes rgb, a uint8 (H, W, 3) RGB tensor on any device, to path as an 8-bit RGB PNG
// (opaque). The file is written atomically (a temporary file renamed over path).
func WritePNG(path string, rgb *torch.Tensor) error {
	if err := checkRGB("image", rgb); err != nil {
		return fmt.Errorf("report: write png %s: %w", path, err)
	}
	var im *image.NRGBA
	err := torch.WithScope(func(_ *torch.Scope) {
		H, W := rgb.Size(0), rgb.Size(1)
		opaque := torch.Full([]int64{H, W, 1}, 255, torch.Uint8)
		rgba := torch.Cat([]*torch.Tensor{rgb.To(torch.CPU), opaque}, 2).Contiguous()
		im = &image.NRGBA{Pix: rgba.Bytes(), Stride: int(4 * W), Rect: image.Rect(0, 0, int(W), int(H))}
	})
	if err != nil {
		return fmt.Errorf("report: write png %s: %w", path, err)
	}
	if err := writeAtomic(path, func(w io.Writer) error { return png.Encode(w, im) }); err != nil {
		return fmt.Errorf("report: write png %s: %w", path, err)
	}
	return nil
}

// WriteHeatPNG writes heat, an (h, w) floating-point map on any device, to path as an 8-bit grey
// PNG: min-max normalised (a constant map gives black), times 255, rounded half to even. The file
// is written atomically. Non-finite values are an error.
func WriteHeatPNG(path string, heat *torch.Tensor) error {
	if err := checkHeat(heat); err != nil {
		return fmt.Errorf("report: write heat png %s: %w", path, err)
	}
	var im *image.Gray
	err := torch.WithScope(func(_ *torch.Scope) {
		h, w := heat.Size(0), heat.Size(1)
		g := minMax("report.WriteHeatPNG", heat.To(torch.CPU))
		g = g.MulScalar(255).Round().Clamp(0, 255).ToDType(torch.Uint8).Contiguous()
		im = &image.Gray{Pix: g.Bytes(), Stride: int(w), Rect: image.Rect(0, 0, int(w), int(h))}
	})
	if err != nil {
		return fmt.Errorf("report: write heat png %s: %w", path, err)
	}
	if err := writeAtomic(path, func(w io.Writer) error { return png.Encode(w, im) }); err != nil {
		return fmt.Errorf("report: write heat png %s: %w", path, err)
	}
	return nil
}
