// Package testdev gives the tests of the computing packages (models/*, discovery, losses, train,
// evaluate, trainer, cmd/affgd) the device they run on: $AFFGD_TEST_DEVICE ("cpu", "cuda",
// "cuda:N"; default the CPU). scripts/gpu-check.sh sets it to cuda:0 on a GPU machine.
//
// A device that is asked for but cannot be used FAILS the test with one line naming the setting,
// the device and what the machine has: a suite asked to run on CUDA must never pass by skipping
// or by quietly running on the CPU.
//
// On CUDA the tests compare with references made on the CPU by PyTorch. The kernels differ there
// (cuBLAS and cuDNN block and sum in other orders, some backward kernels accumulate with atomics,
// transcendental functions are other implementations), so floating-point comparisons use [Tol],
// with TF32 off ([Setup], called by every package's TestMain or first device use): TF32 would
// round matmul and convolution inputs to 10 mantissa bits, far outside any parity tolerance.
package testdev

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/affgd/affgd/torch"
)

// Env is the environment variable naming the test device.
const Env = "AFFGD_TEST_DEVICE"

// CUDARTol is the smallest relative tolerance (of the largest reference magnitude) used on CUDA,
// for float32 results compared with the CPU reference: one step's maps pass through a dozen
// matrix products and convolutions whose CUDA kernels sum in another order than the CPU's
// (a few float32 ulp of relative error each, compounding through the step) and through backward
// kernels with atomic accumulation (index_put, scatter_add, BatchNorm), whose order changes run to
// run. 1e-4 leaves about ten times the accumulated float32 rounding of the full-size step's
// deepest chain (the reference's own float32-vs-float64 difference there is 9.5e-6,
// tests/method conditioning.json). Discrete decisions keep their 1e-5 margins from the
// generators and must still agree; integer and boolean results stay bitwise.
const CUDARTol = 1e-4

var (
	once   sync.Once
	dev    torch.Device
	devErr error
)

func resolve() {
	name := os.Getenv(Env)
	if name == "" {
		name = "cpu"
	}
	d, err := torch.ParseDevice(name)
	if err == nil {
		err = torch.CheckDevice(d)
	}
	if err != nil {
		devErr = fmt.Errorf("%s=%s: %v (unset it to test on the CPU)", Env, name, err)
		return
	}
	dev = d
	torch.SetAllowTF32(false, false)
}

// Setup resolves the test device once and turns TF32 off; it returns the device or the reason it
// cannot be used.
func Setup() (torch.Device, error) {
	once.Do(resolve)
	return dev, devErr
}

// Device returns the test device, failing t (one line) when it cannot be used.
func Device(t testing.TB) torch.Device {
	t.Helper()
	d, err := Setup()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// IsCUDA reports whether the tests run on a CUDA device (false when the setting is unusable).
func IsCUDA() bool {
	d, err := Setup()
	return err == nil && !d.IsCPU()
}

// Tol returns the tolerance to use on the test device for a comparison that holds to tol on the
// CPU: tol itself there, at least CUDARTol on CUDA (see the package comment).
func Tol(tol float64) float64 {
	if IsCUDA() {
		return max(tol, CUDARTol)
	}
	return tol
}

// Main is a TestMain for packages whose every test computes on the test device: it resolves the
// device first, so a bad setting stops the run with one line instead of failing each test.
func Main(m *testing.M) {
	if _, err := Setup(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// To moves every tensor of ts to d in place (reference files read on the CPU).
func To(ts map[string]*torch.Tensor, d torch.Device) error {
	if d.IsCPU() {
		return nil
	}
	return torch.Try(func() {
		for k, v := range ts {
			ts[k] = v.To(d)
		}
	})
}

// Bitwise reports how many values of got differ from want (NaN never equals), or a shape or
// dtype mismatch; "" when the two are identical. For tests that demand max |diff| 0 (a fused
// op against the op-by-op path it replaces), not a tolerance.
func Bitwise(got, want *torch.Tensor) string {
	var msg string
	err := torch.Try(func() {
		if fmt.Sprint(got.Shape()) != fmt.Sprint(want.Shape()) || got.DType() != want.DType() {
			msg = fmt.Sprintf("got %v %s, want %v %s", got.Shape(), got.DType(), want.Shape(), want.DType())
			return
		}
		if n := got.Ne(want).ToDType(torch.Int64).Sum().ItemInt(); n != 0 {
			d := got.ToDType(torch.Float64).Sub(want.ToDType(torch.Float64)).Abs().Max().Item()
			msg = fmt.Sprintf("%d of %d values differ (max |diff| %g)", n, want.Numel(), d)
		}
	})
	if err != nil {
		return err.Error()
	}
	return msg
}
