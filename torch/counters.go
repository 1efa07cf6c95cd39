package torch

/*
#include "affgd_torch.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Counters are the shim's process-wide counts of what a GPU pays for (always kept, with relaxed
// atomics; read them with [ReadCounters]). Reads and Uploads are counted on every device, so a
// run on the CPU shows what the same code would stall on on a GPU.
type Counters struct {
	// Calls is every call into the shim that can fail (tensor facts such as Shape included).
	Calls int64
	// Ops is the libtorch ops these calls run, those that make or change a tensor: kernel
	// launches on a GPU (views, which launch none, included). A call runs one, except the fused
	// calls ([ViTBlock], [CLIPBlock], [KMeansStep]): one call each, counted here with every op it
	// runs, so Ops may exceed Calls and does not change when ops are fused.
	Ops int64
	// Reads is device→host reads: Item, copies of tensor data to Go memory (Float32s, Data, ...),
	// To(CPU) of a device tensor, printing a tensor, and the ops whose output size depends on the
	// values (Nonzero, MaskedSelect, Unique, boolean-mask indexing). Each stalls a GPU's stream.
	Reads int64
	// Uploads is blocking host→device copies: tensors made from Go memory (FromSlice, FromBytes,
	// Scalar, ...) and To(CUDA) of a CPU tensor.
	Uploads int64
}

// ReadCounters returns the shim's counters since the process started or the last
// [ResetCounters].
func ReadCounters() Counters {
	var v [C.AT_NUM_COUNTERS]C.int64_t
	C.at_counters((*C.int64_t)(unsafe.Pointer(&v[0])), C.AT_NUM_COUNTERS)
	return Counters{
		Calls: int64(v[C.AT_COUNTER_calls]), Ops: int64(v[C.AT_COUNTER_ops]),
		Reads: int64(v[C.AT_COUNTER_reads]), Uploads: int64(v[C.AT_COUNTER_uploads]),
	}
}

// ResetCounters sets every counter to zero.
func ResetCounters() { C.at_reset_counters() }

// Sub returns c − o, counter by counter (the counts between two readings).
func (c Counters) Sub(o Counters) Counters {
	return Counters{Calls: c.Calls - o.Calls, Ops: c.Ops - o.Ops, Reads: c.Reads - o.Reads, Uploads: c.Uploads - o.Uploads}
}

// Per returns each counter divided by n (per step, per image), as float64s in the order calls,
// ops, reads, uploads.
func (c Counters) Per(n int) [4]float64 {
	f := float64(max(n, 1))
	return [4]float64{float64(c.Calls) / f, float64(c.Ops) / f, float64(c.Reads) / f, float64(c.Uploads) / f}
}

// String formats the counters on one line.
func (c Counters) String() string {
	return fmt.Sprintf("%d shim calls (%d ops), %d device→host reads, %d host→device copies", c.Calls, c.Ops, c.Reads, c.Uploads)
}
