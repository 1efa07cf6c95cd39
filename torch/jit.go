package torch

/*
#include <stdlib.h>
#include "affgd_torch.h"
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

// LoadTorchScript reads every parameter and buffer of a TorchScript archive (a file written by
// torch.jit.save, such as OpenAI's CLIP ViT-B-16.pt), with dotted names as in the module's
// state_dict, in module order. No code from the archive runs.
func LoadTorchScript(path string) (names []string, tensors []*Tensor, err error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("torch: TorchScript archive: %w", err)
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var cn **C.char
	var ct *C.at_tensor
	var n C.int
	if err := errFrom("jit_load", C.at_jit_load_tensors(cp, &cn, &ct, &n)); err != nil {
		return nil, nil, fmt.Errorf("torch: %s is not a readable TorchScript archive: %v", path, err.(*Error).Msg)
	}
	ns := unsafe.Slice(cn, int(n))
	names = make([]string, len(ns))
	for i, s := range ns {
		names[i] = C.GoString(s)
		C.at_free_string(s)
	}
	C.at_free(unsafe.Pointer(cn))
	tensors = wrapList(ct, n)
	return names, tensors, nil
}
