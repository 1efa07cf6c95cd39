package head_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/models/head"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/torch/optim"
)

// The reference data is written by tests/head/gen_head.py: the head written as a plain PyTorch
// module with the released attribute names and construction order, its default initialisation
// after torch.manual_seed, and, per case, a training-mode forward (with the double conv-stack
// call), the gradients of a fixed random weighted sum of all outputs, the BatchNorm statistics
// after it, and the eval-mode test_forward maps (with the released loop-based helpers).
//
// Tolerances, per tensor: max |got − want| ≤ tol · max |want|.
//   - Initialisation: bitwise (the same generator stream and the same uniform_ kernel).
//   - Outputs, gradients, TestForward maps: rtol = 1e-5. Go calls the same ATen kernels on the
//     same shapes in the same order as the reference, so differences come only from libtorch's
//     thread count (the reference is made with one thread, reductions in convolutions, layer
//     norm and batch norm may split differently here) and, for `rem`, from the 3×3 mean being an
//     average pool here and nine-element means in the reference (a few ulp). The largest
//     difference is logged.
//   - BatchNorm running statistics: 1e-6 (they are batch means/variances blended with momentum
//     0.1, a handful of float32 operations per element); num_batches_tracked exactly.
//   - On CUDA ($AFFGD_TEST_DEVICE) every floating-point tolerance is at least testdev.CUDARTol
//     (1e-4: cuDNN's convolution algorithms and cuBLAS sum in other orders than the CPU reference,
//     BatchNorm's backward accumulates with atomics; TF32 off); bitwise checks stay bitwise.
const (
	rtol     = 1e-5
	statsTol = 1e-6
)

func dataDir(t testing.TB) string { return testref.Dir(t, "head") }

type meta struct {
	Keys        []string `json:"keys"`
	ParamGroups []struct {
		Name   string   `json:"name"`
		LRMult float64  `json:"lr_mult"`
		Params []string `json:"params"`
	} `json:"param_groups"`
	Momentum    float64    `json:"momentum"`
	WeightDecay float64    `json:"weight_decay"`
	Nesterov    bool       `json:"nesterov"`
	Outputs     []string   `json:"outputs"`
	InitCases   [][2]int64 `json:"init_cases"`
	Cases       []string   `json:"cases"`
}

func readMeta(t testing.TB) *meta {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir(t), "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := &meta{}
	if err := json.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cases) == 0 || len(m.InitCases) == 0 {
		t.Fatal("meta.json lists no cases")
	}
	return m
}

