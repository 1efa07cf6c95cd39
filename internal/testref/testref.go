// Package testref locates the reference data that the generator scripts under tests/ write (run
// by `make testdata`), for the Go tests that compare against it.
package testref

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Root returns the reference-data directory: $AFFGD_TESTDATA, or tests/testdata in the repository.
func Root() string {
	if d := os.Getenv("AFFGD_TESTDATA"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "tests", "testdata")
}

// Dir returns the directory of one suite's reference data and fails the test when it is missing:
// a parity test must never pass by skipping.
func Dir(t testing.TB, suite string) string {
	t.Helper()
	d := filepath.Join(Root(), suite)
	if _, err := os.Stat(filepath.Join(d, ".stamp")); err != nil {
		if _, err2 := os.Stat(d); err2 != nil {
			t.Fatalf("reference data missing: run 'make testdata' (no %s)", d)
		}
	}
	return d
}

// Device returns the device the parity tests run on: $AFFGD_TEST_DEVICE ("cpu", "cuda:0", ...),
// default "cpu". scripts/gpu-check.sh sets it on a CUDA machine; internal/testdev checks it.
func Device() string {
	if d := os.Getenv("AFFGD_TEST_DEVICE"); d != "" {
		return d
	}
	return "cpu"
}

// RepoRoot returns the repository's root folder (where this package's source lives, two levels
// up), so that tests find the helper scripts under tests/ whatever folder they run from.
//
// $AFFGD_REPO overrides it: a prebuilt test binary run on another machine (scripts/gpu-check.sh)
// finds the repository there.
func RepoRoot() string {
	if d := os.Getenv("AFFGD_REPO"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Script returns the path of a helper script under tests/, e.g. Script("nn", "check_equal.py").
func Script(parts ...string) string {
	return filepath.Join(append([]string{RepoRoot(), "tests"}, parts...)...)
}

// Settle runs the garbage collector until live() (torch.LiveTensors) stays the same three times
// in a row, and returns that count. Tensors left unreachable by earlier tests are freed by runtime
// cleanups at arbitrary moments; a test that counts live tensors measures from a settled count.
func Settle(live func() int64) int64 {
	n, stable := live(), 0
	for i := 0; i < 100 && stable < 3; i++ {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if m := live(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}
