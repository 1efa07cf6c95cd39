package clip

import (
	"fmt"
	"math"
	"testing"

	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// withOpByOp runs fn with the blocks run op by op (fusedBlocks off), restoring the switch.
func withOpByOp(fn func()) {
	fusedBlocks = false
	defer func() { fusedBlocks = true }()
	fn()
}

// TestFusedBlocksBitwise: with the fused blocks (torch.CLIPBlock, one shim call per block),
// DenseFeatures (the image tower's full blocks; the ClearCLIP last block stays op by op) and
// EncodeText (the causal text blocks) give exactly the op-by-op results — max |diff| 0 — in
// float32 and with the image tower in bfloat16 and float16, batches of 1 and 3, square and
// non-square images (interpolated positions), 2 and 3 heads; "ops launched", reads and uploads
// are the same either way, and each fused block saves the calls of one op-by-op block but one.
// On the test device ($AFFGD_TEST_DEVICE).
func TestFusedBlocksBitwise(t *testing.T) {
	dev := testdev.Device(t)
	g, err := torch.NewGenerator(5, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	models := map[int64]*Model{}
	for _, w := range []int64{128, 192} {
		m, err := New(Config{EmbedDim: 32, VisionWidth: w, VisionLayers: 3, PatchSize: 16, GridSize: 4,
			ContextLength: 77, VocabSize: 1000, TextWidth: w, TextLayers: 2}, g)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		if err := m.To(dev); err != nil {
			t.Fatal(err)
		}
		models[w] = m
	}
	for _, c := range []struct {
		width int64
		dt    torch.DType
		b     int64
		h, w  int64
	}{
		{128, torch.Float32, 1, 64, 64},
		{128, torch.Float32, 3, 64, 64},
		{128, torch.Float32, 3, 48, 80},
		{192, torch.Float32, 1, 80, 48},
		{192, torch.Float32, 3, 64, 64},
		{128, torch.BFloat16, 1, 64, 64},
		{128, torch.BFloat16, 3, 48, 80},
		{192, torch.BFloat16, 3, 64, 64},
		{192, torch.Float16, 3, 80, 48},
	} {
		t.Run(fmt.Sprintf("width%d/%s/B%d/%dx%d", c.width, c.dt, c.b, c.h, c.w), func(t *testing.T) {
			m := models[c.width]
			if err := m.SetVisualDType(c.dt); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.SetVisualDType(torch.Float32) }()
			x := torch.Randn([]int64{c.b, 3, c.h, c.w}, g).To(dev)
			ids := make([]int64, c.b*77)
			for i := range c.b {
				copy(ids[i*77:], []int64{998, 5 + i, 17, 300 + 7*i, 999})
			}
			tokens := torch.FromSliceOn(ids, dev, c.b, 77)
			run := func() (dense, text *torch.Tensor, n torch.Counters) {
				before := torch.ReadCounters()
				if dense, err = m.DenseFeatures(x); err != nil {
					t.Fatal(err)
				}
				if text, err = m.EncodeText(tokens); err != nil {
					t.Fatal(err)
				}
				return dense, text, torch.ReadCounters().Sub(before)
			}
			dense, text, fused := run()
			var wantDense, wantText *torch.Tensor
			var ops torch.Counters
			withOpByOp(func() { wantDense, wantText, ops = run() })
			if msg := testdev.Bitwise(dense, wantDense); msg != "" {
				t.Errorf("DenseFeatures: fused vs op by op: %s", msg)
			}
			if msg := testdev.Bitwise(text, wantText); msg != "" {
				t.Errorf("EncodeText: fused vs op by op: %s", msg)
			}
			if fused.Ops != ops.Ops || fused.Reads != ops.Reads || fused.Uploads != ops.Uploads {
				t.Errorf("counters fused %+v, op by op %+v: ops, reads and uploads must agree", fused, ops)
			}
			var perBlock torch.Counters
			if err := torch.NoGradScope(func(*torch.Scope) {
				tok := torch.Zeros([]int64{c.b, 10, c.width}, dev)
				before := torch.ReadCounters()
				m.Transformer.Resblocks[0].forwardOps(tok, nil)
				perBlock = torch.ReadCounters().Sub(before)
			}); err != nil {
				t.Fatal(err)
			}
			// 2 full image blocks and 2 text blocks.
			if got, want := ops.Calls-fused.Calls, 4*(perBlock.Calls-1); got != want || got <= 0 {
				t.Errorf("fused blocks saved %d shim calls, want %d (%v vs %v)", got, want, fused, ops)
			}
		})
	}
}

// TestFusedBlockDirect compares one block, fused and op by op, on tokens of every dtype the
// towers may run in, with the causal text mask and without one, on the test device.
func TestFusedBlockDirect(t *testing.T) {
	dev := testdev.Device(t)
	g, err := torch.NewGenerator(9, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{EmbedDim: 32, VisionWidth: 128, VisionLayers: 1, PatchSize: 16, GridSize: 2,
		ContextLength: 77, VocabSize: 100, TextWidth: 128, TextLayers: 1}, g)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.To(dev); err != nil {
		t.Fatal(err)
	}
	for _, dt := range []torch.DType{torch.Float32, torch.BFloat16, torch.Float16} {
		for _, causal := range []bool{false, true} {
			for _, b := range []int64{1, 3} {
				t.Run(fmt.Sprintf("%s/causal=%v/B%d", dt, causal, b), func(t *testing.T) {
					err := torch.NoGradScope(func(*torch.Scope) {
						blk := castBlock(m.Transformer.Resblocks[0], dt)
						x := torch.Randn([]int64{b, 13, 128}, g).ToDType(dt).To(dev)
						var mask *torch.Tensor
						if causal {
							mask = torch.Full([]int64{13, 13}, math.Inf(-1), dt, dev).Triu(1).Reshape(1, 1, 13, 13)
						}
						got := blk.forward(x, mask)
						var want *torch.Tensor
						withOpByOp(func() { want = blk.forward(x, mask) })
						if msg := testdev.Bitwise(got, want); msg != "" {
							t.Errorf("fused vs op by op: %s", msg)
						}
					})
					if err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// castBlock returns a copy of b's weights in dt (in the open scope).
func castBlock(b *Block, dt torch.DType) *Block {
	ln := func(l *nn.LayerNorm) *nn.LayerNorm {
		return &nn.LayerNorm{Weight: l.Weight.ToDType(dt), Bias: l.Bias.ToDType(dt), Eps: l.Eps}
	}
	lin := func(l *nn.Linear) *nn.Linear {
		return &nn.Linear{Weight: l.Weight.ToDType(dt), Bias: l.Bias.ToDType(dt)}
	}
	return &Block{
		Ln1: ln(b.Ln1), Ln2: ln(b.Ln2), CFc: lin(b.CFc), CProj: lin(b.CProj),
		Attn: &Attention{InProjWeight: b.Attn.InProjWeight.ToDType(dt), InProjBias: b.Attn.InProjBias.ToDType(dt),
			OutProj: lin(b.Attn.OutProj), Heads: b.Attn.Heads},
	}
}

// BenchmarkDenseFeatures times the full-size ViT-B/16 image tower on 8 images at 224², fused
// and op by op, alternating: go test -run - -bench DenseFeatures ./models/clip.
func BenchmarkDenseFeatures(b *testing.B) {
	g, err := torch.NewGenerator(1, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	cfg := ViTB16()
	cfg.TextLayers = 1
	m, err := New(cfg, g)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	x := torch.Randn([]int64{8, 3, 224, 224}, g)
	for _, fused := range []bool{true, false} {
		b.Run(fmt.Sprintf("fused=%v", fused), func(b *testing.B) {
			fusedBlocks = fused
			defer func() { fusedBlocks = true }()
			for range b.N {
				y, err := m.DenseFeatures(x)
				if err != nil {
					b.Fatal(err)
				}
				y.Free()
			}
		})
	}
}
