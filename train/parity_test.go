package train_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/train"
)

// caseArgs is a case's args.json, written by tests/method/gen_method.py.
type caseArgs struct {
	Cmd         string   `json:"cmd"`
	What        string   `json:"what"`
	Batch       string   `json:"batch"`
	Epoch       int      `json:"epoch"`
	Divide      string   `json:"divide"`
	PerImageExo bool     `json:"per_image_exo"`
	Seed        uint64   `json:"seed"`
	KMeansInit  string   `json:"kmeans_init"`
	DINO        string   `json:"dino"`
	CLIP        string   `json:"clip"`
	Head        string   `json:"head"`
	Vocab       string   `json:"vocab"`
	Omitted     []string `json:"omitted"`
}

// Tolerances (relative to the largest magnitude of the reference tensor, NaN patterns equal):
// maps, losses and gradients 1e-5, parameters and buffers after the optimizer step 1e-6 — or, when
// larger, 1e-5 of the step's update (after − before): a parameter that starts at zero (biases,
// LayerNorm/BatchNorm shifts) IS its update after one step, so 1e-6 of it would ask the gradient
// for ten times more accuracy than the gradients themselves are held to. The
// reference runs the same libtorch kernels, and gen_method.py keeps every discrete decision of a
// case (thresholds, K-means assignments, saliency) at least 1e-5 from its boundary, so float32
// rounding cannot flip one. Binary arrays (sam_hard, reliable) must be equal. The gradients of
// the convolution biases right before a training-mode BatchNorm are zero in exact arithmetic and
// float32 noise on both sides: they are bounded by 1e-5 of their convolution weight's gradient.
const (
	tolMaps   = 1e-5
	tolParams = 1e-6
)

var zeroGradSuffix = []string{"grad/aff_ego_proj.0.bias", "grad/aff_ego_proj.3.bias", "grad/aff_exo_proj.0.bias", "grad/aff_exo_proj.3.bias"}

func isZeroGrad(name string) bool {
	for _, s := range zeroGradSuffix {
		if name == s {
			return true
		}
	}
	return false
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			m = math.Max(m, math.Abs(x))
		}
	}
	return m
}

// compare returns a description of the first disagreement, or "".
func compare(name string, got, want []float64, tol, scale float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d values, reference %d", len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range want {
		g, w := got[i], want[i]
		if math.IsNaN(w) || math.IsNaN(g) {
			if math.IsNaN(w) != math.IsNaN(g) {
				return fmt.Sprintf("element %d: %v, reference %v (NaN patterns differ)", i, g, w)
			}
			continue
		}
		if d := math.Abs(g - w); d > worst {
			worst, at = d, i
		}
	}
	if scale == 0 {
		scale = 1
	}
	if worst > tol*scale {
		return fmt.Sprintf("element %d: %.9g, reference %.9g (|diff| %.3g > %.0e × %.3g)", at, got[at], want[at], worst, tol, scale)
	}
	return ""
}

