package ptfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tensors whose bytes come from Load write the same file as tensors holding their Data, and a
// failing or short Load fails the write naming the tensor.
func TestWriteWithLoad(t *testing.T) {
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	held := []Entry{
		{Name: "w", Tensor: &Tensor{DType: Float32, Shape: []int64{3, 5}, Data: data(60)}},
		{Name: "b", Tensor: &Tensor{DType: Int64, Shape: []int64{2}, Data: data(16)}},
		{Name: "empty", Tensor: &Tensor{DType: Float32, Shape: []int64{0}, Data: []byte{}}},
	}
	loaded := make([]Entry, len(held))
	for i, e := range held {
		d := e.Tensor.Data
		loaded[i] = Entry{Name: e.Name, Tensor: &Tensor{DType: e.Tensor.DType, Shape: e.Tensor.Shape, Load: func() ([]byte, error) { return d, nil }}}
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "held.pt"), filepath.Join(dir, "loaded.pt")
	if err := Write(a, held); err != nil {
		t.Fatal(err)
	}
	if err := Write(b, loaded); err != nil {
		t.Fatal(err)
	}
	fa, _ := os.ReadFile(a)
	fb, _ := os.ReadFile(b)
	if !bytes.Equal(fa, fb) {
		t.Fatal("a file written from Load differs from the one written from Data")
	}

	for _, tc := range []struct {
		name string
		load func() ([]byte, error)
		want string
	}{
		{"load fails", func() ([]byte, error) { return nil, errors.New("device lost") }, "device lost"},
		{"short data", func() ([]byte, error) { return data(8), nil }, "needs 60 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.pt")
			err := Write(path, []Entry{{Name: "w", Tensor: &Tensor{DType: Float32, Shape: []int64{3, 5}, Load: tc.load}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"w"`) {
				t.Fatalf("error %v, want one naming the tensor and %q", err, tc.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatal("a failed write left a file")
			}
		})
	}
}
