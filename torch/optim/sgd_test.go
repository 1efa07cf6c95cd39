package optim_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
)

type optimRef struct {
	Torch string `json:"torch"`
	Cases map[string]struct {
		Config struct {
			Groups      [][2]any `json:"groups"`
			Momentum    float64  `json:"momentum"`
			Dampening   float64  `json:"dampening"`
			WeightDecay float64  `json:"weight_decay"`
			Nesterov    bool     `json:"nesterov"`
			StepSize    int      `json:"step_size"`
			Gamma       float64  `json:"gamma"`
		} `json:"config"`
		Order []string `json:"order"`
		Init  map[string]struct {
			Shape  []int64   `json:"shape"`
			Values []float32 `json:"values"`
		} `json:"init"`
		Steps []struct {
			X      []float32            `json:"x"`
			Y      []int64              `json:"y"`
			Loss   float64              `json:"loss"`
			LRs    []float64            `json:"lrs"`
			Params map[string][]float32 `json:"params"`
		} `json:"steps"`
	} `json:"cases"`
}

// TestSGDParity runs 20 steps of SGD (and StepLR) on a small MLP and compares the loss and every
// parameter after every step with torch.optim. Tolerance 1e-6 relative: the update is the same
// sequence of float32 kernels as PyTorch's single-tensor SGD, so only the forward/backward's
// summation order could differ, and on the CPU it does not (we see exact equality in practice).
// On CUDA (AFFGD_TEST_DEVICE) the forward and backward use cuBLAS, whose summation order differs
// from the CPU reference by float32 rounding (~1e-7 relative a step); over 20 steps that stays
// under 1e-5, the tolerance used there.
func TestSGDParity(t *testing.T) {
	dev, err := torch.ParseDevice(testref.Device())
	if err != nil {
		t.Fatal(err)
	}
	tol := 1e-6
	if !dev.IsCPU() {
		tol = 1e-5
	}
	var ref optimRef
	b, err := os.ReadFile(filepath.Join(testref.Dir(t, "optim"), "optim.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) != 3 {
		t.Fatalf("want 3 reference cases, got %d", len(ref.Cases))
	}
	for name, c := range ref.Cases {
		t.Run(name, func(t *testing.T) {
			err := torch.WithScope(func(s *torch.Scope) {
				params := map[string]*torch.Tensor{}
				for _, k := range c.Order {
					params[k] = torch.FromSliceOn(c.Init[k].Values, dev, c.Init[k].Shape...).SetRequiresGrad(true)
				}
				var groups []optim.ParamGroup
				for _, g := range c.Config.Groups {
					pg := optim.ParamGroup{Name: g[0].(string), LR: g[1].(float64), Momentum: c.Config.Momentum,
						Dampening: c.Config.Dampening, WeightDecay: c.Config.WeightDecay, Nesterov: c.Config.Nesterov}
					if pg.Name == "all" {
						for _, k := range c.Order {
							pg.Params = append(pg.Params, params[k])
						}
					} else {
						pg.Params = []*torch.Tensor{params[pg.Name]}
					}
					groups = append(groups, pg)
				}
				opt, err := optim.NewSGD(groups)
				if err != nil {
					t.Fatal(err)
				}
				var sched *optim.StepLR
				if c.Config.StepSize > 0 {
					sched = optim.NewStepLR(opt, c.Config.StepSize, c.Config.Gamma)
				}
				for i, st := range c.Steps {
					step := torch.NewScope()
					x := torch.FromSliceOn(st.X, dev, 8, 4)
					y := torch.FromSliceOn(st.Y, dev)
					opt.ZeroGrad()
					h := torch.Linear(x, params["fc.weight"], params["fc.bias"]).Relu()
					logits := torch.Linear(h, params["other.weight"], params["other.bias"])
					loss := torch.CrossEntropy(logits, y, torch.ReduceMean)
					loss.Backward()
					opt.Step()
					if sched != nil {
						sched.Step()
					}
					if got := loss.Item(); !close(got, st.Loss, tol) {
						t.Errorf("step %d: loss %.9g, torch %.9g", i, got, st.Loss)
					}
					for gi, lr := range st.LRs {
						if opt.Groups[gi].LR != lr {
							t.Errorf("step %d: group %d lr %v, torch %v", i, gi, opt.Groups[gi].LR, lr)
						}
					}
					for _, k := range c.Order {
						got := params[k].Float32s()
						for j, want := range st.Params[k] {
							if !close(float64(got[j]), float64(want), tol) {
								t.Fatalf("step %d: %s[%d] = %.9g, torch %.9g", i, k, j, got[j], want)
							}
						}
					}
					step.Close()
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func close(a, b, rel float64) bool { return math.Abs(a-b) <= rel*math.Max(1, math.Abs(b)) }

func TestSGDRejectsBadGroups(t *testing.T) {
	p := torch.Zeros([]int64{2})
	cases := []struct {
		name string
		g    optim.ParamGroup
	}{
		{"negative lr", optim.ParamGroup{Params: []*torch.Tensor{p}, LR: -1}},
		{"negative momentum", optim.ParamGroup{Params: []*torch.Tensor{p}, LR: 1, Momentum: -0.1}},
		{"negative weight decay", optim.ParamGroup{Params: []*torch.Tensor{p}, LR: 1, WeightDecay: -1}},
		{"nesterov without momentum", optim.ParamGroup{Params: []*torch.Tensor{p}, LR: 1, Nesterov: true}},
		{"nesterov with dampening", optim.ParamGroup{Params: []*torch.Tensor{p}, LR: 1, Momentum: 0.9, Dampening: 0.1, Nesterov: true}},
	}
	for _, c := range cases {
		if _, err := optim.NewSGD([]optim.ParamGroup{c.g}); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// SetMomentumBuffers checks every buffer before it changes anything: a bad set leaves the
// optimizer's buffers as they were.
func TestSetMomentumBuffersAllOrNothing(t *testing.T) {
	p1 := torch.Zeros([]int64{2, 3}, torch.Float32).SetRequiresGrad(true)
	p2 := torch.Zeros([]int64{4}, torch.Float32).SetRequiresGrad(true)
	opt, err := optim.NewSGD([]optim.ParamGroup{{Params: []*torch.Tensor{p1}, LR: 0.1, Momentum: 0.9}, {Params: []*torch.Tensor{p2}, LR: 0.1, Momentum: 0.9}})
	if err != nil {
		t.Fatal(err)
	}
	good := [][]*torch.Tensor{{torch.Ones([]int64{2, 3}, torch.Float32)}, {torch.Ones([]int64{4}, torch.Float32)}}
	if err := opt.SetMomentumBuffers(good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		bufs [][]*torch.Tensor
	}{
		{"second group's shape", [][]*torch.Tensor{{torch.Zeros([]int64{2, 3}, torch.Float32)}, {torch.Zeros([]int64{5}, torch.Float32)}}},
		{"group count", [][]*torch.Tensor{{torch.Zeros([]int64{2, 3}, torch.Float32)}}},
		{"buffer count", [][]*torch.Tensor{{torch.Zeros([]int64{2, 3}, torch.Float32)}, {}}},
	} {
		if err := opt.SetMomentumBuffers(tc.bufs); err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		for gi, g := range opt.MomentumBuffers() {
			if b := g[0]; b == nil || b.Released() || b.Sum().Item() != float64(b.Numel()) {
				t.Fatalf("%s: group %d's buffer changed by a rejected set", tc.name, gi)
			}
		}
	}
}

// TestMain checks $AFFGD_TEST_DEVICE first (internal/testdev): a device that cannot be used stops
// the suite with one line instead of a run on another device.
func TestMain(m *testing.M) { testdev.Main(m) }
