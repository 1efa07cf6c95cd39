package data

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// smallJPEG returns a 4:2:0 JPEG of a w×h gradient.
func smallJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetRGBA(x, y, color.RGBA{uint8(3 * x), uint8(5 * y), uint8(x + y), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sofOffset returns the offset of the baseline SOF0 marker in a JPEG.
func sofOffset(t *testing.T, b []byte) int {
	t.Helper()
	i := bytes.Index(b, []byte{0xff, 0xc0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	return i
}

// twoComponents rewrites a 3-component JPEG's SOF0 and SOS segments to declare only the first
// two components: a valid header of a layout PIL and we refuse.
func twoComponents(t *testing.T, b []byte) []byte {
	t.Helper()
	sof := sofOffset(t, b)
	sos := bytes.Index(b, []byte{0xff, 0xda})
	if b[sof+9] != 3 || b[sos+4] != 3 || sos < sof {
		t.Fatal("not a 3-component baseline JPEG")
	}
	var o []byte
	o = append(o, b[:sof]...)
	o = append(o, 0xff, 0xc0, 0, 14)    // SOF0, length 8 + 3·2
	o = append(o, b[sof+4:sof+9]...)    // precision, height, width
	o = append(o, 2)                    // components
	o = append(o, b[sof+10:sof+16]...)  // the first two component specs
	o = append(o, b[sof+19:sos]...)     // the segments between SOF and SOS
	o = append(o, 0xff, 0xda, 0, 10, 2) // SOS, length 6 + 2·2, 2 components
	o = append(o, b[sos+5:sos+9]...)    // their table selectors
	return append(o, b[sos+11:]...)     // spectral selection, then the scan data
}

// badTable sets the class of the first Huffman table to an invalid value.
func badTable(t *testing.T, b []byte) []byte {
	t.Helper()
	i := bytes.Index(b, []byte{0xff, 0xc4})
	if i < 0 {
		t.Fatal("no DHT marker")
	}
	o := append([]byte{}, b...)
	o[i+4] = 0x35
	return o
}

// TestJPEGErrors checks that broken JPEGs give one error naming the file, with what went wrong,
// from DecodeImage and LoadGT alike: truncated files (PIL: "image file is truncated", whether
// the cut is in the header, the scan or just the EOI marker), corrupt headers, oversized
// images (refused before their pixels are allocated) and an unsupported component count.
func TestJPEGErrors(t *testing.T) {
	good := smallJPEG(t, 48, 40)
	sof := sofOffset(t, good)
	withSOF := func(f func(b []byte)) []byte {
		b := append([]byte{}, good...)
		f(b[sof:])
		return b
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name, want string
		content    []byte
	}{
		{"header_only.jpg", "truncated", good[:sof+4]},
		{"half.jpg", "truncated", good[:len(good)/2]},
		{"no_eoi.jpg", "truncated", good[:len(good)-2]},
		{"magic_only.jpg", "truncated", good[:3]},
		{"zero_width.jpg", "libjpeg", withSOF(func(s []byte) { s[7], s[8] = 0, 0 })},
		{"bomb.jpg", "exceeds the limit", withSOF(func(s []byte) { s[5], s[6], s[7], s[8] = 0xfd, 0xe8, 0xfd, 0xe8 })},
		{"two_components.jpg", "2 colour components", twoComponents(t, good)},
		{"bad_table.jpg", "libjpeg", badTable(t, good)},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.content, 0o644); err != nil {
				t.Fatal(err)
			}
			for what, fn := range map[string]func() error{
				"DecodeImage": func() error { _, err := DecodeImage(p); return err },
				"LoadGT":      func() error { _, err := LoadGT(p); return err },
			} {
				err := fn()
				if err == nil {
					t.Errorf("%s: no error", what)
					continue
				}
				if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: error %q; want the path and %q", what, err, c.want)
				}
				t.Logf("%s: %v", what, err)
			}
		})
	}
	// Trailing bytes after the EOI marker are ignored, as PIL ignores them.
	p := filepath.Join(dir, "trailing.jpg")
	if err := os.WriteFile(p, append(append([]byte{}, good...), "trailing garbage"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if img, err := DecodeImage(p); err != nil || img.W != 48 || img.H != 40 {
		t.Errorf("trailing bytes: %d×%d, %v; want 48×40, no error", img.W, img.H, err)
	}
}

// TestJPEGMangled feeds the decoder hundreds of cut and bit-flipped JPEGs: each must decode or
// return an error naming the file; none may crash the process (libjpeg's exit() or a longjmp
// gone wrong would).
func TestJPEGMangled(t *testing.T) {
	good := smallJPEG(t, 37, 29)
	rng := rand.New(rand.NewPCG(7, 8))
	dir := t.TempDir()
	p := filepath.Join(dir, "mangled.jpg")
	errs := 0
	const n = 400
	for i := 0; i < n; i++ {
		b := append([]byte{}, good...)
		if i%2 == 0 {
			b = b[:3+rng.IntN(len(b)-3)]
		}
		for k := rng.IntN(4); k > 0; k-- {
			j := 3 + rng.IntN(len(b)-3)
			b[j] ^= byte(1 << rng.IntN(8))
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := DecodeImage(p)
		if err != nil {
			errs++
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not name the file", err)
			}
			continue
		}
		if err := img.validate(); err != nil {
			t.Fatalf("variant %d decoded to an invalid image: %v", i, err)
		}
	}
	t.Logf("%d of %d mangled JPEGs were refused with an error, the rest decoded", errs, n)
}

// TestJPEGGreyLayout checks the in-place grey → RGB expansion: a grey JPEG decodes to R = G = B,
// each equal to the grey LoadGT reads.
func TestJPEGGreyLayout(t *testing.T) {
	m := image.NewGray(image.Rect(0, 0, 19, 11))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "grey.jpg")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := DecodeImage(p)
	if err != nil {
		t.Fatal(err)
	}
	gt, err := LoadGT(p)
	if err != nil {
		t.Fatal(err)
	}
	g := gt.Bytes()
	for i := 0; i < img.W*img.H; i++ {
		px := img.Pix[3*i : 3*i+3]
		if px[0] != px[1] || px[1] != px[2] || px[0] != g[i] {
			t.Fatalf("pixel %d: RGB %v, grey %d; want three equal samples equal to the grey", i, px, g[i])
		}
	}
}

// BenchmarkDecodeImageJPEG times DecodeImage on the reference 640×480 4:2:0 JPEG (libjpeg-turbo
// plus the copy into Go memory); compare with PIL's Image.open(p).convert("RGB") on the same file.
func BenchmarkDecodeImageJPEG(b *testing.B) {
	p := filepath.Join(os.Getenv("AFFGD_TESTDATA"), "data", "images", "rgb_640x480.jpg")
	if _, err := os.Stat(p); err != nil {
		b.Skipf("reference image missing (run make testdata): %v", err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := DecodeImage(p); err != nil {
			b.Fatal(err)
		}
	}
}
