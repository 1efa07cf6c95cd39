package losses_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/losses"
	"github.com/affgd/affgd/torch"
)

// Tolerances. Go and the reference run the same libtorch kernels on the same float32 inputs;
// what differs is the order of a few reductions (the reference loops over samples and indexes
// the kept rows; the Go code computes all samples as one batch with 0/1 masks, and bmm instead
// of mm). That moves results by a few float32 ulps (~1e-7 relative), far inside 1e-5.
//
// Losses are compared elementwise: |got − want| ≤ relTol·|want|. Gradients are compared
// against the tensor's scale: |got − want| ≤ relTol·max|want| for every element, because single
// gradient entries close to 0 have no meaningful relative error (their absolute error is that of
// the large entries, from the same float32 sums).
//
// On CUDA ($AFFGD_TEST_DEVICE) relTol is testdev.Tol(1e-5) = 1e-4: cuBLAS's bmm and the CUDA
// reductions (logsumexp, masked sums) sum in other orders than the CPU reference, and the
// backward of the index/scatter ops accumulates with atomics (TF32 off).
var relTol = testdev.Tol(1e-5)

func TestMain(m *testing.M) { testdev.Main(m) }

// refCase is one entry of cases.json, written by tests/losses/gen_losses.py.
type refCase struct {
	Kind         string   `json:"kind"`
	Name         string   `json:"name"`
	B            int64    `json:"B"`
	E            int64    `json:"E"`
	Tau          float64  `json:"tau"`
	RefNaN       bool     `json:"ref_nan"`
	EmptySamples int      `json:"empty_samples"`
	EmptyRows    int      `json:"empty_rows"`
	Fallback     []bool   `json:"fallback"`
	Grad         []string `json:"grad"`
	HasObj       bool     `json:"has_obj"`
	EgoShape     []int64  `json:"ego_shape"`
	ExoShape     []int64  `json:"exo_shape"`
}

func readCases(t *testing.T) (string, map[string]refCase) {
	t.Helper()
	dir := testref.Dir(t, "losses")
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatalf("reference data missing: run 'make testdata': %v", err)
	}
	var list []refCase
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	m := map[string]refCase{}
	for _, c := range list {
		m[c.Name] = c
	}
	return dir, m
}

func load(t *testing.T, dir, c, name string) *torch.Tensor {
	t.Helper()
	x, err := npy.LoadTensor(filepath.Join(dir, c+"."+name+".npy"))
	if err != nil {
		t.Fatal(err)
	}
	if d := testdev.Device(t); !d.IsCPU() {
		if err := torch.Try(func() { x = x.To(d) }); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

// lookup returns the case named name and fails when the reference lacks it or has another kind.
func lookup(t *testing.T, cases map[string]refCase, name, kind string) refCase {
	t.Helper()
	c, ok := cases[name]
	if !ok || c.Kind != kind {
		t.Fatalf("reference case %q (%s) missing: regenerate tests/testdata/losses", name, kind)
	}
	return c
}

// closeValues compares elementwise against |want| (losses).
func closeValues(t *testing.T, what string, got, want *torch.Tensor) {
	t.Helper()
	if !slices.Equal(got.Shape(), want.Shape()) {
		t.Fatalf("%s: shape %v, PyTorch %v", what, got.Shape(), want.Shape())
	}
	g, w := got.Detach().Float64s(), want.Float64s()
	worst := 0.0
	for i := range g {
		d := math.Abs(g[i] - w[i])
		if math.IsNaN(g[i]) || d > relTol*math.Abs(w[i]) {
			t.Fatalf("%s[%d] = %.9g, PyTorch %.9g", what, i, g[i], w[i])
		}
		if w[i] != 0 {
			worst = max(worst, d/math.Abs(w[i]))
		}
	}
	t.Logf("%s: max relative |Δ| = %.2g", what, worst)
}

// closeScaled compares against the scale max|want| (gradients); both must be finite.
func closeScaled(t *testing.T, what string, got, want *torch.Tensor) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no gradient", what)
	}
	if !slices.Equal(got.Shape(), want.Shape()) {
		t.Fatalf("%s: shape %v, PyTorch %v", what, got.Shape(), want.Shape())
	}
	g, w := got.Float64s(), want.Float64s()
	scale, worst := 0.0, 0.0
	for i := range w {
		if math.IsNaN(w[i]) || math.IsInf(w[i], 0) {
			t.Fatalf("%s: the reference gradient is not finite at %d", what, i)
		}
		scale = max(scale, math.Abs(w[i]))
	}
	for i := range g {
		d := math.Abs(g[i] - w[i])
		if math.IsNaN(g[i]) || d > relTol*scale {
			t.Fatalf("%s[%d] = %.9g, PyTorch %.9g (scale %.3g)", what, i, g[i], w[i], scale)
		}
		worst = max(worst, d)
	}
	if scale > 0 {
		t.Logf("%s: max |Δ| / max |want| = %.2g", what, worst/scale)
	}
}

