package report

import (
	"fmt"
	"image"
	"image/jpeg"
	"io"

	"github.com/affgd/affgd/torch"
)

// WriteJPEG writes rgb, a uint8 (H, W, 3) RGB tensor on any device, to path as a baseline JPEG of
// the given quality (1..100; 4:2:0 chroma, as Go's encoder writes it). The file is written
// atomically (a temporary file renamed over path). A JPEG of a photo is several times smaller
// than its PNG: reports' pictures are JPEGs (EncodeJPEG).
func WriteJPEG(path string, rgb *torch.Tensor, quality int) error {
	if err := writeAtomic(path, func(w io.Writer) error { return EncodeJPEG(w, rgb, quality) }); err != nil {
		return fmt.Errorf("report: write jpeg %s: %w", path, err)
	}
	return nil
}

// EncodeJPEG writes rgb, a uint8 (H, W, 3) RGB tensor on any device, to w as a baseline JPEG of
// the given quality (1..100).
func EncodeJPEG(w io.Writer, rgb *torch.Tensor, quality int) error {
	if err := checkRGB("image", rgb); err != nil {
		return err
	}
	if quality < 1 || quality > 100 {
		return fmt.Errorf("jpeg quality %d, want 1..100", quality)
	}
	var im *image.RGBA
	err := torch.WithScope(func(_ *torch.Scope) {
		H, W := rgb.Size(0), rgb.Size(1)
		opaque := torch.Full([]int64{H, W, 1}, 255, torch.Uint8)
		rgba := torch.Cat([]*torch.Tensor{rgb.To(torch.CPU), opaque}, 2).Contiguous()
		im = &image.RGBA{Pix: rgba.Bytes(), Stride: int(4 * W), Rect: image.Rect(0, 0, int(W), int(H))}
	})
	if err != nil {
		return err
	}
	return jpeg.Encode(w, im, &jpeg.Options{Quality: quality})
}
