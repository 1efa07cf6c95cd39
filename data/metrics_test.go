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
	Expected    metricFigures `json:"expected"`
	ExpectedCV2 metricFigures `json:"expected_cv2"`
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
	s, err := Evaluate(pred, gt)
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

// TestEvaluateReference compares with the generator's torch-resized pipeline (the op Evaluate
// runs) at 1e-9 relative.
func TestEvaluateReference(t *testing.T) {
	dir, cases := loadMetricCases(t)
	worst := 0.0
	for _, name := range sortedNames(cases) {
		t.Run(name, func(t *testing.T) {
			worst = math.Max(worst, checkFigures(t, evalCase(t, dir, name), cases[name].Expected, 1e-9, 1e-12))
		})
	}
	t.Logf("worst relative difference: %.3g", worst)
}

// TestEvaluateMatchesCV2 compares with the same figures computed with cv2.resize INTER_LINEAR, as
// the released evaluation resizes: cv2 rounds its float32 interpolation differently from torch,
// which moves the figures by up to ~1e-6 relative (the generator records it per case).
func TestEvaluateMatchesCV2(t *testing.T) {
	dir, cases := loadMetricCases(t)
	worst := 0.0
	for _, name := range sortedNames(cases) {
		t.Run(name, func(t *testing.T) {
			worst = math.Max(worst, checkFigures(t, evalCase(t, dir, name), cases[name].ExpectedCV2, 1e-5, 1e-8))
		})
	}
	t.Logf("worst relative difference from the cv2 pipeline: %.3g", worst)
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