func run(t *testing.T, fn func()) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	if err := torch.Try(fn); err != nil {
		t.Fatal(err)
	}
}

func TestClassificationMatchesPyTorch(t *testing.T) {
	dir, cases := readCases(t)
	for _, tc := range []struct{ name, about string }{
		{"cls_seen", "K = 36, B = 8, repeated labels"},
		{"cls_b1", "B = 1"},
		{"cls_e2", "E = 2, still divided by 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := lookup(t, cases, tc.name, "classification")
			run(t, func() {
				le := load(t, dir, c.Name, "logits_ego").SetRequiresGrad(true)
				lx := load(t, dir, c.Name, "logits_exo").SetRequiresGrad(true)
				ego, exo := losses.Classification(le, lx, load(t, dir, c.Name, "y"))
				if !slices.Equal(ego.Shape(), c.EgoShape) || !slices.Equal(exo.Shape(), c.ExoShape) {
					t.Fatalf("shapes %v, %v; PyTorch %v, %v", ego.Shape(), exo.Shape(), c.EgoShape, c.ExoShape)
				}
				closeValues(t, "ego", ego, load(t, dir, c.Name, "out_ego"))
				closeValues(t, "exo", exo, load(t, dir, c.Name, "out_exo"))
				ego.Add(exo.Sum()).Backward()
				closeScaled(t, "grad logitsEgo", le.Grad(), load(t, dir, c.Name, "grad_logits_ego"))
				closeScaled(t, "grad logitsExo", lx.Grad(), load(t, dir, c.Name, "grad_logits_exo"))
			})
		})
	}
}

func TestPixelContrastMatchesPyTorch(t *testing.T) {
	dir, cases := readCases(t)
	for _, tc := range []struct {
		name, about string
		refNaN      bool // the released code's loss is NaN
		empty       int  // samples without kept rows
		fallback    []bool
	}{
		{"px_full", "14×14, C = 384, CLIP width 512, B = 4", false, 0, []bool{false, false, false, false}},
		{"px_b1", "B = 1, 3×3", false, 0, []bool{false}},
		{"px_tau007", "τ = 0.07", false, 0, []bool{false, false}},
		{"px_e1", "E = 1, 2×3 grid, one natural fallback", false, 0, []bool{false, false, true}},
		{"px_nofg", "samples without fg position fall back to Bin", false, 0, []bool{false, true, true}},
		{"px_empty", "two samples keep no anchor row: NaN in the reference", true, 2, []bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := lookup(t, cases, tc.name, "pixel")
			if c.RefNaN != tc.refNaN || c.EmptySamples != tc.empty || !slices.Equal(c.Fallback, tc.fallback) {
				t.Fatalf("the reference case is not the intended one: %+v", c)
			}
			run(t, func() {
				q := load(t, dir, c.Name, "q").SetRequiresGrad(true)
				loss, empty := losses.PixelContrast(q, load(t, dir, c.Name, "bin_ego"), load(t, dir, c.Name, "t_aff"),
					load(t, dir, c.Name, "f_ego"), load(t, dir, c.Name, "f_exo"), c.E, c.Tau)
				if empty != tc.empty {
					t.Errorf("%d empty samples, want %d", empty, tc.empty)
				}
				ref := load(t, dir, c.Name, "out")
				if got := math.IsNaN(ref.Item()); got != tc.refNaN {
					t.Fatalf("reference loss %v, NaN expected: %v", ref.Item(), tc.refNaN)
				}
				if v := loss.Item(); math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("loss %v is not finite", v)
				}
				// Equal to the reference with the empty samples counted as 0 (the plain reference
				// value when there are none; checked by the generator).
				closeValues(t, "loss", loss, load(t, dir, c.Name, "out_nan_as_zero"))
				if !tc.refNaN {
					closeValues(t, "loss (released)", loss, ref)
				}
				loss.Backward()
				closeScaled(t, "grad q", q.Grad(), load(t, dir, c.Name, "grad_q"))
			})
		})
	}
}

