package data

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
)

// jsonFloat reads a float64 that the generator may have written as the string "NaN".
type jsonFloat float64

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if string(b) == `"NaN"` {
		*f = jsonFloat(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jsonFloat(v)
	return nil
}

type metricFigures struct {
	KLD jsonFloat `json:"kld"`
	SIM jsonFloat `json:"sim"`
	NSS jsonFloat `json:"nss"`
}

type metricCase struct {
	Expected        metricFigures `json:"expected"`         // the released functions, cv2 with IPP (pinned stack)
	ExpectedGeneric metricFigures `json:"expected_generic"` // the same, cv2.ipp.setUseIPP(False)
	ExpectedTorch   metricFigures `json:"expected_torch"`   // the same with torch's bilinear resize
}

func loadMetricCases(t *testing.T) (string, map[string]metricCase) {
	t.Helper()
	dir := testref.Dir(t, "metrics")
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatalf("reference data missing: %v", err)
	}
	var doc struct {
		Cases map[string]metricCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("cases.json holds no cases")
	}
	return dir, doc.Cases
}

// closeTo compares with a relative tolerance, an absolute one near zero, and NaN equal to NaN.
func closeTo(got, want, rel, abs float64) bool {
	if math.IsNaN(got) || math.IsNaN(want) {
		return math.IsNaN(got) && math.IsNaN(want)
	}
	d := math.Abs(got - want)
	return d <= abs || d <= rel*math.Max(math.Abs(got), math.Abs(want))
}

func evalCase(t *testing.T, dir, name string) Scores {
	t.Helper()
	return evalCaseCV(t, dir, name, CVResizeIPP)
}

