package torch

/*
#include <stdlib.h>
#include "affgd_torch.h"
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"
)

// SaveTorchScript writes tensors as a TorchScript archive (the torch.jit.save format, the
// container OpenAI publishes CLIP in) whose module tree holds each tensor under its dotted name:
// "visual.conv1.weight" is the attribute weight of submodule conv1 of submodule visual. Floating
// tensors are registered as parameters, other dtypes as buffers; all are stored on the CPU in
// their own dtype. The archive compiles no methods: Python's torch.jit.load reads it, its
// state_dict() lists the tensors in the given order, and [LoadTorchScript] reads them back.
//
// Names must be non-empty dot-separated components, given once, and no name may be a module of
// another ("a" and "a.b" together are refused). The file is written atomically: a failure leaves
// any previous file at path intact.
func SaveTorchScript(path string, names []string, tensors []*Tensor) error {
	if len(names) != len(tensors) {
		return fmt.Errorf("torch: SaveTorchScript: %d names for %d tensors", len(names), len(tensors))
	}
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		if tensors[i] == nil {
			return fmt.Errorf("torch: SaveTorchScript: tensor %q is nil", n)
		}
		for _, p := range strings.Split(n, ".") {
			if p == "" {
				return fmt.Errorf("torch: SaveTorchScript: tensor name %q has an empty component", n)
			}
		}
		if seen[n] {
			return fmt.Errorf("torch: SaveTorchScript: tensor name %q given twice", n)
		}
		seen[n] = true
	}
	for _, n := range names {
		for i := strings.IndexByte(n, '.'); i >= 0; i = nextDot(n, i) {
			if seen[n[:i]] {
				return fmt.Errorf("torch: SaveTorchScript: %q is a tensor and also the module of %q", n[:i], n)
			}
		}
	}

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("torch: SaveTorchScript: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmpName)
		}
	}()

	cnames := make([]*C.char, len(names))
	for i, n := range names {
		cnames[i] = C.CString(n)
	}
	defer func() {
		for _, p := range cnames {
			C.free(unsafe.Pointer(p))
		}
	}()
	cp := C.CString(tmpName)
	defer C.free(unsafe.Pointer(cp))
	var np **C.char
	if len(cnames) > 0 {
		np = &cnames[0]
	}
	defer runtime.KeepAlive(tensors)
	th, n, hs := handles(tensors)
	e := C.at_jit_save_tensors(cp, np, th, n)
	_ = hs
	runtime.KeepAlive(tensors)
	if err := errFrom("jit_save", e); err != nil {
		return fmt.Errorf("torch: writing TorchScript archive %s: %v", path, err.(*Error).Msg)
	}

	f, err := os.Open(tmpName)
	if err != nil {
		return fmt.Errorf("torch: SaveTorchScript: %w", err)
	}
	err = f.Sync()
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp made it private; archives are ordinary files
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("torch: SaveTorchScript: %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("torch: SaveTorchScript: %w", err)
	}
	ok = true
	return nil
}

// nextDot returns the index of the next '.' in s after position i, or -1.
func nextDot(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '.')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