func TestProtoContrastMatchesPyTorch(t *testing.T) {
	dir, cases := readCases(t)
	for _, tc := range []struct {
		name, about string
		refNaN      bool
		emptyRows   int
	}{
		{"pr_full", "14×14, C = 384, B = 8, repeated labels, grad into the backgrounds", false, 0},
		{"pr_distinct", "all labels distinct, all samples object level", false, 0},
		{"pr_b1", "B = 1", false, 0},
		{"pr_all_grads", "E = 2, τ = 0.07, gradient into every map", false, 0},
		{"pr_no_obj", "objEgo nil: plain spatial mean anchor", false, 0},
		{"pr_e0_rep", "E = 0: one row without positive is left out", false, 1},
		{"pr_e0_nan", "E = 0, distinct labels: no row has a positive, NaN in the reference", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := lookup(t, cases, tc.name, "proto")
			if c.RefNaN != tc.refNaN || c.EmptyRows != tc.emptyRows {
				t.Fatalf("the reference case is not the intended one: %+v", c)
			}
			run(t, func() {
				in := map[string]*torch.Tensor{}
				names := []string{"r_ego", "r_exo", "w_ego", "w_exo", "bg_ego", "bg_exo"}
				if c.HasObj {
					names = append(names, "obj_ego")
				}
				for _, n := range names {
					in[n] = load(t, dir, c.Name, n)
				}
				for _, n := range c.Grad {
					in[n].SetRequiresGrad(true)
				}
				loss, emptyRows := losses.ProtoContrast(in["r_ego"], in["r_exo"], in["w_ego"], in["w_exo"],
					in["bg_ego"], in["bg_exo"], load(t, dir, c.Name, "labels"), c.E, in["obj_ego"], c.Tau)
				if emptyRows != tc.emptyRows {
					t.Errorf("%d rows without positive, want %d", emptyRows, tc.emptyRows)
				}
				ref := load(t, dir, c.Name, "out")
				if got := math.IsNaN(ref.Item()); got != tc.refNaN {
					t.Fatalf("reference loss %v, NaN expected: %v", ref.Item(), tc.refNaN)
				}
				if tc.refNaN {
					if v := loss.Item(); v != 0 {
						t.Fatalf("loss %v, want 0 where the reference is NaN", v)
					}
				} else {
					closeValues(t, "loss", loss, ref)
				}
				loss.Backward()
				for _, n := range c.Grad {
					closeScaled(t, "grad "+n, in[n].Grad(), load(t, dir, c.Name, "grad_"+n))
				}
			})
		})
	}
}

