package torch

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
// The malloc settings of affgd_malloc_settings, also Go's MmapThreshold and ArenaMax.
#define AFFGD_MMAP_THRESHOLD (128 << 10)
#define AFFGD_ARENA_MAX 1
// Intel MKL's memory manager, where libtorch carries MKL (the x86-64 builds): looked up at run
// time, since other builds (aarch64, OpenBLAS) have no such symbols. mkl_serv_mem_stat and
// mkl_serv_free_buffers are what MKL's documented mkl_mem_stat and mkl_free_buffers call; only
// the mkl_serv_ names are exported by libtorch_cpu.
static long long (*affgd_mkl_mem_stat_fn)(int *);
static void (*affgd_mkl_free_buffers_fn)(void);
static int affgd_mkl_lookup(void) {
	affgd_mkl_mem_stat_fn = (long long (*)(int *))dlsym(RTLD_DEFAULT, "mkl_serv_mem_stat");
	affgd_mkl_free_buffers_fn = (void (*)(void))dlsym(RTLD_DEFAULT, "mkl_serv_free_buffers");
	return affgd_mkl_mem_stat_fn != NULL && affgd_mkl_free_buffers_fn != NULL;
}
static long long affgd_mkl_mem(int *buffers) { *buffers = 0; return affgd_mkl_mem_stat_fn(buffers); }
static void affgd_mkl_free_buffers(void) { affgd_mkl_free_buffers_fn(); }
#if defined(__GLIBC__)
#include <malloc.h>
// glibc's malloc settings (see fixMallocThreshold), made in a constructor: it runs when the
// program is loaded, before Go's runtime starts its threads, each of which frees memory when it
// starts and so gets a malloc arena of its own at once (the cap applies to arenas made after it).
static int affgd_threshold_fixed, affgd_arenas_capped;
static const char *affgd_env(const char *name) { const char *v = getenv(name); return v && *v ? v : NULL; }
__attribute__((constructor)) static void affgd_malloc_settings(void) {
	const char *dyn = affgd_env("AFFGD_MALLOC_DYNAMIC");
	if (dyn && dyn[0] == '1' && dyn[1] == 0) return;
	if (!affgd_env("MALLOC_MMAP_THRESHOLD_")) affgd_threshold_fixed = mallopt(M_MMAP_THRESHOLD, AFFGD_MMAP_THRESHOLD) == 1;
	if (!affgd_env("MALLOC_ARENA_MAX")) affgd_arenas_capped = mallopt(M_ARENA_MAX, AFFGD_ARENA_MAX) == 1;
}
static int affgd_malloc_fixed(void) { return affgd_threshold_fixed | affgd_arenas_capped << 1; }
// The number of malloc arenas: the <heap> elements of malloc_info's report.
#include <stdio.h>
#include <string.h>
static int affgd_malloc_arenas(void) {
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f) return -1;
	int ok = malloc_info(0, f) == 0;
	fclose(f);
	int n = 0;
	for (char *p = buf; ok && (p = strstr(p, "<heap nr=")) != NULL; p++) n++;
	free(buf);
	return ok ? n : -1;
}
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
static int affgd_malloc_fixed(void) { return 0; }
static int affgd_malloc_arenas(void) { return -1; }
static int affgd_malloc_trim(void) { return 0; }
static int affgd_malloc_stats(long long *out) { (void)out; return 0; }
#endif
*/
import "C"

import "os"

// MmapThreshold is the size from which glibc's malloc serves allocations with their own mmap
// (returned to the system by free), fixed by this package at start-up; see fixMallocThreshold.
const MmapThreshold = 128 << 10

// ArenaMax is the number of malloc arenas this package lets glibc use (M_ARENA_MAX); see
// fixMallocThreshold.
const ArenaMax = 1

// The C constructor's values are MmapThreshold and ArenaMax: a negative array length would not
// compile.
var (
	_ [MmapThreshold - C.AFFGD_MMAP_THRESHOLD]struct{}
	_ [C.AFFGD_MMAP_THRESHOLD - MmapThreshold]struct{}
	_ [ArenaMax - C.AFFGD_ARENA_MAX]struct{}
	_ [C.AFFGD_ARENA_MAX - ArenaMax]struct{}
)

// mallocFixed reports whether fixMallocThreshold fixed glibc's threshold; arenaFixed, whether it
// capped the arenas.
var mallocFixed, arenaFixed bool

// mallocDefaults is AFFGD_MALLOC_DYNAMIC=1: glibc's and MKL's own behaviour, none of this
// package's settings (to measure the difference).
var mallocDefaults = os.Getenv("AFFGD_MALLOC_DYNAMIC") == "1"

