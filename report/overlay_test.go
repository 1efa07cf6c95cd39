package report

import (
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
)

func load(t *testing.T, dir, name string) *torch.Tensor {
	t.Helper()
	x, err := npy.LoadTensor(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("reference data: %v", err)
	}
	return x
}

// TestJetMatchesOpenCV compares Jet on the 256 grey levels with cv2.applyColorMap(COLORMAP_JET).
//
// Tolerances: the float result must equal the exact piecewise-linear formula to 1e-4 grey levels
// (x = v/255 is rounded to float32, error ≤ 3e-8, times the slope 4·255: ≤ 3e-5 levels, plus
// float32 rounding of values ≤ 255: ≤ 2e-5). After rounding to uint8 it must be within 1 level
// of OpenCV, and may differ only where the exact value lies on a half level (127.5 + 4k on the
// ramps): there the rounding direction is decided by the last bit of each side's float
// arithmetic (OpenCV builds its LUT by float32 interpolation), so exact equality is not a property
// of the colormap.
func TestJetMatchesOpenCV(t *testing.T) {
	dir := testref.Dir(t, "report")
	err := torch.WithScope(func(_ *torch.Scope) {
		cv := load(t, dir, "jet_cv2.npy").ToDType(torch.Float64).Float64s()
		exact := load(t, dir, "jet_formula.npy").Float64s()
		x := torch.Arange(0, 256, 1, torch.Float32).DivScalar(255)
		col := Jet(x)
		if s := col.Shape(); len(s) != 2 || s[0] != 256 || s[1] != 3 || col.DType() != torch.Float32 {
			t.Fatalf("Jet shape %v dtype %v, want [256 3] float32", s, col.DType())
		}
		f := col.MulScalar(255).Float64s()
		u8 := col.MulScalar(255).Round().Float64s()
		worstF, mism := 0.0, 0
		for i := range cv {
			worstF = math.Max(worstF, math.Abs(f[i]-exact[i]))
			if d := math.Abs(u8[i] - cv[i]); d > 1 {
				t.Errorf("level %d channel %d: %v, OpenCV %v", i/3, i%3, u8[i], cv[i])
			} else if d != 0 {
				mism++
				if math.Abs(exact[i]-math.Floor(exact[i])-0.5) != 0 {
					t.Errorf("level %d channel %d: %v vs OpenCV %v off a half level (exact %v)", i/3, i%3, u8[i], cv[i], exact[i])
				}
			}
		}
		if worstF > 1e-4 {
			t.Errorf("Jet·255 differs from the exact formula by %v grey levels (> 1e-4)", worstF)
		}
		t.Logf("Jet vs exact: max %.2g levels; vs OpenCV after rounding: %d of 768 entries one level apart, all at half levels", worstF, mism)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestJetShapesAndErrors(t *testing.T) {
	tests := []struct {
		name    string
		x       func() *torch.Tensor
		shape   []int64
		dtype   torch.DType
		want    []float64 // first values, when checked
		wantErr string
	}{
		{"0-d", func() *torch.Tensor { return torch.Scalar(0.5) }, []int64{3}, torch.Float32, []float64{0.5, 1, 0.5}, ""},
		{"2-d float64", func() *torch.Tensor { return torch.Zeros([]int64{2, 4}, torch.Float64) }, []int64{2, 4, 3}, torch.Float64, []float64{0, 0, 0.5}, ""},
		{"clamped below and above", func() *torch.Tensor { return torch.FromSlice([]float32{-3, 7}) }, []int64{2, 3}, torch.Float32, []float64{0, 0, 0.5, 0.5, 0, 0}, ""},
		{"integer input", func() *torch.Tensor { return torch.Zeros([]int64{2}, torch.Int64) }, nil, 0, nil, "want a floating-point tensor, got int64"},
		{"nil", func() *torch.Tensor { return nil }, nil, 0, nil, "nil or freed tensor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := torch.WithScope(func(_ *torch.Scope) {
				y := Jet(tc.x())
				if got := y.Shape(); len(got) != len(tc.shape) || y.DType() != tc.dtype {
					t.Fatalf("shape %v dtype %v, want %v %v", got, y.DType(), tc.shape, tc.dtype)
				}
				for i, w := range y.Float64s()[:len(tc.want)] {
					if w != tc.want[i] {
						t.Errorf("value %d = %v, want %v", i, w, tc.want[i])
					}
				}
			})
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestOverlayReference compares Overlay with the same definition run in PyTorch (gen_report.py):
// at most 1 grey level, since the blend's ×255 may land on a half level where float32 rounding of
// the two implementations can fall either side; and with the usual OpenCV pipeline
// (applyColorMap on the heat quantised to 8 bits, addWeighted) within the difference the
// generator measured between that pipeline and the reference, plus 1.
func TestOverlayReference(t *testing.T) {
	dir := testref.Dir(t, "report")
	var meta struct {
		Alpha   float64 `json:"alpha"`
		CV2Diff int     `json:"overlay_cv2_vs_ref_max_abs"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("reference data: %v", err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	err = torch.WithScope(func(_ *torch.Scope) {
		img := load(t, dir, "overlay_img.npy")
		heat := load(t, dir, "overlay_heat.npy")
		out, err := Overlay(img, heat, meta.Alpha)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out.Shape(), img.Shape()) || out.DType() != torch.Uint8 {
			t.Fatalf("overlay %v %v, want %v uint8", out.DType(), out.Shape(), img.Shape())
		}
		for _, ref := range []struct {
			file string
			tol  float64
		}{{"overlay_ref.npy", 1}, {"overlay_cv2.npy", float64(meta.CV2Diff + 1)}} {
			want := load(t, dir, ref.file)
			d := out.ToDType(torch.Float32).Sub(want.ToDType(torch.Float32)).Abs()
			worst, n := d.Max().Item(), d.GtScalar(0).Sum().Item()
			if worst > ref.tol {
				t.Errorf("%s: max difference %v grey levels (> %v)", ref.file, worst, ref.tol)
			}
			t.Logf("%s: max difference %v grey levels, %v of %d values differ", ref.file, worst, n, d.Numel())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOverlayCases(t *testing.T) {
	tests := []struct {
		name  string
		img   func() *torch.Tensor
		heat  func() *torch.Tensor
		alpha float64
		check func(t *testing.T, img, out *torch.Tensor)
	}{
		{
			name:  "alpha 0 returns the image",
			img:   func() *torch.Tensor { return torch.Randint(0, 256, []int64{5, 6, 3}, nil, torch.Uint8) },
			heat:  func() *torch.Tensor { return torch.Rand([]int64{3, 2}, nil) },
			alpha: 0,
			check: func(t *testing.T, img, out *torch.Tensor) {
				if out.Ne(img).Any().Item() != 0 {
					t.Error("overlay with alpha 0 changed the image")
				}
			},
		},
		{
			name:  "constant heat is all dark blue at alpha 1",
			img:   func() *torch.Tensor { return torch.Randint(0, 256, []int64{4, 3, 3}, nil, torch.Uint8) },
			heat:  func() *torch.Tensor { return torch.Full([]int64{2, 2}, 7.5) },
			alpha: 1,
			check: func(t *testing.T, _, out *torch.Tensor) {
				want := torch.FromSlice([]uint8{0, 0, 128})
				if out.Ne(want).Any().Item() != 0 {
					t.Errorf("constant heat: %v, want every pixel (0, 0, 128)", out.Reshape(-1, 3).Select(0, 0))
				}
			},
		},
		{
			name: "hottest pixel full red, coldest dark blue, float64 heat of any range",
			img:  func() *torch.Tensor { return torch.Zeros([]int64{2, 2, 3}, torch.Uint8) },
			heat: func() *torch.Tensor {
				return torch.FromSlice([]float64{-40, 10, 10, 60}, 2, 2)
			},
			alpha: 1,
			check: func(t *testing.T, _, out *torch.Tensor) {
				got := out.Int64s()
				want := []int64{0, 0, 128, 128, 255, 128, 128, 255, 128, 128, 0, 0}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("overlay %v, want %v", got, want)
					}
				}
			},
		},
		{
			name:  "half blend of white and dark blue",
			img:   func() *torch.Tensor { return torch.Full([]int64{3, 3, 3}, 255, torch.Uint8) },
			heat:  func() *torch.Tensor { return torch.Zeros([]int64{1, 1}) },
			alpha: 0.5,
			check: func(t *testing.T, _, out *torch.Tensor) {
				// 255·(0.5 + 0.5·0) = 127.5 -> 128; 255·(0.5 + 0.5·0.5) = 191.25 -> 191
				want := torch.FromSlice([]uint8{128, 128, 191})
				if out.Ne(want).Any().Item() != 0 {
					t.Errorf("pixel %v, want (128, 128, 191)", out.Reshape(-1, 3).Select(0, 0))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := torch.WithScope(func(_ *torch.Scope) {
				img := tc.img()
				out, err := Overlay(img, tc.heat(), tc.alpha)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(out.Shape(), img.Shape()) || out.DType() != torch.Uint8 {
					t.Fatalf("overlay %v %v, want %v uint8", out.DType(), out.Shape(), img.Shape())
				}
				tc.check(t, img, out)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOverlayErrors(t *testing.T) {
	img := func() *torch.Tensor { return torch.Zeros([]int64{4, 4, 3}, torch.Uint8) }
	heat := func() *torch.Tensor { return torch.Rand([]int64{2, 2}, nil) }
	freed := func() *torch.Tensor { x := torch.Zeros([]int64{4, 4, 3}, torch.Uint8); x.Free(); return x }
	nanHeat := func() *torch.Tensor { return torch.FromSlice([]float32{0, float32(math.NaN()), 1, 2}, 2, 2) }
	infHeat := func() *torch.Tensor { return torch.FromSlice([]float32{0, float32(math.Inf(1)), 1, 2}, 2, 2) }
	tests := []struct {
		name      string
		img, heat func() *torch.Tensor
		alpha     float64
		want      string
	}{
		{"nil image", func() *torch.Tensor { return nil }, heat, 0.5, "image is nil or freed"},
		{"freed image", freed, heat, 0.5, "image is nil or freed"},
		{"float image", func() *torch.Tensor { return torch.Zeros([]int64{4, 4, 3}) }, heat, 0.5, "image must be a uint8 (H, W, 3) RGB tensor, got float32 [4 4 3]"},
		{"RGBA image", func() *torch.Tensor { return torch.Zeros([]int64{4, 4, 4}, torch.Uint8) }, heat, 0.5, "got uint8 [4 4 4]"},
		{"CHW image", func() *torch.Tensor { return torch.Zeros([]int64{3, 4, 4}, torch.Uint8) }, heat, 0.5, "got uint8 [3 4 4]"},
		{"empty image", func() *torch.Tensor { return torch.Zeros([]int64{0, 4, 3}, torch.Uint8) }, heat, 0.5, "image is empty"},
		{"nil heat", img, func() *torch.Tensor { return nil }, 0.5, "heat map is nil or freed"},
		{"3-d heat", img, func() *torch.Tensor { return torch.Zeros([]int64{1, 2, 2}) }, 0.5, "heat map must be an (h, w) floating-point tensor, got float32 [1 2 2]"},
		{"integer heat", img, func() *torch.Tensor { return torch.Zeros([]int64{2, 2}, torch.Int64) }, 0.5, "got int64 [2 2]"},
		{"empty heat", img, func() *torch.Tensor { return torch.Zeros([]int64{2, 0}) }, 0.5, "heat map is empty"},
		{"NaN heat", img, nanHeat, 0.5, "heat map has non-finite values"},
		{"infinite heat", img, infHeat, 0.5, "heat map has non-finite values"},
		{"negative alpha", img, heat, -0.1, "alpha must be in [0, 1], got -0.1"},
		{"alpha above 1", img, heat, 1.5, "alpha must be in [0, 1], got 1.5"},
		{"NaN alpha", img, heat, math.NaN(), "alpha must be in [0, 1], got NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := torch.WithScope(func(_ *torch.Scope) {
				out, err := Overlay(tc.img(), tc.heat(), tc.alpha)
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "report: overlay: ") {
					t.Errorf("Overlay = %v, %v; want an error containing %q", out, err, tc.want)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOverlayReleasesMemory checks Overlay leaves nothing behind but its result.
func TestOverlayReleasesMemory(t *testing.T) {
	img := torch.Randint(0, 256, []int64{32, 48, 3}, nil, torch.Uint8)
	heat := torch.Rand([]int64{14, 14}, nil)
	defer img.Free()
	defer heat.Free()
	before := testref.Settle(torch.LiveTensors)
	for range 5 {
		out, err := Overlay(img, heat, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		out.Free()
	}
	if _, err := Overlay(img, torch.Zeros([]int64{2, 2}, torch.Int64), 0.5); err == nil {
		t.Fatal("no error for an integer heat map")
	}
	if after := testref.Settle(torch.LiveTensors); after > before {
		t.Errorf("live tensors %d -> %d after Overlay", before, after)
	}
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func TestWritePNGRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.png")
	err := torch.WithScope(func(_ *torch.Scope) {
		rgb := torch.Randint(0, 256, []int64{5, 7, 3}, nil, torch.Uint8)
		// a non-contiguous view must be written as its values
		view := torch.Randint(0, 256, []int64{7, 5, 3}, nil, torch.Uint8).Transpose(0, 1)
		for _, x := range []*torch.Tensor{rgb, view} {
			if err := WritePNG(path, x); err != nil {
				t.Fatal(err)
			}
			im := readPNG(t, path)
			if b := im.Bounds(); b.Dx() != 7 || b.Dy() != 5 {
				t.Fatalf("png is %v, want 7×5", b)
			}
			want := x.Int64s()
			for y := range 5 {
				for xx := range 7 {
					r, g, b, a := im.At(xx, y).RGBA()
					i := (y*7 + xx) * 3
					if int64(r>>8) != want[i] || int64(g>>8) != want[i+1] || int64(b>>8) != want[i+2] || a != 0xffff {
						t.Fatalf("pixel (%d, %d) = %d %d %d %d, want %v", xx, y, r>>8, g>>8, b>>8, a>>8, want[i:i+3])
					}
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, dir, 1)
}

func TestWriteHeatPNG(t *testing.T) {
	tests := []struct {
		name string
		heat func() *torch.Tensor
		want []uint8
	}{
		{"ramp", func() *torch.Tensor { return torch.FromSlice([]float32{-1, 0, 1, 3}, 2, 2) }, []uint8{0, 64, 128, 255}},
		{"float64", func() *torch.Tensor { return torch.FromSlice([]float64{2, 4, 4, 2}, 2, 2) }, []uint8{0, 255, 255, 0}},
		{"constant is black", func() *torch.Tensor { return torch.Full([]int64{2, 2}, 3) }, []uint8{0, 0, 0, 0}},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".png")
			err := torch.WithScope(func(_ *torch.Scope) {
				if err := WriteHeatPNG(path, tc.heat()); err != nil {
					t.Fatal(err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			g, ok := readPNG(t, path).(*image.Gray)
			if !ok {
				t.Fatal("heat png is not 8-bit grey")
			}
			if g.Bounds().Dx() != 2 || g.Bounds().Dy() != 2 {
				t.Fatalf("bounds %v", g.Bounds())
			}
			for i, w := range tc.want {
				if got := g.GrayAt(i%2, i/2).Y; got != w {
					t.Errorf("pixel %d = %d, want %d", i, got, w)
				}
			}
		})
	}
	assertNoTemp(t, dir, len(tests))
}

func TestWritePNGErrors(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.png")
	missing := filepath.Join(dir, "no", "such", "dir", "x.png")
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"rgb float", func() error { return WritePNG(ok, torch.Zeros([]int64{2, 2, 3})) }, "image must be a uint8 (H, W, 3) RGB tensor, got float32 [2 2 3]"},
		{"rgb 2-d", func() error { return WritePNG(ok, torch.Zeros([]int64{2, 2}, torch.Uint8)) }, "got uint8 [2 2]"},
		{"rgb nil", func() error { return WritePNG(ok, nil) }, "image is nil or freed"},
		{"rgb no folder", func() error { return WritePNG(missing, torch.Zeros([]int64{2, 2, 3}, torch.Uint8)) }, "no such file or directory"},
		{"rgb empty path", func() error { return WritePNG("", torch.Zeros([]int64{2, 2, 3}, torch.Uint8)) }, "empty output path"},
		{"heat uint8", func() error { return WriteHeatPNG(ok, torch.Zeros([]int64{2, 2}, torch.Uint8)) }, "heat map must be an (h, w) floating-point tensor, got uint8 [2 2]"},
		{"heat NaN", func() error {
			return WriteHeatPNG(ok, torch.FromSlice([]float32{float32(math.NaN()), 1}, 1, 2))
		}, "heat map has non-finite values"},
		{"heat no folder", func() error { return WriteHeatPNG(missing, torch.Zeros([]int64{2, 2})) }, "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if e := torch.WithScope(func(_ *torch.Scope) { err = tc.run() }); e != nil {
				t.Fatal(e)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "report: write ") {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	assertNoTemp(t, dir, 0)
}

// assertNoTemp checks dir holds exactly n files and no temporary leftovers.
func assertNoTemp(t *testing.T, dir string, n int) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
	if len(es) != n {
		t.Errorf("%d files in %s, want %d", len(es), dir, n)
	}
}
