package train

import (
	"time"

	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/head"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
)

// BenchStepOptions configure [BenchStep], the affgd side of `affgd bench step`.
type BenchStepOptions struct {
	Batch, Exo, Size int64 // B, E and the image side
	Epoch, Iters     int   // 0-based epoch; timed steps after one warm-up
	Device           torch.Device
	Tok              *tokenizer.Tokenizer
	Classes          []string
	CacheText        bool   // Model.CacheText
	BackboneDType    string // Precision.BackboneDType ("" or float32: parity)
	OnTimed          func() // called once before the first timed step (after the warm-up)
}

// BenchStepResult holds each timed step's seconds (whole step, backbones, the rest) and the
// shim's counters of each timed step.
type BenchStepResult struct {
	Steps, Backbones, Rests []float64
	Counts                  []torch.Counters // whole steps
	BackboneCounts          []torch.Counters // the backbones' part of them
}

// BenchStep times the training step of [Model.Step] on full-size random backbones (DINO
// ViT-S/16, CLIP ViT-B/16, seed 0) and random inputs, as `affgd bench step` does: each round
// runs the backbones, then the rest of the step from their features (head, part discovery,
// losses, backward, SGD) in one scope, timed apart, with the device synchronised between them.
// The labels are (5·i) mod K, as on the PyTorch side.
func BenchStep(o BenchStepOptions) (*BenchStepResult, error) {
	res := &BenchStepResult{}
	dev := o.Device
	err := torch.WithScope(func(s *torch.Scope) {
		g := mustGen(torch.NewGenerator(0, torch.CPU))
		// Generators on the device each builder feeds: DINO and the head draw their
		// initialisations there, CLIP is built on the CPU and moved once.
		gd := mustGen(torch.NewGenerator(0, dev))
		vit := must(dino.New(dino.ViTS16(), gd, dev))
		defer vit.Free()
		cm := must(clip.New(clip.ViTB16(), g))
		defer cm.Free()
		if err := cm.To(dev); err != nil {
			torch.Fail("bench", "%v", err)
		}
		m := &Model{DINO: vit, CLIP: cm, Head: head.New(int64(len(o.Classes)), gd, dev), Tok: o.Tok, Classes: o.Classes, CacheText: o.CacheText}
		if _, err := m.SetPrecision(Precision{BackboneDType: o.BackboneDType}, dev); err != nil {
			torch.Fail("bench", "--backbone-dtype: %v", err)
		}
		opt := must(optim.NewSGD(m.Head.ParamGroups(BaseLR)))
		labels := make([]int64, o.Batch)
		for i := range labels {
			labels[i] = int64(5*i) % int64(len(o.Classes))
		}
		b := Batch{
			Ego:    torch.Randn([]int64{o.Batch, 3, o.Size, o.Size}, g).To(dev),
			Exo:    torch.Randn([]int64{o.Batch, o.Exo, 3, o.Size, o.Size}, g).To(dev),
			Label:  torch.FromSliceOn(labels, dev, o.Batch),
			Labels: labels, // as the trainer's loader gives them
		}
		kg := mustGen(torch.NewGenerator(0, dev)) // draws the K-means initialisations, on the model's device
		opts := Options{Epoch: o.Epoch, Discovery: discovery.DefaultOptions(), Gen: kg}
		var cb torch.Counters
		round := func() (tb, tr float64) {
			err := torch.WithScope(func(*torch.Scope) {
				torch.Synchronize(dev)
				t0 := time.Now()
				c0 := torch.ReadCounters()
				f := must(m.Backbones(b))
				cb = torch.ReadCounters().Sub(c0)
				torch.Synchronize(dev)
				t1 := time.Now()
				// The trainer's step (Model.Step) from these features.
				if _, _, err := m.Step(b, opt, opts, StepOptions{Features: f, PScoreBins: 10}); err != nil {
					torch.Fail("bench", "%v", err)
				}
				torch.Synchronize(dev)
				tb, tr = t1.Sub(t0).Seconds(), time.Since(t1).Seconds()
			})
			if err != nil {
				torch.Fail("bench", "%v", err)
			}
			return tb, tr
		}
		for i := 0; i <= o.Iters; i++ { // one warm-up round
			if i == 1 && o.OnTimed != nil {
				o.OnTimed() // after the warm-up made the momentum buffers
			}
			before := torch.ReadCounters()
			tb, tr := round()
			if i > 0 {
				res.Steps, res.Backbones, res.Rests = append(res.Steps, tb+tr), append(res.Backbones, tb), append(res.Rests, tr)
				res.Counts = append(res.Counts, torch.ReadCounters().Sub(before))
				res.BackboneCounts = append(res.BackboneCounts, cb)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func mustGen(g *torch.Generator, err error) *torch.Generator { return must(g, err) }
