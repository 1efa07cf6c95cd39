// Package ptfile reads and writes PyTorch checkpoint files made by
// torch.save that hold (possibly nested) dicts of tensors, such as model
// state dicts.
//
// Reading understands both the zip format (the default since PyTorch 1.6)
// and the older "legacy" stream format. It interprets the pickled object
// graph without executing anything: only the handful of constructors that
// checkpoints are made of are recognised, and any other class in the file
// becomes an inert placeholder. Tensors are returned as dense, C-contiguous,
// little-endian byte slices, whatever their strides and storage sharing in
// the file; each tensor gets its own copy. Malformed or hostile input gives
// an error, never a panic, and cannot make the reader produce much more
// data than the file holds (8 times its size plus 1 GiB, which leaves room
// for expanded views with zero strides).
//
// Writing produces the zip format, loadable in Python with
// torch.load(path) (also with the default weights_only=True).
package ptfile

import (
	"fmt"
	"os"
)

// DType names the element type of a stored tensor. The zero value is not a
// valid type.
type DType int

// The supported element types.
const (
	Float32 DType = iota + 1
	Float64
	Float16
	BFloat16
	Int64
	Int32
	Int16
	Int8
	Uint8
	Bool
)

var dtypeInfo = [...]struct {
	name    string // as PyTorch names the dtype
	storage string // legacy typed storage class, in module torch
	size    int
}{
	Float32:  {"float32", "FloatStorage", 4},
	Float64:  {"float64", "DoubleStorage", 8},
	Float16:  {"float16", "HalfStorage", 2},
	BFloat16: {"bfloat16", "BFloat16Storage", 2},
	Int64:    {"int64", "LongStorage", 8},
	Int32:    {"int32", "IntStorage", 4},
	Int16:    {"int16", "ShortStorage", 2},
	Int8:     {"int8", "CharStorage", 1},
	Uint8:    {"uint8", "ByteStorage", 1},
	Bool:     {"bool", "BoolStorage", 1},
}

func (d DType) valid() bool { return d > 0 && int(d) < len(dtypeInfo) }

// String returns the PyTorch name of the type without the "torch." prefix,
// such as "float32" or "bfloat16".
func (d DType) String() string {
	if !d.valid() {
		return fmt.Sprintf("DType(%d)", int(d))
	}
	return dtypeInfo[d].name
}

// ElemSize returns the size in bytes of one element of type d, or 0 if d
// is not a valid type.
func (d DType) ElemSize() int {
	if !d.valid() {
		return 0
	}
	return dtypeInfo[d].size
}

// Tensor is one tensor read from or to be written to a file. Data holds
// the elements in C-contiguous (row-major) order as little-endian bytes;
// its length is Numel()*DType.ElemSize(). Bool elements are one byte each,
// float16 and bfloat16 elements are their raw 16-bit patterns. A 0-d
// (scalar) tensor has an empty Shape and one element.
type Tensor struct {
	DType DType
	Shape []int64
	Data  []byte
	// Load, when Data is nil, supplies the data at the moment a writer needs it, so a writer
	// holds one tensor's bytes at a time instead of the whole file's (checkpoints of models
	// whose weights live in libtorch). Readers never set it.
	Load func() ([]byte, error)
}

// Numel returns the number of elements of t: the product of its shape.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Entry is a named tensor. Read returns entries in file order.
type Entry struct {
	Name   string
	Tensor *Tensor
}

// Object stands for a Python object that is neither a tensor nor a plain
// value, such as a torch.device or an instance of a user class, in the
// non-tensor values returned by ReadAll. Nothing of it is executed or
// reconstructed: only its class name is kept.
type Object struct {
	Class string // qualified name, e.g. "torch.device"
}

// Read reads the tensors of the checkpoint file at path. Nested dicts (and
// lists or tuples) are flattened, joining keys with "." as in
// {"model": {"fc.weight": t}} -> "model.fc.weight"; integer keys and list
// indices are written in decimal. Values that are not tensors (such as an
// epoch number) are skipped; use ReadAll to get them too. A file holding a
// single tensor yields one entry with an empty name.
func Read(path string) ([]Entry, error) {
	tensors, _, err := ReadAll(path)
	return tensors, err
}

// ReadAll is like Read but also returns the non-tensor leaves of the
// object, keyed by their flattened names. Their values are nil (None),
// bool, int64, *big.Int (for integers beyond int64), float64, string,
// []byte or Object.
func ReadAll(path string) (tensors []Entry, other map[string]any, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("ptfile: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("ptfile: %w", err)
	}
	return readAll(f, fi.Size(), path)
}
