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
	id     uint64 // the shim's id of this scope (at_scope_id)
	closed bool
}

// NewScope opens a scope on the calling goroutine.
func NewScope() *Scope {
	runtime.LockOSThread()
	C.at_scope_enter()
	return &Scope{id: uint64(C.at_scope_id())}
}

// Keep exempts ts from this scope's release, so they move to the enclosing scope when it closes;
// it returns the first of them for convenience. Only tensors this scope holds can be kept: one
// held by another scope (an enclosing one, or another goroutine's), or a Keep on a scope that is
// closed or not the innermost open one on this goroutine, panics with a *[Error] (so [Try] and
// [WithScope] return it). Tensors in no scope need no keeping and are accepted.
func (s *Scope) Keep(ts ...*Tensor) *Tensor {
	if s.closed || uint64(C.at_scope_id()) != s.id {
		Fail("scope_keep", "Keep on a scope that is closed or not the innermost open scope of this goroutine")
	}
	for _, t := range ts {
		if t != nil {
			defer runtime.KeepAlive(t)
			check("scope_keep", C.at_scope_keep(t.h))
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

// Close releases the scope's tensors. Closing twice is a no-op. Closing a scope that is not the
// innermost open one of this goroutine (out of order, or on another goroutine) changes nothing
// and panics with a *[Error], which [Try] turns into an error.
func (s *Scope) Close() {
	if err := s.close(); err != nil {
		panic(err)
	}
}

// close is Close returning its error.
func (s *Scope) close() error {
	if s.closed {
		return nil
	}
	if uint64(C.at_scope_id()) != s.id {
		return &Error{Op: "scope_close", Msg: "Close out of order or on another goroutine (scopes must close innermost first, on the goroutine that opened them)"}
	}
	s.closed = true
	err := errFrom("scope_exit", C.at_scope_exit())
	runtime.UnlockOSThread()
	return err
}

// WithScope runs fn inside a new scope and returns its error, converting a tensor failure into
// an error as [Try] does; the tensors fn returns through keep survive the scope. A scope fn
// leaves open makes closing this one fail: that is returned too (fn's own error first).
func WithScope(fn func(s *Scope)) (err error) {
	s := NewScope()
	defer func() {
		if cerr := s.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return Try(func() { fn(s) })
}

// NoGradScope is [WithScope] with gradient recording off: the shape of every frozen forward
// (backbones, inference). Tensors fn passes to s.Keep survive into the caller's scope.
func NoGradScope(fn func(s *Scope)) error {
	var err error
	NoGrad(func() { err = WithScope(fn) })
	return err
}
