package trainer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

// The prefetching loop (batch i+1 taken and its copy queued before step i) and its fallback
// without a copy stream (blocking copies) train the same steps to the same losses, log the
// loader's wait, and the fallback says why.
func TestCopyStreamFallbackSameLosses(t *testing.T) {
	s := smallSynth(t)
	run := func(fail bool) *recorder {
		c := smallConfig(t, s)
		c.Epochs = 1
		if fail {
			defer func(f func(torch.Device) (*torch.CopyStream, error)) { newCopyStream = f }(newCopyStream)
			newCopyStream = func(torch.Device) (*torch.CopyStream, error) { return nil, errors.New("no stream for you") }
		}
		rec := &recorder{}
		if err := Run(context.Background(), c, false, rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	with, without := run(false), run(true)
	if len(with.steps) != 3 || len(without.steps) != 3 {
		t.Fatalf("%d and %d steps, want 3", len(with.steps), len(without.steps))
	}
	for i := range with.steps {
		a, b := with.steps[i].Losses, without.steps[i].Losses
		for k, v := range a {
			if b[k] != v {
				t.Errorf("step %d %s: %v with the copy stream, %v without", i, k, v, b[k])
			}
		}
	}
	has := func(r *recorder, want string) bool {
		for _, l := range r.logs {
			if strings.Contains(l, want) {
				return true
			}
		}
		return false
	}
	for _, r := range []*recorder{with, without} {
		if !has(r, "data: the first step waited") || !has(r, "the 2 others") {
			t.Errorf("no loader wait in the log: %q", r.logs)
		}
	}
	if !has(without, "data: no copy stream") || !has(without, "no stream for you") || has(with, "no copy stream") {
		t.Errorf("fallback notice: with %q, without %q", with.logs, without.logs)
	}
}
