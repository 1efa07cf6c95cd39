package data

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
)

type imageCase struct {
	Key     string   `json:"key"`
	File    string   `json:"file"`
	Kind    string   `json:"kind"`
	Size    [2]int   `json:"size"`
	Resized [2]int   `json:"resized"`
	Resizes [][2]int `json:"resizes"`
	Crops   []struct {
		Top, Left int
		Flip      bool
	} `json:"crops"`
}

type dataCases struct {
	Images []imageCase `json:"images"`
	GT     []string    `json:"gt"`
}

func loadDataCases(t *testing.T) (string, dataCases) {
	t.Helper()
	dir := testref.Dir(t, "data")
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatalf("reference data missing: %v", err)
	}
	var c dataCases
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Images) == 0 || len(c.GT) == 0 {
		t.Fatal("cases.json lists no images or no masks")
	}
	return dir, c
}

func loadNpy(t *testing.T, path string) *torch.Tensor {
	t.Helper()
	x, err := npy.LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// imageFromTensor turns a reference (H, W, 3) uint8 array into an Image.
func imageFromTensor(x *torch.Tensor) Image {
	var p pins
	defer p.done()
	return Image{H: int(x.Size(0)), W: int(x.Size(1)), Pix: p.t(p.t(x).Contiguous()).Bytes()}
}

// diffStats returns the max abs difference and the fraction of differing elements.
func diffStats(a, b *torch.Tensor) (maxAbs, frac float64) {
	var p pins
	defer p.done()
	p.t(a)
	p.t(b)
	d := p.t(p.t(p.t(a.ToDType(torch.Float64)).Sub(p.t(b.ToDType(torch.Float64)))).Abs())
	return p.t(d.Max()).Item(), p.t(p.t(p.t(d.GtScalar(0)).ToDType(torch.Float64)).Mean()).Item()
}

func sameShape(a, b *torch.Tensor) bool { return fmt.Sprint(a.Shape()) == fmt.Sprint(b.Shape()) }

// TestTransformsOnDecodedPixels feeds PIL's own decoded pixels (the _rgb arrays) to Resize,
// TestTransform and TrainTransform: with the decoder out of the picture the results must be
// bit-identical to torchvision on PIL (our resize is PIL's fixed-point algorithm, and the
// normalisation runs the same float32 ops), for PNG and JPEG sources alike.
func TestTransformsOnDecodedPixels(t *testing.T) {
	dir, cases := loadDataCases(t)
	for _, c := range cases.Images {
		t.Run(c.Key, func(t *testing.T) {
			err := torch.WithScope(func(*torch.Scope) {
				img := imageFromTensor(loadNpy(t, filepath.Join(dir, c.Key+"_rgb.npy")))
				check := func(what string, got, want *torch.Tensor) {
					if !sameShape(got, want) {
						t.Errorf("%s: shape %v, want %v", what, got.Shape(), want.Shape())
						return
					}
					if m, f := diffStats(got, want); m != 0 {
						t.Errorf("%s: max abs diff %g (%.4f%% of values differ), want bit-identical", what, m, 100*f)
					}
				}
				oh, ow := ResizedSize(img.H, img.W, ResizeSize)
				if [2]int{oh, ow} != c.Resized {
					t.Errorf("ResizedSize(%d, %d, 256) = %d×%d, torchvision gives %v", img.H, img.W, oh, ow, c.Resized)
				}
				r, err := Resize(img, oh, ow)
				if err != nil {
					t.Fatal(err)
				}
				check("resize 256", r, loadNpy(t, filepath.Join(dir, c.Key+"_resize.npy")))
				for _, hw := range c.Resizes {
					r, err := Resize(img, hw[0], hw[1])
					if err != nil {
						t.Fatal(err)
					}
					want := loadNpy(t, filepath.Join(dir, fmt.Sprintf("resize_%s_%dx%d.npy", c.Key, hw[0], hw[1])))
					if hw[0] < img.H && hw[1] < img.W && !(hw[0] == oh && hw[1] == ow) {
						// Both sides shrink, not proportionally: Pillow 13 may run its passes in
						// the other order (see resample), one grey level apart at most.
						if m, f := diffStats(r, want); m > 1 {
							t.Errorf("resize %dx%d: max abs diff %g (%.3f%% differ), want ≤ 1", hw[0], hw[1], m, 100*f)
						} else {
							t.Logf("resize %dx%d (both sides shrink): max abs diff %g, %.3f%% differ", hw[0], hw[1], m, 100*f)
						}
						continue
					}
					check(fmt.Sprintf("resize %dx%d", hw[0], hw[1]), r, want)
				}
				x, err := TestTransform(img, CropSize)
				if err != nil {
					t.Fatal(err)
				}
				check("test transform", x, loadNpy(t, filepath.Join(dir, c.Key+"_test.npy")))
				for k, cr := range c.Crops {
					x, err := TrainTransform(img, ResizeSize, CropSize, CropFlip{Top: cr.Top, Left: cr.Left, Flip: cr.Flip})
					if err != nil {
						t.Fatal(err)
					}
					check(fmt.Sprintf("train transform %+v", cr), x, loadNpy(t, filepath.Join(dir, fmt.Sprintf("%s_train%d.npy", c.Key, k))))
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// jpegTolerance bounds our JPEG pipeline against PIL's. Go's image/jpeg uses a different integer
// IDCT than libjpeg-turbo's islow, replicates subsampled chroma where libjpeg interpolates it
// (fancy upsampling) and rounds the YCbCr→RGB conversion differently. On smooth content these
// give ±1–3 grey levels; at sharp colour edges in 4:2:0 files the chroma upsampling alone moves
// a pixel by up to about half the chroma step across the edge, which our synthetic images (flat
// discs of random colour on gradients) push to the worst case. After the normalisation a grey
// level is 1/(255·0.225) ≈ 0.0174, so the bounds below are in grey levels × that.
var jpegTolerance = map[string]struct {
	maxLevels float64 // max abs difference in grey levels (decoded pixels)
	meanFrac  float64 // bound on the fraction of decoded values that differ at all
}{
	// Measured (Go 1.26 image/jpeg against Pillow 13's libjpeg-turbo): 97 levels, 50% differ;
	// 3, 16%; 76, 44%; 1, 2.5%; 1, 2.3%. The 4:2:0 maxima sit on the discs' edges, where
	// replicated and interpolated chroma disagree by up to half the colour step.
	"rgb_300x200_jpg":   {100, 0.6},
	"rgb444_97x341_jpg": {4, 0.25},
	"rgb_640x480_jpg":   {80, 0.5},
	"grey_150x100_jpg":  {2, 0.05},
	"cmyk_120x80_jpg":   {2, 0.05},
}

// TestDecodeParity decodes every test file with DecodeImage and runs the transforms from the
// file: PNGs must match PIL bit for bit at every stage; JPEGs are bounded by jpegTolerance (the
// differences are the decoder's, measured and logged).
func TestDecodeParity(t *testing.T) {
	dir, cases := loadDataCases(t)
	for _, c := range cases.Images {
		t.Run(c.Key, func(t *testing.T) {
			err := torch.WithScope(func(*torch.Scope) {
				img, err := DecodeImage(filepath.Join(dir, c.File))
				if err != nil {
					t.Fatal(err)
				}
				got, err := img.Tensor()
				if err != nil {
					t.Fatal(err)
				}
				want := loadNpy(t, filepath.Join(dir, c.Key+"_rgb.npy"))
				if !sameShape(got, want) {
					t.Fatalf("decoded shape %v, PIL %v", got.Shape(), want.Shape())
				}
				m, f := diffStats(got, want)
				x, err := TestTransform(img, CropSize)
				if err != nil {
					t.Fatal(err)
				}
				mt, ft := diffStats(x, loadNpy(t, filepath.Join(dir, c.Key+"_test.npy")))
				cr := c.Crops[1]
				y, err := TrainTransform(img, ResizeSize, CropSize, CropFlip{Top: cr.Top, Left: cr.Left, Flip: cr.Flip})
				if err != nil {
					t.Fatal(err)
				}
				mr, fr := diffStats(y, loadNpy(t, filepath.Join(dir, c.Key+"_train1.npy")))
				t.Logf("%s: decoded max %g levels (%.2f%% differ); test transform max %.5f (%.2f%%); train transform max %.5f (%.2f%%)",
					c.Key, m, 100*f, mt, 100*ft, mr, 100*fr)
				if c.Kind == "png" {
					if m != 0 || mt != 0 || mr != 0 {
						t.Errorf("PNG must match PIL bit for bit: decoded %g, test %g, train %g", m, mt, mr)
					}
					return
				}
				tol, ok := jpegTolerance[c.Key]
				if !ok {
					t.Fatalf("no tolerance for %s", c.Key)
				}
				level := 1 / (255 * 0.225)
				if m > tol.maxLevels || f > tol.meanFrac {
					t.Errorf("decoded: max %g levels (bound %g), %.3f differ (bound %.3f)", m, tol.maxLevels, f, tol.meanFrac)
				}
				// The transforms only average decoded pixels, so they cannot exceed the decoded bound.
				if mt > tol.maxLevels*level+1e-5 || mr > tol.maxLevels*level+1e-5 {
					t.Errorf("transforms: test %g, train %g; bound %g", mt, mr, tol.maxLevels*level)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoadGT compares LoadGT with cv2.imread(p, cv2.IMREAD_GRAYSCALE), bit for bit.
func TestLoadGT(t *testing.T) {
	dir, cases := loadDataCases(t)
	for _, name := range cases.GT {
		t.Run(name, func(t *testing.T) {
			err := torch.WithScope(func(*torch.Scope) {
				got, err := LoadGT(filepath.Join(dir, "gt", name+".png"))
				if err != nil {
					t.Fatal(err)
				}
				want := loadNpy(t, filepath.Join(dir, "gt_"+name+".npy"))
				if got.DType() != torch.Uint8 || !sameShape(got, want) {
					t.Fatalf("got %v %v, want uint8 %v", got.DType(), got.Shape(), want.Shape())
				}
				if m, f := diffStats(got, want); m != 0 {
					t.Errorf("max abs diff %g (%.3f%% differ), want identical to cv2", m, 100*f)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestResizedSize(t *testing.T) {
	for _, c := range []struct{ h, w, size, oh, ow int }{
		{200, 300, 256, 256, 384},
		{341, 97, 256, 899, 256}, // int(256·341/97) = int(899.96...) = 899
		{480, 640, 256, 256, 341},
		{256, 256, 256, 256, 256},
		{300, 256, 256, 300, 256},
		{1, 3, 256, 256, 768},
	} {
		if oh, ow := ResizedSize(c.h, c.w, c.size); oh != c.oh || ow != c.ow {
			t.Errorf("ResizedSize(%d, %d, %d) = %d×%d, want %d×%d", c.h, c.w, c.size, oh, ow, c.oh, c.ow)
		}
	}
}

func TestDrawCropFlip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	flips, n := 0, 4000
	seenTop, seenLeft := map[int]bool{}, map[int]bool{}
	for i := 0; i < n; i++ {
		cf := DrawCropFlip(rng, 256, 230, 224)
		if cf.Top < 0 || cf.Top > 32 || cf.Left < 0 || cf.Left > 6 {
			t.Fatalf("offset out of range: %+v", cf)
		}
		seenTop[cf.Top], seenLeft[cf.Left] = true, true
		if cf.Flip {
			flips++
		}
	}
	if len(seenTop) != 33 || len(seenLeft) != 7 {
		t.Errorf("offsets not covering their range: %d tops, %d lefts", len(seenTop), len(seenLeft))
	}
	if p := float64(flips) / float64(n); math.Abs(p-0.5) > 0.04 {
		t.Errorf("flip rate %.3f, want 0.5", p)
	}
	if cf := DrawCropFlip(rng, 224, 224, 224); cf.Top != 0 || cf.Left != 0 {
		t.Errorf("exact-size crop must be at 0,0: %+v", cf)
	}
}

func TestTransformErrors(t *testing.T) {
	img := Image{W: 10, H: 8, Pix: make([]uint8, 10*8*3)}
	big := Image{W: 300, H: 200, Pix: make([]uint8, 300*200*3)}
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"bad pix length", func() error {
			_, err := TestTransform(Image{W: 3, H: 3, Pix: make([]uint8, 5)}, 224)
			return err
		}},
		{"zero size", func() error { _, err := TestTransform(Image{}, 224); return err }},
		{"crop larger than resize", func() error { _, err := TrainTransform(img, 200, 224, CropFlip{}); return err }},
		{"crop outside", func() error { _, err := TrainTransform(big, 256, 224, CropFlip{Top: 40}); return err }},
		{"negative crop", func() error { _, err := TrainTransform(big, 256, 224, CropFlip{Left: -1}); return err }},
		{"bad test size", func() error { _, err := TestTransform(img, 0); return err }},
		{"bad resize", func() error { _, err := Resize(img, 0, 3); return err }},
	} {
		if err := c.fn(); err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}
