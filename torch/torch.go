// Package torch is a thin Go API over libtorch tensors, on CPU and CUDA.
//
// It wraps a small C shim (torch/csrc, built by CMake into build/libaffgd_torch.so) with cgo.
// The boundary is plain C, so a Go binary built on a CPU machine runs on a GPU machine where only
// the shim was rebuilt against that machine's libtorch.
//
// # Errors
//
// Tensor operations report libtorch errors (a bad shape, a dtype mismatch, an index out of range)
// by panicking with a *Error. Library code runs its work inside [Try], which turns such a panic
// into an ordinary error, so a failure reaches the user as an error value naming what went wrong;
// other panics pass through Try untouched. This keeps numerical code as readable as its PyTorch
// original, without an error check after every operation.
//
// # Memory
//
// libtorch memory is invisible to Go's garbage collector, so tensors are freed deterministically:
// every tensor created while a [Scope] is open on the goroutine is released when the scope
// closes, except those passed to [Scope.Keep]; [Tensor.Free] releases one tensor at once. A
// cleanup registered with the runtime frees what is left unreachable, as a safety net only.
// [LiveTensors] and [LiveBytes] report what the shim holds.
//
// # Goroutines and OS threads
//
// libtorch keeps grad mode per OS thread, and the shim keeps its scopes per OS thread. [NewScope]
// and [NoGrad] lock the calling goroutine to its thread for their duration. Distinct tensors may
// be used from several goroutines at once; one tensor must not be written by one goroutine while
// another uses it (as in PyTorch). A scope belongs to the goroutine that opened it.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/csrc
#cgo LDFLAGS: -L${SRCDIR}/../build -laffgd_torch -Wl,-rpath,${SRCDIR}/../build -Wl,-rpath,$ORIGIN -Wl,-rpath,$ORIGIN/../build
#include <stdlib.h>
#include "affgd_torch.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// abiVersion is the shim ABI this package was written against (AT_ABI_VERSION in affgd_torch.h).
const abiVersion = 3

// Error is a failure reported by libtorch or by the shim, without the C++ backtrace, or (Err
// set, made by [Raise]) another error carried through a panic of numerical code to its [Try].
type Error struct {
	Op  string // the operation that failed, e.g. "matmul"
	Msg string // libtorch's message
	Err error  // the cause, for errors.Is and errors.As (see Unwrap); nil for libtorch's own
}

func (e *Error) Error() string {
	switch {
	case e.Op == "" && e.Msg == "" && e.Err != nil:
		return e.Err.Error()
	case e.Err != nil && e.Msg == "":
		return "torch: " + e.Op + ": " + e.Err.Error()
	case e.Err != nil:
		return "torch: " + e.Op + ": " + e.Msg + ": " + e.Err.Error()
	}
	return "torch: " + e.Op + ": " + e.Msg
}

// Unwrap returns the cause, so that errors.Is and errors.As see through a *Error.
func (e *Error) Unwrap() error { return e.Err }

// ErrABI is returned by [CheckABI] when the loaded shim was built from another header version.
var ErrABI = errors.New("torch: the shim library libaffgd_torch.so does not match this Go package; rebuild it with `make build`")

// CheckABI reports whether the loaded shim matches this package's expected ABI version.
func CheckABI() error {
	if v := int(C.at_abi_version()); v != abiVersion {
		return fmt.Errorf("%w (shim ABI %d, Go package ABI %d)", ErrABI, v, abiVersion)
	}
	return nil
}

func init() {
	if err := CheckABI(); err != nil {
		// Nothing in this package can work with a mismatched shim; fail at start-up, clearly.
		panic(err)
	}
	fixMallocThreshold()
	lookupMKL()
}

// errFrom converts an at_err into a Go error and frees the C string.
func errFrom(op string, e C.at_err) error {
	if e == nil {
		return nil
	}
	msg := C.GoString(e)
	C.at_free_string(e)
	return &Error{Op: op, Msg: msg}
}

// check panics with a *Error when e reports a failure; see [Try].
func check(op string, e C.at_err) {
	if e != nil {
		panic(errFrom(op, e))
	}
}

// Try runs fn and returns the *Error that a tensor operation in fn panicked with, or the error
// fn passed to [Raise] (unchanged), or nil. Panics that are not *Error propagate unchanged.
func Try(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if te, ok := r.(*Error); ok {
				err = te
				if te.Op == "" && te.Msg == "" && te.Err != nil {
					err = te.Err
				}
				return
			}
			panic(r)
		}
	}()
	fn()
	return nil
}

// Raise carries err, an error returned to numerical code running under [Try] (a model's
// forward calling another package's exported function, say), to that Try, which returns err
// itself: no text is added and errors.Is/As see the original. It does nothing for a nil err.
func Raise(err error) {
	if err != nil {
		panic(&Error{Err: err})
	}
}

// Fail panics with a *Error for op; code running under [Try] uses it to report a failure of its
// own (a shape check, say) the same way libtorch's failures are reported.
func Fail(op, format string, args ...any) {
	panic(&Error{Op: op, Msg: fmt.Sprintf(format, args...)})
}

// Version is the version of the libtorch the shim was built against, e.g. "2.11.0".
func Version() string { return C.GoString(C.at_torch_version()) }

// SetNumThreads sets libtorch's intra-op thread count.
func SetNumThreads(n int) error { return errFrom("set_num_threads", C.at_set_num_threads(C.int(n))) }

// NumThreads returns libtorch's intra-op thread count.
func NumThreads() int { return int(C.at_get_num_threads()) }

// CUDAIsAvailable reports whether a CUDA device can be used.
func CUDAIsAvailable() bool { return C.at_cuda_is_available() != 0 }

// CUDADeviceCount returns the number of CUDA devices (0 without CUDA).
func CUDADeviceCount() int { return int(C.at_cuda_device_count()) }

// Synchronize waits for all work queued on a CUDA device; it does nothing for the CPU.
func Synchronize(d Device) error {
	if d.IsCPU() {
		return nil
	}
	return errFrom("cuda_synchronize", C.at_cuda_synchronize(C.int(d.Index())))
}

// ManualSeed seeds libtorch's global generators (CPU and every CUDA device), as torch.manual_seed.
func ManualSeed(seed uint64) error { return errFrom("manual_seed", C.at_manual_seed(C.uint64_t(seed))) }

// SetAllowTF32 sets whether CUDA float32 matrix products (cuBLAS) and convolutions (cuDNN) may
// use TF32 tensor cores, as torch.backends.cuda.matmul.allow_tf32 and
// torch.backends.cudnn.allow_tf32. PyTorch's defaults are false for matmul, true for cuDNN.
func SetAllowTF32(matmul, conv bool) { C.at_set_allow_tf32(cBool(matmul), cBool(conv)) }

// AllowTF32 reports the current TF32 settings (see [SetAllowTF32]).
func AllowTF32() (matmul, conv bool) {
	var m, c C.int
	C.at_get_allow_tf32(&m, &c)
	return m != 0, c != 0
}

// LiveTensors returns the number of tensor handles whose storage the shim still holds.
func LiveTensors() int64 { return int64(C.at_live_tensors()) }

// LiveBytes returns the storage bytes referenced by live handles (a storage shared by several
// handles, as views are, counts once per handle).
func LiveBytes() int64 { return int64(C.at_live_bytes()) }

// cInt64s returns a C pointer to the first element of v (nil for an empty slice) and its length.
func cInt64s(v []int64) (*C.int64_t, C.int) {
	if len(v) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&v[0])), C.int(len(v))
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