func evalCaseCV(t *testing.T, dir, name string, r CVResize) Scores {
	t.Helper()
	pred, err := npy.LoadTensor(filepath.Join(dir, name+"_pred.npy"))
	if err != nil {
		t.Fatal(err)
	}
	gt, err := npy.LoadTensor(filepath.Join(dir, name+"_gt.npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer pred.Free()
	defer gt.Free()
	s, err := EvaluateCV(pred, gt, r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sortedNames(cases map[string]metricCase) []string {
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func checkFigures(t *testing.T, got Scores, want metricFigures, rel, abs float64) float64 {
	t.Helper()
	worst := 0.0
	for _, f := range []struct {
		name      string
		got, want float64
	}{{"KLD", got.KLD, float64(want.KLD)}, {"SIM", got.SIM, float64(want.SIM)}, {"NSS", got.NSS, float64(want.NSS)}} {
		if !closeTo(f.got, f.want, rel, abs) {
			t.Errorf("%s = %.17g, want %.17g", f.name, f.got, f.want)
		}
		if d := math.Abs(f.got - f.want); !math.IsNaN(d) && d > 0 {
			worst = math.Max(worst, d/math.Max(math.Abs(f.got), math.Abs(f.want)))
		}
	}
	return worst
}

// metricTol is the tolerance against the released functions: 1e-9 relative (1e-12 absolute
// near zero). The C code performs every float32 operation in NumPy's and OpenCV's order, so the
// float32 stages agree bit for bit; what may remain is the float64 log (NumPy's SIMD log against
// glibc's, ≤ 1 ulp per pixel), orders of magnitude below the tolerance.
const metricTol, metricAbs = 1e-9, 1e-12

// TestEvaluateReference holds Evaluate to the released functions run on the pinned stack (cv2
// resizing through IPP) on every case, named edge cases and random ones.
func TestEvaluateReference(t *testing.T) {
	dir, cases := loadMetricCases(t)
	worst := 0.0
	for _, name := range sortedNames(cases) {
		t.Run(name, func(t *testing.T) {
			worst = math.Max(worst, checkFigures(t, evalCase(t, dir, name), cases[name].Expected, metricTol, metricAbs))
		})
	}
	t.Logf("%d cases, worst relative difference: %.3g", len(cases), worst)
}

// TestEvaluateGenericReference holds CVResizeGeneric to the released functions with OpenCV's own
// resize (IPP off: float32 interpolation weights).
func TestEvaluateGenericReference(t *testing.T) {
	dir, cases := loadMetricCases(t)
	worst := 0.0
	for _, name := range sortedNames(cases) {
		t.Run(name, func(t *testing.T) {
			worst = math.Max(worst, checkFigures(t, evalCaseCV(t, dir, name, CVResizeGeneric), cases[name].ExpectedGeneric, metricTol, metricAbs))
		})
	}
	t.Logf("%d cases, worst relative difference: %.3g", len(cases), worst)
}

// TestEvaluateReferenceDiscriminates checks that the reference tells the pipelines apart at
// metricTol: in many cases the generic resize and torch's bilinear resize give figures further
// than the tolerance from the IPP ones, so the two tests above could not pass by accident with the
// other arithmetic.
func TestEvaluateReferenceDiscriminates(t *testing.T) {
	_, cases := loadMetricCases(t)
	far := func(a, b metricFigures) bool {
		return !closeTo(float64(a.KLD), float64(b.KLD), metricTol, metricAbs) ||
			!closeTo(float64(a.SIM), float64(b.SIM), metricTol, metricAbs) ||
			!closeTo(float64(a.NSS), float64(b.NSS), metricTol, metricAbs)
	}
	generic, torchResize := 0, 0
	for _, c := range cases {
		if far(c.Expected, c.ExpectedGeneric) {
			generic++
		}
		if far(c.Expected, c.ExpectedTorch) {
			torchResize++
		}
	}
	if generic < len(cases)/2 || torchResize < len(cases)/2 {
		t.Errorf("of %d cases only %d (generic resize) and %d (torch resize) differ from the IPP figures by more than the tolerance", len(cases), generic, torchResize)
	}
	t.Logf("of %d cases, %d differ with the generic resize and %d with torch's", len(cases), generic, torchResize)
}

// TestNumPySums holds the C sums, means and standard deviations to NumPy's float32 results, bit
// for bit, on every length around the pairwise blocks.
func TestNumPySums(t *testing.T) {
	dir := testref.Dir(t, "metrics")
	flat, err := npy.LoadTensor(filepath.Join(dir, "sums.npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer flat.Free()
	if flat.DType() != torch.Float32 {
		t.Fatalf("sums.npy holds %v, want float32", flat.DType())
	}
	vals := flat.Float32s()
	b, err := os.ReadFile(filepath.Join(dir, "sums.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta []struct {
		Offset, N      int
		Sum, Mean, Std uint32
		Sum64          float64
	}
	if err := json.Unmarshal(b, &meta); err != nil || len(meta) == 0 {
		t.Fatalf("sums.json: %v (%d entries)", err, len(meta))
	}
	for _, m := range meta {
		a := vals[m.Offset : m.Offset+m.N]
		if got := npSum32(a); math.Float32bits(got) != m.Sum {
			t.Errorf("n=%d: sum %.9g, NumPy %.9g", m.N, got, math.Float32frombits(m.Sum))
		}
		mean, std := npMeanStd32(a)
		if math.Float32bits(mean) != m.Mean || math.Float32bits(std) != m.Std {
			t.Errorf("n=%d: mean, std %.9g, %.9g; NumPy %.9g, %.9g", m.N, mean, std, math.Float32frombits(m.Mean), math.Float32frombits(m.Std))
		}
		a64 := make([]float64, len(a))
		for i, v := range a {
			a64[i] = float64(v)
		}
		if got := npSum64(a64); got != m.Sum64 {
			t.Errorf("n=%d: float64 sum %.17g, NumPy %.17g", m.N, got, m.Sum64)
		}
	}
}

func TestEvaluateConstantPredictionNaN(t *testing.T) {
	pred := torch.Full([]int64{7, 9}, 0.25, torch.Float32)
	gt := torch.Full([]int64{50, 60}, 128, torch.Uint8)
	defer pred.Free()
	defer gt.Free()
	s, err := Evaluate(pred, gt)
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(s.NSS) {
		t.Errorf("NSS = %v, want NaN for a constant prediction", s.NSS)
	}
}

func TestEvaluateSelf(t *testing.T) {
	// A prediction equal to the (already 224×224) GT: KLD ≈ 0, SIM ≈ 1.
	vals := make([]uint8, EvalSize*EvalSize)
	fl := make([]float32, EvalSize*EvalSize)
	for i := range vals {
		y, x := i/EvalSize, i%EvalSize
		vals[i] = uint8((x + y) * 255 / (2 * (EvalSize - 1)))
		fl[i] = float32(vals[i])
	}
	gt := torch.FromSlice(vals, EvalSize, EvalSize)
	pred := torch.FromSlice(fl, EvalSize, EvalSize)
	defer gt.Free()
	defer pred.Free()
	s, err := Evaluate(pred, gt)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(s.KLD) > 1e-5 || math.Abs(s.SIM-1) > 1e-5 || !(s.NSS > 0) {
		t.Errorf("self scores %+v, want KLD≈0, SIM≈1, NSS>0", s)
	}
}

func TestEvaluateBadInputs(t *testing.T) {
	good2 := torch.Zeros([]int64{14, 14}, torch.Float32)
	gt := torch.Zeros([]int64{30, 40}, torch.Uint8)
	p3 := torch.Zeros([]int64{1, 14, 14}, torch.Float32)
	p1 := torch.Zeros([]int64{14}, torch.Float32)
	p64 := torch.Zeros([]int64{14, 14}, torch.Float64)
	gt3 := torch.Zeros([]int64{1, 30, 40}, torch.Uint8)
	gtF := torch.Zeros([]int64{30, 40}, torch.Float32)
	gtI := torch.Zeros([]int64{30, 40}, torch.Int64)
	empty := torch.Zeros([]int64{0, 14}, torch.Float32)
	for _, tc := range []struct {
		name     string
		pred, gt *torch.Tensor
	}{
		{"nil pred", nil, gt},
		{"nil gt", good2, nil},
		{"3-d pred", p3, gt},
		{"1-d pred", p1, gt},
		{"float64 pred", p64, gt},
		{"3-d gt", good2, gt3},
		{"float gt", good2, gtF},
		{"int64 gt", good2, gtI},
		{"empty pred", empty, gt},
	} {
		if _, err := Evaluate(tc.pred, tc.gt); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := Evaluate(good2, gt); err != nil {
		t.Errorf("valid inputs: %v", err)
	}
}

func TestScoresJSON(t *testing.T) {
	for _, tc := range []struct {
		s    Scores
		want string
	}{
		{Scores{KLD: 1.5, SIM: 0.25, NSS: 2}, `{"kld":1.5,"nss":2,"sim":0.25}`},
		{Scores{KLD: 1, SIM: 0.5, NSS: math.NaN()}, `{"kld":1,"nss":null,"sim":0.5}`},
		{Scores{KLD: math.Inf(1), SIM: 0, NSS: 0}, `{"kld":null,"nss":0,"sim":0}`},
	} {
		got, err := json.Marshal(tc.s)
		if err != nil || string(got) != tc.want {
			t.Errorf("%+v: %s (%v), want %s", tc.s, got, err, tc.want)
		}
	}
}
