package evaluate

import (
	"errors"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

// TestBatchError: running out of device memory names the batch size and suggests a smaller one;
// other failures name the batch (or the image, at batch 1).
func TestBatchError(t *testing.T) {
	oom := errors.New("train: infer: torch: linear: CUDA out of memory. Tried to allocate 2.00 GiB")
	for _, c := range []struct {
		name string
		err  error
		n    int
		want []string
	}{
		{"out of memory", oom, 32, []string{"a batch of 32 test images does not fit in the memory of cuda:0", "--batch-size 16", "eval_batch_size", "Tried to allocate"}},
		{"out of memory at 1", oom, 1, []string{"a batch of 1 test images", "--batch-size 1"}},
		{"other", errors.New("bad shape"), 4, []string{"the batch of 4 test images from a.png", "bad shape"}},
		{"other at 1", errors.New("bad shape"), 1, []string{"a.png: bad shape"}},
	} {
		got := batchError(c.err, c.n, "a.png", torch.CUDA(0))
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q does not hold %q", c.name, got, w)
			}
		}
	}
}
