package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// failingWriter accepts n bytes, then reports a full disk.
type failingWriter struct {
	w io.Writer
	n int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, syscall.ENOSPC
	}
	f.n -= len(p)
	return f.w.Write(p)
}

func TestWrite(t *testing.T) {
	big := strings.Repeat("x", 3<<20) // larger than the buffer, so failures happen mid-file
	for _, tc := range []struct {
		name     string
		previous string // "" = no previous file
		failAt   int    // -1 = no failure
		want     string
	}{
		{"new file", "", -1, big},
		{"replace", "old", -1, big},
		{"full disk at once keeps the old file", "old", 0, "old"},
		{"full disk mid-file keeps the old file", "old", 2 << 20, "old"},
		{"full disk without a previous file leaves none", "", 100, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ckpt.pth")
			if tc.previous != "" {
				os.WriteFile(path, []byte(tc.previous), 0o644)
			}
			err := Write(path, func(w io.Writer) error {
				if tc.failAt >= 0 {
					w = &failingWriter{w: w, n: tc.failAt}
				}
				_, err := io.WriteString(w, big)
				return err
			})
			if (err != nil) != (tc.failAt >= 0) {
				t.Fatalf("error %v, want failure: %v", err, tc.failAt >= 0)
			}
			if err != nil && !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("error %v does not carry the cause", err)
			}
			got, rerr := os.ReadFile(path)
			if tc.want == "" {
				if !os.IsNotExist(rerr) {
					t.Fatalf("a file appeared: %v", rerr)
				}
			} else if string(got) != tc.want {
				t.Fatalf("file holds %d bytes, want %d", len(got), len(tc.want))
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp") {
					t.Fatalf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
	if err := WriteBytes(t.TempDir()+"/", []byte("x")); err == nil {
		t.Fatal("a folder path was accepted")
	}
}

// TestRemoveStale: the temporaries a killed writer leaves are removed, nothing else is.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	// A real temporary, as Write names them, left by a write that failed half way.
	keep := []string{"state.pt", "other.txt", ".state.pt.tmpX", ".state.pt.tmp", ".notes.tmp123", "state.pt.tmp123"}
	for _, n := range keep {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stale []string
	for _, n := range []string{"state.pt", "last.pth"} {
		f, err := os.CreateTemp(dir, "."+n+".tmp*")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		stale = append(stale, f.Name())
	}
	removed, err := RemoveStale(dir, "state.pt", "last.pth", "best.pth")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(stale) {
		t.Errorf("removed %v, want %v", removed, stale)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed", p)
		}
	}
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was removed: %v", n, err)
		}
	}
}
