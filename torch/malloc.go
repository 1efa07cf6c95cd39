package torch

/*
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
// M_MMAP_THRESHOLD fixed at glibc's initial 128 KiB (see fixMallocThreshold).
static int affgd_fix_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }
// malloc_trim(0): returns the free memory at the top of the main heap and, via madvise, the free
// pages inside every arena to the system.
static int affgd_malloc_trim(void) { return malloc_trim(0); }
// glibc's counts: arena bytes (sbrk and per-thread heaps), mmapped bytes, in use, free in arenas.
static int affgd_malloc_stats(long long *out) {
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
	struct mallinfo2 m = mallinfo2();
	out[0] = (long long)m.arena; out[1] = (long long)m.hblkhd; out[2] = (long long)m.uordblks; out[3] = (long long)m.fordblks;
	return 1;
#else
	return 0;
#endif
}
#else
static int affgd_fix_mmap_threshold(int bytes) { (void)bytes; return -1; }
static int affgd_malloc_trim(void) { return 0; }
static int affgd_malloc_stats(long long *out) { (void)out; return 0; }
#endif
*/
import "C"

import "os"

// MmapThreshold is the size from which glibc's malloc serves allocations with their own mmap
// (returned to the system by free), fixed by this package at start-up; see fixMallocThreshold.
const MmapThreshold = 128 << 10

// mallocFixed reports whether fixMallocThreshold fixed glibc's threshold.
var mallocFixed bool

// fixMallocThreshold keeps glibc's mmap threshold at its initial 128 KiB instead of letting it
// adapt. libtorch allocates tensor storage with malloc (posix_memalign); glibc raises its mmap
// threshold to the size of each mmapped block that is freed (up to 32 MiB), after which
// training's transient activations (1–30 MiB at the demo's settings) come from the per-thread
// malloc arenas instead, where the memory freed between steps stays with the process, fragmented
// across arenas: resident memory grew by ~1.4 GB over the demo's first 20 steps, and on by ~2.9 MB
// a step after that (docs/BENCHMARKS.md, "Resident memory"). With the threshold fixed, every
// allocation of 128 KiB or more is its own mapping, unmapped when libtorch frees it.
//
// MALLOC_MMAP_THRESHOLD_ in the environment (glibc's own setting) takes precedence, and
// AFFGD_MALLOC_DYNAMIC=1 keeps glibc's adaptive behaviour (to measure the difference).
func fixMallocThreshold() {
	if os.Getenv("MALLOC_MMAP_THRESHOLD_") != "" || os.Getenv("AFFGD_MALLOC_DYNAMIC") == "1" {
		return
	}
	mallocFixed = C.affgd_fix_mmap_threshold(MmapThreshold) == 1
}

// mallocTrim is whether ReleaseHostMemory trims glibc's arenas (AFFGD_MALLOC_TRIM=1).
var mallocTrim = os.Getenv("AFFGD_MALLOC_TRIM") == "1"

// ReleaseHostMemory returns the memory free inside glibc's malloc arenas to the system
// (malloc_trim) when AFFGD_MALLOC_TRIM=1 is set; otherwise, and without glibc, it does nothing.
// The trainer calls it after every step and evaluation. It reports whether memory was released.
func ReleaseHostMemory() bool {
	if !mallocTrim {
		return false
	}
	return C.affgd_malloc_trim() == 1
}

// MallocThresholdFixed reports whether glibc's mmap threshold was fixed at [MmapThreshold] when
// the package started (false without glibc, or when the environment asked otherwise).
func MallocThresholdFixed() bool { return mallocFixed }

// MallocStats are glibc's malloc counts (mallinfo2), for memory diagnostics.
type MallocStats struct {
	Arena   int64 // bytes in the malloc arenas (main heap and per-thread heaps)
	Mmapped int64 // bytes in blocks served by their own mmap
	InUse   int64 // bytes allocated from the arenas
	Free    int64 // bytes free inside the arenas (held by the process)
}

// ReadMallocStats returns glibc's malloc counts, or false without glibc ≥ 2.33.
func ReadMallocStats() (MallocStats, bool) {
	var out [4]C.longlong
	if C.affgd_malloc_stats(&out[0]) == 0 {
		return MallocStats{}, false
	}
	return MallocStats{Arena: int64(out[0]), Mmapped: int64(out[1]), InUse: int64(out[2]), Free: int64(out[3])}, true
}
