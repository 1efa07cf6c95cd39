package torch_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/affgd/affgd/torch"
)

// EmptyHost pins only where CUDA exists; HostSlice writes reach the tensor without a copy;
// StorageShared sees views, aliases and CPU To results, and not the handle alone.
func TestHostBuffers(t *testing.T) {
	err := torch.WithScope(func(*torch.Scope) {
		for _, pin := range []bool{false, true} {
			x, pinned, err := torch.EmptyHost([]int64{2, 3}, torch.Float32, pin)
			if err != nil {
				t.Fatal(err)
			}
			if want := pin && torch.CUDAIsAvailable(); pinned != want {
				t.Errorf("pin %v: pinned %v, want %v", pin, pinned, want)
			}
			s := torch.HostSlice[float32](x)
			if len(s) != 6 {
				t.Fatalf("slice of %d elements, want 6", len(s))
			}
			for i := range s {
				s[i] = float32(i) + 0.5
			}
			if got := x.Float32s(); !slices.Equal(got, s) {
				t.Errorf("tensor %v after writing %v", got, s)
			}
			if x.StorageShared() {
				t.Error("a fresh tensor reads as shared")
			}
			for name, mk := range map[string]func() *torch.Tensor{
				"narrow": func() *torch.Tensor { return x.Narrow(0, 0, 1) },
				"alias":  func() *torch.Tensor { return x.Alias() },
				"to cpu": func() *torch.Tensor { return x.To(torch.CPU) },
				"view":   func() *torch.Tensor { return x.Reshape(6) },
			} {
				v := mk()
				if !x.StorageShared() {
					t.Errorf("%s: not shared while the view lives", name)
				}
				v.Free()
				if x.StorageShared() {
					t.Errorf("%s: still shared after the view was freed", name)
				}
			}
		}
		// The wrong element type, a non-contiguous tensor, a released one: errors, not memory.
		x := torch.Zeros([]int64{2, 3})
		for name, fn := range map[string]func(){
			"dtype":      func() { torch.HostSlice[int64](x) },
			"contiguous": func() { torch.HostSlice[float32](x.Transpose(0, 1)) },
			"released":   func() { y := torch.Zeros([]int64{1}); y.Free(); torch.HostSlice[float32](y) },
		} {
			if err := torch.Try(fn); err == nil {
				t.Errorf("HostSlice %s: no error", name)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The C boundary of the copy streams on the CPU: the CPU's stream copies nothing and its events
// are complete (waits are no-ops, timing is an error naming why); a CUDA device without CUDA is
// one clear error; a tensor not in host memory is refused.
func TestCopyStreamCPU(t *testing.T) {
	s, err := torch.NewCopyStream(torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if s.Async() {
		t.Error("the CPU's copy stream says it is asynchronous")
	}
	before := torch.LiveTensors()
	err = torch.WithScope(func(*torch.Scope) {
		x := torch.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
		y := torch.FromSlice([]int64{7, 8}, 2)
		c0 := torch.ReadCounters()
		u := s.Upload(x, y)
		if got := torch.ReadCounters().Sub(c0); got.Uploads != 0 || got.Reads != 0 {
			t.Errorf("a CPU upload counted %+v", got)
		}
		if len(u.Tensors) != 2 || !slices.Equal(u.Tensors[0].Float32s(), x.Float32s()) || !slices.Equal(u.Tensors[1].Int64s(), y.Int64s()) {
			t.Fatalf("upload gave %v", u.Tensors)
		}
		if !x.StorageShared() {
			t.Error("the CPU upload does not share the source (it should be the tensor itself)")
		}
		if !u.Done.Done() {
			t.Error("a CPU event is not complete")
		}
		u.Wait()
		u.Done.Synchronize()
		if _, err := u.Done.ElapsedMS(); err == nil || !strings.Contains(err.Error(), "CUDA device only") {
			t.Errorf("ElapsedMS on the CPU: %v", err)
		}
		u.Release()
		if x.StorageShared() {
			t.Error("still shared after Release")
		}
		if n := len(s.Upload().Tensors); n != 0 {
			t.Errorf("empty upload gave %d tensors", n)
		}
		// A released source: the op's error.
		z := torch.Zeros([]int64{1})
		z.Free()
		if err := torch.Try(func() { s.Upload(z) }); err == nil || !strings.Contains(err.Error(), "released") {
			t.Errorf("upload of a released tensor: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if after := torch.LiveTensors(); after != before {
		t.Errorf("live tensors %d before, %d after", before, after)
	}
	if !torch.CUDAIsAvailable() {
		_, err := torch.NewCopyStream(torch.CUDA(0))
		if err == nil || !strings.Contains(err.Error(), "CUDA is not available") {
			t.Errorf("copy stream for cuda:0 without CUDA: %v", err)
		}
		return
	}
	// With a GPU: an upload really copies, its event completes, a device tensor is refused.
	g, err := torch.NewCopyStream(torch.CUDA(0))
	if err != nil {
		t.Fatal(err)
	}
	err = torch.WithScope(func(*torch.Scope) {
		x, pinned, err := torch.EmptyHost([]int64{1 << 20}, torch.Float32, true)
		if err != nil || !pinned {
			t.Fatalf("pinned buffer: %v %v", pinned, err)
		}
		s := torch.HostSlice[float32](x)
		for i := range s {
			s[i] = float32(i % 97)
		}
		c0 := torch.ReadCounters()
		u := g.Upload(x)
		if got := torch.ReadCounters().Sub(c0); got.Uploads != 0 {
			t.Errorf("a pinned upload counted %d blocking uploads", got.Uploads)
		}
		u.Wait()
		if !slices.Equal(u.Tensors[0].Float32s(), x.Float32s()) {
			t.Error("the uploaded values differ")
		}
		if !u.Done.Done() {
			t.Error("the event is not complete after a read of the result")
		}
		if ms, err := u.Done.ElapsedMS(); err != nil || ms < 0 {
			t.Errorf("ElapsedMS %v %v", ms, err)
		}
		if err := torch.Try(func() { g.Upload(u.Tensors[0]) }); err == nil || !strings.Contains(err.Error(), "not in host memory") {
			t.Errorf("upload of a device tensor: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
