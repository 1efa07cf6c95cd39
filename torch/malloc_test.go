package torch

import "testing"

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
