package torch_test

import (
	"slices"
	"testing"

	"github.com/affgd/affgd/torch"
)

// PinMemory gives a pinned copy where CUDA is available and falls back to the tensor itself on
// CPU-only libtorch; ToAsync copies the same values (here CPU to CPU: no upload counted).
func TestPinMemoryAndToAsync(t *testing.T) {
	err := torch.WithScope(func(*torch.Scope) {
		x := torch.FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
		p, pinned := x.PinMemory()
		if pinned != torch.CUDAIsAvailable() {
			t.Errorf("pinned %v with CUDA available %v", pinned, torch.CUDAIsAvailable())
		}
		if !slices.Equal(p.Float32s(), x.Float32s()) || !slices.Equal(p.Shape(), x.Shape()) {
			t.Errorf("pinned copy %v %v, want %v %v", p.Shape(), p.Float32s(), x.Shape(), x.Float32s())
		}
		before := torch.ReadCounters()
		y := p.ToAsync(torch.CPU)
		if got := torch.ReadCounters().Sub(before); got.Uploads != 0 || got.Reads != 0 {
			t.Errorf("CPU to CPU counted %+v", got)
		}
		if !slices.Equal(y.Float32s(), x.Float32s()) {
			t.Errorf("ToAsync %v, want %v", y.Float32s(), x.Float32s())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A tensor on a GPU cannot be pinned: one clear error (only reachable with a GPU).
	if torch.CUDAIsAvailable() {
		err := torch.Try(func() { torch.Zeros([]int64{2}, torch.CUDA(0)).PinMemory() })
		if err == nil {
			t.Error("PinMemory of a CUDA tensor: no error")
		}
	}
}
