package torch

/*
#include "affgd_torch.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// EmptyHost returns an uninitialised C-contiguous CPU tensor of shape and dtype dt for data that
// is copied to a GPU: page-locked (pinned) when pin is true and CUDA is available, which makes
// the copy asynchronous ([CopyStream.Upload]), and pinned true. Without CUDA (CPU-only libtorch
// has no pinned memory) or with pin false it is ordinary memory and pinned is false. A failed
// pinned allocation is returned as an error, for the caller to fall back to pin false.
func EmptyHost(shape []int64, dt DType, pin bool) (t *Tensor, pinned bool, err error) {
	p, n := shapeArgs(shape)
	var out C.at_tensor
	var pn C.int
	if err := errFrom("empty_host", C.at_empty_host(p, n, C.int(dt), cBool(pin), &pn, &out)); err != nil {
		return nil, false, err
	}
	return wrap(out), pn != 0, nil
}

// HostSlice returns a Go slice over the memory of t, a C-contiguous CPU tensor of T's dtype:
// writes through it change the tensor, with no copy and no libtorch call (so goroutines that
// must not call libtorch can fill it). The slice is C memory: it is valid only while t's storage
// lives, which the caller must ensure (Free, a closing scope or collection of the last tensor
// sharing it frees the memory under the slice); it may be used on any goroutine.
func HostSlice[T Element](t *Tensor) []T {
	if dt := t.DType(); dt != dtypeOf[T]() {
		Fail("data_ptr", "the tensor is %v, not %v", dt, dtypeOf[T]())
	}
	var p unsafe.Pointer
	var nbytes C.int64_t
	defer runtime.KeepAlive(t)
	check("data_ptr", C.at_data_ptr(hdl(t), &p, &nbytes))
	var z T
	n := int(nbytes) / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(p), n)
}

// StorageShared reports whether anything besides t's own handle still references its tensor or
// its memory: a view or a second handle ([Tensor.Narrow], [Tensor.Alias], a CPU [Tensor.To]),
// or an autograd graph that saved it. A buffer that is reused once it is not shared can never be
// overwritten while something can still read it.
func (t *Tensor) StorageShared() bool {
	var v C.int
	defer runtime.KeepAlive(t)
	check("storage_shared", C.at_storage_shared(hdl(t), &v))
	return v != 0
}

// CopyStream copies host tensors to a device on a stream of its own, so that a copy overlaps
// the compute queued on the device's current stream. On a CUDA device it is a stream from
// libtorch's pool (through the device-generic stream API: the shim includes no CUDA header);
// copies from pinned memory ([EmptyHost]) are asynchronous, from pageable memory the host waits.
// On the CPU there is no stream and nothing to copy: [CopyStream.Upload] returns the tensors
// themselves, synchronously, as the trainer's path was before copy streams.
type CopyStream struct {
	h   C.at_stream
	dev Device
}

// NewCopyStream returns a copy stream for device d (for the CPU, the synchronous one). An error
// names a device that is not available.
func NewCopyStream(d Device) (*CopyStream, error) {
	var out C.at_stream
	if err := errFrom("copy_stream_new", C.at_copy_stream_new(C.int(d.Index()), &out)); err != nil {
		return nil, err
	}
	s := &CopyStream{h: out, dev: d}
	runtime.AddCleanup(s, func(h C.at_stream) { C.at_copy_stream_free(h) }, out)
	return s, nil
}

// Device returns the stream's device.
func (s *CopyStream) Device() Device { return s.dev }

// Async reports whether copies run on a stream of their own (a GPU), not synchronously (the CPU).
func (s *CopyStream) Async() bool { return !s.dev.IsCPU() }

// Upload is the result of [CopyStream.Upload]: the device tensors, valid for the compute
// stream's use once [Upload.Wait] was called, and the event that completes with the copies.
type Upload struct {
	Tensors []*Tensor
	Done    *Event
}

// Upload queues copies of the CPU tensors ts to the stream's device on the copy stream and
// returns them with their completion event. The host goes on at once when ts are pinned; the
// copies' device memory is recorded for use on the calling goroutine's current stream, so the
// caching allocator does not reuse it before the work queued there with it is done. The memory
// of ts must not change until Done completes. The tensors are created in the caller's scope. On
// the CPU the result is second handles to ts themselves (sharing their memory) and a completed
// event. An error (a tensor not on the CPU, a released tensor) panics with *[Error], as ops do.
func (s *CopyStream) Upload(ts ...*Tensor) *Upload {
	src, n, hs := handles(ts)
	dst := make([]C.at_tensor, len(ts)+1)
	var ev C.at_event
	defer runtime.KeepAlive(s)
	defer runtime.KeepAlive(hs)
	defer runtime.KeepAlive(ts)
	check("upload", C.at_copy_stream_upload(s.h, src, n, &dst[0], &ev))
	u := &Upload{Tensors: make([]*Tensor, len(ts)), Done: newEvent(ev)}
	for i := range ts {
		u.Tensors[i] = wrap(dst[i])
	}
	return u
}

// Release frees the upload's device tensors now (the event stays valid while referenced).
func (u *Upload) Release() {
	if u == nil {
		return
	}
	for _, t := range u.Tensors {
		t.Free()
	}
}

// Wait makes the calling goroutine's current stream of the device wait for the copies before
// the work queued on it afterwards (the host does not wait); on the CPU it does nothing.
func (u *Upload) Wait() { u.Done.Wait() }

// Event is a point in a device stream's work (the end of an upload's copies). On the CPU it is
// complete from the start and waiting on it does nothing.
type Event struct {
	h C.at_event
}

func newEvent(h C.at_event) *Event {
	e := &Event{h: h}
	runtime.AddCleanup(e, func(h C.at_event) { C.at_event_free(h) }, h)
	return e
}

// Wait makes the calling goroutine's current stream of the event's device wait for the event;
// the host goes on.
func (e *Event) Wait() {
	defer runtime.KeepAlive(e)
	check("event_wait", C.at_event_wait(e.h))
}

// Synchronize blocks the host until the event completed.
func (e *Event) Synchronize() {
	defer runtime.KeepAlive(e)
	check("event_synchronize", C.at_event_synchronize(e.h))
}

// Done reports whether the event completed (it does not wait).
func (e *Event) Done() bool {
	var v C.int
	defer runtime.KeepAlive(e)
	check("event_query", C.at_event_query(e.h, &v))
	return v != 0
}

// ElapsedMS returns the device time, in milliseconds, of the upload this event ends (from the
// first copy queued to the last done); an error on the CPU or before the event completed.
func (e *Event) ElapsedMS() (float64, error) {
	var v C.double
	defer runtime.KeepAlive(e)
	if err := errFrom("event_elapsed_ms", C.at_event_elapsed_ms(e.h, &v)); err != nil {
		return 0, err
	}
	return float64(v), nil
}

// String describes the stream for logs.
func (s *CopyStream) String() string {
	if s.Async() {
		return fmt.Sprintf("copy stream of %s", s.dev)
	}
	return "synchronous copies (CPU)"
}
