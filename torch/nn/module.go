// Package nn holds the building blocks of affgd's models: named parameters and buffers, the
// layers the models use (with PyTorch's parameter names and default initialisation), and state
// dicts checked key by key and shape by shape.
package nn

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/affgd/affgd/torch"
)

// Named is one entry of a module's state dict.
type Named struct {
	Name   string
	Tensor *torch.Tensor
	Buffer bool // a buffer (running statistics), not a trainable parameter
}

// Module is anything holding parameters and buffers. NamedTensors lists them with dotted names
// in state-dict order (parameters and buffers of each submodule together, as PyTorch does).
type Module interface {
	NamedTensors() []Named
}

// Prefixed returns m's entries with prefix+"." before each name (no dot for an empty prefix).
func Prefixed(prefix string, m Module) []Named {
	ts := m.NamedTensors()
	if prefix == "" {
		return ts
	}
	out := make([]Named, len(ts))
	for i, n := range ts {
		n.Name = prefix + "." + n.Name
		out[i] = n
	}
	return out
}

// Parameters returns the trainable entries of m (not the buffers).
func Parameters(m Module) []Named {
	var out []Named
	for _, n := range m.NamedTensors() {
		if !n.Buffer {
			out = append(out, n)
		}
	}
	return out
}

// StateDictError lists every problem found when loading a state dict into a module.
type StateDictError struct {
	Source     string   // the file or description of the state dict
	Missing    []string // keys the module has and the state dict lacks
	Unexpected []string // keys the state dict has and the module lacks
	Mismatched []string // "key: shape A in the file, B in the model"
}

func (e *StateDictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nn: %s does not fit the model:", e.Source)
	list := func(what string, keys []string) {
		if len(keys) == 0 {
			return
		}
		const show = 20
		fmt.Fprintf(&b, "\n  %d %s:", len(keys), what)
		for i, k := range keys {
			if i == show {
				fmt.Fprintf(&b, "\n    ... and %d more", len(keys)-show)
				break
			}
			fmt.Fprintf(&b, "\n    %s", k)
		}
	}
	list("missing key(s)", e.Missing)
	list("unexpected key(s)", e.Unexpected)
	list("key(s) with the wrong shape", e.Mismatched)
	return b.String()
}

// LoadOptions tune [Load].
type LoadOptions struct {
	// Ignore reports keys of the state dict that are expected extras and not errors (published
	// files carry such entries, e.g. OpenAI CLIP's input_resolution or DINO's head).
	Ignore func(key string) bool
	// AllowMissing reports module keys that may be absent from the state dict (they keep their
	// current values).
	AllowMissing func(key string) bool
}

// Load copies the tensors of sd into m's parameters and buffers, converting dtype (float16
// weights become float32) and device. It checks every key and shape first and changes nothing
// when anything is wrong, returning a *StateDictError that lists every problem.
func Load(m Module, sd map[string]*torch.Tensor, source string, opt LoadOptions) error {
	e := &StateDictError{Source: source}
	dst := m.NamedTensors()
	seen := make(map[string]bool, len(dst))
	for _, n := range dst {
		seen[n.Name] = true
		src, ok := sd[n.Name]
		if !ok {
			if opt.AllowMissing == nil || !opt.AllowMissing(n.Name) {
				e.Missing = append(e.Missing, n.Name)
			}
			continue
		}
		var ws, gs []int64
		if err := torch.Try(func() { ws, gs = n.Tensor.Shape(), src.Shape() }); err != nil {
			return err
		}
		if !slices.Equal(ws, gs) {
			e.Mismatched = append(e.Mismatched, fmt.Sprintf("%s: shape %v in the file, %v in the model", n.Name, gs, ws))
		}
	}
	for k := range sd {
		if !seen[k] && (opt.Ignore == nil || !opt.Ignore(k)) {
			e.Unexpected = append(e.Unexpected, k)
		}
	}
	sort.Strings(e.Unexpected)
	if len(e.Missing)+len(e.Unexpected)+len(e.Mismatched) > 0 {
		return e
	}
	return torch.Try(func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			for _, n := range dst {
				if src, ok := sd[n.Name]; ok {
					n.Tensor.Copy_(src)
				}
			}
		})
	})
}

// StateDict returns m's entries as a map from name to tensor (the module's own tensors).
func StateDict(m Module) map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for _, n := range m.NamedTensors() {
		out[n.Name] = n.Tensor
	}
	return out
}
