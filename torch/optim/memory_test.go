package optim_test

import (
	"github.com/affgd/affgd/internal/testref"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
)

// rssBytes reads the process's resident set size from /proc (Linux).
func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestTrainingLoopMemoryIsFlat runs 200 forward/backward/step iterations of a small conv model
// with one scope per step and checks that the shim's live tensor count and bytes are the same
// after every step as after the first, and that the process's RSS does not grow.
func TestTrainingLoopMemoryIsFlat(t *testing.T) {
	g, err := torch.NewGenerator(0, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	var w1, b1, w2, b2, rm, rv *torch.Tensor
	torch.NoGrad(func() {
		w1 = torch.Randn([]int64{16, 3, 3, 3}, g).MulScalar(0.1).SetRequiresGrad(true)
		b1 = torch.Zeros([]int64{16}).SetRequiresGrad(true)
		w2 = torch.Randn([]int64{10, 16}, g).MulScalar(0.1).SetRequiresGrad(true)
		b2 = torch.Zeros([]int64{10}).SetRequiresGrad(true)
		rm, rv = torch.Zeros([]int64{16}), torch.Ones([]int64{16})
	})
	opt, err := optim.NewSGD([]optim.ParamGroup{{Params: []*torch.Tensor{w1, b1, w2, b2}, LR: 0.01, Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4}})
	if err != nil {
		t.Fatal(err)
	}
	var live0, bytes0, rss0 int64
	for i := 0; i < 200; i++ {
		err := torch.WithScope(func(s *torch.Scope) {
			x := torch.Randn([]int64{8, 3, 32, 32}, g)
			y := torch.Randint(0, 10, []int64{8}, g)
			h := torch.Conv2d(x, w1, b1, torch.Conv2dOptions{Padding: [2]int64{1, 1}})
			h = torch.BatchNorm(h, nil, nil, rm, rv, true, 0.1, 1e-5).Relu()
			h = h.MeanDims([]int64{2, 3}, false)
			loss := torch.CrossEntropy(torch.Linear(h, w2, b2), y, torch.ReduceMean)
			opt.ZeroGrad()
			loss.Backward()
			opt.Step()
		})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 1: // after the momentum buffers and gradients exist
			// Let the collector free garbage left by earlier tests first, so that only this
			// loop's tensors can move the counts (they may only go down from here, never up).
			live0 = testref.Settle(torch.LiveTensors)
			bytes0, rss0 = torch.LiveBytes(), rssBytes(t)
		case i > 1:
			if l, b := torch.LiveTensors(), torch.LiveBytes(); l > live0 || b > bytes0 {
				t.Fatalf("step %d: %d live tensors (%d bytes), after step 1: %d (%d bytes)", i, l, b, live0, bytes0)
			}
		}
	}
	// RSS may wobble with the allocator; growth of 64 MiB over 200 steps would be a leak of
	// ~330 KiB a step — more than this model's activations.
	if grow := rssBytes(t) - rss0; grow > 64<<20 {
		t.Errorf("RSS grew by %d MiB over 198 steps", grow>>20)
	}
}
