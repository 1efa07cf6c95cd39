package evaluate_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/evaluate"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/report"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// Tolerances against tests/eval/gen_eval.py, the released evaluation run in PyTorch + OpenCV.
//
//   - mapRelTol: the (14, 14) maps of test_forward. Both sides run the same float32 ops in
//     libtorch on the same normalised input (PNG decoding and PIL's resize are bit-exact in
//     affgd), so only the summation order of the matmuls and reductions can differ: float32
//     rounding, a few 1e-7 relative to the map's largest value. 1e-5 leaves room for other
//     kernels (another CPU's SIMD width) without hiding a real difference (a wrong op shifts the
//     maps by 1e-2 or more).
//   - scoreRelTol: KLD, SIM and NSS. The released pipeline resizes with cv2.resize, whose
//     bilinear weights are float32 even for float64 images; affgd resizes with libtorch's
//     bilinear (the same half-pixel rule in float64). gen_eval records the gap as
//     cv2_vs_torch_worst_rel (5.6e-7 on this set); a 1e-6 map difference moves the metrics by
//     about as much again, so 1e-5 relative (1e-7 absolute for figures near 0, e.g. the
//     all-zero GT's KLD and NSS, exactly 0 on both sides) is a bound with a 10x margin.
//   - scoreTorchRelTol: the same figures with the reference's resizes done by torch as affgd
//     does; only the maps' float32 rounding remains: 1e-5 as well, observed ~1e-7.
//
// The JPEG test images must decode as PIL's libjpeg-turbo does (data.DecodeImage decodes with
// libjpeg-turbo, data/jpeg.go); they are held to the same tolerances, and their worst
// differences are logged apart from the PNGs' so that a decoder change shows at once.
//
// On CUDA ($AFFGD_TEST_DEVICE) the relative tolerances are testdev.Tol's floor, 1e-4: the
// backbones' and head's CUDA kernels (cuBLAS, cuDNN, TF32 off) sum in other orders than the CPU
// reference, and the maps' differences carry into the metrics.
var (
	mapRelTol        = testdev.Tol(1e-5)
	scoreRelTol      = testdev.Tol(1e-5)
	scoreTorchRelTol = testdev.Tol(1e-5)
)

func TestMain(m *testing.M) { testdev.Main(m) }

const (
	scoreAbsTol = 1e-7
)

type figures struct {
	KLD float64 `json:"kld"`
	SIM float64 `json:"sim"`
	NSS float64 `json:"nss"`
	N   int     `json:"n"`
}

type expectedItem struct {
	Image       string             `json:"image"`
	GT          string             `json:"gt"`
	Action      string             `json:"action"`
	Object      string             `json:"object"`
	Label       int64              `json:"label"`
	Format      string             `json:"format"`
	Mode        string             `json:"mode"`
	Scores      map[string]figures `json:"scores"`
	ScoresTorch map[string]figures `json:"scores_torch"`
	Maps        map[string]string  `json:"maps"`
}

type expected struct {
	Checkpoint  string                        `json:"checkpoint"`
	Vocab       string                        `json:"vocab"`
	DataRoot    string                        `json:"data_root"`
	Items       []expectedItem                `json:"items"`
	Overall     map[string]figures            `json:"overall"`
	PerClass    map[string]map[string]figures `json:"per_class"`
	OverallPNG  map[string]figures            `json:"overall_png"`
	PerClassPNG map[string]map[string]figures `json:"per_class_png"`
	CV2Torch    float64                       `json:"cv2_vs_torch_worst_rel"`
}

type fixture struct {
	dir string
	exp expected
	m   *train.Model
	ts  *data.TestSet
}

func load(t *testing.T) *fixture {
	t.Helper()
	dir := testref.Dir(t, "eval")
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatalf("reference data missing: %v", err)
	}
	f := &fixture{dir: dir}
	if err := json.Unmarshal(b, &f.exp); err != nil {
		t.Fatal(err)
	}
	if len(f.exp.Items) == 0 {
		t.Fatal("expected.json lists no test image")
	}
	f.m, err = train.Load(train.Files{Checkpoint: filepath.Join(dir, f.exp.Checkpoint),
		Vocab: filepath.Join(dir, f.exp.Vocab), Divide: data.Seen, Device: testdev.Device(t)})
	if err != nil {
		t.Fatal(err)
	}
	f.ts, err = data.OpenTest(filepath.Join(dir, f.exp.DataRoot), data.Seen)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rel is |a−b| relative to the larger magnitude; 0 when both are within abs of each other.
func rel(a, b, abs float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		if math.IsNaN(a) && math.IsNaN(b) {
			return 0
		}
		return math.Inf(1)
	}
	d := math.Abs(a - b)
	if d <= abs {
		return 0
	}
	return d / math.Max(math.Abs(a), math.Abs(b))
}

