package torch

import (
	"fmt"
	"strconv"
	"strings"
)

// DType is a tensor element type.
type DType int

// The element types affgd uses; the values equal the shim's AT_* codes.
const (
	Float32  DType = 0
	Float64  DType = 1
	Float16  DType = 2
	BFloat16 DType = 3
	Int64    DType = 4
	Int32    DType = 5
	Int16    DType = 6
	Int8     DType = 7
	Uint8    DType = 8
	Bool     DType = 9
)

var dtypeNames = [...]string{"float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"}
var dtypeSizes = [...]int{4, 8, 2, 2, 8, 4, 2, 1, 1, 1}

// String returns the PyTorch name without the "torch." prefix, e.g. "float32".
func (d DType) String() string {
	if d >= 0 && int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// Size returns the number of bytes of one element.
func (d DType) Size() int {
	if d >= 0 && int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 || d == Float16 || d == BFloat16 }

// Device is where a tensor lives: [CPU] (the zero value), or CUDA device i as CUDA(i).
type Device int

// CPU is the host device.
const CPU Device = 0

// CUDA returns CUDA device i.
func CUDA(i int) Device { return Device(i + 1) }

// IsCPU reports whether d is the CPU.
func (d Device) IsCPU() bool { return d <= 0 }

// Index returns the CUDA device index (-1 for the CPU).
func (d Device) Index() int {
	if d.IsCPU() {
		return -1
	}
	return int(d) - 1
}

// deviceFromC converts the shim's device code (-1 CPU, i CUDA:i) to a Device.
func deviceFromC(code int) Device {
	if code < 0 {
		return CPU
	}
	return CUDA(code)
}

// String returns "cpu" or "cuda:i".
func (d Device) String() string {
	if d.IsCPU() {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(d.Index())
}

// ParseDevice parses "cpu", "cuda" (device 0) or "cuda:N". It does not check that the device
// exists; [CheckDevice] does.
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "cpu":
		return CPU, nil
	case s == "cuda":
		return CUDA(0), nil
	case strings.HasPrefix(s, "cuda:"):
		i, err := strconv.Atoi(s[len("cuda:"):])
		if err == nil && i >= 0 {
			return CUDA(i), nil
		}
	}
	return CPU, fmt.Errorf("torch: unknown device %q (want cpu, cuda or cuda:N)", s)
}

// CheckDevice returns an error unless d can be used on this machine.
func CheckDevice(d Device) error {
	if d.IsCPU() {
		return nil
	}
	if !CUDAIsAvailable() {
		return fmt.Errorf("torch: device %s requested, but CUDA is not available here (no GPU, no driver, or a CPU-only libtorch): the only device is cpu", d)
	}
	if n := CUDADeviceCount(); d.Index() >= n {
		return fmt.Errorf("torch: device %s requested, but this machine has %d CUDA device(s): %s", d, n, strings.Join(Devices(), ", "))
	}
	return nil
}

// Devices lists the devices this machine offers: "cpu", then "cuda:0", "cuda:1", ...
func Devices() []string {
	out := []string{"cpu"}
	for i := 0; i < CUDADeviceCount(); i++ {
		out = append(out, CUDA(i).String())
	}
	return out
}

// Option sets the dtype or device of a created tensor; [DType] and [Device] are Options.
type Option interface{ apply(*tensorOptions) }

type tensorOptions struct {
	dtype  DType
	device Device
}

func (d DType) apply(o *tensorOptions)  { o.dtype = d }
func (d Device) apply(o *tensorOptions) { o.device = d }

func makeOptions(def DType, opts []Option) tensorOptions {
	o := tensorOptions{dtype: def, device: CPU}
	for _, op := range opts {
		op.apply(&o)
	}
	return o
}
