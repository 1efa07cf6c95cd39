package npy

import (
	"fmt"
	"path/filepath"

	"github.com/affgd/affgd/torch"
)

var descrOf = map[torch.DType]string{torch.Float32: "<f4", torch.Float64: "<f8", torch.Int64: "<i8", torch.Int32: "<i4", torch.Uint8: "|u1", torch.Bool: "|b1"}

// FromTensor copies a tensor into an Array (float16/bfloat16 are not supported by .npy here).
// It panics with *torch.Error on failure; use under torch.Try.
func FromTensor(t *torch.Tensor) *Array {
	d, ok := descrOf[t.DType()]
	if !ok {
		torch.Fail("npy", "cannot store dtype %s", t.DType())
	}
	return &Array{Descr: d, Shape: t.Shape(), Data: t.Bytes()}
}

// ToTensor makes a CPU tensor from an Array.
func (a *Array) ToTensor() (*torch.Tensor, error) {
	for dt, d := range descrOf {
		if d == a.Descr {
			var t *torch.Tensor
			err := torch.Try(func() { t = torch.FromBytes(a.Data, dt, a.Shape, torch.CPU) })
			return t, err
		}
	}
	return nil, fmt.Errorf("npy: unsupported dtype %q", a.Descr)
}

// SaveTensor writes t to path as .npy.
func SaveTensor(path string, t *torch.Tensor) error {
	var a *Array
	if err := torch.Try(func() { a = FromTensor(t) }); err != nil {
		return fmt.Errorf("npy: %s: %w", filepath.Base(path), err)
	}
	return Write(path, a)
}

// LoadTensor reads an .npy file into a CPU tensor.
func LoadTensor(path string) (*torch.Tensor, error) {
	a, err := Read(path)
	if err != nil {
		return nil, err
	}
	t, err := a.ToTensor()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
