package dino

import (
	"fmt"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/testdev"
	"github.com/affgd/affgd/torch"
)

// withOpByOp runs fn with the blocks run op by op (fusedBlocks off), restoring the switch.
func withOpByOp(fn func()) {
	fusedBlocks = false
	defer func() { fusedBlocks = true }()
	fn()
}

// TestFusedBlocksBitwise: the fused blocks (torch.ViTBlock, one shim call per block) give
// exactly the op-by-op blocks' results — max |diff| 0, not a tolerance — for Forward and
// Features, in float32 and with bfloat16 and float16 backbones, batches of 1 and 3, square
// inputs and non-square ones (whose positional embedding is interpolated), with 4 heads of 24
// (logit scale 24^-½, not a power of two) and 6 heads of 16; and "ops launched" counts the same
// libtorch ops either way while the shim calls drop. On the test device ($AFFGD_TEST_DEVICE): the
// fused and the op-by-op block run the same kernels there too.
func TestFusedBlocksBitwise(t *testing.T) {
	dev := testdev.Device(t)
	g, err := torch.NewGenerator(7, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]*ViT{}
	for _, heads := range []int64{4, 6} {
		cfg := Config{EmbedDim: 96, Depth: 3, Heads: heads, PatchSize: 16, ImgSize: 64, InChans: 3,
			MLPRatio: 4, QKVBias: true, Eps: 1e-6}
		m, err := New(cfg, g, dev)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		models[fmt.Sprint(heads)] = m
	}
	for _, c := range []struct {
		heads string
		dt    torch.DType
		b     int64
		h, w  int64
	}{
		{"4", torch.Float32, 1, 64, 64},
		{"4", torch.Float32, 3, 64, 64},
		{"4", torch.Float32, 3, 48, 80},
		{"6", torch.Float32, 1, 80, 48},
		{"6", torch.Float32, 3, 64, 64},
		{"4", torch.BFloat16, 1, 64, 64},
		{"4", torch.BFloat16, 3, 48, 80},
		{"6", torch.BFloat16, 3, 64, 64},
		{"6", torch.Float16, 3, 80, 48},
	} {
		name := fmt.Sprintf("heads%s/%s/B%d/%dx%d", c.heads, c.dt, c.b, c.h, c.w)
		t.Run(name, func(t *testing.T) {
			m := models[c.heads]
			if err := m.SetComputeDType(c.dt); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.SetComputeDType(torch.Float32) }()
			x := torch.Randn([]int64{c.b, 3, c.h, c.w}, g).To(dev)
			run := func() (fwd *torch.Tensor, feat *Output, n torch.Counters) {
				before := torch.ReadCounters()
				if fwd, err = m.Forward(x); err != nil {
					t.Fatal(err)
				}
				if feat, err = m.Features(x); err != nil {
					t.Fatal(err)
				}
				return fwd, feat, torch.ReadCounters().Sub(before)
			}
			fwd, feat, fused := run()
			var wantFwd *torch.Tensor
			var want *Output
			var ops torch.Counters
			withOpByOp(func() { wantFwd, want, ops = run() })
			for _, o := range []struct {
				what      string
				got, want *torch.Tensor
			}{
				{"Forward", fwd, wantFwd}, {"Features.Key", feat.Key, want.Key},
				{"Features.Attn", feat.Attn, want.Attn}, {"Features.SamHard", feat.SamHard, want.SamHard},
			} {
				if msg := testdev.Bitwise(o.got, o.want); msg != "" {
					t.Errorf("%s: fused vs op by op: %s", o.what, msg)
				}
			}
			// Forward runs 3 full blocks, Features 2: 5 fused calls, each standing for the calls
			// of one op-by-op block.
			if fused.Ops != ops.Ops || fused.Reads != ops.Reads || fused.Uploads != ops.Uploads {
				t.Errorf("counters fused %+v, op by op %+v: ops, reads and uploads must agree", fused, ops)
			}
			var perBlock torch.Counters
			if err := torch.NoGradScope(func(*torch.Scope) {
				tok := m.net().tokens(m.in(x))
				before := torch.ReadCounters()
				m.net().Blocks[0].forwardOps(tok)
				perBlock = torch.ReadCounters().Sub(before)
			}); err != nil {
				t.Fatal(err)
			}
			t.Logf("one op-by-op block: %v; fused: 1 call (%d ops)", perBlock, perBlock.Ops)
			if got, want := ops.Calls-fused.Calls, 5*(perBlock.Calls-1); got != want || got <= 0 {
				t.Errorf("fused blocks saved %d shim calls, want %d (%+v vs %+v)", got, want, fused, ops)
			}
		})
	}
}

// TestFusedBlockErrors: bad block inputs give the shim's error, not a crash.
func TestFusedBlockErrors(t *testing.T) {
	g, err := torch.NewGenerator(1, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{EmbedDim: 64, Depth: 1, Heads: 4, PatchSize: 16, ImgSize: 32, InChans: 3,
		MLPRatio: 2, QKVBias: true, Eps: 1e-6}, g)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	b := m.Blocks[0]
	for _, c := range []struct {
		name string
		fn   func()
		want string
	}{
		{"2-d tokens", func() { torch.ViTBlock(torch.Zeros([]int64{5, 64}), b.weights(), 0.25) }, "expected tokens (B, N, C)"},
		{"heads", func() {
			w := b.weights()
			w.Heads = 5
			torch.ViTBlock(torch.Zeros([]int64{1, 5, 64}), w, 0.25)
		}, "not a positive multiple of the head count 5"},
		{"width", func() { torch.ViTBlock(torch.Zeros([]int64{1, 5, 32}), b.weights(), 0.25) }, "vit_block"},
		{"missing norm", func() {
			w := b.weights()
			w.Norm2W = nil
			torch.ViTBlock(torch.Zeros([]int64{1, 5, 64}), w, 0.25)
		}, "missing norm2 weight"},
		{"nil weights", func() { torch.CLIPBlock(torch.Zeros([]int64{1, 5, 64}), nil, nil) }, "nil block weights"},
		{"nil input", func() { torch.ViTBlock(nil, b.weights(), 0.25) }, "nil tensor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := torch.Try(c.fn)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

// BenchmarkBlock times one ViT-S/16 block on the tokens of B=8 images at 224² (197 tokens),
// fused and op by op, to show that fusing the calls costs no compute time:
// go test -run - -bench Block ./models/dino.
func BenchmarkBlock(b *testing.B) {
	g, err := torch.NewGenerator(1, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	cfg := ViTS16()
	cfg.Depth = 1
	m, err := New(cfg, g)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	x := torch.Randn([]int64{8, 197, cfg.EmbedDim}, g)
	for _, fused := range []bool{true, false} {
		b.Run(fmt.Sprintf("fused=%v", fused), func(b *testing.B) {
			fusedBlocks = fused
			defer func() { fusedBlocks = true }()
			for range b.N {
				if err := run("bench", func(*torch.Scope) { blocks(m.Blocks, x) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