// readRef reads a reference file with every tensor on the test device ($AFFGD_TEST_DEVICE).
func readRef(t testing.TB, name string) *nn.File {
	t.Helper()
	f, err := nn.ReadFile(filepath.Join(dataDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	if err := testdev.To(f.Tensors, testdev.Device(t)); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMain(m *testing.M) { testdev.Main(m) }

// sub returns the entries of f under prefix+".", with the prefix removed.
func sub(f *nn.File, prefix string) map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for k, v := range f.Tensors {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

func must(t testing.TB, f func()) {
	t.Helper()
	if err := torch.Try(f); err != nil {
		t.Fatal(err)
	}
}

// maxDiff returns max |a − b| and max |b|, or an error for shapes or dtypes that differ.
func maxDiff(a, b *torch.Tensor) (diff, scale float64, err error) {
	err = torch.Try(func() {
		if a == nil || b == nil {
			torch.Fail("compare", "nil tensor")
		}
		sa, sb := fmt.Sprint(a.Shape()), fmt.Sprint(b.Shape())
		if sa != sb {
			torch.Fail("compare", "shape %s, want %s", sa, sb)
		}
		if a.DType() != b.DType() {
			torch.Fail("compare", "dtype %s, want %s", a.DType(), b.DType())
		}
		a, b = a.Detach().ToDType(torch.Float64), b.ToDType(torch.Float64)
		diff = a.Sub(b).Abs().Max().Item()
		scale = b.Abs().Max().Item()
	})
	return diff, scale, err
}

// closeTo checks max |got − want| ≤ tol · max |want| and returns the relative difference.
func closeTo(t *testing.T, what string, got, want *torch.Tensor, tol float64) float64 {
	t.Helper()
	d, s, err := maxDiff(got, want)
	switch {
	case err != nil:
		t.Errorf("%s: %v", what, err)
	case !(d <= tol*s):
		t.Errorf("%s: max |diff| %.3g > %g × max |want| %.3g", what, d, tol, s)
	}
	if s == 0 {
		return d
	}
	return d / s
}

func bitwise(t *testing.T, what string, got, want *torch.Tensor) {
	t.Helper()
	if d, _, err := maxDiff(got, want); err != nil {
		t.Errorf("%s: %v", what, err)
	} else if d != 0 {
		t.Errorf("%s: not bitwise equal, max |diff| %g", what, d)
	}
}

// zeroGradBias reports whether name is the bias of a convolution followed by a training-mode
// BatchNorm (aff_ego_proj / aff_exo_proj .0 and .3), and returns the name of that convolution's
// weight. Such a gradient is exactly zero (the batch mean removes any per-channel constant; the
// generator confirms it in float64), so both PyTorch and Go return cancellation noise there
// (about 1e-4 here, where the same layer's weight gradient is about 300), and a comparison
// relative to its own size would compare noise with noise.
func zeroGradBias(name string) (weight string, ok bool) {
	for _, s := range []string{"aff_ego_proj", "aff_exo_proj"} {
		for _, i := range []string{"0", "3"} {
			if name == s+"."+i+".bias" {
				return s + "." + i + ".weight", true
			}
		}
	}
	return "", false
}

// nearZero checks a gradient that is zero in exact arithmetic: got, and its difference from the
// reference's noise want, must be within rtol of the scale of the gradient flowing through
// that layer, max |grad of its weight| (from the reference).
func nearZero(t *testing.T, what string, got, want, weightGrad *torch.Tensor) {
	t.Helper()
	d, _, err := maxDiff(got, want)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	var g, scale float64
	must(t, func() { g, scale = got.Abs().Max().Item(), weightGrad.Abs().Max().Item() })
	if !(max(d, g) <= testdev.Tol(rtol)*scale) {
		t.Errorf("%s (zero in exact arithmetic): max |got| %.3g, max |diff| %.3g > %g × max |weight grad| %.3g", what, g, d, rtol, scale)
	}
}

func names(ns []nn.Named) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

func isNormKey(k string) bool {
	return strings.HasPrefix(k, "aff_proj.norm.") || strings.Contains(k, ".1.") || strings.Contains(k, ".4.")
}

func isBufferKey(k string) bool {
	return strings.HasSuffix(k, "running_mean") || strings.HasSuffix(k, "running_var") || strings.HasSuffix(k, "num_batches_tracked")
}

// newHead initialises a head from seed on the CPU generator (the reference's stream) and places
// it on the test device.
func newHead(t testing.TB, k int64, seed uint64) *head.Head {
	t.Helper()
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	var h *head.Head
	must(t, func() { h = head.New(k, g) })
	if d := testdev.Device(t); !d.IsCPU() {
		on := head.New(k, nil, d)
		if err := nn.Load(on, nn.StateDict(h), "initial head", nn.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
		h = on
	}
	return h
}

// refCase is one forward case of the reference.
type refCase struct {
	f          *nn.File
	k, hg, wg  int64
	e          int64
	seed       uint64
	descEgo    *torch.Tensor // (B, h·w, 384): the stored (B, h·w+1, 384) without its first token
	descExo    *torch.Tensor
	labels     *torch.Tensor
	normParams map[string]*torch.Tensor
}

func loadCase(t testing.TB, name string) *refCase {
	t.Helper()
	f := readRef(t, "case_"+name+".pt")
	c := &refCase{f: f}
	must(t, func() {
		c.k, c.hg, c.wg, c.e = f.Tensors["k"].ItemInt(), f.Tensors["h"].ItemInt(), f.Tensors["w"].ItemInt(), f.Tensors["e"].ItemInt()
		c.seed = uint64(f.Tensors["seed"].ItemInt())
		// The released code feeds aff_proj the slice desc[:, 1:] of the tokens with cls; so does
		// the test (a non-contiguous view).
		hw := c.hg * c.wg
		c.descEgo = f.Tensors["desc_ego_full"].Narrow(1, 1, hw)
		c.descExo = f.Tensors["desc_exo_full"].Narrow(1, 1, hw)
		c.labels = f.Tensors["labels"]
	})
	c.normParams = sub(f, "norms")
	return c
}

// build returns the case's head: the seed's default init with the stored norm entries, and,
// when after is set, the BatchNorm buffers as they were after the reference's forward.
func (c *refCase) build(t testing.TB, after bool) *head.Head {
	t.Helper()
	h := newHead(t, c.k, c.seed)
	sd := map[string]*torch.Tensor{}
	for k, v := range c.normParams {
		sd[k] = v
	}
	if after {
		for k, v := range sub(c.f, "buffers") {
			sd[k] = v
		}
	}
	err := nn.Load(h, sd, "case norms", nn.LoadOptions{AllowMissing: func(k string) bool { return !isNormKey(k) }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func outputsByName(o *head.Outputs) map[string]*torch.Tensor {
	return map[string]*torch.Tensor{
		"PEgo": o.PEgo, "PExo": o.PExo, "AEgo": o.AEgo, "AExo": o.AExo,
		"LogitsEgo": o.LogitsEgo, "LogitsExo": o.LogitsExo, "GEgo": o.GEgo, "GExo": o.GExo,
		"Q": o.Q, "REgo": o.REgo, "RExo": o.RExo,
	}
}

// TestInitParity: New(K, generator seeded s) equals the PyTorch modules built in the released
// order after torch.manual_seed(s), bitwise, with exactly the released keys in order.
func TestInitParity(t *testing.T) {
	m := readMeta(t)
	for _, ic := range m.InitCases {
		seed, k := ic[0], ic[1]
		t.Run(fmt.Sprintf("seed%d_K%d", seed, k), func(t *testing.T) {
			f := readRef(t, fmt.Sprintf("init_%d_%d.pt", seed, k))
			h := newHead(t, k, uint64(seed))
			got := h.NamedTensors()
			if fmt.Sprint(names(got)) != fmt.Sprint(f.Names) {
				t.Fatalf("keys differ:\n got  %v\n want %v", names(got), f.Names)
			}
			for _, n := range got {
				bitwise(t, n.Name, n.Tensor, f.Tensors[n.Name])
			}
		})
	}
}

// TestNamedTensors: keys and order are the released state dict's head keys, buffers are marked
// and parameters record gradients.
func TestNamedTensors(t *testing.T) {
	m := readMeta(t)
	h := newHead(t, 36, 0)
	ns := h.NamedTensors()
	if fmt.Sprint(names(ns)) != fmt.Sprint(m.Keys) {
		t.Fatalf("keys differ:\n got  %v\n want %v", names(ns), m.Keys)
	}
	for _, n := range ns {
		if n.Buffer != isBufferKey(n.Name) {
			t.Errorf("%s: Buffer = %v", n.Name, n.Buffer)
		}
		var rg bool
		must(t, func() { rg = n.Tensor.RequiresGrad() })
		if rg == n.Buffer {
			t.Errorf("%s: requires_grad = %v", n.Name, rg)
		}
	}
}

// TestForward: every output, the BatchNorm statistics after the double update and the
// gradients of a fixed random weighted sum of the outputs w.r.t. every parameter.
func TestForward(t *testing.T) {
	m := readMeta(t)
	for _, name := range m.Cases {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, name)
			h := c.build(t, false)
			var o *head.Outputs
			must(t, func() { o = h.Forward(c.descEgo, c.descExo, c.labels, c.e, c.hg, c.wg, true) })
			outs := outputsByName(o)
			worst := 0.0
			for _, on := range m.Outputs {
				worst = max(worst, closeTo(t, on, outs[on], c.f.Tensors["out."+on], testdev.Tol(rtol)))
			}
			t.Logf("outputs: max relative diff %.3g", worst)

			worst = 0
			for k, want := range sub(c.f, "buffers") {
				got := nn.StateDict(h)[k]
				if strings.HasSuffix(k, "num_batches_tracked") {
					bitwise(t, k, got, want)
					continue
				}
				worst = max(worst, closeTo(t, k, got, want, testdev.Tol(statsTol)))
			}
			t.Logf("BatchNorm running statistics: max relative diff %.3g", worst)

			must(t, func() {
				loss := torch.Zeros(nil)
				for _, on := range m.Outputs {
					loss = loss.Add(outs[on].Mul(c.f.Tensors["weight."+on]).Sum())
				}
				t.Logf("loss %.9g, reference %.9g", loss.Item(), c.f.Tensors["loss"].Item())
				loss.Backward()
			})
			worst = 0
			for _, p := range nn.Parameters(h) {
				var g *torch.Tensor
				must(t, func() { g = p.Tensor.Grad() })
				if g == nil {
					t.Errorf("%s: no gradient", p.Name)
					continue
				}
				want := c.f.Tensors["grad."+p.Name]
				if w, ok := zeroGradBias(p.Name); ok {
					nearZero(t, "grad "+p.Name, g, want, c.f.Tensors["grad."+w])
					continue
				}
				worst = max(worst, closeTo(t, "grad "+p.Name, g, want, testdev.Tol(rtol)))
			}
			t.Logf("gradients: max relative diff %.3g", worst)
		})
	}
}

// TestForwardEval: without training the running statistics stay as they were and the outputs
// use them (the first and second conv-stack calls agree).
func TestForwardEval(t *testing.T) {
	c := loadCase(t, "k10_g4")
	h := c.build(t, false)
	before := map[string]*torch.Tensor{}
	must(t, func() {
		for _, n := range h.NamedTensors() {
			if n.Buffer {
				before[n.Name] = n.Tensor.Clone()
			}
		}
	})
	var o *head.Outputs
	must(t, func() { o = h.Forward(c.descEgo, c.descExo, c.labels, c.e, c.hg, c.wg, false) })
	for k, v := range before {
		bitwise(t, k, nn.StateDict(h)[k], v)
	}
	var cam *torch.Tensor
	must(t, func() {
		cam, _, _ = h.TestForward(c.descEgo, c.descEgo.Select(2, 0).Reshape(-1, c.hg, c.wg), c.labels, c.hg, c.wg)
	})
	bitwise(t, "TestForward cam vs Forward GEgo in eval mode", cam, o.GEgo.Detach())
}

// TestTestForward: cam, ree and rem with the BatchNorms in eval mode, against the released
// test_forward's loop-based normalisation and local mean.
func TestTestForward(t *testing.T) {
	m := readMeta(t)
	for _, name := range m.Cases {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, name)
			h := c.build(t, true)
			before := map[string]*torch.Tensor{}
			must(t, func() {
				for _, n := range h.NamedTensors() {
					if n.Buffer {
						before[n.Name] = n.Tensor.Clone()
					}
				}
			})
			var desc, cam, ree, rem *torch.Tensor
			must(t, func() {
				desc = c.f.Tensors["test.desc_full"]
				desc = desc.Narrow(1, 1, desc.Size(1)-1)
				cam, ree, rem = h.TestForward(desc, c.f.Tensors["test.s"], c.f.Tensors["test.labels"], c.hg, c.wg)
			})
			for _, x := range []struct {
				name string
				got  *torch.Tensor
			}{{"cam", cam}, {"ree", ree}, {"rem", rem}} {
				r := closeTo(t, x.name, x.got, c.f.Tensors["test."+x.name], testdev.Tol(rtol))
				t.Logf("%s: max relative diff %.3g", x.name, r)
				var rg bool
				must(t, func() { rg = x.got.RequiresGrad() })
				if rg {
					t.Errorf("%s records gradients", x.name)
				}
			}
			for k, v := range before {
				bitwise(t, k+" (unchanged by TestForward)", nn.StateDict(h)[k], v)
			}
		})
	}
}

// TestParamGroups: the released optimizer's groups (utils/util.py get_optimizer), names and
// learning-rate multipliers as the reference derives them from named_parameters().
func TestParamGroups(t *testing.T) {
	m := readMeta(t)
	h := newHead(t, 36, 0)
	byTensor := map[*torch.Tensor]string{}
	for _, n := range h.NamedTensors() {
		byTensor[n.Tensor] = n.Name
	}
	const lr = 0.001
	groups := h.ParamGroups(lr)
	if len(groups) != len(m.ParamGroups) {
		t.Fatalf("%d groups, want %d", len(groups), len(m.ParamGroups))
	}
	for i, want := range m.ParamGroups {
		g := groups[i]
		var got []string
		for _, p := range g.Params {
			got = append(got, byTensor[p])
		}
		if g.Name != want.Name || fmt.Sprint(got) != fmt.Sprint(want.Params) {
			t.Errorf("group %d: %s %v, want %s %v", i, g.Name, got, want.Name, want.Params)
		}
		if g.LR != want.LRMult*lr || g.Momentum != m.Momentum || g.WeightDecay != m.WeightDecay ||
			g.Nesterov != m.Nesterov || g.Dampening != 0 {
			t.Errorf("group %d (%s): lr %g momentum %g wd %g nesterov %v dampening %g, want lr %g·%g, %g, %g, %v, 0",
				i, g.Name, g.LR, g.Momentum, g.WeightDecay, g.Nesterov, g.Dampening, want.LRMult, lr, m.Momentum, m.WeightDecay, m.Nesterov)
		}
	}
	if _, err := optim.NewSGD(groups); err != nil {
		t.Errorf("NewSGD: %v", err)
	}
}

// TestStateDictRoundTrip: a head written by nn.WriteFile is read back by nn.ReadFile and
// torch.load (weights_only) with the released keys in order, loads into the reference module
// with strict=True, and a PyTorch-written file loads into a head, all bitwise.
func TestStateDictRoundTrip(t *testing.T) {
	const seed, k = 0, 36
	ref := fmt.Sprintf("init_%d_%d.pt", seed, k)
	dir := t.TempDir()
	out := filepath.Join(dir, "head.pt")
	h := newHead(t, k, seed)
	if err := nn.WriteFile(out, h.NamedTensors()); err != nil {
		t.Fatal(err)
	}
	f, err := nn.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := testdev.To(f.Tensors, testdev.Device(t)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Names) != fmt.Sprint(names(h.NamedTensors())) {
		t.Errorf("read back keys %v", f.Names)
	}

	// PyTorch file → a head built from another seed.
	other := newHead(t, k, 99)
	if err := nn.Load(other, readRef(t, ref).Tensors, ref, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range other.NamedTensors() {
		bitwise(t, n.Name, n.Tensor, f.Tensors[n.Name])
	}

	py := os.Getenv("AFFGD_PYTHON")
	if py == "" {
		t.Fatal("AFFGD_PYTHON is not set: `make test` sets it to the project venv's python")
	}
	cmd := exec.Command(py, filepath.Join("..", "..", "tests", "head", "check_state.py"), out, filepath.Join(dataDir(t), ref), fmt.Sprint(k))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("torch.load of our file: %v\n%s", err, b)
	} else {
		t.Logf("check_state.py: %s", strings.TrimSpace(string(b)))
	}

	// A file missing a key or with a wrong shape is refused.
	sd := nn.StateDict(h)
	delete(sd, "aff_exo_proj.4.running_var")
	if err := nn.Load(other, sd, "partial", nn.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "aff_exo_proj.4.running_var") {
		t.Errorf("missing key: err = %v", err)
	}
	if err := nn.Load(newHead(t, 10, 1), nn.StateDict(h), "36 classes", nn.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "aff_classifier.weight") {
		t.Errorf("class-count mismatch: err = %v", err)
	}
}

// TestErrors: bad shapes, labels and sizes give clear errors through torch.Try.
// The checks run before any kernel, so a CPU head serves every device.
func TestErrors(t *testing.T) {
	h := head.New(10, nil)
	var ego, exo, lab, s *torch.Tensor
	must(t, func() {
		ego = torch.Zeros([]int64{2, 12, head.Dim})
		exo = torch.Zeros([]int64{6, 12, head.Dim})
		lab = torch.FromSlice([]int64{1, 9})
		s = torch.Zeros([]int64{2, 3, 4})
	})
	cases := []struct {
		name string
		run  func()
		want string
	}{
		{"project channels", func() { h.Project(torch.Zeros([]int64{2, 12, 100}), 3, 4) }, "want (N ≥ 1, h·w = 3·4 = 12, 384)"},
		{"project grid", func() { h.Project(ego, 4, 4) }, "h·w = 4·4 = 16"},
		{"project 2-d", func() { h.Project(torch.Zeros([]int64{12, head.Dim}), 3, 4) }, "shape [12 384]"},
		{"project empty grid", func() { h.Project(ego, 0, 4) }, "grid 0×4 is empty"},
		{"project nil", func() { h.Project(nil, 3, 4) }, "nil tensor"},
		{"forward exo count", func() { h.Forward(ego, exo, lab, 2, 3, 4, true) }, "want B·E = 2·2 = 4"},
		{"forward E", func() { h.Forward(ego, exo, lab, 0, 3, 4, true) }, "must be positive, got 0"},
		{"forward exo grid", func() { h.Forward(ego, torch.Zeros([]int64{6, 16, head.Dim}), lab, 3, 3, 4, true) }, "exo descriptors have shape [6 16 384]"},
		{"forward label count", func() { h.Forward(ego, exo, torch.FromSlice([]int64{1, 2, 3}), 3, 3, 4, true) }, "labels have shape [3], want (2)"},
		{"forward label dtype", func() { h.Forward(ego, exo, torch.FromSlice([]float32{1, 2}), 3, 3, 4, true) }, "labels are float32"},
		{"forward label range", func() { h.Forward(ego, exo, torch.FromSlice([]int64{1, 10}), 3, 3, 4, true) }, "[1, 10], want class indices in [0, 10)"},
		{"forward negative label", func() { h.Forward(ego, exo, torch.FromSlice([]int64{-1, 0}), 3, 3, 4, true) }, "[-1, 0]"},
		{"test map shape", func() { h.TestForward(ego, torch.Zeros([]int64{2, 4, 3}), lab, 3, 4) }, "CLIP ego map has shape [2 4 3], want (B, h, w) = (2, 3, 4)"},
		{"test labels", func() { h.TestForward(ego, s, torch.FromSlice([]int64{1}), 3, 4) }, "labels have shape [1], want (2)"},
		{"test descriptors", func() { h.TestForward(exo.Narrow(2, 0, 10), s, lab, 3, 4) }, "ego descriptors have shape [6 12 10]"},
		{"new classes", func() { head.New(0, nil) }, "number of classes must be positive, got 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := torch.Try(c.run)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}
