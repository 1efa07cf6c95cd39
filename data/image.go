package data

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"

	"github.com/affgd/affgd/torch"
)

// Image is a decoded 8-bit RGB image, row-major H×W×3 (R, G, B per pixel, no padding).
type Image struct {
	W, H int
	Pix  []uint8
}

// validate reports whether the image's fields agree.
func (im Image) validate() error {
	if im.W <= 0 || im.H <= 0 {
		return fmt.Errorf("data: image has size %d×%d; want a positive width and height", im.W, im.H)
	}
	if len(im.Pix) != im.W*im.H*3 {
		return fmt.Errorf("data: image of %d×%d has %d bytes; want W·H·3 = %d", im.W, im.H, len(im.Pix), im.W*im.H*3)
	}
	return nil
}

// Tensor returns the image as a new CPU uint8 tensor of shape (H, W, 3).
func (im Image) Tensor() (*torch.Tensor, error) {
	if err := im.validate(); err != nil {
		return nil, err
	}
	var t *torch.Tensor
	err := torch.Try(func() {
		t = torch.FromBytes(im.Pix, torch.Uint8, []int64{int64(im.H), int64(im.W), 3}, torch.CPU)
	})
	return t, err
}

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xff, 0xd8, 0xff}
)

// readFile reads path and tells its format, "PNG" or "JPEG", from its first bytes (not its
// name), with errors that name the file and what was expected.
func readFile(path string) ([]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("data: read image: %w", err)
	}
	switch {
	case bytes.HasPrefix(b, pngMagic):
		return b, "PNG", nil
	case bytes.HasPrefix(b, jpegMagic):
		return b, "JPEG", nil
	}
	return nil, "", fmt.Errorf("data: %s is not an image: want a JPEG or PNG file (it starts with % x)", path, b[:min(len(b), 8)])
}

// decodePNG decodes the PNG file contents b read from path, refusing images over PIL's
// decompression-bomb limit before allocating their pixels.
func decodePNG(path string, b []byte) (image.Image, error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err == nil && cfg.Width*cfg.Height > maxImagePixels {
		return nil, fmt.Errorf("data: %s: PNG image of %d×%d = %d pixels exceeds the limit of %d (PIL's decompression-bomb limit)", path, cfg.Width, cfg.Height, cfg.Width*cfg.Height, maxImagePixels)
	}
	var m image.Image
	if err == nil {
		m, err = png.Decode(bytes.NewReader(b))
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("data: %s: truncated PNG file (%v)", path, err)
		}
		return nil, fmt.Errorf("data: %s: corrupt or unsupported PNG file: %v", path, err)
	}
	if r := m.Bounds(); r.Dx() <= 0 || r.Dy() <= 0 {
		return nil, fmt.Errorf("data: %s: empty PNG image (%d×%d)", path, r.Dx(), r.Dy())
	}
	return m, nil
}

// DecodeImage reads a JPEG or PNG file and converts it to 8-bit RGB as PIL 13's
// Image.open(path).convert("RGB") does, bit for bit:
//
//   - JPEGs are decoded by libjpeg(-turbo) with PIL's settings (decodeJPEG): ISLOW IDCT, fancy
//     chroma upsampling, libjpeg's YCbCr → RGB; grey JPEGs are replicated to R, G and B; CMYK
//     and YCCK JPEGs are read as Adobe-inverted CMYK (PIL assumes Adobe's convention for every
//     CMYK JPEG) and converted with PIL's R = 255−k − round((255−k)·c/255) in integers;
//   - PNG grey (any bit depth up to 8) is replicated to R, G and B; paletted images are looked up;
//   - alpha is dropped, not composited (RGBA, LA and transparent palettes alike);
//   - 16-bit RGB(A) keeps the high byte of each sample; 16-bit grey is clipped to 0..255, as
//     PIL 13's I;16 → RGB conversion does (so most 16-bit grey pixels become white).
//
// JPEG pixels equal PIL's as long as both use libjpeg-turbo's ISLOW IDCT and fancy upsampling
// (checked against Pillow 13's bundled libjpeg-turbo 3.x in tests/data). Corrupt, truncated,
// oversized and non-image files give one error naming the file.
func DecodeImage(path string) (Image, error) {
	b, kind, err := readFile(path)
	if err != nil {
		return Image{}, err
	}
	if kind == "JPEG" {
		w, h, pix, err := decodeJPEG(path, b, jpegRGB)
		if err != nil {
			return Image{}, err
		}
		return Image{W: w, H: h, Pix: pix}, nil
	}
	m, err := decodePNG(path, b)
	if err != nil {
		return Image{}, err
	}
	return toRGB(m), nil
}

