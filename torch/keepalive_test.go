package torch_test

import (
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/affgd/affgd/torch"
)

// A tensor used only as an argument of a running op must not be freed by its collection cleanup
// before the op returns: every wrapper keeps its tensors alive across the C call. Chains of
// temporaries with a collector running all the time would read freed memory otherwise (seen as
// corrupted results under GOGC=5 before the wrappers had runtime.KeepAlive).
func TestTemporariesSurviveCollection(t *testing.T) {
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		for !stop.Load() {
			runtime.GC()
		}
		close(done)
	}()
	defer func() { stop.Store(true); <-done }()
	const n = 1 << 16
	want := float64(n) * float64(n-1) // Σ 2i over i < n
	for i := 0; i < 1000; i++ {
		// No scope: each intermediate is reachable only while its op runs.
		got := torch.Arange(0, n, 1, torch.Float64).MulScalar(2).AddScalar(1).AddScalar(-1).Sum().Item()
		if got != want {
			t.Fatalf("iteration %d: sum %v, want %v: an argument was freed during its op", i, got, want)
		}
	}
}