// fixMallocThreshold reads what the C constructor affgd_malloc_settings did when the program
// was loaded: it keeps glibc's mmap threshold at its initial 128 KiB instead of letting it adapt,
// and lets all threads share one malloc arena. libtorch allocates tensor storage with malloc
// (posix_memalign); glibc raises its mmap threshold to the size of each mmapped block that is
// freed (up to 32 MiB), after which training's transient activations (1–30 MiB at the demo's
// settings) come from the per-thread malloc arenas instead, where the memory freed between steps
// stays with the process, fragmented across arenas: resident memory grew by ~1.4 GB over the
// demo's first 20 steps, and on by ~2.9 MB a step after that (docs/BENCHMARKS.md, "Resident
// memory"). With the threshold fixed, every allocation of 128 KiB or more is its own mapping,
// unmapped when libtorch frees it.
//
// The smaller allocations stay in the arenas. glibc gives each new thread its own arena (up to 8
// per core), and Go runs a goroutine's cgo calls on whichever OS thread it is scheduled on, so the
// trainer's small long-lived objects (tensor metadata, autograd nodes) end up spread over all of
// them, each keeping its own free holes: with an arena per thread the native memory grew by
// 0.35–0.5 MB a step in the short RSS test (docs/BENCHMARKS.md). One arena ([ArenaMax]) keeps
// them in one place.
//
// MALLOC_MMAP_THRESHOLD_ and MALLOC_ARENA_MAX in the environment (glibc's own settings) take
// precedence, and AFFGD_MALLOC_DYNAMIC=1 keeps glibc's and MKL's own behaviour (to measure the
// difference).
func fixMallocThreshold() {
	f := C.affgd_malloc_fixed()
	mallocFixed, arenaFixed = f&1 != 0, f&2 != 0
}

// mallocTrim is whether ReleaseHostMemory trims glibc's arenas (AFFGD_MALLOC_TRIM=1).
var mallocTrim = os.Getenv("AFFGD_MALLOC_TRIM") == "1"

// hasMKL is whether libtorch carries Intel MKL's memory manager (looked up at start-up).
var hasMKL bool

// mklKeep is AFFGD_MKL_KEEP_BUFFERS=1: ReleaseHostMemory leaves MKL's buffers alone.
var mklKeep = os.Getenv("AFFGD_MKL_KEEP_BUFFERS") == "1"

func lookupMKL() { hasMKL = C.affgd_mkl_lookup() == 1 }

// ReleaseHostMemory returns host memory that libraries keep for reuse. The trainer calls it after
// every step and evaluation.
//
// It returns the buffers Intel MKL's memory manager keeps and no call is using (unless
// AFFGD_MALLOC_DYNAMIC=1 or AFFGD_MKL_KEEP_BUFFERS=1). MKL keeps its GEMM packing buffers per
// thread that called it, for reuse; every OS thread Go runs a matmul on (Go starts more as
// goroutines block in cgo calls) and every OpenMP worker such a thread starts gets its own set,
// kept for good: in the short RSS test glibc's mmapped bytes rose by 8.4 MB with each new thread
// (docs/BENCHMARKS.md, "Resident memory"). The next step allocates them again (a few mappings,
// against a step's thousands).
//
// With AFFGD_MALLOC_TRIM=1 it also trims glibc's arenas (malloc_trim) and reports whether that
// released memory; otherwise it reports false.
func ReleaseHostMemory() bool {
	if hasMKL && !mallocDefaults && !mklKeep {
		C.affgd_mkl_free_buffers()
	}
	if !mallocTrim {
		return false
	}
	return C.affgd_malloc_trim() == 1
}

// MKLBuffers returns the bytes and the number of buffers that Intel MKL's memory manager holds,
// or false when libtorch has no MKL.
func MKLBuffers() (bytes int64, buffers int, ok bool) {
	if !hasMKL {
		return 0, 0, false
	}
	var n C.int
	b := C.affgd_mkl_mem(&n)
	return int64(b), int(n), b >= 0
}

// MallocThresholdFixed reports whether glibc's mmap threshold was fixed at [MmapThreshold] when
// the package started (false without glibc, or when the environment asked otherwise).
func MallocThresholdFixed() bool { return mallocFixed }

// MallocArenasCapped reports whether glibc's malloc arenas were capped at [ArenaMax] when the
// package started (false without glibc, or when the environment asked otherwise).
func MallocArenasCapped() bool { return arenaFixed }

// MallocArenas returns the number of glibc's malloc arenas (malloc_info), or -1 without glibc.
func MallocArenas() int { return int(C.affgd_malloc_arenas()) }

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
