package torch_test

import (
	"errors"
	"strings"
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

// Keep takes only the tensors its scope holds: keeping an enclosing scope's tensor, keeping on a
// scope that is not the innermost, or on a closed one, is an error (a *torch.Error under Try),
// and changes nothing. A tensor in no scope needs no keeping.
func TestScopeKeepForeignTensor(t *testing.T) {
	outer := torch.NewScope()
	defer outer.Close()
	a := torch.Zeros([]int64{3})
	free := torch.Escape(torch.Ones([]int64{2}))
	defer free.Free()

	inner := torch.NewScope()
	own := torch.Ones([]int64{3})
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"an enclosing scope's tensor", func() { inner.Keep(a) }},
		{"own and foreign at once", func() { inner.Keep(own, a) }},
		{"on the enclosing scope", func() { outer.Keep(a) }},
	} {
		err := torch.Try(tc.fn)
		var te *torch.Error
		if !errors.As(err, &te) || te.Op != "scope_keep" {
			t.Errorf("Keep %s: error %v, want a *torch.Error of scope_keep", tc.name, err)
		}
	}
	if err := torch.Try(func() { inner.Keep(own, free) }); err != nil {
		t.Errorf("Keep of its own tensor and of one in no scope: %v", err)
	}
	inner.Close()
	if own.Released() || a.Released() {
		t.Errorf("after inner close: kept tensor released %v, enclosing scope's tensor released %v (want both live)", own.Released(), a.Released())
	}
	// own moved to outer: outer may keep it now; the closed inner may not keep anything.
	if err := torch.Try(func() { outer.Keep(own) }); err != nil {
		t.Errorf("outer Keep of a tensor moved to it: %v", err)
	}
	if err := torch.Try(func() { inner.Keep(own) }); err == nil {
		t.Error("Keep on a closed scope gave no error")
	}
}

// Another goroutine's scope's tensor cannot be kept either.
func TestScopeKeepOtherGoroutine(t *testing.T) {
	got := make(chan *torch.Tensor)
	release := make(chan struct{})
	go func() {
		s := torch.NewScope()
		defer s.Close()
		got <- torch.Ones([]int64{2})
		<-release
	}()
	x := <-got
	defer close(release)
	s := torch.NewScope()
	defer s.Close()
	if err := torch.Try(func() { s.Keep(x) }); err == nil {
		t.Error("Keep of another goroutine's scope's tensor gave no error")
	}
}

// Closing scopes out of order inside Try is an error, not a crash, and leaves both scopes open
// and closable in the right order.
func TestScopeCloseOutOfOrder(t *testing.T) {
	outer := torch.NewScope()
	inner := torch.NewScope()
	x := torch.Ones([]int64{2})
	err := torch.Try(func() { outer.Close() })
	var te *torch.Error
	if !errors.As(err, &te) || te.Op != "scope_close" || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("out-of-order Close: %v, want a *torch.Error of scope_close", err)
	}
	if x.Released() {
		t.Error("the failed Close released the inner scope's tensor")
	}
	inner.Close()
	outer.Close()
	if !x.Released() {
		t.Error("the scopes, closed in order, did not release")
	}
	// WithScope whose fn leaves a scope open returns an error instead of panicking.
	var leaked *torch.Scope
	err = torch.WithScope(func(*torch.Scope) { leaked = torch.NewScope() })
	if !errors.As(err, &te) || te.Op != "scope_close" {
		t.Errorf("WithScope with a scope left open: %v, want a *torch.Error of scope_close", err)
	}
	leaked.Close()
}
