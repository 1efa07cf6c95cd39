package torch

/*
#include "affgd_torch.h"
*/
import "C"

import "runtime"

// Scope frees, when closed, every tensor created on its goroutine while it was the innermost open
// scope, except the tensors passed to [Scope.Keep]. Scopes nest; a kept tensor moves to the
// enclosing scope, or, with none, lives until freed explicitly or collected.
//
// A training loop opens one scope per step, so its memory stays flat however long it runs:
//
//	for step := range steps {
//		s := torch.NewScope()
//		loss := model.Loss(batch)
//		loss.Backward()
//		opt.Step()
//		s.Close()
//	}
//
// NewScope locks the goroutine to its OS thread until Close, since the shim registers tensors
// per thread. Close must be called on the same goroutine, innermost scope first.
type Scope struct {
	depth  int
	closed bool
}

// NewScope opens a scope on the calling goroutine.
func NewScope() *Scope {
	runtime.LockOSThread()
	C.at_scope_enter()
	return &Scope{depth: int(C.at_scope_depth())}
}

// Keep exempts ts from this scope's release; it returns the first of them for convenience.
func (s *Scope) Keep(ts ...*Tensor) *Tensor {
	for _, t := range ts {
		if t != nil {
			defer runtime.KeepAlive(t)
			C.at_scope_keep(t.h)
		}
	}
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

// Escape takes t out of every scope: no scope will release it, and it lives until freed with
// [Tensor.Free] or collected. Parameters, optimizer state and other long-lived tensors created
// inside a scope use it. It returns t.
func Escape(t *Tensor) *Tensor {
	if t != nil {
		defer runtime.KeepAlive(t)
		C.at_scope_escape(t.h)
	}
	return t
}

// Close releases the scope's tensors. Closing twice is a no-op.
func (s *Scope) Close() {
	if s.closed {
		return
	}
	if d := int(C.at_scope_depth()); d != s.depth {
		panic("torch: Scope.Close out of order or on another goroutine (scopes must close innermost first, on the goroutine that opened them)")
	}
	s.closed = true
	if err := errFrom("scope_exit", C.at_scope_exit()); err != nil {
		panic(err)
	}
	runtime.UnlockOSThread()
}

// WithScope runs fn inside a new scope and returns its error, converting a tensor failure into
// an error as [Try] does; the tensors fn returns through keep survive the scope.
func WithScope(fn func(s *Scope)) error {
	s := NewScope()
	defer s.Close()
	return Try(func() { fn(s) })
}

// NoGradScope is [WithScope] with gradient recording off: the shape of every frozen forward
// (backbones, inference). Tensors fn passes to s.Keep survive into the caller's scope.
func NoGradScope(fn func(s *Scope)) error {
	var err error
	NoGrad(func() { err = WithScope(fn) })
	return err
}