func scoresRel(got data.Scores, want figures) float64 {
	return math.Max(rel(got.KLD, want.KLD, scoreAbsTol), math.Max(rel(got.SIM, want.SIM, scoreAbsTol), rel(got.NSS, want.NSS, scoreAbsTol)))
}

func figuresRel(got report.Figures, want figures) float64 {
	return scoresRel(data.Scores{KLD: got.KLD, SIM: got.SIM, NSS: got.NSS}, want)
}

func run(t *testing.T, f *fixture, ts *data.TestSet, o evaluate.Options) (report.Summary, []evaluate.ImageResult) {
	t.Helper()
	var per []evaluate.ImageResult
	o.PerImage = func(r evaluate.ImageResult) { per = append(per, r) }
	o.Device = testdev.Device(t)
	sum, err := evaluate.Run(f.m, ts, o)
	if err != nil {
		t.Fatal(err)
	}
	return sum, per
}

// TestRunMatchesReleasedEvaluation runs evaluate.Run on gen_eval's test set and checkpoint and
// compares the test list, every image's maps and figures, and the means overall and per class
// with the released evaluation.
func TestRunMatchesReleasedEvaluation(t *testing.T) {
	f := load(t)
	ex := f.exp
	// The same images in the same order; the image without a GT png is skipped.
	if len(f.ts.Items) != len(ex.Items) {
		t.Fatalf("test set: %d images, want %d", len(f.ts.Items), len(ex.Items))
	}
	for i, it := range f.ts.Items {
		want := ex.Items[i]
		if it.Image != filepath.Join(f.dir, want.Image) || it.GT != filepath.Join(f.dir, want.GT) ||
			it.Action != want.Action || it.Object != want.Object || it.Label != want.Label {
			t.Fatalf("item %d: %+v, want %+v", i, it, want)
		}
	}

	sum, per := run(t, f, f.ts, evaluate.Options{Workers: 2})
	if len(per) != len(ex.Items) {
		t.Fatalf("PerImage called %d times, want %d", len(per), len(ex.Items))
	}
	worst := map[string]float64{}
	for i, r := range per {
		want := ex.Items[i]
		if r.Item != f.ts.Items[i] {
			t.Fatalf("PerImage %d: item %+v, want %+v", i, r.Item, f.ts.Items[i])
		}
		mapDiff := compareMaps(t, f, r.Item, want)
		for _, name := range evaluate.Maps {
			got, ok := r.Scores[name]
			if !ok {
				t.Fatalf("%s: no %s figures", want.Image, name)
			}
			d, dt := scoresRel(got, want.Scores[name]), scoresRel(got, want.ScoresTorch[name])
			kind := want.Format
			worst[kind+" scores vs cv2"] = math.Max(worst[kind+" scores vs cv2"], d)
			worst[kind+" scores vs torch resize"] = math.Max(worst[kind+" scores vs torch resize"], dt)
			worst[kind+" maps"] = math.Max(worst[kind+" maps"], mapDiff[name])
			if mapDiff[name] > mapRelTol {
				t.Errorf("%s %s map: max |Δ| %.2g of its largest value > %g", want.Image, name, mapDiff[name], mapRelTol)
			}
			if d > scoreRelTol {
				t.Errorf("%s %s: %+v, released %+v (rel %.2g > %g)", want.Image, name, got, want.Scores[name], d, scoreRelTol)
			}
			if dt > scoreTorchRelTol {
				t.Errorf("%s %s: %+v, reference with torch's resize %+v (rel %.2g > %g)", want.Image, name, got, want.ScoresTorch[name], dt, scoreTorchRelTol)
			}
		}
	}
	t.Logf("worst relative differences: %v (reference cv2 vs torch resize: %.2g)", worst, ex.CV2Torch)

	checkSummary(t, sum, ex.Overall, ex.PerClass, scoreRelTol)
}

