package dino_test

import (
	"strings"
	"testing"

	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/torch"
)

// TestComputeDType runs Features in bfloat16 and float16: the outputs stay float32 and close to
// float32's (these dtypes keep 8 and 11 significant bits, so a tolerance of a few % of the
// features' scale; this is a speed option, not parity), the model's own weights stay float32,
// float32 restores the exact result, and an integer dtype is refused.
func TestComputeDType(t *testing.T) {
	cfg := dino.Config{EmbedDim: 64, Depth: 2, Heads: 4, PatchSize: 16, ImgSize: 64, InChans: 3,
		MLPRatio: 4, QKVBias: true, Eps: 1e-6, SaliencyHeads: []int64{0, 1, 3}}
	g, err := torch.NewGenerator(3, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dino.New(cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	x := torch.Randn([]int64{2, 3, 64, 64}, g)
	ref, err := m.Features(x)
	if err != nil {
		t.Fatal(err)
	}
	scale := ref.Key.Abs().Max().Item()
	for _, c := range []struct {
		dt  torch.DType
		tol float64
	}{{torch.BFloat16, 5e-2}, {torch.Float16, 5e-3}} {
		if err := m.SetComputeDType(c.dt); err != nil {
			t.Fatal(err)
		}
		if got := m.ComputeDType(); got != c.dt {
			t.Fatalf("ComputeDType %s, want %s", got, c.dt)
		}
		got, err := m.Features(x)
		if err != nil {
			t.Fatalf("%s: %v", c.dt, err)
		}
		if got.Key.DType() != torch.Float32 || got.Attn.DType() != torch.Float32 || got.SamHard.DType() != torch.Float32 {
			t.Fatalf("%s: outputs %s %s %s, want float32", c.dt, got.Key.DType(), got.Attn.DType(), got.SamHard.DType())
		}
		d := got.Key.Sub(ref.Key).Abs().Max().Item() / scale
		t.Logf("%s: keys differ from float32 by %.3g of their scale", c.dt, d)
		if d > c.tol || d == 0 {
			t.Errorf("%s: keys differ from float32 by %.3g of their scale, want (0, %g]", c.dt, d, c.tol)
		}
		for _, n := range m.NamedTensors() {
			if n.Tensor.DType() != torch.Float32 {
				t.Fatalf("%s: weight %s became %s", c.dt, n.Name, n.Tensor.DType())
			}
		}
	}
	if err := m.SetComputeDType(torch.Float32); err != nil {
		t.Fatal(err)
	}
	back, err := m.Features(x)
	if err != nil {
		t.Fatal(err)
	}
	if d := back.Key.Sub(ref.Key).Abs().Max().Item(); d != 0 {
		t.Errorf("float32 again: keys differ by %g", d)
	}
	if err := m.SetComputeDType(torch.Int8); err == nil || !strings.Contains(err.Error(), "bfloat16") {
		t.Errorf("int8: error %v, want one listing the valid dtypes", err)
	}
}
