package npy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/affgd/affgd/internal/npy"
	"github.com/affgd/affgd/torch"
)

// TestRoundTripWithNumPy writes arrays of every supported dtype, has NumPy read them and write
// them back doubled (numbers) or negated (bools), and reads the result.
func TestRoundTripWithNumPy(t *testing.T) {
	py := os.Getenv("AFFGD_PYTHON")
	if py == "" {
		t.Fatal("AFFGD_PYTHON is not set: `make test` sets it to the project venv's python")
	}
	dir := t.TempDir()
	cases := []struct {
		name string
		t    *torch.Tensor
	}{
		{"f4", torch.FromSlice([]float32{1.5, -2, 3.25, 0, 7, 8}, 2, 3)},
		{"f8", torch.FromSlice([]float64{1e-300, 2}, 2)},
		{"i8", torch.FromSlice([]int64{-1, 1 << 40, 3}, 3)},
		{"i4", torch.FromSlice([]int32{-7, 9}, 2, 1)},
		{"u1", torch.FromSlice([]uint8{0, 255}, 2)},
		{"b1", torch.FromSlice([]bool{true, false, true}, 3)},
		{"scalar", torch.Scalar(4.5)},
		{"empty", torch.Zeros([]int64{0, 3})},
	}
	for _, c := range cases {
		if err := npy.SaveTensor(filepath.Join(dir, c.name+".npy"), c.t); err != nil {
			t.Fatal(err)
		}
	}
	script := `
import sys, glob, numpy as np
for f in glob.glob(sys.argv[1] + "/*.npy"):
    a = np.load(f)
    np.save(f.replace(".npy", ".out.npy"), ~a if a.dtype == bool else a * 2)
`
	if b, err := exec.Command(py, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, b)
	}
	for _, c := range cases {
		got, err := npy.LoadTensor(filepath.Join(dir, c.name+".out.npy"))
		if err != nil {
			t.Fatal(err)
		}
		var want *torch.Tensor
		if c.t.DType() == torch.Bool {
			want = c.t.LogicalNot()
		} else {
			want = c.t.MulScalar(2)
		}
		if got.DType() != want.DType() || string(got.Bytes()) != string(want.Bytes()) || len(got.Shape()) != len(want.Shape()) {
			t.Errorf("%s: got %v %v, want %v %v", c.name, got.DType(), got.Shape(), want.DType(), want.Shape())
		}
	}
}

func TestReadErrors(t *testing.T) {
	hdr := func(h string) string { return "\x93NUMPY\x01\x00" + string([]byte{byte(len(h)), 0}) + h }
	for _, c := range []struct{ name, data, want string }{
		{"empty", "", "not an .npy file"},
		{"text", "hello world", "not an .npy file"},
		{"short header", "\x93NUMPY\x01\x00\x46\x00{'descr'", "truncated header"},
		{"truncated data", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }") + "abcd", "truncated data"},
		{"fortran", hdr("{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }"), "Fortran"},
		{"complex", hdr("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }"), "unsupported dtype"},
	} {
		_, err := npy.ReadFrom(strings.NewReader(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
