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
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/head"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
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
//
// Every gradient is held to the flat 1e-5 the issue asks for, including the full-size case,
// where the reference's own float32-vs-float64 difference (conditioning.json) reaches 9.5e-6 for
// the large convolutions' weight gradients (measured: affgd within 0.8 of 1e-5 there). A failure
// message quotes that conditioning, so a failure caused by the reference's own precision is told
// apart from a real difference.
//
// On CUDA ($AFFGD_TEST_DEVICE=cuda:N; every case, the full-size one included, runs there with the
// models, batch and generator on the device) both become testdev.Tol's floor, 1e-4: the
// backbones' matrix products and the head's convolutions run cuBLAS/cuDNN kernels that sum in
// other orders than the CPU reference, and several backward kernels accumulate with atomics, so
// differences compound through the step's chain (see internal/testdev); TF32 is off. The K-means
// initialisations are injected in every case, so the device generator's other stream does not
// enter. Binary arrays stay exact.
var (
	tolMaps   = testdev.Tol(1e-5)
	tolParams = testdev.Tol(1e-6)
)

func TestMain(m *testing.M) { testdev.Main(m) }

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

// compare returns a description of the first disagreement, or "", and the largest difference as
// a fraction of the allowed one.
func compare(name string, got, want []float64, tol, scale float64) (string, float64) {
	if len(got) != len(want) {
		return fmt.Sprintf("%d values, reference %d", len(got), len(want)), math.Inf(1)
	}
	worst, at := 0.0, -1
	for i := range want {
		g, w := got[i], want[i]
		if math.IsNaN(w) || math.IsNaN(g) {
			if math.IsNaN(w) != math.IsNaN(g) {
				return fmt.Sprintf("element %d: %v, reference %v (NaN patterns differ)", i, g, w), math.Inf(1)
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
	ratio := 0.0
	if worst > 0 {
		ratio = worst / (tol * scale)
	}
	if worst > tol*scale {
		return fmt.Sprintf("element %d: %.9g, reference %.9g (|diff| %.3g > %.0e × %.3g)", at, got[at], want[at], worst, tol, scale), ratio
	}
	return "", ratio
}

func TestStepParity(t *testing.T) { stepParity(t, false) }

// With Model.CacheText (affgd train's default) each prompt's text features come from encoding it
// alone; the reference encodes the batch's prompts together. The two differ by float32 rounding
// only, so every case must still pass the same tolerances.
func TestStepParityCachedText(t *testing.T) { stepParity(t, true) }

func stepParity(t *testing.T, cacheText bool) {
	root := testref.Dir(t, "method")
	argsFiles, _ := filepath.Glob(filepath.Join(root, "cases", "*", "args.json"))
	if len(argsFiles) == 0 {
		t.Fatalf("no cases under %s: run 'make testdata'", root)
	}
	sort.Strings(argsFiles)
	for _, af := range argsFiles {
		dir := filepath.Dir(af)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			a := readCaseArgs(t, af)
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
				m, err := train.Load(train.Files{DINO: rel(a.DINO), CLIP: rel(a.CLIP), Head: rel(a.Head), Vocab: rel(a.Vocab), Divide: div, Seed: a.Seed, Device: testdev.Device(t)})
				if err != nil {
					t.Fatal(err)
				}
				m.CacheText = cacheText
				runCase(t, dir, a, m)
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// readCaseArgs reads a case's args.json.
func readCaseArgs(t *testing.T, path string) caseArgs {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a caseArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return a
}

// runCase replays one case on model m (whose head the step updates) in the caller's scope and
// compares every file of its reference dump.
func runCase(t *testing.T, dir string, a caseArgs, m *train.Model) {
	t.Helper()
	t.Log(a.What)
	batch := a.Batch
	if batch == "" {
		batch = "batch.pt"
	}
	b, err := train.LoadBatch(filepath.Join(dir, batch), testdev.Device(t), a.Cmd == "step")
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
		inits, err := train.ReadKMeansInit(filepath.Join(dir, a.KMeansInit))
		if err != nil {
			t.Fatal(err)
		}
		g, err := torch.NewGenerator(a.Seed, testdev.Device(t))
		if err != nil {
			t.Fatal(err)
		}
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
}

// fullArgs is the part of a full-size case's args.json that says how its backbones were drawn
// (tests/method/gen_method.py gen_full): the weights are not stored, both sides draw them from
// these seeds.
type fullArgs struct {
	SeededWeights struct {
		DINO struct {
			Seed uint64 `json:"seed"`
		} `json:"dino"`
		CLIP struct {
			Seed uint64 `json:"seed"`
		} `json:"clip"`
	} `json:"seeded_weights"`
}

// TestStepParityFullSize replays the full-size cases (tests/method: full/cases/*; the normal
// `make testdata` writes full_b2: B=2, E=3, 224×224, epoch 1) with full-size backbones — DINO
// ViT-S/16 and ClearCLIP ViT-B/16 with random weights drawn here from the generator's seeds, in
// the generator's way, and checked against its per-tensor sums before the step — and the tiny
// cases' head, with the tolerances of [TestStepParity]. About half a minute and 2 GB of memory
// on two cores; skipped with -short.
func TestStepParityFullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("full-size backbones: skipped with -short")
	}
	root := testref.Dir(t, "method")
	argsFiles, _ := filepath.Glob(filepath.Join(root, "full", "cases", "*", "args.json"))
	if len(argsFiles) == 0 {
		t.Fatalf("no full-size cases under %s: run 'make testdata'", filepath.Join(root, "full"))
	}
	sort.Strings(argsFiles)
	var seeds fullArgs
	raw, err := os.ReadFile(argsFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &seeds); err != nil {
		t.Fatal(err)
	}
	vit, cm := fullBackbones(t, filepath.Join(root, "full", "weight_sums.json"),
		seeds.SeededWeights.DINO.Seed, seeds.SeededWeights.CLIP.Seed)
	// Drawn and checked on the CPU (the generator's stream), then placed on the test device.
	if d := testdev.Device(t); !d.IsCPU() {
		on, err := dino.New(vit.Cfg, nil, d)
		if err != nil {
			t.Fatal(err)
		}
		if err := nn.Load(on, nn.StateDict(vit), "full-size DINO", nn.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
		vit.Free()
		vit = on
		if err := cm.To(d); err != nil {
			t.Fatal(err)
		}
	}
	defer vit.Free()
	defer cm.Free()
	tok, err := tokenizer.Load(filepath.Join(root, "weights", tokenizer.VocabFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, af := range argsFiles {
		dir := filepath.Dir(af)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			a := readCaseArgs(t, af)
			var s fullArgs
			raw, _ := os.ReadFile(af)
			json.Unmarshal(raw, &s)
			if s != seeds {
				t.Fatalf("backbone seeds %+v differ from the first case's %+v", s, seeds)
			}
			div, err := data.ParseDivide(a.Divide)
			if err != nil {
				t.Fatal(err)
			}
			err = torch.WithScope(func(*torch.Scope) {
				// The head file is the tiny cases' (gen_method.py copies it).
				hd := head.New(int64(len(div.Classes())), nil, testdev.Device(t))
				f, err := nn.ReadFile(filepath.Join(root, "weights", "head.pt"))
				if err != nil {
					t.Fatal(err)
				}
				if err := testdev.To(f.Tensors, testdev.Device(t)); err != nil {
					t.Fatal(err)
				}
				if err := nn.Load(hd, f.Tensors, "head.pt", nn.LoadOptions{}); err != nil {
					t.Fatal(err)
				}
				runCase(t, dir, a, &train.Model{DINO: vit, CLIP: cm, Head: hd, Tok: tok, Classes: div.Classes()})
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// fullBackbones draws the full-size backbones as tests/method/gen_method.py does — DINO ViT-S/16
// with tests/dino/gen_dino.py's peaked random init from dinoSeed, CLIP ViT-B/16 from
// clip.WriteRandom (gen_clip.py's draw) in OpenAI's float16 container from clipSeed — and checks
// every tensor's float64 sum against the generator's (sums.json).
func fullBackbones(t *testing.T, sumsPath string, dinoSeed, clipSeed uint64) (*dino.ViT, *clip.Model) {
	t.Helper()
	var sums struct{ DINO, CLIP map[string]float64 }
	raw, err := os.ReadFile(sumsPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &sums); err != nil {
		t.Fatal(err)
	}
	vit, err := dino.New(dino.ViTS16(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := torch.Try(func() { peakedDINOWeights(vit, dinoSeed) }); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clip_vitb16_openai.pt")
	if err := clip.WriteRandom(path, clip.ViTB16(), clipSeed, clip.FormatTorchScript); err != nil {
		t.Fatal(err)
	}
	cm, err := clip.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	for _, c := range []struct {
		name  string
		named []nn.Named
		want  map[string]float64
	}{{"DINO", vit.NamedTensors(), sums.DINO}, {"CLIP", cm.NamedTensors(), sums.CLIP}} {
		if len(c.named) != len(c.want) {
			t.Fatalf("%s: %d tensors, the generator's %d", c.name, len(c.named), len(c.want))
		}
		for _, n := range c.named {
			want, ok := c.want[n.Name]
			if !ok {
				t.Fatalf("%s: %s is not among the generator's tensors", c.name, n.Name)
			}
			var got float64
			if err := torch.Try(func() { got = n.Tensor.ToDType(torch.Float64).Sum().Item() }); err != nil {
				t.Fatal(err)
			}
			// Float64 sums of float32 values: equal up to the summation order (threads).
			if math.Abs(got-want) > 1e-9*(1+math.Abs(want)) {
				t.Fatalf("%s: %s differs from the generator's weights (sum %.17g, generator %.17g)", c.name, n.Name, got, want)
			}
		}
	}
	return vit, cm
}

// peakedDINOWeights fills vit's tensors as tests/dino/gen_dino.py random_weights does: in
// state-dict order from one generator seeded with seed, cls_token and pos_embed N(0, 0.5²),
// LayerNorm weights N(1, 0.1²), biases N(0, 0.1²), qkv weights N(0, (1.3/√in)²), every other
// weight N(0, 1/fan_in) — activations O(1) and peaked attention, so the saliency decisions sit
// clear of their thresholds.
func peakedDINOWeights(vit *dino.ViT, seed uint64) {
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		torch.Fail("test", "%v", err)
	}
	torch.NoGrad(func() {
		for _, n := range vit.NamedTensors() {
			shape := n.Tensor.Shape()
			switch {
			case n.Name == "cls_token" || n.Name == "pos_embed":
				n.Tensor.Normal_(0, 0.5, g)
			case strings.Contains(n.Name, "norm") && strings.HasSuffix(n.Name, "weight"):
				n.Tensor.Normal_(1, 0.1, g)
			case strings.HasSuffix(n.Name, "bias"):
				n.Tensor.Normal_(0, 0.1, g)
			case strings.HasSuffix(n.Name, "qkv.weight"):
				n.Tensor.Normal_(0, 1.3/math.Sqrt(float64(shape[1])), g)
			default:
				n.Tensor.Normal_(0, 1/math.Sqrt(float64(n.Tensor.Numel()/shape[0])), g)
			}
		}
	})
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
	var cond map[string]float64
	if raw, err := os.ReadFile(filepath.Join(refDir, "conditioning.json")); err == nil {
		if err := json.Unmarshal(raw, &cond); err != nil {
			t.Fatalf("%s: %v", filepath.Join(refDir, "conditioning.json"), err)
		}
	}
	seen := 0
	worst := map[string]struct {
		name  string
		ratio float64
	}{}
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
				if err := torch.Try(func() { update = b.Sub(ref.ToDType(b.DType()).To(b.Device())).Abs().Max().Item() }); err != nil {
					return err
				}
				if tolMaps*update > tol*scale {
					tol, scale = tolMaps, update
				}
			}
		case isZeroGrad(name):
			weight := strings.TrimSuffix(name, "bias") + "weight"
			if wt, ok := arrays[weight]; ok {
				scale = maxAbs(wt.Detach().Float64s()) // copied to the host
			}
			w = make([]float64, len(g)) // zero in exact arithmetic
		}
		msg, ratio := compare(name, g, w, tol, scale)
		if msg != "" {
			if c, ok := cond[name]; ok {
				msg += fmt.Sprintf(" (the reference's own float32-vs-float64 difference here: %.2g)", c)
			}
			t.Errorf("%s: %s", name, msg)
		}
		kind, _, ok := strings.Cut(name, "/")
		if !ok {
			kind = "maps and losses"
		}
		if w, ok := worst[kind]; !ok || ratio > w.ratio {
			worst[kind] = struct {
				name  string
				ratio float64
			}{name, ratio}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Fatalf("no arrays in %s", refDir)
	}
	for _, kind := range []string{"maps and losses", "grad", "param"} {
		if w, ok := worst[kind]; ok {
			t.Logf("%s: closest to its tolerance %s at %.2g of it", kind, w.name, w.ratio)
		}
	}
}
