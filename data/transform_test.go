package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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

// orderCase is one PIL resize of an order_src_<Src>.npy noise image to Size (h, w), stored in
// order_out.npy from Offset.
type orderCase struct {
	Src    string `json:"src"`
	Size   [2]int `json:"size"`
	Offset int64  `json:"offset"`
}

type dataCases struct {
	Images   []imageCase       `json:"images"`
	GT       []string          `json:"gt"`
	Orders   []orderCase       `json:"orders"`
	Versions map[string]string `json:"versions"`
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
	if len(c.Images) == 0 || len(c.GT) == 0 || len(c.Orders) == 0 {
		t.Fatal("cases.json lists no images, masks or resize orders (stale reference data? run make testdata)")
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
	return Image{H: int(x.Size(0)), W: int(x.Size(1)), Pix: x.Contiguous().Bytes()}
}

// diffStats returns the max abs difference and the fraction of differing elements.
func diffStats(a, b *torch.Tensor) (maxAbs, frac float64) {
	d := a.ToDType(torch.Float64).Sub(b.ToDType(torch.Float64)).Abs()
	return d.Max().Item(), d.GtScalar(0).ToDType(torch.Float64).Mean().Item()
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

// TestDecodeParity decodes every test file with DecodeImage and runs the transforms from the
// file: PNGs and JPEGs alike must match PIL bit for bit at every stage. For JPEGs this holds
// because both sides run libjpeg-turbo's ISLOW IDCT, fancy upsampling and YCbCr → RGB, which
// give the same integers in Debian's libjpeg-turbo 2.1.5 and Pillow 13's bundled 3.x (4:2:0,
// 4:2:2, 4:4:4, progressive, restart markers, grey, Adobe CMYK, corrupt entropy data).
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
				if m != 0 || mt != 0 || mr != 0 {
					t.Errorf("%s must match PIL bit for bit: decoded %g, test %g, train %g", c.Kind, m, mt, mr)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLoadGT compares LoadGT with cv2.imread(p, cv2.IMREAD_GRAYSCALE), bit for bit, for PNG
// masks of every kind and grey, colour and CMYK JPEG masks.
func TestLoadGT(t *testing.T) {
	dir, cases := loadDataCases(t)
	for _, name := range cases.GT {
		t.Run(name, func(t *testing.T) {
			err := torch.WithScope(func(*torch.Scope) {
				got, err := LoadGT(filepath.Join(dir, "gt", name))
				if err != nil {
					t.Fatal(err)
				}
				want := loadNpy(t, filepath.Join(dir, "gt_"+strings.TrimSuffix(name, filepath.Ext(name))+".npy"))
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

// TestResizePassOrder checks Pillow 13's pass order (verticalFirst) on noise images resized by
// PIL to sizes around the rule's boundary (the tie in_h−out_h = 2(in_w−out_w) and its
// neighbours), every grow/shrink combination and random sizes: Resize must match PIL bit for
// bit, and for most sizes the other order must not (noise makes the orders' roundings
// disagree), so the cases really decide the order.
func TestResizePassOrder(t *testing.T) {
	dir, cases := loadDataCases(t)
	err := torch.WithScope(func(*torch.Scope) {
		all := loadNpy(t, filepath.Join(dir, "order_out.npy"))
		srcs := map[string]Image{}
		decided, vFirst := 0, 0
		for _, c := range cases.Orders {
			img, ok := srcs[c.Src]
			if !ok {
				img = imageFromTensor(loadNpy(t, filepath.Join(dir, "order_src_"+c.Src+".npy")))
				srcs[c.Src] = img
			}
			h, w := c.Size[0], c.Size[1]
			want := all.Narrow(0, c.Offset, int64(h*w*3)).Reshape(int64(h), int64(w), 3)
			got, err := Resize(img, h, w)
			if err != nil {
				t.Fatal(err)
			}
			vf := verticalFirst(img.H, img.W, h, w)
			if m, f := diffStats(got, want); m != 0 {
				t.Errorf("%s %d×%d → %d×%d (vertical first: %v): max abs diff %g (%.3f%% differ), want bit-identical",
					c.Src, img.H, img.W, h, w, vf, m, 100*f)
			}
			if h == img.H || w == img.W {
				continue
			}
			other := resampleOrder(img, h, w, window(0, h, false), window(0, w, false), !vf)
			if m, _ := diffStats(other, want); m != 0 {
				decided++
				if vf {
					vFirst++
				}
			}
		}
		t.Logf("%d resizes; the other pass order differs from PIL on %d of them (%d vertical-first, %d horizontal-first)",
			len(cases.Orders), decided, vFirst, decided-vFirst)
		if decided < len(cases.Orders)*3/4 || vFirst < 10 || decided-vFirst < 10 {
			t.Errorf("only %d of %d cases (%d vertical-first) tell the orders apart", decided, len(cases.Orders), vFirst)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerticalFirst(t *testing.T) {
	for _, c := range []struct {
		inH, inW, outH, outW int
		want                 bool
	}{
		{100, 100, 79, 90, true},   // dy 21 > 2·10
		{100, 100, 80, 90, false},  // tie dy = 2·dx: horizontal first
		{100, 100, 81, 90, false},  // dy 19 < 20
		{100, 100, 50, 120, true},  // height shrinks, width grows
		{100, 100, 120, 50, false}, // height grows
		{100, 100, 120, 130, false},
		{480, 640, 224, 224, false}, // landscape photo to the test size
		{640, 480, 224, 224, false}, // 416 < 2·256
		{700, 260, 224, 224, true},  // 476 > 2·36
	} {
		if got := verticalFirst(c.inH, c.inW, c.outH, c.outW); got != c.want {
			t.Errorf("verticalFirst(%d, %d, %d, %d) = %v, want %v", c.inH, c.inW, c.outH, c.outW, got, c.want)
		}
	}
}

// TestResampleWindows checks the resampler's restriction to a window of output rows and
// columns (what TrainTransform computes) against slicing the full resize, for both pass orders,
// flipped and not, unchanged sides included, on noise images; and that an unchanged size
// returns the image itself. The full resizes are PIL's bit for bit (the tests above), so the
// windows are too.
func TestResampleWindows(t *testing.T) {
	for _, c := range []struct{ inH, inW, oh, ow, top, left, k int }{
		{480, 640, 256, 341, 16, 60, 224}, // landscape train size
		{640, 480, 341, 256, 100, 0, 224}, // portrait
		{700, 260, 224, 224, 0, 0, 224},   // vertical first, whole image
		{700, 260, 300, 100, 37, 11, 50},  // vertical first, a window
		{50, 70, 90, 120, 5, 7, 60},       // both grow
		{90, 60, 40, 90, 3, 20, 30},       // height shrinks, width grows: vertical first
		{64, 48, 64, 30, 10, 2, 20},       // height unchanged
		{64, 48, 20, 48, 1, 5, 19},        // width unchanged
		{64, 48, 64, 48, 9, 9, 30},        // nothing changes
		{5, 3, 17, 2, 0, 0, 2},            // tiny
		{1, 1, 3, 3, 1, 1, 2},
	} {
		name := fmt.Sprintf("%dx%d_to_%dx%d", c.inH, c.inW, c.oh, c.ow)
		t.Run(name, func(t *testing.T) {
			img := benchImage(c.inH, c.inW)
			err := torch.WithScope(func(*torch.Scope) {
				for _, vFirst := range []bool{false, true} {
					full := resampleOrder(img, c.oh, c.ow, window(0, c.oh, false), window(0, c.ow, false), vFirst)
					for _, flip := range []bool{false, true} {
						got := resampleOrder(img, c.oh, c.ow, window(c.top, c.k, false), window(c.left, c.k, flip), vFirst)
						want := full.Narrow(0, int64(c.top), int64(c.k)).Narrow(1, int64(c.left), int64(c.k))
						if flip {
							want = want.Flip(1)
						}
						if m, f := diffStats(got, want); m != 0 || !sameShape(got, want) {
							t.Errorf("vertical first %v, flip %v: window differs from the full resize by %g (%.3f%%), shape %v",
								vFirst, flip, m, 100*f, got.Shape())
						}
					}
				}
				if c.oh == c.inH && c.ow == c.inW {
					r, err := Resize(img, c.oh, c.ow)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(r.Bytes(), img.Pix) {
						t.Error("a resize to the same size changed the image")
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestResampleIntoErrors: bad windows and buffers give errors, not crashes.
func TestResampleIntoErrors(t *testing.T) {
	img := benchImage(8, 10)
	for _, c := range []struct {
		name       string
		dst        int
		oh, ow     int
		rows, cols []int
	}{
		{"short buffer", 5, 4, 4, []int{0, 1}, []int{0, 1}},
		{"row outside", 12, 4, 4, []int{0, 4}, []int{0, 1}},
		{"negative column", 12, 4, 4, []int{0, 1}, []int{-1, 1}},
		{"zero size", 12, 0, 4, []int{0, 1}, []int{0, 1}},
		{"no rows", 0, 4, 4, nil, []int{0, 1}},
	} {
		err := resampleInto(make([]byte, c.dst), img, c.oh, c.ow, c.rows, c.cols, false)
		if err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// TestLoaderMatchesTrainTransform rebuilds every loader batch image by image with the same draws
// (ItemRand, Sample, DrawCropFlip) and TrainTransform: the loader's batched normalisation must
// give the same bytes.
func TestLoaderMatchesTrainTransform(t *testing.T) {
	s, err := OpenTrain(makeAGD(t), Seen)
	if err != nil {
		t.Fatal(err)
	}
	o := LoaderOptions{BatchSize: 4, E: 3, Resize: 40, Crop: 32, Seed: 5, Epoch: 1, Workers: 2}
	l, err := NewTrainLoader(s, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	perm := EpochPermutation(o.Seed, o.Epoch, len(s.Items))
	for b := 0; ; b++ {
		batch, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		err = torch.WithScope(func(*torch.Scope) {
			for i := 0; i < int(batch.Ego.Size(0)); i++ {
				pos := b*o.BatchSize + i
				rng := ItemRand(o.Seed, o.Epoch, pos)
				smp := s.Sample(perm[pos], o.E, rng)
				for k, p := range append(append([]string{}, smp.Exo...), smp.Ego) {
					img, err := DecodeImage(p)
					if err != nil {
						t.Fatal(err)
					}
					oh, ow := ResizedSize(img.H, img.W, o.Resize)
					want, err := TrainTransform(img, o.Resize, o.Crop, DrawCropFlip(rng, oh, ow, o.Crop))
					if err != nil {
						t.Fatal(err)
					}
					got := batch.Ego.Select(0, int64(i))
					if k < o.E {
						got = batch.Exo.Select(0, int64(i)).Select(0, int64(k))
					}
					if !bytes.Equal(got.Contiguous().Bytes(), want.Bytes()) {
						t.Errorf("batch %d item %d image %d (%s) differs from TrainTransform", b, i, k, filepath.Base(p))
					}
				}
			}
		})
		batch.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
}
