package torch_test

import (
	"math"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

// blockWeights returns random weights of a block of width c with the MLP 2c wide.
func blockWeights(g *torch.Generator, c, heads int64) *torch.BlockWeights {
	r := func(shape ...int64) *torch.Tensor { return torch.Randn(shape, g).MulScalar(0.1) }
	return &torch.BlockWeights{
		Norm1W: r(c).AddScalar(1), Norm1B: r(c), QKVW: r(3*c, c), QKVB: r(3 * c), ProjW: r(c, c), ProjB: r(c),
		Norm2W: r(c).AddScalar(1), Norm2B: r(c), FC1W: r(2*c, c), FC1B: r(2 * c), FC2W: r(c, 2*c), FC2B: r(c),
		Eps1: 1e-6, Eps2: 1e-5, Heads: heads,
	}
}

// A fused block is one shim call that counts each libtorch op it runs (21 for both blocks, as
// their op-by-op versions in models/dino and models/clip count), reads nothing and uploads
// nothing; a bias may be nil; a mask is taken by CLIPBlock only.
func TestFusedBlockCounters(t *testing.T) {
	g, err := torch.NewGenerator(2, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	w := blockWeights(g, 32, 4)
	x := torch.Randn([]int64{2, 7, 32}, g)
	mask := torch.Full([]int64{7, 7}, math.Inf(-1)).Triu(1).Reshape(1, 1, 7, 7)
	noBias := *w
	noBias.QKVB = nil
	for _, c := range []struct {
		name string
		fn   func() *torch.Tensor
	}{
		{"vit", func() *torch.Tensor { return torch.ViTBlock(x, w, 0.125) }},
		{"vit without qkv bias", func() *torch.Tensor { return torch.ViTBlock(x, &noBias, 0.125) }},
		{"clip", func() *torch.Tensor { return torch.CLIPBlock(x, nil, w) }},
		{"clip causal", func() *torch.Tensor { return torch.CLIPBlock(x, mask, w) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := torch.ReadCounters()
			y := c.fn()
			got := torch.ReadCounters().Sub(before)
			if want := (torch.Counters{Calls: 1, Ops: 21}); got != want {
				t.Errorf("counted %+v, want %+v", got, want)
			}
			if s := y.Shape(); len(s) != 3 || s[0] != 2 || s[1] != 7 || s[2] != 32 {
				t.Errorf("shape %v, want [2 7 32]", s)
			}
		})
	}
	err = torch.Try(func() { torch.ViTBlock(x, &torch.BlockWeights{Heads: 4}, 0.125) })
	if err == nil || !strings.Contains(err.Error(), "missing norm1 weight") {
		t.Errorf("ViTBlock without weights: error %v, want one naming the missing norm1 weight", err)
	}
}

// The backbones run their blocks without gradients, but the fused blocks are ordinary libtorch
// ops and keep autograd working: with grad mode on, every weight and the input get a finite,
// non-zero gradient.
func TestFusedBlockAutograd(t *testing.T) {
	g, err := torch.NewGenerator(4, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vit", "clip"} {
		t.Run(name, func(t *testing.T) {
			w := blockWeights(g, 16, 2)
			ws := []*torch.Tensor{w.Norm1W, w.Norm1B, w.QKVW, w.QKVB, w.ProjW, w.ProjB, w.Norm2W, w.Norm2B, w.FC1W, w.FC1B, w.FC2W, w.FC2B}
			x := torch.Randn([]int64{2, 5, 16}, g)
			for _, p := range append(ws, x) {
				p.SetRequiresGrad(true)
			}
			var y *torch.Tensor
			if name == "vit" {
				y = torch.ViTBlock(x, w, 0.25)
			} else {
				y = torch.CLIPBlock(x, nil, w)
			}
			y.Square().Sum().Backward()
			for i, p := range append(ws, x) {
				gr := p.Grad()
				if gr == nil {
					t.Fatalf("tensor %d: no gradient", i)
				}
				if s := gr.Abs().Sum().Item(); !(s > 0) || math.IsInf(s, 0) {
					t.Errorf("tensor %d: gradient |sum| %g, want finite and > 0", i, s)
				}
			}
		})
	}
}
