package torch_test

import (
	"sync"
	"testing"

	"github.com/affgd/affgd/torch"
)

// TestConcurrentGoroutines runs scoped computations on several goroutines at once, some under
// NoGrad and some recording gradients, and checks that grad mode and scopes do not leak between
// them (libtorch keeps both per OS thread; the package pins goroutines while they are active).
// Run with -race by `make test`.
func TestConcurrentGoroutines(t *testing.T) {
	const workers, iters = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < iters; i++ {
				err := torch.WithScope(func(s *torch.Scope) {
					x := torch.Full([]int64{4, 4}, float64(w+1)).SetRequiresGrad(true)
					if w%2 == 0 {
						torch.NoGrad(func() {
							y := x.Mul(x)
							if y.RequiresGrad() {
								torch.Fail("test", "worker %d: result records gradients under NoGrad", w)
							}
						})
						return
					}
					torch.EnableGrad(func() {
						y := x.Mul(x).Sum()
						y.Backward()
						if got, want := x.Grad().Sum().Item(), float64(2*(w+1)*16); got != want {
							torch.Fail("test", "worker %d: grad sum %v, want %v", w, got, want)
						}
					})
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestScopeRules checks keep, escape and nesting.
func TestScopeRules(t *testing.T) {
	outer := torch.NewScope()
	a := torch.Zeros([]int64{3})
	inner := torch.NewScope()
	b := torch.Ones([]int64{3})
	c := inner.Keep(b.AddScalar(1))
	d := torch.Escape(b.AddScalar(2))
	inner.Close()
	if !b.Released() || c.Released() || d.Released() || a.Released() {
		t.Fatalf("after inner close: b released %v (want true), c %v, d %v, a %v (want false)", b.Released(), c.Released(), d.Released(), a.Released())
	}
	outer.Close()
	if !a.Released() || !c.Released() || d.Released() {
		t.Fatalf("after outer close: a %v c %v (want released), d %v (want live)", a.Released(), c.Released(), d.Released())
	}
	if got := d.Float32s(); got[0] != 3 {
		t.Fatalf("escaped tensor holds %v", got)
	}
	d.Free()
	if !d.Released() {
		t.Fatal("Free did not release")
	}
	if err := torch.Try(func() { d.AddScalar(1) }); err == nil {
		t.Fatal("use after Free gave no error")
	}
}
