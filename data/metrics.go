package data

import (
	"encoding/json"
	"fmt"
	"math"

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

// Evaluate computes METHOD §7 for a predicted map pred, an (h, w) float32 tensor, and a
// ground-truth mask gt given as the png's 8-bit grey values, an (H, W) uint8 tensor.
//
// The prediction is resized to 224×224 with bilinear interpolation (half-pixel centres, edge
// clamping, no antialias: OpenCV INTER_LINEAR) and min-max normalised with eps 1e-10, both in
// float32. The GT is divided by 255 in float64 and resized with the same rule (no antialias even
// when shrinking). Everything after is float64:
//
//	p = pred/(Σpred+1e-12), g = gt/(Σgt+1e-12)
//	KLD = Σ g·log(g/(p+1e-12) + 1e-12)
//	SIM = Σ min(p, g)
//	NSS = Σ z·F / Σ (F+1e-12), z = (pred−mean)/std (population std),
//	      F = 1 where the min-max normalised gt (eps 1e-12) is > 0.1
//
// A constant prediction has std 0 and its NSS is NaN, as in the reference; callers report it.
// The tensors may live on any device; the figures are computed there.
func Evaluate(pred, gt *torch.Tensor) (Scores, error) {
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
	if pred.Device() != gt.Device() {
		return Scores{}, fmt.Errorf("data: evaluate: prediction on %v, ground truth on %v", pred.Device(), gt.Device())
	}
	var s Scores
	err := torch.WithScope(func(_ *torch.Scope) {
		s = evaluate(pred, gt)
	})
	if err != nil {
		return Scores{}, fmt.Errorf("data: evaluate: %w", err)
	}
	return s, nil
}

// resize224 is cv2.resize(x, (224, 224), INTER_LINEAR) for a 2-d map, in x's dtype.
func resize224(x *torch.Tensor) *torch.Tensor {
	h, w := x.Size(0), x.Size(1)
	y := torch.Interpolate(x.Reshape(1, 1, h, w), torch.InterpolateOptions{
		Size: [2]int64{EvalSize, EvalSize}, Mode: torch.Bilinear, AlignCorners: false, Antialias: false,
	})
	return y.Reshape(EvalSize, EvalSize)
}

func evaluate(pred, gt *torch.Tensor) Scores {
	// Prediction: resize and min-max in float32 (normalize_map on the float32 array).
	m := resize224(pred.Contiguous())
	lo, hi := m.Min(), m.Max()
	m = m.Sub(lo).Div(hi.Sub(lo).AddScalar(1e-10))
	pr := m.ToDType(torch.Float64)

	// GT: /255 in float64, then the same bilinear resize.
	g := resize224(gt.ToDType(torch.Float64).DivScalar(255))

	p := pr.Div(pr.Sum().AddScalar(1e-12))
	q := g.Div(g.Sum().AddScalar(1e-12))
	kld := q.Mul(q.Div(p.AddScalar(1e-12)).AddScalar(1e-12).Log()).Sum().Item()
	sim := p.Minimum(q).Sum().Item()

	z := pr.Sub(pr.Mean()).Div(pr.Std(nil, false, false))
	glo, ghi := g.Min(), g.Max()
	fm := g.Sub(glo).Div(ghi.Sub(glo).AddScalar(1e-12))
	fix := fm.GtScalar(0.1).ToDType(torch.Float64)
	nss := z.Mul(fix).Sum().Div(fix.AddScalar(1e-12).Sum()).Item()
	return Scores{KLD: kld, SIM: sim, NSS: nss}
}
