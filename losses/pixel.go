package losses

import (
	"github.com/affgd/affgd/torch"
)

// PixelContrast returns the pixel-level contrastive loss of step 9 (the released
// PixelContrastiveLoss.forward) and the number of samples that kept no anchor row.
//
// Arguments, in the released forward's terms:
//
//   - q (B, C, h, w): pixel_contrast_projection's output (contfeat_ego); carries gradient.
//   - binEgo (B, h, w): Bin, the 0/1 map "per-sample min-max normalised S_ego > γ2" that the
//     caller computes (CLIP_ego_similarity_norm, passed as weight_map).
//   - tAff (B, D): the affordance text features T_aff (text_features), unnormalised.
//   - fEgo (B, h·w, D): CLIP's dense egocentric features F_ego (ego_image_features), unnormalised.
//   - fExo (B·E, h·w, D): the exocentric ones F_exo (exo_image_features), sample-major.
//   - E: the number of exocentric images per sample (num_exo), at least 1.
//   - tau: the temperature τ ([Tau] in training); terms are scaled by −(τ/[BaseTemperature]).
//
// Per sample b, with cos the cosine similarity:
//
//	ρ_b      = min over the E exo images of (max over positions of cos(F_exo, T_aff[b]))
//	fg_b     = cos(F_ego[b], T_aff[b]) > ρ_b, or Bin_b when that has no position at all
//	f        = normalize_C(q[b]) as (h·w, C);  logits = f·fᵀ/τ
//	logProb  = logits − max_row(logits) − log Σ_{j≠i} exp(logits_ij − max_row)   (max detached)
//	positives of row i: every j ≠ i with fg_b(j) = fg_b(i)
//	kept rows: rows with ≥ 1 positive where Bin_b > 0.5
//	loss_b   = −(τ/0.07) · mean over kept rows of (mean of logProb over the row's positives)
//
// and the loss is Σ_b loss_b / B, a 0-d tensor. A sample without kept rows makes the released
// loss NaN (the mean of an empty set; METHOD.md 9.2); here it contributes 0 and is counted in
// emptySamples. The gradients equal the released code's, which gives such a sample no gradient
// either. The samples are computed together as (B, h·w, h·w) tensors.
//
// It needs h·w ≥ 2 (with one position no row can have a positive nor a denominator). It runs
// under [torch.Try].
func PixelContrast(q, binEgo, tAff, fEgo, fExo *torch.Tensor, E int64, tau float64) (loss *torch.Tensor, emptySamples int) {
	loss, n := PixelContrastOnDevice(q, binEgo, tAff, fEgo, fExo, E, tau)
	return loss, int(n.ItemInt())
}

// PixelContrastOnDevice is [PixelContrast] with the count of empty samples left on the loss's
// device, a 0-d int64 tensor, so that the step reads nothing back (the trainer reads it with the
// step's other figures).
func PixelContrastOnDevice(q, binEgo, tAff, fEgo, fExo *torch.Tensor, E int64, tau float64) (loss, emptySamples *torch.Tensor) {
	const op = "losses.PixelContrast"
	for _, a := range []struct {
		name string
		t    *torch.Tensor
	}{{"q", q}, {"binEgo", binEgo}, {"tAff", tAff}, {"fEgo", fEgo}, {"fExo", fExo}} {
		need(op, a.name, a.t)
		floating(op, a.name, a.t)
	}
	if E < 1 {
		torch.Fail(op, "E (exocentric images per sample) must be at least 1, got %d", E)
	}
	if !(tau > 0) {
		torch.Fail(op, "tau must be positive, got %g", tau)
	}
	shape(op, "q", q, "(B, C, h, w)", -1, -1, -1, -1)
	B, C, h, w := q.Size(0), q.Size(1), q.Size(2), q.Size(3)
	hw := h * w
	if hw < 2 {
		torch.Fail(op, "the feature grid %d×%d has fewer than 2 positions", h, w)
	}
	shape(op, "binEgo", binEgo, "(B, h, w)", B, h, w)
	shape(op, "tAff", tAff, "(B, D)", B, -1)
	D := tAff.Size(1)
	shape(op, "fEgo", fEgo, "(B, h·w, D)", B, hw, D)
	shape(op, "fExo", fExo, "(B·E, h·w, D)", B*E, hw, D)

	s := torch.NewScope()
	defer s.Close()
	dev := q.Device()

	// fg labels from the CLIP features; no gradient flows into them (comparisons).
	text := tAff.Normalize(2, -1, normEps)
	exoCos := torch.Einsum("bnc,bc->bn", fExo.Reshape(B, E*hw, D).Normalize(2, -1, normEps), text)
	exoMax, _ := exoCos.Reshape(B*E, hw).MaxDim(1, false)
	rho, _ := exoMax.Reshape(B, E).MinDim(1, true) // (B, 1)
	egoCos := torch.Einsum("bnc,bc->bn", fEgo.Normalize(2, -1, normEps), text)
	isFg := egoCos.Gt(rho).ToDType(torch.Float32) // (B, h·w)
	bin := binEgo.Reshape(B, hw)
	noFg := isFg.SumDims([]int64{1}, true).EqScalar(0)
	label := torch.Where(noFg, bin, isFg)

	notSelf := torch.Ones([]int64{hw, hw}, dev).Sub(torch.Eye(hw, hw, dev))
	pos := label.Unsqueeze(2).Eq(label.Unsqueeze(1)).ToDType(torch.Float32).Mul(notSelf)

	f := q.Normalize(2, 1, normEps).Permute(0, 2, 3, 1).Reshape(B, hw, C)
	logits := f.Bmm(f.Transpose(1, 2)).DivScalar(tau)
	meanPos, hasPos := maskedMeanPositives(pos, logProbRows(logits, notSelf))
	rowLoss := meanPos.MulScalar(-(tau / BaseTemperature)) // (B, h·w)

	keep := hasPos.LogicalAnd(bin.GtScalar(0.5)).ToDType(rowLoss.DType())
	nKeep := keep.SumDims([]int64{1}, false)
	perSample := rowLoss.Mul(keep).SumDims([]int64{1}, false).Div(nKeep.ClampMin(1))
	loss = perSample.Sum().DivScalar(float64(B))
	emptySamples = nKeep.EqScalar(0).SumDims(nil, false)
	s.Keep(loss, emptySamples)
	return loss, emptySamples
}
