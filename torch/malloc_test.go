package torch

import (
	"os"
	"runtime"
	"sync"
	"testing"
)

// TestReleaseHostMemory checks that ReleaseHostMemory does nothing unless AFFGD_MALLOC_TRIM=1
// asked for it, and that with it glibc gives back the free memory left by a freed tensor.
func TestReleaseHostMemory(t *testing.T) {
	defer func(v bool) { mallocTrim = v }(mallocTrim)
	mallocTrim = false
	if ReleaseHostMemory() {
		t.Fatal("ReleaseHostMemory released memory without AFFGD_MALLOC_TRIM=1")
	}
	if _, ok := ReadMallocStats(); !ok {
		t.Skip("no glibc ≥ 2.33 malloc counts")
	}
	mallocTrim = true
	ReleaseHostMemory() // start from trimmed arenas
	// Many small tensors (below any mmap threshold) come from the arenas; freed, they leave free
	// memory there that malloc_trim returns.
	s := NewScope()
	for range 2000 {
		Zeros([]int64{1024})
	}
	s.Close()
	if !ReleaseHostMemory() {
		t.Errorf("ReleaseHostMemory with AFFGD_MALLOC_TRIM=1 released nothing after freeing 8 MB of small tensors")
	}
}

// TestReleaseHostMemoryMKL checks that ReleaseHostMemory returns the GEMM buffers Intel MKL keeps
// after a matmul (where libtorch carries MKL), and keeps them with AFFGD_MALLOC_DYNAMIC=1.
func TestReleaseHostMemoryMKL(t *testing.T) {
	if _, _, ok := MKLBuffers(); !ok {
		t.Skip("libtorch has no MKL memory manager")
	}
	defer func(d, k bool) { mallocDefaults, mklKeep = d, k }(mallocDefaults, mklKeep)
	mklKeep = false
	for _, defaults := range []bool{false, true} {
		mallocDefaults = defaults
		s := NewScope()
		a := Ones([]int64{512, 512})
		a.Matmul(a)
		s.Close()
		held, n, _ := MKLBuffers()
		if held <= 0 {
			t.Fatalf("MKL holds %d bytes in %d buffers after a 512×512 matmul: want its GEMM buffers", held, n)
		}
		ReleaseHostMemory()
		after, n, _ := MKLBuffers()
		if !defaults && after != 0 {
			t.Errorf("MKL still holds %d bytes in %d buffers after ReleaseHostMemory (%d before)", after, n, held)
		}
		if defaults && after != held {
			t.Errorf("with AFFGD_MALLOC_DYNAMIC=1, ReleaseHostMemory changed MKL's buffers from %d to %d bytes", held, after)
		}
	}
}

// TestMallocSettings checks that the package fixed glibc's threshold and capped its arenas at
// start-up, unless the environment asked otherwise.
func TestMallocSettings(t *testing.T) {
	if _, ok := ReadMallocStats(); !ok {
		t.Skip("no glibc ≥ 2.33")
	}
	want := os.Getenv("AFFGD_MALLOC_DYNAMIC") != "1"
	if got := MallocThresholdFixed(); got != (want && os.Getenv("MALLOC_MMAP_THRESHOLD_") == "") {
		t.Errorf("MallocThresholdFixed() = %v", got)
	}
	if got := MallocArenasCapped(); got != (want && os.Getenv("MALLOC_ARENA_MAX") == "") {
		t.Errorf("MallocArenasCapped() = %v", got)
	}
}

// TestMallocArenas checks that new threads that allocate share the one arena of the package's
// cap, made before Go's runtime started its own threads (a cap set later leaves each of those
// with an arena of its own: 5 here).
func TestMallocArenas(t *testing.T) {
	if MallocArenas() < 0 || !MallocArenasCapped() {
		t.Skip("no glibc, or its arenas not capped by this package (environment)")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // a thread of its own, left to exit with the goroutine
			s := NewScope()
			for range 100 {
				Zeros([]int64{64})
			}
			s.Close()
		}()
	}
	wg.Wait()
	if n := MallocArenas(); n != ArenaMax {
		t.Errorf("glibc has %d malloc arenas after 8 threads allocated, want %d", n, ArenaMax)
	}
}
