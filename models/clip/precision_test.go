package clip_test

import (
	"strings"
	"testing"

	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/torch"
)

// TestVisualDType runs DenseFeatures with the image tower in bfloat16 and float16: float32
// output close to float32's (a few % of the scale for bfloat16's 8 significant bits; not
// parity), the text tower and every weight of the model unchanged, float32 exact again, an
// integer dtype refused.
func TestVisualDType(t *testing.T) {
	g, err := torch.NewGenerator(tinySeed, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	m, err := clip.New(tinyCfg, g)
	if err != nil {
		t.Fatal(err)
	}
	x := torch.Randn([]int64{2, 3, 64, 64}, g)
	ref, err := m.DenseFeatures(x)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, 77)
	copy(ids, []int64{998, 5, 17, 999})
	tokens := torch.FromSlice(ids, 1, 77)
	text, err := m.EncodeText(tokens)
	if err != nil {
		t.Fatal(err)
	}
	scale := ref.Abs().Max().Item()
	for _, c := range []struct {
		dt  torch.DType
		tol float64
	}{{torch.BFloat16, 5e-2}, {torch.Float16, 5e-3}} {
		if err := m.SetVisualDType(c.dt); err != nil {
			t.Fatal(err)
		}
		got, err := m.DenseFeatures(x)
		if err != nil {
			t.Fatalf("%s: %v", c.dt, err)
		}
		if got.DType() != torch.Float32 {
			t.Fatalf("%s: features are %s, want float32", c.dt, got.DType())
		}
		d := got.Sub(ref).Abs().Max().Item() / scale
		t.Logf("%s: dense features differ from float32 by %.3g of their scale", c.dt, d)
		if d > c.tol || d == 0 {
			t.Errorf("%s: dense features differ by %.3g of their scale, want (0, %g]", c.dt, d, c.tol)
		}
		tx, err := m.EncodeText(tokens)
		if err != nil {
			t.Fatal(err)
		}
		if d := tx.Sub(text).Abs().Max().Item(); d != 0 {
			t.Errorf("%s: text features changed by %g", c.dt, d)
		}
		for _, n := range m.NamedTensors() {
			if n.Tensor.DType() != torch.Float32 {
				t.Fatalf("%s: weight %s became %s", c.dt, n.Name, n.Tensor.DType())
			}
		}
	}
	if err := m.SetVisualDType(torch.Float32); err != nil {
		t.Fatal(err)
	}
	back, err := m.DenseFeatures(x)
	if err != nil {
		t.Fatal(err)
	}
	if d := back.Sub(ref).Abs().Max().Item(); d != 0 {
		t.Errorf("float32 again: features differ by %g", d)
	}
	if err := m.SetVisualDType(torch.Int8); err == nil || !strings.Contains(err.Error(), "bfloat16") {
		t.Errorf("int8: error %v, want one listing the valid dtypes", err)
	}
}
