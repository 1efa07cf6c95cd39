package torch

/*
#include <stdlib.h>
#include "affgd_torch.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// Tensor is a handle to a libtorch tensor. The zero value is not usable; tensors come from the
// functions and methods of this package. See the package documentation for lifetime rules.
type Tensor struct {
	h C.at_tensor
}

// wrap takes ownership of a new handle.
func wrap(h C.at_tensor) *Tensor {
	if h == nil {
		return nil
	}
	t := &Tensor{h: h}
	runtime.AddCleanup(t, func(h C.at_tensor) { C.at_drop(h) }, h)
	return t
}

// wrapList takes ownership of a malloc'd array of n handles and frees the array.
func wrapList(p *C.at_tensor, n C.int) []*Tensor {
	hs := unsafe.Slice(p, int(n))
	out := make([]*Tensor, len(hs))
	for i, h := range hs {
		out[i] = wrap(h)
	}
	C.at_free(unsafe.Pointer(p))
	return out
}

func handles(ts []*Tensor) (*C.at_tensor, C.int, []C.at_tensor) {
	if len(ts) == 0 {
		return nil, 0, nil
	}
	hs := make([]C.at_tensor, len(ts))
	for i, t := range ts {
		if t != nil {
			hs[i] = t.h
		}
	}
	return &hs[0], C.int(len(hs)), hs
}

// hdl returns the handle of t, or nil for a nil tensor (an optional argument).
func hdl(t *Tensor) C.at_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

// Free releases the tensor's storage now. Using the tensor afterwards is an error. Free is
// idempotent and safe on a nil tensor.
func (t *Tensor) Free() {
	if t != nil {
		defer runtime.KeepAlive(t)
		C.at_release(t.h)
	}
}

// Released reports whether the tensor was freed or its scope closed.
func (t *Tensor) Released() bool {
	defer runtime.KeepAlive(t)
	return t == nil || C.at_is_released(t.h) != 0
}

// Dim returns the number of dimensions.
func (t *Tensor) Dim() int {
	var n C.int64_t
	defer runtime.KeepAlive(t)
	check("dim", C.at_dim(hdl(t), &n))
	return int(n)
}

// Shape returns the sizes of all dimensions.
func (t *Tensor) Shape() []int64 {
	n := t.Dim()
	s := make([]int64, n+1)
	defer runtime.KeepAlive(t)
	check("sizes", C.at_sizes(t.h, (*C.int64_t)(unsafe.Pointer(&s[0])), C.int(n)))
	return s[:n]
}

// Size returns the size of dimension d (negative d counts from the end).
func (t *Tensor) Size(d int) int64 {
	s := t.Shape()
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		Fail("size", "dimension %d out of range for a %d-d tensor", d, len(s))
	}
	return s[d]
}

// Strides returns the strides of all dimensions, in elements.
func (t *Tensor) Strides() []int64 {
	n := t.Dim()
	s := make([]int64, n+1)
	defer runtime.KeepAlive(t)
	check("strides", C.at_strides(t.h, (*C.int64_t)(unsafe.Pointer(&s[0])), C.int(n)))
	return s[:n]
}

// DType returns the element type.
func (t *Tensor) DType() DType {
	var d C.int
	defer runtime.KeepAlive(t)
	check("dtype", C.at_dtype(hdl(t), &d))
	return DType(d)
}

// Device returns the device the tensor lives on.
func (t *Tensor) Device() Device {
	var d C.int
	defer runtime.KeepAlive(t)
	check("device", C.at_device(hdl(t), &d))
	return deviceFromC(int(d))
}

// Numel returns the number of elements.
func (t *Tensor) Numel() int64 {
	var n C.int64_t
	defer runtime.KeepAlive(t)
	check("numel", C.at_numel(hdl(t), &n))
	return int64(n)
}

// IsContiguous reports whether the tensor is C-contiguous in memory.
func (t *Tensor) IsContiguous() bool {
	var v C.int
	defer runtime.KeepAlive(t)
	check("is_contiguous", C.at_is_contiguous(hdl(t), &v))
	return v != 0
}

// String formats the tensor as libtorch prints it.
func (t *Tensor) String() string {
	if t == nil {
		return "<nil tensor>"
	}
	if t.Released() {
		return "<released tensor>"
	}
	var s *C.char
	defer runtime.KeepAlive(t)
	if err := errFrom("to_string", C.at_to_string(t.h, &s)); err != nil {
		return "<" + err.Error() + ">"
	}
	defer C.at_free_string(s)
	return C.GoString(s)
}

// ---- creation ----

func shapeArgs(shape []int64) (*C.int64_t, C.int) { return cInt64s(shape) }

// Empty returns an uninitialised tensor (float32 on the CPU unless opts say otherwise).
func Empty(shape []int64, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	p, n := shapeArgs(shape)
	var out C.at_tensor
	check("empty", C.at_empty(p, n, C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Zeros returns a tensor of zeros (float32 on the CPU unless opts say otherwise).
func Zeros(shape []int64, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	p, n := shapeArgs(shape)
	var out C.at_tensor
	check("zeros", C.at_zeros(p, n, C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Ones returns a tensor of ones.
func Ones(shape []int64, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	p, n := shapeArgs(shape)
	var out C.at_tensor
	check("ones", C.at_ones(p, n, C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Full returns a tensor filled with v.
func Full(shape []int64, v float64, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	p, n := shapeArgs(shape)
	var out C.at_tensor
	check("full", C.at_full(p, n, C.double(v), C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Scalar returns a 0-d tensor holding v.
func Scalar(v float64, opts ...Option) *Tensor { return Full(nil, v, opts...) }

// Arange returns the values start, start+step, ... below end. As torch.arange infers, the dtype
// is int64 when start, end and step are all integers and float32 otherwise, unless opts say.
func Arange(start, end, step float64, opts ...Option) *Tensor {
	def := Int64
	if start != math.Trunc(start) || end != math.Trunc(end) || step != math.Trunc(step) {
		def = Float32
	}
	o := makeOptions(def, opts)
	var out C.at_tensor
	check("arange", C.at_arange(C.double(start), C.double(end), C.double(step), C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Linspace returns steps values evenly spaced from start to end inclusive.
func Linspace(start, end float64, steps int64, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	var out C.at_tensor
	check("linspace", C.at_linspace(C.double(start), C.double(end), C.int64_t(steps), C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Eye returns the n×m identity matrix.
func Eye(n, m int64, opts ...Option) *Tensor {
	o := makeOptions(Float32, opts)
	var out C.at_tensor
	check("eye", C.at_eye(C.int64_t(n), C.int64_t(m), C.int(o.dtype), C.int(o.device.Index()), &out))
	return wrap(out)
}

// Element is a Go type that maps to a tensor dtype.
type Element interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~int16 | ~int8 | ~uint8 | ~bool
}

func dtypeOf[T Element]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	case int32:
		return Int32
	case int16:
		return Int16
	case int8:
		return Int8
	case uint8:
		return Uint8
	case bool:
		return Bool
	}
	panic("unreachable")
}

// FromSlice copies data into a new tensor of the given shape (a 1-d tensor when shape is empty).
// The dtype follows the Go type; opts may name a device.
func FromSlice[T Element](data []T, shape ...int64) *Tensor {
	return FromSliceOn(data, CPU, shape...)
}

// FromSliceOn is [FromSlice] placing the tensor on device d.
func FromSliceOn[T Element](data []T, d Device, shape ...int64) *Tensor {
	if len(shape) == 0 {
		shape = []int64{int64(len(data))}
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	var z T
	nbytes := int64(len(data)) * int64(unsafe.Sizeof(z))
	return fromData(p, nbytes, shape, dtypeOf[T](), d)
}

// FromBytes copies raw little-endian, C-contiguous bytes (as stored in checkpoints and images)
// into a new tensor of the given dtype and shape.
func FromBytes(b []byte, dtype DType, shape []int64, d Device) *Tensor {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	return fromData(p, int64(len(b)), shape, dtype, d)
}

func fromData(p unsafe.Pointer, nbytes int64, shape []int64, dtype DType, d Device) *Tensor {
	sp, n := shapeArgs(shape)
	var out C.at_tensor
	check("from_data", C.at_from_data(p, C.int64_t(nbytes), sp, n, C.int(dtype), C.int(d.Index()), &out))
	return wrap(out)
}

// Data returns a copy of the tensor's values, converted to T's dtype, in C order.
func Data[T Element](t *Tensor) []T {
	n := t.Numel()
	out := make([]T, n)
	var z T
	var p unsafe.Pointer
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	defer runtime.KeepAlive(t)
	check("copy_data", C.at_copy_data(hdl(t), p, C.int64_t(n*int64(unsafe.Sizeof(z))), C.int(dtypeOf[T]())))
	return out
}

// Float32s returns a copy of the values as float32.
func (t *Tensor) Float32s() []float32 { return Data[float32](t) }

// Float64s returns a copy of the values as float64.
func (t *Tensor) Float64s() []float64 { return Data[float64](t) }

// Int64s returns a copy of the values as int64.
func (t *Tensor) Int64s() []int64 { return Data[int64](t) }

// Bools returns a copy of the values as bool.
func (t *Tensor) Bools() []bool { return Data[bool](t) }

// Bytes returns the raw little-endian bytes of the tensor's values in its own dtype, C order.
func (t *Tensor) Bytes() []byte {
	dt := t.DType()
	n := t.Numel() * int64(dt.Size())
	out := make([]byte, n)
	var p unsafe.Pointer
	if n > 0 {
		p = unsafe.Pointer(&out[0])
	}
	defer runtime.KeepAlive(t)
	check("copy_data", C.at_copy_data(t.h, p, C.int64_t(n), C.int(dt)))
	return out
}

// Item returns the value of a one-element tensor as float64.
func (t *Tensor) Item() float64 {
	var v C.double
	defer runtime.KeepAlive(t)
	check("item", C.at_item(hdl(t), &v))
	return float64(v)
}

// ItemInt returns the value of a one-element tensor as int64.
func (t *Tensor) ItemInt() int64 {
	var v C.int64_t
	defer runtime.KeepAlive(t)
	check("item", C.at_item_int(hdl(t), &v))
	return int64(v)
}

// ---- conversion ----

// To returns the tensor on device d (the tensor itself shares storage when already there).
func (t *Tensor) To(d Device) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("to", C.at_to(hdl(t), -1, C.int(d.Index()), &out))
	return wrap(out)
}

// PinMemory returns a page-locked (pinned) copy of a CPU tensor, from which [Tensor.ToAsync]
// copies to a GPU without the host waiting, and true; on a machine without CUDA (CPU-only
// libtorch has no pinned memory) it returns the tensor itself and false.
func (t *Tensor) PinMemory() (*Tensor, bool) {
	var out C.at_tensor
	var pinned C.int
	defer runtime.KeepAlive(t)
	check("pin_memory", C.at_pin_memory(hdl(t), &pinned, &out))
	return wrap(out), pinned != 0
}

// ToAsync is [Tensor.To] with non_blocking = true: from pinned memory ([Tensor.PinMemory]) to a
// GPU the copy is queued on the device's stream and the host goes on; otherwise it is To.
func (t *Tensor) ToAsync(d Device) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("to", C.at_to_async(hdl(t), C.int(d.Index()), &out))
	return wrap(out)
}

// ToDType returns the tensor converted to dtype dt on its device.
func (t *Tensor) ToDType(dt DType) *Tensor {
	var out C.at_tensor
	defer runtime.KeepAlive(t)
	check("to", C.at_to(hdl(t), C.int(dt), C.int(t.Device().Index()), &out))
	return wrap(out)
}

// Contiguous returns a C-contiguous tensor with the same values.
func (t *Tensor) Contiguous() *Tensor { return t.unary("contiguous", op_contiguous) }

// Clone returns a copy with its own storage (gradients flow back to t).
func (t *Tensor) Clone() *Tensor { return t.unary("clone", op_clone) }

// Detach returns a tensor sharing t's storage but outside the autograd graph.
func (t *Tensor) Detach() *Tensor { return t.unary("detach", op_detach) }

// Alias returns a second handle to the same tensor, with its own lifetime.
func (t *Tensor) Alias() *Tensor { return t.unary("alias", op_shallow) }

// Must is a helper for tests and examples: it returns t, or panics if err is not nil.
func Must(t *Tensor, err error) *Tensor {
	if err != nil {
		panic(fmt.Sprintf("torch.Must: %v", err))
	}
	return t
}
