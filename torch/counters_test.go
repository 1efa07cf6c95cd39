package torch_test

import (
	"testing"

	"github.com/affgd/affgd/torch"
)

// The counters count what each call does: a launch, a read of values by the host, an upload.
func TestCounters(t *testing.T) {
	x := torch.FromSlice([]float32{1, -2, 3, -4}, 4)
	mask := x.GtScalar(0)
	for _, c := range []struct {
		name string
		fn   func()
		want torch.Counters // Calls is checked to be ≥ Ops
	}{
		{"fact", func() { _ = x.Shape() }, torch.Counters{}},
		{"op", func() { x.AddScalar(1) }, torch.Counters{Ops: 1}},
		{"view", func() { x.Reshape(2, 2) }, torch.Counters{Ops: 1}},
		{"item", func() { x.Sum().Item() }, torch.Counters{Ops: 2, Reads: 1}},
		{"copy to host", func() { x.Float32s() }, torch.Counters{Ops: 1, Reads: 1}},
		{"nonzero", func() { mask.Nonzero() }, torch.Counters{Ops: 1, Reads: 1}},
		{"masked_select", func() { x.MaskedSelect(mask) }, torch.Counters{Ops: 1, Reads: 1}},
		{"mask index", func() { x.Index(mask) }, torch.Counters{Ops: 1, Reads: 1}},
		{"integer index", func() { x.Index(torch.Arange(0, 2, 1)) }, torch.Counters{Ops: 2}},
		{"upload", func() { torch.FromSlice([]int64{1, 2}, 2) }, torch.Counters{Ops: 1, Uploads: 1}},
		{"to cpu on cpu", func() { x.To(torch.CPU) }, torch.Counters{Ops: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := torch.ReadCounters()
			c.fn()
			got := torch.ReadCounters().Sub(before)
			if got.Ops != c.want.Ops || got.Reads != c.want.Reads || got.Uploads != c.want.Uploads || got.Calls < got.Ops {
				t.Fatalf("counted %+v, want %+v (calls ≥ ops)", got, c.want)
			}
		})
	}
	torch.ResetCounters()
	if got := torch.ReadCounters(); got != (torch.Counters{}) {
		t.Fatalf("after reset: %+v", got)
	}
}
