package torch

/*
#include "affgd_torch.h"
*/
import "C"

import "runtime"

// SetRequiresGrad marks t as a leaf that records gradients (or stops it) and returns t.
func (t *Tensor) SetRequiresGrad(b bool) *Tensor {
	defer runtime.KeepAlive(t)
	check("requires_grad_", C.at_set_requires_grad(hdl(t), cBool(b)))
	return t
}

// RequiresGrad reports whether gradients are recorded for t.
func (t *Tensor) RequiresGrad() bool {
	var v C.int
	defer runtime.KeepAlive(t)
	check("requires_grad", C.at_requires_grad(hdl(t), &v))
	return v != 0
}

// IsLeaf reports whether t is a leaf of the autograd graph.
func (t *Tensor) IsLeaf() bool {
	var v C.int
	defer runtime.KeepAlive(t)
	check("is_leaf", C.at_is_leaf(hdl(t), &v))
	return v != 0
}

// Backward computes the gradients of the scalar t with respect to the leaves, accumulating them
// into their Grad, and frees the graph.
func (t *Tensor) Backward() { t.BackwardWith(nil, false) }

// BackwardWith is t.backward(gradient=grad, retain_graph=retain); grad may be nil for a scalar t.
func (t *Tensor) BackwardWith(grad *Tensor, retain bool) {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(grad)
	check("backward", C.at_backward(hdl(t), hdl(grad), cBool(retain)))
}

// Grad returns the accumulated gradient of t, or nil when there is none.
func (t *Tensor) Grad() *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("grad", C.at_grad(hdl(t), &out))
	return wrap(out)
}

// SetGrad replaces t's gradient (nil clears it).
func (t *Tensor) SetGrad(g *Tensor) {
	defer runtime.KeepAlive(t)
	defer runtime.KeepAlive(g)
	check("set_grad", C.at_set_grad(hdl(t), hdl(g)))
}

// ZeroGrad clears t's gradient (sets it to None, as optimizer.zero_grad() does by default).
func (t *Tensor) ZeroGrad() { defer runtime.KeepAlive(t); check("zero_grad", C.at_zero_grad(hdl(t))) }

// NoGrad runs fn with gradient recording off, as `with torch.no_grad():`. The goroutine is locked
// to its OS thread for the call because libtorch keeps grad mode per thread.
func NoGrad(fn func()) { withGradMode(false, fn) }

// EnableGrad runs fn with gradient recording on, as `with torch.enable_grad():`.
func EnableGrad(fn func()) { withGradMode(true, fn) }

func withGradMode(on bool, fn func()) {
	runtime.LockOSThread()
	prev := C.at_set_grad_enabled(cBool(on))
	defer func() {
		C.at_set_grad_enabled(prev)
		runtime.UnlockOSThread()
	}()
	fn()
}

// GradEnabled reports whether gradient recording is on for the calling goroutine's thread; it is
// meaningful inside [NoGrad] or [EnableGrad], or on a locked goroutine.
func GradEnabled() bool { return C.at_is_grad_enabled() != 0 }
