package torch_test

import (
	"testing"

	"github.com/affgd/affgd/torch"
)

func TestDevices(t *testing.T) {
	var zero torch.Device
	if !zero.IsCPU() || zero != torch.CPU {
		t.Error("the zero Device is not the CPU")
	}
	for _, c := range []struct {
		in    string
		want  torch.Device
		index int
		str   string
	}{
		{"cpu", torch.CPU, -1, "cpu"},
		{"cuda", torch.CUDA(0), 0, "cuda:0"},
		{"cuda:0", torch.CUDA(0), 0, "cuda:0"},
		{"cuda:3", torch.CUDA(3), 3, "cuda:3"},
	} {
		d, err := torch.ParseDevice(c.in)
		if err != nil || d != c.want || d.Index() != c.index || d.String() != c.str {
			t.Errorf("ParseDevice(%q) = %v (index %d), %v", c.in, d, d.Index(), err)
		}
	}
	for _, bad := range []string{"gpu", "cuda:-1", "cuda:x", ""} {
		if _, err := torch.ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) gave no error", bad)
		}
	}
	if err := torch.CheckDevice(torch.CPU); err != nil {
		t.Error(err)
	}
	if err := torch.CheckDevice(torch.CUDA(torch.CUDADeviceCount())); err == nil {
		t.Error("CheckDevice accepted a device that does not exist")
	}
}
