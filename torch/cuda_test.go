package torch_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

// The out-of-memory mapping is tested on libtorch's own message texts (a real CUDA OOM cannot be
// produced on a machine without a GPU); scripts/gpu-check.sh provokes a real one through
// `affgd train`.
func gib(f float64) int64 { return int64(f * (1 << 30)) }

func TestAsOutOfMemory(t *testing.T) {
	for _, c := range []struct {
		msg                  string
		dev                  int
		requested, free, cap int64
	}{
		{"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.06 GiB is free. " +
			"Including non-PyTorch memory, this process has 78.08 GiB memory in use. Of the allocated memory 77.1 GiB is allocated by PyTorch",
			0, 2 << 30, gib(1.06), gib(79.15)},
		{"CUDA out of memory. Tried to allocate 20.00 MiB (GPU 3; 15.78 GiB total capacity; 14.21 GiB already allocated; 3.44 MiB free; 14.5 GiB reserved in total by PyTorch)",
			3, 20 << 20, gib(3.44 / 1024), gib(15.78)},
		{"CUDA error: out of memory", -1, -1, -1, -1},
	} {
		err := fmt.Errorf("epoch 1 step 2: %w", &torch.Error{Op: "conv2d", Msg: c.msg})
		oe, ok := torch.AsOutOfMemory(err)
		if !ok {
			t.Fatalf("%q: not recognised", c.msg)
		}
		if oe.Device != c.dev || oe.Requested != c.requested || oe.Free != c.free || oe.Cap != c.cap {
			t.Errorf("%q: got device %d, requested %d, free %d, capacity %d", c.msg, oe.Device, oe.Requested, oe.Free, oe.Cap)
		}
		if s := oe.Error(); strings.Contains(s, "\n") || !strings.Contains(s, "requested") {
			t.Errorf("message %q", s)
		}
	}
	if _, ok := torch.AsOutOfMemory(&torch.Error{Op: "matmul", Msg: "mat1 and mat2 shapes cannot be multiplied"}); ok {
		t.Error("a shape error was taken for an out-of-memory error")
	}
	if got := torch.FormatBytes(3 << 29); got != "1.50 GiB" {
		t.Errorf("FormatBytes = %q", got)
	}
}

func TestDeterministicSwitch(t *testing.T) {
	defer torch.SetDeterministic(torch.Deterministic())
	torch.SetDeterministic(true)
	if !torch.Deterministic() {
		t.Fatal("SetDeterministic(true) did not stick")
	}
	// Deterministic algorithms keep the ops of a step working on the test device.
	err := torch.Try(func() {
		x := torch.Randn([]int64{4, 3}, nil).To(testDevice).SetRequiresGrad(true)
		x.Matmul(x.Transpose(0, 1)).Sum().Backward()
	})
	if err != nil {
		t.Fatal(err)
	}
	torch.SetDeterministic(false)
	if torch.Deterministic() {
		t.Fatal("SetDeterministic(false) did not stick")
	}
}

func TestCUDAMemoryStats(t *testing.T) {
	if _, err := torch.CUDAMemoryStats(torch.CPU); err == nil {
		t.Error("memory statistics for the CPU gave no error")
	}
	if testDevice.IsCPU() {
		if !torch.CUDAIsAvailable() {
			if _, err := torch.CUDAMemoryStats(torch.CUDA(0)); err == nil || !strings.Contains(err.Error(), "cuda:0") {
				t.Errorf("without CUDA: %v", err)
			}
		}
		return
	}
	if err := torch.ResetPeakMemory(testDevice); err != nil {
		t.Fatal(err)
	}
	before, err := torch.CUDAMemoryStats(testDevice)
	if err != nil {
		t.Fatal(err)
	}
	x := torch.Zeros([]int64{64 << 20}, testDevice) // 256 MiB
	after, err := torch.CUDAMemoryStats(testDevice)
	x.Free()
	if err != nil {
		t.Fatal(err)
	}
	if after.PeakAllocated-before.Allocated < 256<<20 || after.PeakReserved < after.PeakAllocated {
		t.Errorf("stats before %+v, after a 256 MiB tensor %+v", before, after)
	}
	free, total, err := torch.CUDAMemInfo(testDevice)
	if err != nil || free <= 0 || total < free {
		t.Errorf("CUDAMemInfo = %d, %d, %v", free, total, err)
	}
}

func TestCheckDeviceMessage(t *testing.T) {
	err := torch.CheckDevice(torch.CUDA(7))
	if torch.CUDADeviceCount() > 7 {
		t.Skip("this machine has a cuda:7")
	}
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "cuda:7") || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("CheckDevice(cuda:7) = %v; want one line naming cuda:7 and the devices present", err)
	}
}