// compareMaps runs the model on item as the evaluation does and returns, per map, the largest
// difference to the reference map relative to the reference's largest magnitude.
func compareMaps(t *testing.T, f *fixture, item data.TestItem, want expectedItem) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	err := torch.NoGradScope(func(_ *torch.Scope) {
		img, err := data.DecodeImage(item.Image)
		if err != nil {
			t.Fatal(err)
		}
		x, err := data.TestTransform(img, data.CropSize)
		if err != nil {
			t.Fatal(err)
		}
		maps, err := f.m.Infer(train.Batch{Ego: x.Unsqueeze(0), Label: torch.FromSlice([]int64{item.Label}, 1)})
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string]*torch.Tensor{"cam": maps.CAM, "ree": maps.REE, "rem": maps.REM} {
			ref, err := npy.LoadTensor(filepath.Join(f.dir, want.Maps[name]))
			if err != nil {
				t.Fatal(err)
			}
			g := got.Select(0, 0)
			if !slices.Equal(g.Shape(), ref.Shape()) {
				t.Fatalf("%s %s map: shape %v, want %v", want.Image, name, g.Shape(), ref.Shape())
			}
			out[name] = g.Sub(ref).Abs().Max().Item() / math.Max(ref.Abs().Max().Item(), 1e-30)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSummary compares a summary's means overall and per class with the reference's.
func checkSummary(t *testing.T, sum report.Summary, overall map[string]figures, perClass map[string]map[string]figures, tol float64) {
	t.Helper()
	for _, name := range evaluate.Maps {
		got, want := sum.Overall[name], overall[name]
		if got.N != want.N {
			t.Errorf("%s: N %d, want %d", name, got.N, want.N)
		}
		if d := figuresRel(got, want); d > tol {
			t.Errorf("%s mean: %+v, released %+v (rel %.2g > %g)", name, got, want, d, tol)
		}
		if got.NaNNSS != 0 {
			t.Errorf("%s: %d NaN NSS, want none", name, got.NaNNSS)
		}
	}
	if len(sum.PerClass) != len(perClass) {
		t.Errorf("%d classes %v, want %d", len(sum.PerClass), sum.Classes, len(perClass))
	}
	for class, maps := range perClass {
		for _, name := range evaluate.Maps {
			got, want := sum.PerClass[class][name], maps[name]
			if got.N != want.N {
				t.Errorf("class %s, %s: N %d, want %d", class, name, got.N, want.N)
			}
			if d := figuresRel(got, want); d > tol {
				t.Errorf("class %s, %s mean: %+v, released %+v (rel %.2g > %g)", class, name, got, want, d, tol)
			}
		}
	}
}

// TestRunLimit checks that Limit evaluates the first images only, reporting progress for them.
func TestRunLimit(t *testing.T) {
	f := load(t)
	for _, tc := range []struct {
		limit, want int
	}{
		{2, 2},
		{0, len(f.ts.Items)},
		{len(f.ts.Items) + 5, len(f.ts.Items)},
	} {
		var calls [][2]int
		sum, per := run(t, f, f.ts, evaluate.Options{Limit: tc.limit, Workers: 1,
			Progress: func(done, total int) { calls = append(calls, [2]int{done, total}) }})
		if len(per) != tc.want || sum.Overall["cam"].N != tc.want {
			t.Errorf("Limit %d: %d images (N %d), want %d", tc.limit, len(per), sum.Overall["cam"].N, tc.want)
			continue
		}
		if len(calls) != tc.want || calls[tc.want-1] != [2]int{tc.want, tc.want} {
			t.Errorf("Limit %d: progress calls %v, want 1..%d of %d", tc.limit, calls, tc.want, tc.want)
		}
		for i, r := range per {
			if r.Item != f.ts.Items[i] {
				t.Errorf("Limit %d: image %d is %s, want %s", tc.limit, i, r.Item.Image, f.ts.Items[i].Image)
			}
		}
		if tc.limit == 2 {
			// The mean of the first two images' figures.
			for _, name := range evaluate.Maps {
				a, b := per[0].Scores[name], per[1].Scores[name]
				want := figures{KLD: (a.KLD + b.KLD) / 2, SIM: (a.SIM + b.SIM) / 2, NSS: (a.NSS + b.NSS) / 2}
				if d := figuresRel(sum.Overall[name], want); d > 1e-15 {
					t.Errorf("Limit 2, %s: mean %+v, want %+v", name, sum.Overall[name], want)
				}
			}
		}
	}
}

// TestRunBadInput checks that an unreadable image or GT, and an empty test set, stop the
// evaluation with one error naming the file (or the folder).
func TestRunBadInput(t *testing.T) {
	f := load(t)
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := f.ts.Items[0]
	pngBytes, err := os.ReadFile(good.Image)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := write("corrupt.jpg", []byte("\xff\xd8\xff\xe0 this is not a JPEG at all"))
	truncated := write("truncated.png", pngBytes[:len(pngBytes)/3])
	text := write("notes.png", []byte("hello"))
	badGT := write("bad_gt.png", []byte("\x89PNG\r\n\x1a\n broken"))
	with := func(mod func(*data.TestItem)) data.TestItem {
		it := good
		mod(&it)
		return it
	}
	for _, tc := range []struct {
		name  string
		items []data.TestItem
		want  string // the error must contain it
	}{
		{"corrupt JPEG after a good image", []data.TestItem{good, with(func(it *data.TestItem) { it.Image = corrupt })}, corrupt},
		{"truncated PNG first", []data.TestItem{with(func(it *data.TestItem) { it.Image = truncated }), good}, truncated},
		{"not an image", []data.TestItem{with(func(it *data.TestItem) { it.Image = text })}, text},
		{"missing image", []data.TestItem{with(func(it *data.TestItem) { it.Image = filepath.Join(tmp, "gone.png") })}, filepath.Join(tmp, "gone.png")},
		{"corrupt GT", []data.TestItem{with(func(it *data.TestItem) { it.GT = badGT })}, badGT},
		{"empty test set", nil, "no image with a GT mask"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := &data.TestSet{Divide: data.Seen, Root: tmp, Items: tc.items}
			_, err := evaluate.Run(f.m, ts, evaluate.Options{Workers: 2, Device: testdev.Device(t)})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %q", msg, tc.want)
			}
		})
	}
}

