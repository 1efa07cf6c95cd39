package data

/*
#cgo LDFLAGS: -lm
#include "metrics.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"math"
	"unsafe"

	"github.com/affgd/affgd/torch"
)

// EvalSize is the side of the square on which METHOD §7 computes the metrics.
const EvalSize = 224

// Scores are one image's figures for one map.
type Scores struct{ KLD, SIM, NSS float64 }

// MarshalJSON writes {"kld": .., "sim": .., "nss": ..}, with null for a NaN or infinite figure
// (a constant prediction's NSS), which JSON cannot hold otherwise.
func (s Scores) MarshalJSON() ([]byte, error) {
	num := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return json.Marshal(map[string]any{"kld": num(s.KLD), "sim": num(s.SIM), "nss": num(s.NSS)})
}

// CVResize says which arithmetic of OpenCV's cv2.resize(INTER_LINEAR) the metrics reproduce: the
// released evaluation resizes the prediction and the GT with it, and the two ways OpenCV computes
// move single-image figures by up to ~1e-4 (NSS, through threshold flips of the fixation map).
type CVResize int

const (
	// CVResizeIPP is what the opencv-python wheels do on x86-64, 4.x and 5.0 alike (checked on
	// 4.5.5, 4.12 and the pinned 5.0): Intel IPP resizes float images with exact (double) source
	// coordinates and a fused lerp. The default.
	CVResizeIPP CVResize = iota
	// CVResizeGeneric is OpenCV's own code, used where IPP is not (builds without it, such as
	// non-x86 machines, or after cv2.ipp.setUseIPP(False)): float32 interpolation weights, also
	// for the float64 GT.
	CVResizeGeneric
)

// String is the name the command line and the config use for r.
func (r CVResize) String() string {
	switch r {
	case CVResizeIPP:
		return "ipp"
	case CVResizeGeneric:
		return "generic"
	}
	return fmt.Sprintf("CVResize(%d)", int(r))
}

// ParseCVResize reads "ipp" or "generic" (CVResize.String).
func ParseCVResize(s string) (CVResize, error) {
	switch s {
	case "ipp", "":
		return CVResizeIPP, nil
	case "generic":
		return CVResizeGeneric, nil
	}
	return 0, fmt.Errorf("unknown OpenCV resize %q (want ipp or generic)", s)
}

// Evaluate computes METHOD §7 for a predicted map pred, an (h, w) float32 tensor, and a
// ground-truth mask gt given as the png's 8-bit grey values, an (H, W) uint8 tensor, as the
// released evaluation computes it on its own stack (NumPy 2, opencv-python on x86-64, CVResizeIPP).
// See EvaluateCV.
func Evaluate(pred, gt *torch.Tensor) (Scores, error) {
	return EvaluateCV(pred, gt, CVResizeIPP)
}

// EvaluateCV computes the released normalize_map, cal_kl, cal_sim and cal_nss bit for bit
// (metrics.c, checked against the released functions on the pinned stack by the reference data):
//
//	m = cv2.resize(pred, (224, 224)) and min-max normalised (eps 1e-10), all float32
//	g = cv2.resize(gt/255, (224, 224)) in float64
//	p = m/(Σm+1e-12) in float32, q = g/(Σg+1e-12)
//	KLD = Σ q·log(q/(p+1e-12) + 1e-12), SIM = Σ min(p, q)
//	NSS = Σ z·F / Σ (F+1e-12), z = (m/255−mean)/std in float32 (population std),
//	      F = 1 where (g/255−min)/(max−min+1e-12) > 0.1
//
// with NumPy's dtypes (a float32 array stays float32 against a Python float) and its pairwise
// float32 and float64 sums, and cv2.resize's arithmetic as r says. A constant prediction has
// std 0 and its NSS is NaN, as in the reference; callers report it.
//
// The figures are computed on the host in C, whatever the device of pred: they depend on the
// order of every float32 sum, which no device reduction reproduces. That is one copy of the
// (h, w) map and of the GT per image, both already small.
func EvaluateCV(pred, gt *torch.Tensor, r CVResize) (Scores, error) {
	if pred == nil || gt == nil {
		return Scores{}, fmt.Errorf("data: evaluate: nil tensor")
	}
	if pred.Dim() != 2 || pred.DType() != torch.Float32 {
		return Scores{}, fmt.Errorf("data: evaluate: prediction must be an (h, w) float32 map, got %v %v", pred.DType(), pred.Shape())
	}
	if gt.Dim() != 2 || gt.DType() != torch.Uint8 {
		return Scores{}, fmt.Errorf("data: evaluate: ground truth must be an (H, W) uint8 mask, got %v %v", gt.DType(), gt.Shape())
	}
	if pred.Numel() == 0 || gt.Numel() == 0 {
		return Scores{}, fmt.Errorf("data: evaluate: empty map (prediction %v, ground truth %v)", pred.Shape(), gt.Shape())
	}
	if r != CVResizeIPP && r != CVResizeGeneric {
		return Scores{}, fmt.Errorf("data: evaluate: unknown resize %v", r)
	}
	if pred.Size(0) > math.MaxInt32 || pred.Size(1) > math.MaxInt32 || gt.Size(0) > math.MaxInt32 || gt.Size(1) > math.MaxInt32 {
		return Scores{}, fmt.Errorf("data: evaluate: map too large (prediction %v, ground truth %v)", pred.Shape(), gt.Shape())
	}
	var p []float32
	var g []byte
	err := torch.WithScope(func(_ *torch.Scope) {
		p = pred.To(torch.CPU).Contiguous().Float32s()
		g = gt.To(torch.CPU).Contiguous().Bytes()
	})
	if err != nil {
		return Scores{}, fmt.Errorf("data: evaluate: %w", err)
	}
	var out [3]C.double
	rc := C.affgd_released_metrics((*C.float)(unsafe.Pointer(&p[0])), C.int(pred.Size(0)), C.int(pred.Size(1)),
		(*C.uint8_t)(unsafe.Pointer(&g[0])), C.int(gt.Size(0)), C.int(gt.Size(1)), C.int(EvalSize), C.int(r), &out[0])
	if rc != 0 {
		return Scores{}, fmt.Errorf("data: evaluate: out of memory for a %v prediction and a %v ground truth", pred.Shape(), gt.Shape())
	}
	return Scores{KLD: float64(out[0]), SIM: float64(out[1]), NSS: float64(out[2])}, nil
}

// npSum32, npSum64 and npMeanStd32 are NumPy's sum, mean and std of a float32 or float64 slice
// (metrics.c), for the tests that hold them to NumPy's own results.
func npSum32(a []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	return float32(C.affgd_np_sum_f32((*C.float)(unsafe.Pointer(&a[0])), C.long(len(a))))
}

func npSum64(a []float64) float64 {
	if len(a) == 0 {
		return 0
	}
	return float64(C.affgd_np_sum_f64((*C.double)(unsafe.Pointer(&a[0])), C.long(len(a))))
}

func npMeanStd32(a []float32) (mean, std float32) {
	tmp := make([]float32, len(a))
	var m, s C.float
	C.affgd_np_mean_std_f32((*C.float)(unsafe.Pointer(&a[0])), C.long(len(a)), (*C.float)(unsafe.Pointer(&tmp[0])), &m, &s)
	return float32(m), float32(s)
}
