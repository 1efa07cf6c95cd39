package train

import (
	"fmt"
	"strings"

	"github.com/affgd/affgd/torch"
)

// BackboneDTypes are the valid values of the backbone_dtype option (config key, --backbone-dtype):
// float32 (the default, parity) and the two lower-precision speed options.
var BackboneDTypes = []string{"float32", "bf16", "fp16"}

// Precision holds the speed options that trade parity for speed; the zero value is exact float32,
// the default. Neither is parity: see docs/CONFIG.md.
type Precision struct {
	// TF32 lets CUDA float32 matrix products and convolutions use TF32 tensor cores (cuBLAS and
	// cuDNN). It has no meaning on the CPU, where it is ignored with a notice.
	TF32 bool
	// BackboneDType is the dtype the frozen image backbones (DINO, CLIP's image tower) run in:
	// "float32" or "" (default), "bf16" or "fp16". Their outputs are cast back to float32; the
	// CLIP text tower, the head and the losses stay float32.
	BackboneDType string
}

// ParseBackboneDType maps a backbone_dtype value to its torch dtype ("" is float32).
func ParseBackboneDType(s string) (torch.DType, error) {
	switch strings.ToLower(s) {
	case "", "float32", "fp32":
		return torch.Float32, nil
	case "bf16", "bfloat16":
		return torch.BFloat16, nil
	case "fp16", "float16":
		return torch.Float16, nil
	}
	return torch.Float32, fmt.Errorf("%q is not a backbone dtype: want one of %s", s, strings.Join(BackboneDTypes, ", "))
}

// SetPrecision applies p to m, whose weights live on dev: the backbones' compute dtype, and the
// process-wide TF32 switches of libtorch (set on CUDA to p.TF32 for both cuBLAS and cuDNN, so the
// default is exact float32 — PyTorch's own default lets cuDNN use TF32). It returns a notice for
// the user, to be prefixed with the option's name, when tf32 is set on the CPU, where it has no
// effect and is ignored; else "".
func (m *Model) SetPrecision(p Precision, dev torch.Device) (notice string, err error) {
	dt, err := ParseBackboneDType(p.BackboneDType)
	if err != nil {
		return "", err
	}
	if err := m.DINO.SetComputeDType(dt); err != nil {
		return "", err
	}
	if err := m.CLIP.SetVisualDType(dt); err != nil {
		return "", err
	}
	if dev.IsCPU() {
		if p.TF32 {
			notice = "true has no effect on the CPU (TF32 is a mode of NVIDIA tensor cores): ignored, the float32 products stay exact"
		}
		return notice, nil
	}
	torch.SetAllowTF32(p.TF32, p.TF32)
	return "", nil
}