// TestErrors: bad arguments give a *torch.Error naming the loss and the argument.
func TestErrors(t *testing.T) {
	f := func(shape ...int64) *torch.Tensor { return torch.Zeros(shape) }
	labels := func(v ...int64) *torch.Tensor { return torch.FromSlice(v) }
	// Valid pixel arguments: B = 2, C = 4, 3×3, D = 5, E = 3.
	q, bin, text, ego, exo := f(2, 4, 3, 3), f(2, 3, 3), f(2, 5), f(2, 9, 5), f(6, 9, 5)
	// Valid proto arguments: B = 2, C = 4, 3×3, E = 3.
	rEgo, rExo, mEgo, mExo, y := f(2, 4, 3, 3), f(6, 4, 3, 3), f(2, 3, 3), f(6, 3, 3), labels(1, 2)

	cases := []struct {
		name string
		call func()
		want string
	}{
		{"cls ego 3-d", func() { losses.Classification(f(2, 5, 1), f(2, 3, 5), labels(0, 1)) }, "logitsEgo must be (B, K)"},
		{"cls exo 2-d", func() { losses.Classification(f(2, 5), f(2, 5), labels(0, 1)) }, "logitsExo must be (B, E, K)"},
		{"cls exo classes", func() { losses.Classification(f(2, 5), f(2, 3, 4), labels(0, 1)) }, "logitsExo must be (B, E, K)"},
		{"cls exo batch", func() { losses.Classification(f(2, 5), f(3, 3, 5), labels(0, 1)) }, "logitsExo must be (B, E, K)"},
		{"cls labels length", func() { losses.Classification(f(2, 5), f(2, 3, 5), labels(0)) }, "y must be (B)"},
		{"cls float labels", func() { losses.Classification(f(2, 5), f(2, 3, 5), f(2)) }, "y must hold int64"},
		{"cls nil", func() { losses.Classification(nil, f(2, 3, 5), labels(0, 1)) }, "logitsEgo is nil"},

		{"pix q 3-d", func() { losses.PixelContrast(f(2, 4, 9), bin, text, ego, exo, 3, 0.5) }, "q must be (B, C, h, w)"},
		{"pix bin grid", func() { losses.PixelContrast(q, f(2, 3, 4), text, ego, exo, 3, 0.5) }, "binEgo must be (B, h, w)"},
		{"pix bin batch", func() { losses.PixelContrast(q, f(1, 3, 3), text, ego, exo, 3, 0.5) }, "binEgo must be (B, h, w)"},
		{"pix text batch", func() { losses.PixelContrast(q, bin, f(3, 5), ego, exo, 3, 0.5) }, "tAff must be (B, D)"},
		{"pix ego positions", func() { losses.PixelContrast(q, bin, text, f(2, 8, 5), exo, 3, 0.5) }, "fEgo must be (B, h·w, D)"},
		{"pix ego width", func() { losses.PixelContrast(q, bin, text, f(2, 9, 6), exo, 3, 0.5) }, "fEgo must be (B, h·w, D)"},
		{"pix exo count", func() { losses.PixelContrast(q, bin, text, ego, f(4, 9, 5), 3, 0.5) }, "fExo must be (B·E, h·w, D)"},
		{"pix E 0", func() { losses.PixelContrast(q, bin, text, ego, f(0, 9, 5), 0, 0.5) }, "E (exocentric images per sample) must be at least 1"},
		{"pix tau", func() { losses.PixelContrast(q, bin, text, ego, exo, 3, 0) }, "tau must be positive"},
		{"pix one position", func() {
			losses.PixelContrast(f(2, 4, 1, 1), f(2, 1, 1), text, f(2, 1, 5), f(6, 1, 5), 3, 0.5)
		}, "fewer than 2 positions"},
		{"pix int q", func() {
			losses.PixelContrast(torch.Zeros([]int64{2, 4, 3, 3}, torch.Int64), bin, text, ego, exo, 3, 0.5)
		}, "q must be floating point"},
		{"pix nil", func() { losses.PixelContrast(q, bin, nil, ego, exo, 3, 0.5) }, "tAff is nil"},

		{"proto rEgo 3-d", func() { losses.ProtoContrast(f(2, 4, 9), rExo, mEgo, mExo, mEgo, mExo, y, 3, mEgo, 0.5) }, "rEgo must be (B, C, h, w)"},
		{"proto rExo count", func() { losses.ProtoContrast(rEgo, f(4, 4, 3, 3), mEgo, mExo, mEgo, mExo, y, 3, mEgo, 0.5) }, "rExo must be (B·E, C, h', w')"},
		{"proto rExo channels", func() { losses.ProtoContrast(rEgo, f(6, 5, 3, 3), mEgo, mExo, mEgo, mExo, y, 3, mEgo, 0.5) }, "rExo must be (B·E, C, h', w')"},
		{"proto wEgo grid", func() { losses.ProtoContrast(rEgo, rExo, f(2, 3, 2), mExo, mEgo, mExo, y, 3, mEgo, 0.5) }, "wEgo must be (B, h, w)"},
		{"proto wExo count", func() { losses.ProtoContrast(rEgo, rExo, mEgo, f(2, 3, 3), mEgo, mExo, y, 3, mEgo, 0.5) }, "wExo must be (B·E, h', w')"},
		{"proto bgEgo batch", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, f(1, 3, 3), mExo, y, 3, mEgo, 0.5) }, "bgEgo must be (B, h, w)"},
		{"proto bgExo grid", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, mEgo, f(6, 3, 4), y, 3, mEgo, 0.5) }, "bgExo must be (B·E, h', w')"},
		{"proto labels length", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, mEgo, mExo, labels(1, 2, 3), 3, mEgo, 0.5) }, "labels must be (B)"},
		{"proto float labels", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, mEgo, mExo, f(2), 3, mEgo, 0.5) }, "labels must hold integer"},
		{"proto obj grid", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, mEgo, mExo, y, 3, f(2, 9), 0.5) }, "objEgo must be (B, h, w)"},
		{"proto E negative", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, mEgo, mExo, y, -1, mEgo, 0.5) }, "must not be negative"},
		{"proto tau", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, mEgo, mExo, y, 3, mEgo, math.NaN()) }, "tau must be positive"},
		{"proto nil", func() { losses.ProtoContrast(rEgo, rExo, mEgo, mExo, nil, mExo, y, 3, mEgo, 0.5) }, "bgEgo is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := torch.Try(c.call)
			var te *torch.Error
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.As(err, &te) || !strings.HasPrefix(te.Op, "losses.") || !strings.Contains(te.Msg, c.want) {
				t.Fatalf("error %q, want a losses.* *torch.Error containing %q", err, c.want)
			}
		})
	}
}

// TestValidArgumentsOfErrorTable: the arguments TestErrors alters are valid as they stand, so
// each error case fails for the one thing it changes.
func TestValidArgumentsOfErrorTable(t *testing.T) {
	f := func(shape ...int64) *torch.Tensor { return torch.Zeros(shape) }
	y := torch.FromSlice([]int64{1, 2})
	run(t, func() {
		losses.Classification(f(2, 5), f(2, 3, 5), torch.FromSlice([]int64{0, 1}))
		losses.PixelContrast(f(2, 4, 3, 3), f(2, 3, 3), f(2, 5), f(2, 9, 5), f(6, 9, 5), 3, 0.5)
		for _, obj := range []*torch.Tensor{f(2, 3, 3), nil} {
			l, n := losses.ProtoContrast(f(2, 4, 3, 3), f(6, 4, 3, 3), f(2, 3, 3), f(6, 3, 3), f(2, 3, 3), f(6, 3, 3), y, 3, obj, 0.5)
			if v := l.Item(); math.IsNaN(v) || n != 0 {
				t.Fatal(fmt.Sprint("zero inputs: loss ", v, ", rows without positive ", n))
			}
		}
	})
}