// toRGB converts a decoded PNG image to packed 8-bit RGB with PIL's convert("RGB") rules. This is
// part of decoding: it runs once per pixel on Go's decoded byte slices, before any tensor exists.
func toRGB(m image.Image) Image {
	r := m.Bounds()
	w, h := r.Dx(), r.Dy()
	out := Image{W: w, H: h, Pix: make([]uint8, w*h*3)}
	dst := out.Pix
	switch m := m.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+w]
			d := dst[y*w*3 : (y+1)*w*3]
			for x, v := range s {
				d[3*x], d[3*x+1], d[3*x+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+2*w]
			d := dst[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				v := uint8(255)
				if s[2*x] == 0 { // big-endian: a value below 256
					v = s[2*x+1]
				}
				d[3*x], d[3*x+1], d[3*x+2] = v, v, v
			}
		}
	case *image.RGBA:
		copyRGB(dst, m.Pix, m.Stride, w, h, 4, 1)
	case *image.NRGBA:
		copyRGB(dst, m.Pix, m.Stride, w, h, 4, 1)
	case *image.RGBA64:
		copyRGB(dst, m.Pix, m.Stride, w, h, 8, 2)
	case *image.NRGBA64:
		copyRGB(dst, m.Pix, m.Stride, w, h, 8, 2)
	case *image.Paletted:
		pal := make([][3]uint8, len(m.Palette))
		for i, c := range m.Palette {
			pal[i] = rawRGB(c)
		}
		for y := 0; y < h; y++ {
			s := m.Pix[y*m.Stride : y*m.Stride+w]
			d := dst[y*w*3 : (y+1)*w*3]
			for x, v := range s {
				if int(v) < len(pal) {
					p := pal[v]
					d[3*x], d[3*x+1], d[3*x+2] = p[0], p[1], p[2]
				}
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				p := rawRGB(m.At(r.Min.X+x, r.Min.Y+y))
				copy(dst[(y*w+x)*3:], p[:])
			}
		}
	}
	return out
}

// copyRGB copies the first three samples of each pixel (bytes per pixel bpp, bytes per sample
// bps; for 16-bit samples the big-endian high byte) into packed RGB.
func copyRGB(dst, src []uint8, stride, w, h, bpp, bps int) {
	for y := 0; y < h; y++ {
		s := src[y*stride : y*stride+w*bpp]
		d := dst[y*w*3 : (y+1)*w*3]
		for x := 0; x < w; x++ {
			d[3*x], d[3*x+1], d[3*x+2] = s[bpp*x], s[bpp*x+bps], s[bpp*x+2*bps]
		}
	}
}

// rawRGB returns a colour's stored (non-premultiplied) 8-bit R, G, B, alpha ignored.
func rawRGB(c color.Color) [3]uint8 {
	switch c := c.(type) {
	case color.RGBA:
		return [3]uint8{c.R, c.G, c.B}
	case color.NRGBA:
		return [3]uint8{c.R, c.G, c.B}
	case color.Gray:
		return [3]uint8{c.Y, c.Y, c.Y}
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]uint8{n.R, n.G, n.B}
}

