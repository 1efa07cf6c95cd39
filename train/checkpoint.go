package train

import (
	"fmt"
	"io"

	"github.com/affgd/affgd/internal/atomicfile"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/torch/ptfile"
)

// CLIPPrefix is where the released checkpoint keeps the CLIP model (its Net.net); the DINO ViT
// is under [dino.SelectiveCLPrefix] ("vit_model") and the head's keys have no prefix.
const CLIPPrefix = "net"

// StateDict returns the model's full state dict in the layout of the released checkpoint
// (torch.save(model.state_dict()) of the released Net): vit_model.* (the DINO ViT, DINO's key
// names and order), net.* (CLIP, open_clip's names and order; its attn_mask is a non-persistent
// buffer and is not part of it), then the head's parameters and buffers (aff_proj.*, ...,
// aff_exo_proj.4.num_batches_tracked), in the released order. The tensors are the model's own.
func (m *Model) StateDict() ([]nn.Named, error) {
	if m == nil || m.DINO == nil || m.CLIP == nil || m.Head == nil {
		return nil, errIncomplete
	}
	var out []nn.Named
	out = append(out, nn.Prefixed(dino.SelectiveCLPrefix, m.DINO)...)
	out = append(out, nn.Prefixed(CLIPPrefix, m.CLIP)...)
	return append(out, m.Head.NamedTensors()...), nil
}

var errIncomplete = fmt.Errorf("train: the model is incomplete (a checkpoint holds DINO, CLIP and the head)")

// SaveCheckpoint writes m's full state dict ([Model.StateDict]) to path as torch.save does
// (zip format; torch.load reads it, weights_only included), so the released PyTorch code loads
// it with load_state_dict(strict=True) and [Load] reads it back with Files.Checkpoint.
//
// The write is atomic: the file is written as a temporary file in path's folder, synced and
// renamed over path. On any error (a full disk included) the previous file at path is left
// byte for byte as it was, the temporary file is removed, and the error names path and the
// cause. Each tensor is copied to host memory once while writing, so the peak memory is about
// the model's size again on top of the model.
func SaveCheckpoint(path string, m *Model) error {
	sd, err := m.StateDict()
	if err != nil {
		return fmt.Errorf("train: checkpoint %s not written: the model is incomplete (a checkpoint holds DINO, CLIP and the head)", path)
	}
	return writeTensors(path, "checkpoint", sd, nil)
}

// writeHook, when set (by tests only), wraps the writer of the temporary file: it is the seam
// through which a test makes a write fail midway, as a full disk does.
var writeHook func(io.Writer) io.Writer

// writeTensors writes the named tensors, then the raw entries, atomically to path as a
// torch.save state dict. what names the kind of file in errors.
func writeTensors(path, what string, named []nn.Named, raw []ptfile.Entry) error {
	entries := make([]ptfile.Entry, 0, len(named)+len(raw))
	err := torch.WithScope(func(*torch.Scope) {
		for _, n := range named {
			dt, ok := fileDType(n.Tensor.DType())
			if !ok {
				torch.Fail("save", "tensor %q has dtype %s, which a checkpoint cannot hold", n.Name, n.Tensor.DType())
			}
			// The bytes are fetched while the file is written, one tensor at a time, so a
			// checkpoint costs the largest tensor in memory, not a copy of the model.
			t := n.Tensor
			load := func() (b []byte, err error) {
				err = torch.WithScope(func(*torch.Scope) { b = t.Bytes() })
				return b, err
			}
			entries = append(entries, ptfile.Entry{Name: n.Name, Tensor: &ptfile.Tensor{DType: dt, Shape: t.Shape(), Load: load}})
		}
	})
	if err != nil {
		return fmt.Errorf("train: %s %s not written: %w", what, path, err)
	}
	entries = append(entries, raw...)
	if err := writeAtomic(path, entries); err != nil {
		return fmt.Errorf("train: %s %s not written (any previous file there is unchanged): %w", what, path, err)
	}
	return nil
}

// writeAtomic writes entries to path through internal/atomicfile (a temporary file beside path,
// synced and renamed over it; on failure path is left alone).
func writeAtomic(path string, entries []ptfile.Entry) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		if writeHook != nil {
			w = writeHook(w)
		}
		return ptfile.WriteTo(w, entries)
	})
}

// fileDType and torchDType map between the two packages' element types, which share PyTorch's
// names ("float32", ...).
func fileDType(d torch.DType) (ptfile.DType, bool) {
	for fd := ptfile.Float32; fd <= ptfile.Bool; fd++ {
		if fd.String() == d.String() {
			return fd, true
		}
	}
	return 0, false
}

func torchDType(d ptfile.DType) (torch.DType, bool) {
	for td := torch.Float32; td <= torch.Bool; td++ {
		if td.String() == d.String() {
			return td, true
		}
	}
	return 0, false
}
