package train_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/train"
)

// curveParamTol bounds the head's parameters and buffers after the 50 steps, relative to each
// tensor's largest magnitude (measured: 1.7e-4, from the step-46 ReLU flip described at
// TestLossCurve50; the other parameters track the reference to ~1e-5 of it or closer).
const curveParamTol = 5e-4

// TestLossCurve50 replays the reference's 50-step run (one optimizer, epochs 0 then 1, K-means
// starts injected at every step), compares the loss step by step and checks that memory stays
// flat over the run.
//
// Every step's loss and its four terms must agree to max(1e-5, 10 × the reference's own
// float32-vs-float64 drift so far) — over the whole run. The generator drew each step's batch so
// that no discrete decision sits within float32 reach (as for the fixture cases) and, for the
// gradient's kinks, so that every input of the conv stacks' ReLUs in the reference is at least
// 1e-5 from 0 and, from epoch 1, every gated CAM value too (tests/method/README.md, curve50). An
// earlier stream without those margins had a pre-ReLU value 1.3e-6 from the kink at step 6: its
// mask flipped, Nesterov momentum amplified the change, and only the trend could be compared.
// With the margins the losses agree to 3.7e-7 at worst (reference drift 4.6e-7).
//
// The margin does not rule out every flip: at step 46 one pre-ReLU value of aff_exo_proj's
// second ReLU (image 1, channel 40, cell (1, 2)) is +1.68e-5 in the reference and −5.8e-6 here
// (a 2.3e-5 difference in an O(1) BatchNorm output after 46 steps of float32 drift on both
// sides, more than the 1e-5 margin). One position's mask flips; the loss moves by < 4e-7, but
// that channel's BatchNorm bias ends the run 1.7e-4 (relative to the tensor's largest value)
// from the reference's. The parameters after the run are therefore held to curveParamTol, the
// losses to the tight bound above. A wider ReLU margin would need exponentially more redraws
// (~98k ReLU inputs per step; 1e-5 already costs 73 redraws over the 50 steps).
// The tail check (mean of the last ten losses within 2%) is kept as a coarse second guard.
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
	wantParts := load("parts.npy").Float64s() // (steps, 4): L_ce_ego, L_ce_exo, L_pix, L_proto
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
	drift, live := 0.0, []int64{}
	worst, worstAt := 0.0, 0
	var gotTail, wantTail float64
	for i := 0; i < a.Steps; i++ {
		inits, err := train.ReadKMeansInit(rel(fmt.Sprintf("kmeans_init/step_%03d.json", i)))
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		var parts []float64
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
			for _, p := range []*torch.Tensor{r.LCeEgo, r.LCeExo, r.LPix, r.LProto} {
				parts = append(parts, p.Sum().Item())
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		drift = math.Max(drift, math.Abs(want[i]-want64[i])/math.Abs(want64[i]))
		tol := math.Max(1e-5, 10*drift)
		d := math.Abs(got-want[i]) / math.Abs(want[i])
		if d > tol {
			t.Errorf("step %d (epoch %d): loss %.7g, reference %.7g (relative %.2g > %.2g)", i, a.Epochs[i], got, want[i], d, tol)
		}
		if d > worst {
			worst, worstAt = d, i
		}
		for j, name := range []string{"L_ce_ego", "L_ce_exo", "L_pix", "L_proto"} {
			w := wantParts[4*i+j]
			if d := math.Abs(parts[j]-w) / math.Max(math.Abs(w), 1e-3); d > tol {
				t.Errorf("step %d: %s %.7g, reference %.7g (relative %.2g > %.2g)", i, name, parts[j], w, d, tol)
			}
		}
		if i >= a.Steps-10 {
			gotTail += got
			wantTail += want[i]
		}
		live = append(live, torch.LiveTensors())
	}
	t.Logf("largest relative loss difference %.2g at step %d; reference float32 vs float64 %.2g", worst, worstAt, drift)
	compareCurveParams(t, rel("param"), m.Head.NamedTensors())
	if d := math.Abs(gotTail-wantTail) / wantTail; d > 0.02 {
		t.Errorf("mean loss of the last ten steps %.5g, reference %.5g (relative %.2g > 0.02)", gotTail/10, wantTail/10, d)
	}
	if n := len(live); n > 3 && live[n-1] > live[2] {
		t.Errorf("live tensors grew over the run: after step 3 %d, after step %d %d", live[2], n, live[n-1])
	}
}

// compareCurveParams compares the head after the run with the reference's param/ dump (every
// parameter and buffer but the six large weights): relative to the largest magnitude of each
// reference tensor, num_batches_tracked exactly.
func compareCurveParams(t *testing.T, dir string, named []nn.Named) {
	t.Helper()
	worst, worstName, seen := 0.0, "", 0
	for _, n := range named {
		path := filepath.Join(dir, n.Name+".npy")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		seen++
		ref, err := npy.LoadTensor(path)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []float64
		if err := torch.Try(func() { got, want = n.Tensor.Detach().Float64s(), ref.Float64s() }); err != nil {
			t.Fatal(err)
		}
		msg, ratio := compare(n.Name, got, want, curveParamTol, maxAbs(want))
		if strings.HasSuffix(n.Name, "num_batches_tracked") {
			msg, ratio = compare(n.Name, got, want, 0, 1)
		}
		if msg != "" {
			t.Errorf("after the run, %s: %s", n.Name, msg)
		}
		if ratio > worst {
			worst, worstName = ratio, n.Name
		}
	}
	if seen == 0 {
		t.Fatalf("no parameters in %s", dir)
	}
	t.Logf("%d parameters and buffers after the run: closest to the tolerance %s at %.2g of it", seen, worstName, worst)
}
