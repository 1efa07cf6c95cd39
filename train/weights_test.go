package train_test

import (
	"math"
	"testing"

	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/train"
)

// stepOutcome is one forward's loss values and the head's gradients of one loss.
type stepOutcome struct {
	values map[string][]float32 // each computed term
	nilOf  map[string]bool      // terms left out (nil)
	total  float32
	grads  [][]float32 // per head parameter, nil without a gradient
	discov bool        // part discovery ran
}

// outcomeOf runs one forward of m on b (epoch 1, K-means draws from a fresh seeded generator)
// with weights w and backpropagates backward(result) (nil: the result's total).
func outcomeOf(t *testing.T, m *train.Model, b train.Batch, w *train.LossWeights, backward func(*train.Result) *torch.Tensor) stepOutcome {
	t.Helper()
	var o stepOutcome
	err := torch.WithScope(func(_ *torch.Scope) {
		g, _ := torch.NewGenerator(11, torch.CPU)
		r, err := m.Forward(b, train.Options{Epoch: 1, Discovery: discovery.DefaultOptions(), Gen: g, Weights: w})
		if err != nil {
			t.Fatal(err)
		}
		o.values, o.nilOf = map[string][]float32{}, map[string]bool{}
		for name, l := range map[string]*torch.Tensor{"ce_ego": r.LCeEgo, "ce_exo": r.LCeExo, "pixel": r.LPix, "proto": r.LProto} {
			if l == nil {
				o.nilOf[name] = true
			} else {
				o.values[name] = l.Float32s()
			}
		}
		o.total = r.Loss.Float32s()[0]
		o.discov = r.Reliable != nil
		params := nn.Parameters(m.Head)
		for _, p := range params {
			p.Tensor.ZeroGrad()
		}
		root := r.Loss
		if backward != nil {
			root = backward(r)
		}
		root.Sum().Backward()
		for _, p := range params {
			if gr := p.Tensor.Grad(); gr != nil {
				o.grads = append(o.grads, gr.Float32s())
			} else {
				o.grads = append(o.grads, nil)
			}
			p.Tensor.ZeroGrad()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// A loss weight of 0 removes exactly its term: the term is not computed (nil, and for the
// prototypical loss no part discovery), every other term has the same value, and the gradients
// of the total are those of the other terms of the full step, bit for bit.
func TestLossWeightZeroRemovesItsTerm(t *testing.T) {
	m := tinyModel(t)
	g, _ := torch.NewGenerator(5, torch.CPU)
	b := batch(g, 2, 3)
	full := outcomeOf(t, m, b, nil, nil)
	if len(full.nilOf) != 0 || !full.discov {
		t.Fatalf("the default step left out %v (discovery %v)", full.nilOf, full.discov)
	}
	terms := []string{"ce_ego", "ce_exo", "pixel", "proto"}
	for _, name := range terms {
		if v := full.values[name][0]; v == 0 || math.IsNaN(float64(v)) {
			t.Fatalf("test setup: the full step's %s is %v; every term must be a finite non-zero loss", name, v)
		}
	}
	for _, off := range terms {
		t.Run(off, func(t *testing.T) {
			w := train.AllLosses
			switch off {
			case "ce_ego":
				w.CEEgo = 0
			case "ce_exo":
				w.CEExo = 0
			case "pixel":
				w.Pixel = 0
			case "proto":
				w.Proto = 0
			}
			// The reference: the full step's other terms, summed in the released order.
			rest := func(r *train.Result) *torch.Tensor {
				var sum *torch.Tensor
				for _, l := range []struct {
					name string
					t    *torch.Tensor
				}{{"ce_ego", r.LCeEgo}, {"ce_exo", r.LCeExo}, {"pixel", r.LPix}, {"proto", r.LProto}} {
					if l.name == off {
						continue
					}
					if sum == nil {
						sum = l.t
					} else {
						sum = sum.Add(l.t)
					}
				}
				return sum
			}
			want := outcomeOf(t, m, b, nil, rest)
			got := outcomeOf(t, m, b, &w, nil)
			if !got.nilOf[off] || len(got.nilOf) != 1 {
				t.Errorf("terms left out: %v, want only %s", got.nilOf, off)
			}
			if got.discov != (off != "proto") {
				t.Errorf("part discovery ran: %v", got.discov)
			}
			var sum float32
			for _, name := range terms {
				if name == off {
					continue
				}
				if !equalFloats(got.values[name], full.values[name]) {
					t.Errorf("%s = %v, the full step's %v", name, got.values[name], full.values[name])
				}
				sum += got.values[name][0]
			}
			if math.Abs(float64(got.total-sum)) > 1e-6*math.Abs(float64(sum)) {
				t.Errorf("total %v, the other terms sum to %v", got.total, sum)
			}
			moved := 0
			for i := range want.grads {
				if !equalFloats(got.grads[i], want.grads[i]) {
					t.Errorf("parameter %d: the gradient differs from the full step's other terms'", i)
				}
				if got.grads[i] != nil {
					moved++
				}
			}
			if moved == 0 {
				t.Error("no parameter has a gradient")
			}
		})
	}
	// A weight other than 0 and 1 scales its term.
	w := train.AllLosses
	w.Pixel = 2.5
	got := outcomeOf(t, m, b, &w, nil)
	want := full.values["ce_ego"][0] + full.values["ce_exo"][0] + 2.5*full.values["pixel"][0] + full.values["proto"][0]
	if math.Abs(float64(got.total-want)) > 1e-6*math.Abs(float64(want)) {
		t.Errorf("pixel weight 2.5: total %v, want %v", got.total, want)
	}
	// Bad weights are errors naming the key.
	for _, bad := range []train.LossWeights{{CEEgo: -1, CEExo: 1}, {}, {Pixel: math.NaN(), CEEgo: 1}} {
		err := torch.WithScope(func(_ *torch.Scope) {
			g, _ := torch.NewGenerator(11, torch.CPU)
			if _, err := m.Forward(b, train.Options{Discovery: discovery.DefaultOptions(), Gen: g, Weights: &bad}); err == nil {
				t.Errorf("weights %+v: no error", bad)
			} else {
				t.Logf("weights %+v: %v", bad, err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