func TestStepParity(t *testing.T) {
	root := testref.Dir(t, "method")
	argsFiles, _ := filepath.Glob(filepath.Join(root, "cases", "*", "args.json"))
	if len(argsFiles) == 0 {
		t.Fatalf("no cases under %s: run 'make testdata'", root)
	}
	sort.Strings(argsFiles)
	for _, af := range argsFiles {
		dir := filepath.Dir(af)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(af)
			if err != nil {
				t.Fatal(err)
			}
			var a caseArgs
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatal(err)
			}
			t.Log(a.What)
			rel := func(p string) string {
				if p == "" {
					return ""
				}
				return filepath.Join(dir, p)
			}
			div, err := data.ParseDivide(a.Divide)
			if err != nil {
				t.Fatal(err)
			}
			err = torch.WithScope(func(s *torch.Scope) {
				m, err := train.Load(train.Files{DINO: rel(a.DINO), CLIP: rel(a.CLIP), Head: rel(a.Head), Vocab: rel(a.Vocab), Divide: div, Seed: a.Seed})
				if err != nil {
					t.Fatal(err)
				}
				batch := a.Batch
				if batch == "" {
					batch = "batch.pt"
				}
				b, err := train.LoadBatch(rel(batch), torch.CPU, a.Cmd == "step")
				if err != nil {
					t.Fatal(err)
				}
				var arrays map[string]*torch.Tensor
				before := map[string]*torch.Tensor{}
				for _, n := range m.Head.NamedTensors() {
					before["param/"+n.Name] = n.Tensor.Detach().Clone()
				}
				switch a.Cmd {
				case "step":
					inits, err := train.ReadKMeansInit(rel(a.KMeansInit))
					if err != nil {
						t.Fatal(err)
					}
					g, _ := torch.NewGenerator(a.Seed, torch.CPU)
					opts := discovery.DefaultOptions()
					opts.PerImageExo = a.PerImageExo
					d, err := m.DebugStep(b, train.Options{Epoch: a.Epoch, Discovery: opts, KMeansInit: inits, Gen: g})
					if err != nil {
						t.Fatal(err)
					}
					arrays = d.Arrays
					checkStats(t, filepath.Join(dir, "ref", "stats.json"), d.Stats)
				case "infer":
					mp, err := m.Infer(b)
					if err != nil {
						t.Fatal(err)
					}
					arrays = map[string]*torch.Tensor{"cam": mp.CAM, "ree": mp.REE, "rem": mp.REM}
				default:
					t.Fatalf("unknown cmd %q", a.Cmd)
				}
				compareDump(t, filepath.Join(dir, "ref"), arrays, before)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkStats(t *testing.T, path string, got map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"empty_pixel_samples", "num_candidates"} {
		w, ok := want[k]
		if !ok {
			continue
		}
		gj, _ := json.Marshal(got[k])
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Errorf("stats %s: %s, reference %s", k, gj, wj)
		}
	}
}

func compareDump(t *testing.T, refDir string, arrays, before map[string]*torch.Tensor) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(refDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || !strings.HasSuffix(p, ".npy") {
			return err
		}
		name := strings.TrimSuffix(filepath.ToSlash(strings.TrimPrefix(p, refDir+string(filepath.Separator))), ".npy")
		ref, err := npy.LoadTensor(p)
		if err != nil {
			return err
		}
		got, ok := arrays[name]
		if !ok {
			t.Errorf("%s: in the reference dump, not in ours", name)
			return nil
		}
		seen++
		var g, w []float64
		var gs, ws []int64
		if err := torch.Try(func() {
			g, w = got.Detach().To(torch.CPU).Float64s(), ref.Float64s()
			gs, ws = got.Shape(), ref.Shape()
		}); err != nil {
			return err
		}
		if fmt.Sprint(gs) != fmt.Sprint(ws) {
			t.Errorf("%s: shape %v, reference %v", name, gs, ws)
			return nil
		}
		tol, scale := tolMaps, maxAbs(w)
		switch {
		case name == "sam_hard" || name == "reliable":
			tol = 0
		case strings.HasPrefix(name, "param/"):
			tol = tolParams
			if b, ok := before[name]; ok {
				var update float64
				if err := torch.Try(func() { update = b.Sub(ref.ToDType(b.DType())).Abs().Max().Item() }); err != nil {
					return err
				}
				if tolMaps*update > tol*scale {
					tol, scale = tolMaps, update
				}
			}
		case isZeroGrad(name):
			weight := strings.TrimSuffix(name, "bias") + "weight"
			if wt, ok := arrays[weight]; ok {
				scale = maxAbs(wt.Detach().Float64s())
			}
			w = make([]float64, len(g)) // zero in exact arithmetic
		}
		if msg := compare(name, g, w, tol, scale); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Fatalf("no arrays in %s", refDir)
	}
}
