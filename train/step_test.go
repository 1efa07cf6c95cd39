package train_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/internal/testref"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
	"github.com/affgd/affgd/train"
)

// tinyModel writes tiny random backbones in the published formats and loads them as a user would.
func tinyModel(t *testing.T) *train.Model {
	t.Helper()
	dir := t.TempDir()
	dcfg := dino.ViTS16()
	dcfg.Depth = 2 // width 384 and 6 heads stay: the head and the saliency need them
	dcfg.ImgSize = 64
	if err := dino.WriteRandom(filepath.Join(dir, "dino.pth"), dcfg, 1); err != nil {
		t.Fatal(err)
	}
	ccfg := clip.Config{EmbedDim: 32, VisionWidth: 128, VisionLayers: 2, PatchSize: 16, GridSize: 4,
		ContextLength: 77, VocabSize: 49408, TextWidth: 128, TextLayers: 2}
	if err := clip.WriteRandom(filepath.Join(dir, "clip.pt"), ccfg, 2, clip.FormatTorchScript); err != nil {
		t.Fatal(err)
	}
	m, err := train.Load(train.Files{DINO: filepath.Join(dir, "dino.pth"), CLIP: filepath.Join(dir, "clip.pt"),
		Vocab: filepath.Join(testref.Dir(t, "tokenizer"), "bpe_simple_vocab_16e6.txt.gz"), Divide: data.HICO, Seed: 3, Device: testdev.Device(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// batch draws a random batch on g's device.
func batch(g *torch.Generator, b, e int64) train.Batch {
	d := g.Device()
	return train.Batch{
		Exo:   torch.Randn([]int64{b, e, 3, 64, 64}, g, d),
		Ego:   torch.Randn([]int64{b, 3, 64, 64}, g, d),
		Label: torch.Randint(0, 10, []int64{b}, g, d),
	}
}

// TestStepStaysOnTheModelsDevice runs a step and inference with the model, the batch and the
// K-means generator on the test device and checks that every tensor the step returns is on that
// device, so no CPU constant meets a CUDA tensor (run with AFFGD_TEST_DEVICE=cuda:0 on a GPU; on
// the CPU it exercises the same device-parameterised path), and that a generator on another
// device than the model is refused with a message naming both.
func TestStepStaysOnTheModelsDevice(t *testing.T) {
	m := tinyModel(t)
	dev := testdev.Device(t)
	g, err := torch.NewGenerator(7, dev)
	if err != nil {
		t.Fatal(err)
	}
	err = torch.WithScope(func(*torch.Scope) {
		for epoch := 0; epoch < 2; epoch++ {
			d, err := m.DebugStep(batch(g, 2, 3), train.Options{Epoch: epoch, Discovery: discovery.DefaultOptions(), Gen: g})
			if err != nil {
				t.Fatal(err)
			}
			for name, x := range d.Arrays {
				if x.Device() != dev {
					t.Errorf("epoch %d: %s is on %s, the model on %s", epoch, name, x.Device(), dev)
				}
			}
		}
		mp, err := m.Infer(batch(g, 2, 3))
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range map[string]*torch.Tensor{"cam": mp.CAM, "ree": mp.REE, "rem": mp.REM} {
			if x.Device() != dev {
				t.Errorf("infer: %s is on %s, the model on %s", name, x.Device(), dev)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStepsRunWithFlatMemory trains a tiny random model for a few steps at epochs 0 and 1: every
// loss is finite, the head's parameters move, and the live tensor count stays flat from step to
// step (one scope per step). Parity with the PyTorch reference is tested in parity_test.go.
func TestStepsRunWithFlatMemory(t *testing.T) {
	m := tinyModel(t)
	opt, err := optim.NewSGD(m.Head.ParamGroups(0.001))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := torch.NewGenerator(5, testdev.Device(t))
	before := m.Head.AffProj.FC1.Weight.Detach().Clone().Float32s()
	var live []int64
	for step := 0; step < 6; step++ {
		err := torch.WithScope(func(s *torch.Scope) {
			r, err := m.Forward(batch(g, 2, 3), train.Options{Epoch: step / 3, Discovery: discovery.DefaultOptions(), Gen: g})
			if err != nil {
				t.Fatal(err)
			}
			for name, l := range map[string]*torch.Tensor{"ce_ego": r.LCeEgo, "ce_exo": r.LCeExo, "pix": r.LPix, "proto": r.LProto} {
				if v := l.Sum().Item(); math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("step %d: %s loss %v", step, name, v)
				}
			}
			opt.ZeroGrad()
			r.Loss.Backward()
			opt.Step()
		})
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, testref.Settle(torch.LiveTensors))
	}
	if live[len(live)-1] > live[1] {
		t.Errorf("live tensors grew from step to step: %v", live)
	}
	after := m.Head.AffProj.FC1.Weight.Detach().Float32s()
	moved := false
	for i := range after {
		if after[i] != before[i] {
			moved = true
			break
		}
	}
	if !moved {
		t.Error("the optimizer did not change aff_proj.fc1.weight")
	}
	err = torch.WithScope(func(s *torch.Scope) {
		mp, err := m.Infer(batch(g, 2, 3))
		if err != nil {
			t.Fatal(err)
		}
		if got := mp.REE.Shape(); len(got) != 3 || got[1] != 4 || got[2] != 4 {
			t.Errorf("ree map shape %v, want (2, 4, 4)", got)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStepRejectsBadBatches checks that malformed batches are errors naming the problem.
func TestStepRejectsBadBatches(t *testing.T) {
	m := tinyModel(t)
	g, _ := torch.NewGenerator(1, testdev.Device(t))
	for _, c := range []struct {
		name string
		b    func() train.Batch
	}{
		{"exo 4-d", func() train.Batch { b := batch(g, 2, 3); b.Exo = b.Exo.Flatten(0, 1); return b }},
		{"ego size differs", func() train.Batch { b := batch(g, 2, 3); b.Ego = torch.Randn([]int64{2, 3, 32, 32}, g); return b }},
		{"float labels", func() train.Batch { b := batch(g, 2, 3); b.Label = b.Label.ToDType(torch.Float32); return b }},
		{"label out of range", func() train.Batch { b := batch(g, 2, 3); b.Label = torch.FromSlice([]int64{0, 10}); return b }},
		{"size not a multiple of 16", func() train.Batch {
			return train.Batch{Exo: torch.Randn([]int64{1, 3, 3, 60, 60}, g), Ego: torch.Randn([]int64{1, 3, 60, 60}, g), Label: torch.FromSlice([]int64{0})}
		}},
	} {
		err := torch.WithScope(func(s *torch.Scope) {
			if _, err := m.Forward(c.b(), train.Options{Discovery: discovery.DefaultOptions(), Gen: g}); err == nil {
				t.Errorf("%s: no error", c.name)
			} else {
				t.Logf("%s: %v", c.name, err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestStepFigures: the figures Model.Step reads in one copy equal what the trainer read from the
// result one value at a time (loss, terms, correct predictions, part-level samples, the empty
// counts, each clustered sample's best p in its bin), with and without host labels, and a
// zero-weight term is NaN (not computed).
func TestStepFigures(t *testing.T) {
	m := tinyModel(t)
	dev := testdev.Device(t)
	g, err := torch.NewGenerator(11, dev)
	if err != nil {
		t.Fatal(err)
	}
	const bins = 10
	err = torch.WithScope(func(*torch.Scope) {
		opt, err := optim.NewSGD(m.Head.ParamGroups(train.BaseLR))
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range []*train.LossWeights{nil, {CEEgo: 1, CEExo: 1, Pixel: 0, Proto: 1}, {CEEgo: 1, CEExo: 1, Pixel: 1, Proto: 0}} {
			b := batch(g, 4, 2)
			if i == 1 {
				b.Labels = b.Label.To(torch.CPU).Int64s()
			}
			var want train.StepFigures
			_, got, err := m.Step(b, opt, train.Options{Epoch: 1, Discovery: discovery.DefaultOptions(), Gen: g, Weights: w},
				train.StepOptions{PScoreBins: bins, AfterBackward: func(r *train.Result) {
					want.Loss = r.Loss.Item()
					for k, l := range []*torch.Tensor{r.LCeEgo, r.LCeExo, r.LPix, r.LProto} {
						want.Terms[k] = math.NaN()
						if l != nil {
							want.Terms[k] = l.Item()
						}
					}
					want.CorrectEgo = int(r.LogitsEgo.ArgmaxDim(1, false).Eq(b.Label).Sum().Item())
					want.CorrectExo = int(r.LogitsExo.MeanDims([]int64{1}, false).ArgmaxDim(1, false).Eq(b.Label).Sum().Item())
					if r.EmptyPixelSamples != nil {
						want.EmptyPixel = int(r.EmptyPixelSamples.ItemInt())
					}
					if r.EmptyProtoRows != nil {
						want.EmptyProto = int(r.EmptyProtoRows.ItemInt())
					}
					if r.Reliable != nil {
						want.Discovered, want.PartLevel = true, int(r.Reliable.Sum().Item())
						want.PScore = make([]int, bins)
						best, _ := r.PScore.MaxDim(1, false)
						for _, p := range best.To(torch.CPU).Float32s() {
							if math.IsNaN(float64(p)) {
								want.Unclustered++
								continue
							}
							want.PScore[min(max(int(float64(p)*bins), 0), bins-1)]++
						}
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			want.Samples = 4
			same := func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }
			ok := same(got.Loss, want.Loss) && got.CorrectEgo == want.CorrectEgo && got.CorrectExo == want.CorrectExo &&
				got.Samples == want.Samples && got.Discovered == want.Discovered && got.PartLevel == want.PartLevel &&
				got.EmptyPixel == want.EmptyPixel && got.EmptyProto == want.EmptyProto && got.Unclustered == want.Unclustered &&
				len(got.PScore) == len(want.PScore)
			for k := range got.Terms {
				ok = ok && same(got.Terms[k], want.Terms[k])
			}
			for k := range got.PScore {
				ok = ok && got.PScore[k] == want.PScore[k]
			}
			if !ok {
				t.Errorf("weights %v: figures %+v, want %+v", w, got, want)
			}
			if (w != nil && w.Pixel == 0) != math.IsNaN(got.Terms[2]) {
				t.Errorf("weights %v: L_pix %v", w, got.Terms[2])
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
