package gallery

import (
	"fmt"
	"math"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
)

// Sizes of the pictures of one image: a strip of square panels (the image, its GT overlay when
// there is one, one overlay per map) side by side, separated by Gap pixels of the background.
const (
	ThumbBox   = 112 // side of a panel in the grids
	LargeBox   = 320 // side of a panel in the enlarged view
	Gap        = 4   // pixels between two panels
	thumbQual  = 80  // JPEG quality of the grid strips
	largeQual  = 85  // and of the enlarged ones
	background = 255 // panel padding and gaps: white, the tiles' colour
)

// stripWidth is the width of a strip of n panels of side box.
func stripWidth(n, box int) int { return n*box + (n-1)*Gap }

// fitSize is the size of an H×W image scaled to fit a box×box square, aspect kept, each side at
// least 1 pixel.
func fitSize(h, w, box int) (int64, int64) {
	s := float64(box) / float64(max(h, w))
	return int64(max(1, int(math.Round(float64(h)*s)))), int64(max(1, int(math.Round(float64(w)*s))))
}

// resize scales an (H, W) or (H, W, C) float32 tensor to h×w with antialiased bilinear
// interpolation (area-like when shrinking, so thin GT parts and image detail do not alias).
func resize(x *torch.Tensor, h, w int64) *torch.Tensor {
	if x.Size(0) == h && x.Size(1) == w {
		return x
	}
	var in *torch.Tensor
	if x.Dim() == 2 {
		in = x.Reshape(1, 1, x.Size(0), x.Size(1))
	} else {
		in = x.Permute(2, 0, 1).Unsqueeze(0)
	}
	out := torch.Interpolate(in.Contiguous(), torch.InterpolateOptions{Size: [2]int64{h, w}, Mode: torch.Bilinear, Antialias: true})
	if x.Dim() == 2 {
		return out.Reshape(h, w)
	}
	return out.Squeeze(0).Permute(1, 2, 0).Contiguous()
}

// strip lays out the panels of one image at panel side box: img, the image already scaled to fit
// the box (a uint8 (h, w, 3) tensor), then an overlay of each heat map on it (the GT first when
// given, as an (h, w) float map at the image's size), each padded to box×box, left to right. maps
// are (h', w') float maps of any range and size. The overlays are report.Overlay's jet overlays
// with opacity alpha, as `affgd predict` draws them, computed at the panel's size.
func strip(img, gt *torch.Tensor, maps []*torch.Tensor, box int, alpha float64) (*torch.Tensor, error) {
	var out *torch.Tensor
	err := torch.WithScope(func(s *torch.Scope) {
		h, w := img.Size(0), img.Size(1)
		panels := []*torch.Tensor{img}
		heats := maps
		if gt != nil {
			heats = append([]*torch.Tensor{gt}, maps...)
		}
		for _, m := range heats {
			ov, err := report.Overlay(img, m, alpha)
			if err != nil {
				torch.Fail("gallery", "%v", err)
			}
			panels = append(panels, ov)
		}
		n := len(panels)
		canvas := torch.Full([]int64{int64(box), int64(stripWidth(n, box)), 3}, background, torch.Uint8)
		top, left := (int64(box)-h)/2, (int64(box)-w)/2
		for i, p := range panels {
			x0 := int64(i*(box+Gap)) + left
			canvas.Narrow(0, top, h).Narrow(1, x0, w).Copy_(p)
		}
		out = s.Keep(canvas)
	})
	return out, err
}

// scaled returns the image (uint8 (H, W, 3)) and GT ((H, W) grey values, or nil) scaled to fit a
// box×box square, the image as uint8 and the GT as float32.
func scaled(rgb, gt *torch.Tensor, box int) (*torch.Tensor, *torch.Tensor) {
	h, w := fitSize(int(rgb.Size(0)), int(rgb.Size(1)), box)
	img := resize(rgb.ToDType(torch.Float32), h, w).Round().Clamp_(0, 255).ToDType(torch.Uint8)
	var g *torch.Tensor
	if gt != nil {
		g = resize(gt.ToDType(torch.Float32), h, w)
	}
	return img, g
}

// rgbTensor wraps a decoded image as a uint8 (H, W, 3) CPU tensor.
func rgbTensor(im data.Image) (*torch.Tensor, error) {
	if im.W <= 0 || im.H <= 0 || len(im.Pix) != 3*im.W*im.H {
		return nil, fmt.Errorf("image of %d×%d with %d bytes, want %d", im.W, im.H, len(im.Pix), 3*im.W*im.H)
	}
	return torch.FromBytes(im.Pix, torch.Uint8, []int64{int64(im.H), int64(im.W), 3}, torch.CPU), nil
}