// LoadGT reads a ground-truth mask as the released process_gt does, cv2.imread(path,
// cv2.IMREAD_GRAYSCALE), and returns its grey levels as a CPU uint8 (H, W) tensor:
//
//   - 8-bit grey PNGs as stored; 16-bit grey keeps the high byte (libpng's strip_16);
//   - colour PNGs (RGB, RGBA, paletted; alpha dropped) go through libpng's rgb_to_gray with the
//     coefficients OpenCV asks for (0.299, 0.587 → 9797, 19234, 3737 in 1/32768):
//     grey = (9797·R + 19234·G + 3737·B) >> 15 for 8-bit samples, and for 16-bit samples
//     ((9797·R + 19234·G + 3737·B + 16384) >> 15) >> 8;
//   - grey+alpha drops the alpha;
//   - grey and colour JPEGs are decoded by libjpeg straight to grey (the luma plane, as OpenCV
//     asks libjpeg for it); CMYK JPEGs to raw CMYK, then OpenCV's CMYK → grey formula.
//
// These rules were checked bit for bit against cv2 5.0 with libpng 1.6 and its libjpeg-turbo
// (tests/data). OpenCV's EXIF rotation of JPEGs is not applied (masks carry no orientation).
func LoadGT(path string) (*torch.Tensor, error) {
	b, kind, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("ground truth: %w", err)
	}
	var out *torch.Tensor
	if kind == "JPEG" {
		w, h, pix, err := decodeJPEG(path, b, jpegGreyCV)
		if err != nil {
			return nil, fmt.Errorf("ground truth: %w", err)
		}
		err = torch.Try(func() {
			out = torch.FromBytes(pix, torch.Uint8, []int64{int64(h), int64(w)}, torch.CPU)
		})
		if err != nil {
			return nil, fmt.Errorf("data: ground truth %s: %w", path, err)
		}
		return out, nil
	}
	m, err := decodePNG(path, b)
	if err != nil {
		return nil, fmt.Errorf("ground truth: %w", err)
	}
	r := m.Bounds()
	h, w := int64(r.Dy()), int64(r.Dx())
	err = torch.WithScope(func(s *torch.Scope) {
		switch m := m.(type) {
		case *image.Gray:
			out = torch.FromBytes(packRows(m.Pix, m.Stride, int(w), int(h)), torch.Uint8, []int64{h, w}, torch.CPU)
		case *image.Gray16:
			b := torch.FromBytes(packRows(m.Pix, m.Stride, int(w)*2, int(h)), torch.Uint8, []int64{h, w, 2}, torch.CPU)
			out = b.Select(2, 0).Contiguous()
		case *image.NRGBA:
			out = grey8(torch.FromBytes(packRows(m.Pix, m.Stride, int(w)*4, int(h)), torch.Uint8, []int64{h, w, 4}, torch.CPU))
		case *image.RGBA:
			out = grey8(torch.FromBytes(packRows(m.Pix, m.Stride, int(w)*4, int(h)), torch.Uint8, []int64{h, w, 4}, torch.CPU))
		case *image.NRGBA64:
			out = grey16(torch.FromBytes(packRows(m.Pix, m.Stride, int(w)*8, int(h)), torch.Uint8, []int64{h, w, 4, 2}, torch.CPU))
		case *image.RGBA64:
			out = grey16(torch.FromBytes(packRows(m.Pix, m.Stride, int(w)*8, int(h)), torch.Uint8, []int64{h, w, 4, 2}, torch.CPU))
		default: // paletted, ...: via RGB
			rgb := toRGB(m)
			out = grey8(torch.FromBytes(rgb.Pix, torch.Uint8, []int64{h, w, 3}, torch.CPU))
		}
		s.Keep(out)
	})
	if err != nil {
		return nil, fmt.Errorf("data: ground truth %s: %w", path, err)
	}
	return out, nil
}

// packRows returns the first rowBytes of each of h rows of a strided buffer, packed.
func packRows(pix []uint8, stride, rowBytes, h int) []uint8 {
	if stride == rowBytes {
		return pix[:rowBytes*h]
	}
	out := make([]uint8, 0, rowBytes*h)
	for y := 0; y < h; y++ {
		out = append(out, pix[y*stride:y*stride+rowBytes]...)
	}
	return out
}

// gtCoeffs are libpng's fixed-point rgb_to_gray weights for OpenCV's (0.299, 0.587).
var gtCoeffs = []int64{9797, 19234, 3737}

// grey8 is libpng's 8-bit rgb_to_gray of an (H, W, ≥3) uint8 tensor.
func grey8(px *torch.Tensor) *torch.Tensor {
	rgb := px.Narrow(2, 0, 3).ToDType(torch.Int64)
	s := rgb.Mul(torch.FromSlice(gtCoeffs, 3)).SumDims([]int64{2}, false)
	return s.FloorDivide(torch.Scalar(1<<15, torch.Int64)).ToDType(torch.Uint8)
}

// grey16 is libpng's 16-bit rgb_to_gray then strip_16 of an (H, W, ≥3, 2) big-endian byte tensor.
func grey16(px *torch.Tensor) *torch.Tensor {
	b := px.Narrow(2, 0, 3).ToDType(torch.Int64)
	v := b.Select(3, 0).MulScalar(256).Add(b.Select(3, 1))
	s := v.Mul(torch.FromSlice(gtCoeffs, 3)).SumDims([]int64{2}, false).AddScalar(1 << 14)
	g16 := s.FloorDivide(torch.Scalar(1<<15, torch.Int64))
	return g16.FloorDivide(torch.Scalar(256, torch.Int64)).ToDType(torch.Uint8)
}
