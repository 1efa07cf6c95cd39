package nn

import (
	"archive/zip"
	"fmt"
	"os"
	"strings"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/ptfile"
)

// File is the tensors of a checkpoint file, by name, in file order.
type File struct {
	Path    string
	Format  string // "torch.save" or "torchscript"
	Names   []string
	Tensors map[string]*torch.Tensor
}

// ReadFile reads every tensor of a checkpoint in any format users have: a torch.save file (zip or
// legacy pre-1.6 format; nested dicts flattened with dots) or a TorchScript archive (parameters
// and buffers of the scripted module). Tensors are created on the CPU in their stored dtype.
// Nothing in the file is executed.
func ReadFile(path string) (*File, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("nn: checkpoint: %w", err)
	}
	if isTorchScript(path) {
		names, ts, err := torch.LoadTorchScript(path)
		if err != nil {
			return nil, err
		}
		f := &File{Path: path, Format: "torchscript", Names: names, Tensors: map[string]*torch.Tensor{}}
		for i, n := range names {
			f.Tensors[n] = ts[i]
		}
		return f, nil
	}
	entries, err := ptfile.Read(path)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path, Format: "torch.save", Tensors: map[string]*torch.Tensor{}}
	err = torch.Try(func() {
		for _, e := range entries {
			dt, ok := fromFileDType[e.Tensor.DType]
			if !ok {
				torch.Fail("read", "%s: tensor %q has unsupported dtype %s", path, e.Name, e.Tensor.DType)
			}
			f.Names = append(f.Names, e.Name)
			f.Tensors[e.Name] = torch.FromBytes(e.Tensor.Data, dt, e.Tensor.Shape, torch.CPU)
		}
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// isTorchScript reports whether path is a zip archive written by torch.jit.save (it holds
// constants.pkl and compiled code, which torch.save files never do).
func isTorchScript(path string) bool {
	z, err := zip.OpenReader(path)
	if err != nil {
		return false
	}
	defer z.Close()
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, "/constants.pkl") || strings.Contains(f.Name, "/code/") {
			return true
		}
	}
	return false
}

// WriteFile saves entries as a torch.save-compatible state dict (an OrderedDict in the zip format
// that torch.load reads, weights_only included), atomically: a crash or a full disk leaves any
// previous file at path intact.
func WriteFile(path string, entries []Named) error {
	out := make([]ptfile.Entry, len(entries))
	err := torch.Try(func() {
		for i, n := range entries {
			dt, ok := toFileDType[n.Tensor.DType()]
			if !ok {
				torch.Fail("write", "tensor %q has unsupported dtype %s", n.Name, n.Tensor.DType())
			}
			out[i] = ptfile.Entry{Name: n.Name, Tensor: &ptfile.Tensor{DType: dt, Shape: n.Tensor.Shape(), Data: n.Tensor.Bytes()}}
		}
	})
	if err != nil {
		return err
	}
	return ptfile.Write(path, out)
}

// Dotted names of the two packages' dtypes agree ("float32", ...): map by name.
var fromFileDType, toFileDType = func() (map[ptfile.DType]torch.DType, map[torch.DType]ptfile.DType) {
	from, to := map[ptfile.DType]torch.DType{}, map[torch.DType]ptfile.DType{}
	for fd := ptfile.Float32; fd <= ptfile.Bool; fd++ {
		for td := torch.Float32; td <= torch.Bool; td++ {
			if fd.String() == td.String() {
				from[fd], to[td] = td, fd
			}
		}
	}
	return from, to
}()
