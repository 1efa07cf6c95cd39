package torch

/*
#include "affgd_torch.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// SetDeterministic turns libtorch's deterministic algorithms (torch.use_deterministic_algorithms,
// warn_only false: an op with no deterministic implementation fails instead of running) and
// cuDNN's deterministic mode (torch.backends.cudnn.deterministic, which also turns cuDNN's
// benchmark autotuning off) on or off, for the whole process. On CUDA, deterministic cuBLAS also
// needs CUBLAS_WORKSPACE_CONFIG=:4096:8 (or :16:8) in the environment before the first CUDA call;
// see [DeterministicEnv]. docs/CONFIG.md (key deterministic) says what it makes reproducible.
func SetDeterministic(on bool) {
	C.at_set_deterministic_algorithms(cBool(on))
	C.at_set_cudnn_deterministic(cBool(on))
	if on {
		C.at_set_cudnn_benchmark(0)
	}
}

// Deterministic reports whether both switches of [SetDeterministic] are on.
func Deterministic() bool {
	return C.at_get_deterministic_algorithms() != 0 && C.at_get_cudnn_deterministic() != 0
}

// DeterministicEnv is the environment variable (and the value [SetDeterministic]'s callers set
// when it is unset) that makes cuBLAS choose deterministic workspaces, as PyTorch documents for
// torch.use_deterministic_algorithms on CUDA ≥ 10.2.
const DeterministicEnv, DeterministicEnvValue = "CUBLAS_WORKSPACE_CONFIG", ":4096:8"

// MemoryStats are the CUDA caching allocator's figures for one device, in bytes: what tensors
// hold now and at most since the last [ResetPeakMemory] (torch.cuda.memory_allocated /
// max_memory_allocated), and what the allocator has reserved from the driver
// (memory_reserved / max_memory_reserved).
type MemoryStats struct {
	Allocated, PeakAllocated, Reserved, PeakReserved int64
}

// CUDAMemoryStats returns d's caching-allocator statistics; an error on the CPU (see
// the process's peak resident memory for a CPU figure).
func CUDAMemoryStats(d Device) (MemoryStats, error) {
	var s MemoryStats
	if d.IsCPU() {
		return s, errors.New("torch: memory statistics are kept for CUDA devices only, not the CPU")
	}
	var a, pa, r, pr C.int64_t
	if err := errFrom("cuda_memory_stats", C.at_cuda_memory_stats(C.int(d.Index()), &a, &pa, &r, &pr)); err != nil {
		return s, err
	}
	return MemoryStats{Allocated: int64(a), PeakAllocated: int64(pa), Reserved: int64(r), PeakReserved: int64(pr)}, nil
}

// ResetPeakMemory sets d's peaks to the current values (torch.cuda.reset_peak_memory_stats); it
// does nothing on the CPU.
func ResetPeakMemory(d Device) error {
	if d.IsCPU() {
		return nil
	}
	return errFrom("cuda_reset_peak_memory", C.at_cuda_reset_peak_memory(C.int(d.Index())))
}

// CUDAMemInfo returns d's free and total memory as the driver reports them.
func CUDAMemInfo(d Device) (free, total int64, err error) {
	if d.IsCPU() {
		return 0, 0, errors.New("torch: CUDAMemInfo: the CPU is not a CUDA device")
	}
	var f, t C.int64_t
	err = errFrom("cuda_mem_info", C.at_cuda_mem_info(C.int(d.Index()), &f, &t))
	return int64(f), int64(t), err
}

// OutOfMemoryError is a CUDA allocation failure, read off libtorch's message ("CUDA out of
// memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which
// 1.06 GiB is free. ..."). Figures the message does not give are -1.
type OutOfMemoryError struct {
	Device               int   // CUDA index (-1 when the message does not say)
	Requested, Free, Cap int64 // bytes
	Msg                  string
}

func (e *OutOfMemoryError) Error() string {
	return fmt.Sprintf("CUDA out of memory on cuda:%d: %s requested, %s free of %s", e.Device,
		FormatBytes(e.Requested), FormatBytes(e.Free), FormatBytes(e.Cap))
}

var (
	oomRequested = regexp.MustCompile(`Tried to allocate ([0-9.]+) ([KMGTP]?i?B)`)
	// PyTorch ≥ 2.1: "GPU 0 has a total capacity of 79.15 GiB of which 1.06 GiB is free".
	oomNew = regexp.MustCompile(`GPU (\d+) has a total capacity of ([0-9.]+) ([KMGTP]?i?B) of which ([0-9.]+) ([KMGTP]?i?B) is free`)
	// Older: "(GPU 0; 15.78 GiB total capacity; 12.00 GiB already allocated; 1.50 GiB free; ...".
	oomOld = regexp.MustCompile(`GPU (\d+); ([0-9.]+) ([KMGTP]?i?B) total capacity;.*?; ([0-9.]+) ([KMGTP]?i?B) free`)
)

// AsOutOfMemory reports whether err is (or wraps) a CUDA out-of-memory failure of libtorch, and
// returns its figures.
func AsOutOfMemory(err error) (*OutOfMemoryError, bool) {
	var oe *OutOfMemoryError
	if errors.As(err, &oe) {
		return oe, true
	}
	var te *Error
	if !errors.As(err, &te) || !strings.Contains(te.Msg, "out of memory") {
		return nil, false
	}
	e := &OutOfMemoryError{Device: -1, Requested: -1, Free: -1, Cap: -1, Msg: te.Msg}
	if m := oomRequested.FindStringSubmatch(te.Msg); m != nil {
		e.Requested = parseBytes(m[1], m[2])
	}
	if m := oomNew.FindStringSubmatch(te.Msg); m != nil {
		e.Device, _ = strconv.Atoi(m[1])
		e.Cap, e.Free = parseBytes(m[2], m[3]), parseBytes(m[4], m[5])
	} else if m := oomOld.FindStringSubmatch(te.Msg); m != nil {
		e.Device, _ = strconv.Atoi(m[1])
		e.Cap, e.Free = parseBytes(m[2], m[3]), parseBytes(m[4], m[5])
	}
	return e, true
}

var byteUnits = map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}

func parseBytes(num, unit string) int64 {
	f, err := strconv.ParseFloat(num, 64)
	mul, ok := byteUnits[unit]
	if err != nil || !ok {
		return -1
	}
	return int64(f * mul)
}

// FormatBytes writes n as PyTorch's messages do ("2.00 GiB"); negative n (unknown) is "?".
func FormatBytes(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.2f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
