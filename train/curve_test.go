package train_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/train"
)

// TestLossCurve50 replays the reference's 50-step run (one optimizer, epochs 0 then 1, K-means
// starts injected at every step), compares the loss step by step and checks that memory stays
// flat over the run.
//
// Steps 0–6 must agree to max(1e-5, 10 × the reference's own float32-vs-float64 drift). At step 6
// one pre-ReLU value of aff_exo_proj.4's output (image 2, channel 313, cell (1, 2)) lies within
// float32 rounding of the ReLU's kink: +1.3e-6 in the reference's float32 run, +5.4e-6 in its
// float64 twin, −1.7e-7 from affgd's state, whose parameters after step 5 are closer to the
// reference's (1.5e-6) than the float64 twin's are (4.2e-6). The mask flips, one conv channel's
// gradient differs by 5%, and Nesterov momentum amplifies it (~3× a step). Measured both ways: the
// reference's own PyTorch step started from affgd's state after step 5 reproduces affgd's losses
// to 8e-8 through step 13, and affgd started from the reference's state reproduces the stored
// curve to 8e-8 — so every step is right and the curves part by float32 chaos alone. After step 6
// the test therefore holds the run to the reference's trend only: every loss within 10% and the
// mean of the last ten within 2%, which a wrong gradient, schedule or optimizer state would break.
// (A fixture chosen for ReLU margins as well as discovery margins would allow a tight comparison
// of the whole run; that is open work.)
func TestLossCurve50(t *testing.T) {
	dir := filepath.Join(testref.Dir(t, "method"), "curve50")
	var a struct {
		Steps  int    `json:"steps"`
		B, E   int64  `json:"-"`
		Epochs []int  `json:"epochs"`
		Divide string `json:"divide"`
		Head   string `json:"head"`
		DINO   string `json:"dino"`
		CLIP   string `json:"clip"`
		Vocab  string `json:"vocab"`
		Seed   uint64 `json:"seed"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "args.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	var shape struct{ B, E int64 }
	json.Unmarshal(raw, &shape)
	div, err := data.ParseDivide(a.Divide)
	if err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string { return filepath.Join(dir, p) }
	load := func(name string) *torch.Tensor {
		x, err := npy.LoadTensor(rel(name))
		if err != nil {
			t.Fatal(err)
		}
		return torch.Escape(x)
	}
	lowExo, lowEgo, labels := load("lowres_exo.npy"), load("lowres_ego.npy"), load("labels.npy")
	want, want64 := load("losses.npy").Float64s(), load("losses_float64.npy").Float64s()
	m, err := train.Load(train.Files{DINO: rel(a.DINO), CLIP: rel(a.CLIP), Head: rel(a.Head), Vocab: rel(a.Vocab), Divide: div, Seed: a.Seed})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := optim.NewSGD(m.Head.ParamGroups(train.BaseLR))
	if err != nil {
		t.Fatal(err)
	}
	up := func(x *torch.Tensor) *torch.Tensor {
		return torch.Interpolate(x, torch.InterpolateOptions{Size: [2]int64{64, 64}, Mode: torch.Bilinear})
	}
	const lastTight = 6
	drift, live := 0.0, []int64{}
	var gotTail, wantTail float64
	for i := 0; i < a.Steps; i++ {
		inits, err := train.ReadKMeansInit(rel(fmt.Sprintf("kmeans_init/step_%03d.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		err = torch.WithScope(func(s *torch.Scope) {
			b := train.Batch{
				Exo:   up(lowExo.Select(0, int64(i)).Reshape(shape.B*shape.E, 3, 4, 4)).Reshape(shape.B, shape.E, 3, 64, 64),
				Ego:   up(lowEgo.Select(0, int64(i))),
				Label: labels.Select(0, int64(i)).Contiguous(),
			}
			g, _ := torch.NewGenerator(a.Seed, torch.CPU)
			r, err := m.Forward(b, train.Options{Epoch: a.Epochs[i], Discovery: discovery.DefaultOptions(), KMeansInit: inits, Gen: g})
			if err != nil {
				t.Fatal(err)
			}
			opt.ZeroGrad()
			r.Loss.Backward()
			opt.Step()
			got = r.Loss.Sum().Item()
		})
		if err != nil {
			t.Fatal(err)
		}
		drift = math.Max(drift, math.Abs(want[i]-want64[i])/math.Abs(want64[i]))
		tol := math.Max(1e-5, 10*drift)
		if i > lastTight {
			tol = 0.1
		}
		if d := math.Abs(got-want[i]) / math.Abs(want[i]); d > tol {
			t.Errorf("step %d (epoch %d): loss %.7g, reference %.7g (relative %.2g > %.2g)", i, a.Epochs[i], got, want[i], d, tol)
		}
		if i >= a.Steps-10 {
			gotTail += got
			wantTail += want[i]
		}
		live = append(live, torch.LiveTensors())
	}
	if d := math.Abs(gotTail-wantTail) / wantTail; d > 0.02 {
		t.Errorf("mean loss of the last ten steps %.5g, reference %.5g (relative %.2g > 0.02)", gotTail/10, wantTail/10, d)
	}
	if n := len(live); n > 3 && live[n-1] > live[2] {
		t.Errorf("live tensors grew over the run: after step 3 %d, after step %d %d", live[2], n, live[n-1])
	}
}