// TestBatchedEqualsBatchOne evaluates the test set at batch sizes 1 (the released loop's) and
// larger ones, with several metric goroutines: every image's figures must equal batch 1's within
// 1e-6 relative, and so must its three maps (relative to the map's largest magnitude), computed
// by train.Model.Infer on a batch against the image alone. They are not bitwise in general: the
// backbones' matrix products and the head's convolutions are blocked by libtorch according to the
// batch's row count, which changes the float32 summation order (the differences logged are of
// the order of 1e-7); everything else is computed per image.
func TestBatchedEqualsBatchOne(t *testing.T) {
	f := load(t)
	_, one := run(t, f, f.ts, evaluate.Options{BatchSize: 1, Workers: 1})
	const tol = 1e-6
	for _, bs := range []int{3, len(f.ts.Items) + 1} {
		sum, per := run(t, f, f.ts, evaluate.Options{BatchSize: bs, Workers: 3})
		if len(per) != len(one) || sum.Overall["cam"].N != len(one) {
			t.Fatalf("batch %d: %d images, want %d", bs, len(per), len(one))
		}
		worst := 0.0
		for i := range per {
			if per[i].Item != one[i].Item {
				t.Fatalf("batch %d: image %d is %s, want %s", bs, i, per[i].Item.Image, one[i].Item.Image)
			}
			for _, name := range evaluate.Maps {
				a, b := per[i].Scores[name], one[i].Scores[name]
				d := scoresRel(a, figures{KLD: b.KLD, SIM: b.SIM, NSS: b.NSS})
				worst = math.Max(worst, d)
				if d > tol {
					t.Errorf("batch %d, %s, %s: %+v, batch 1 %+v (rel %.2g)", bs, per[i].Item.Image, name, a, b, d)
				}
			}
		}
		t.Logf("batch %d: worst figure difference from batch 1: %.3g relative", bs, worst)
	}

	// The maps themselves: one batch of every test image against each image alone.
	err := torch.NoGradScope(func(_ *torch.Scope) {
		var xs []*torch.Tensor
		var labels []int64
		for _, it := range f.ts.Items {
			img, err := data.DecodeImage(it.Image)
			if err != nil {
				t.Fatal(err)
			}
			x, err := data.TestTransform(img, data.CropSize)
			if err != nil {
				t.Fatal(err)
			}
			xs, labels = append(xs, x), append(labels, it.Label)
		}
		all, err := f.m.Infer(train.Batch{Ego: torch.Stack(xs, 0), Label: torch.FromSlice(labels, int64(len(labels)))})
		if err != nil {
			t.Fatal(err)
		}
		worst, bitwise := 0.0, true
		for i := range xs {
			alone, err := f.m.Infer(train.Batch{Ego: xs[i].Unsqueeze(0), Label: torch.FromSlice(labels[i:i+1], 1)})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range [][2]*torch.Tensor{{all.CAM, alone.CAM}, {all.REE, alone.REE}, {all.REM, alone.REM}} {
				got, want := p[0].Select(0, int64(i)), p[1].Select(0, 0)
				scale := want.Abs().Max().Item()
				d := got.Sub(want).Abs().Max().Item()
				if d != 0 {
					bitwise = false
				}
				if scale > 0 {
					d /= scale
				}
				worst = math.Max(worst, d)
				if d > tol {
					t.Errorf("%s: batched map differs from batch 1 by %.3g relative", f.ts.Items[i].Image, d)
				}
			}
		}
		t.Logf("maps of a batch of %d vs each alone: worst %.3g relative to the map's scale (bitwise: %v)", len(xs), worst, bitwise)
	})
	if err != nil {
		t.Fatal(err)
	}
}
