package losses

import (
	"github.com/affgd/affgd/torch"
)

// ProtoContrast returns the prototypical contrastive loss of step 10 (the released
// ContrastiveLoss.forward, arguments in the same order) and the number of anchor rows without a
// positive.
//
// Arguments:
//
//   - rEgo (B, C, h, w), rExo (B·E, C, h', w'): K_contrast_projection's outputs (ego_pred,
//     exo_pred); carry gradient.
//   - wEgo (B, h, w), wExo (B·E, h', w'): the part/object maps W (ego_similarity,
//     exo_similarity).
//   - bgEgo (B, h, w), bgExo (B·E, h', w'): the backgrounds 1 − K (ego_bg_similarity,
//     exo_bg_similarity); they carry gradient from epoch 1 on.
//   - labels (B): the class indices (aff_label), an integer tensor.
//   - E: exocentric images per sample (num_exo), ≥ 0.
//   - objEgo (B, h, w): the anchor weighting O (obj_ego_similarity: raw S_ego where the sample is
//     part-level reliable, ones elsewhere); nil means none, as the released None branch: the
//     anchor is then the plain spatial mean.
//   - tau: the temperature τ ([Tau] in training); terms are scaled by −(τ/[BaseTemperature]).
//
// With proto(R, M) = normalize_C(mean_hw(R ⊙ M)), the anchor of sample b is a_b = proto(rEgo,
// objEgo)[b] and the bank is [proto(rEgo, wEgo) (B); proto(rEgo, bgEgo) (B); proto(rExo, wExo)
// (B·E); proto(rExo, bgExo) (B·E)]. For anchor b:
//
//	positives:   ego_pos of every other sample with b's label; exo_pos of every exo image
//	             whose sample has b's label (b's own E images included)
//	denominator: every ego_pos but b's own; every exo_pos; ego_neg and exo_neg only of samples
//	             with b's label (b's own included) — the released float16 "neglect" mask times
//	             logits_mask, whose 0/1 values float32 holds exactly (METHOD.md 9.3)
//	logProb    = a·bankᵀ/τ − max_row − log Σ_denominator exp(a·bankᵀ/τ − max_row)  (max over
//	             the whole row, detached)
//
// The loss is −(τ/0.07) × the mean over the rows with ≥ 1 positive of the mean of logProb over
// the row's positives, a 0-d tensor. Rows without a positive are left out as in the released
// code and counted in emptyRows; with E ≥ 1 there are none (a sample's own exo images are always
// positives). If every row is left out (only possible with E = 0) the released mean is NaN
// (METHOD.md 9.2); the loss is then 0 here, with no gradient, as the released one's gradient.
//
// It runs under [torch.Try].
func ProtoContrast(rEgo, rExo, wEgo, wExo, bgEgo, bgExo, labels *torch.Tensor, E int64, objEgo *torch.Tensor, tau float64) (loss *torch.Tensor, emptyRows int) {
	loss, n := ProtoContrastOnDevice(rEgo, rExo, wEgo, wExo, bgEgo, bgExo, labels, E, objEgo, tau)
	return loss, int(n.ItemInt())
}

// ProtoContrastOnDevice is [ProtoContrast] with the count of empty rows left on the loss's
// device, a 0-d int64 tensor (no device→host read).
func ProtoContrastOnDevice(rEgo, rExo, wEgo, wExo, bgEgo, bgExo, labels *torch.Tensor, E int64, objEgo *torch.Tensor, tau float64) (loss, emptyRows *torch.Tensor) {
	const op = "losses.ProtoContrast"
	for _, a := range []struct {
		name string
		t    *torch.Tensor
	}{{"rEgo", rEgo}, {"rExo", rExo}, {"wEgo", wEgo}, {"wExo", wExo}, {"bgEgo", bgEgo}, {"bgExo", bgExo}} {
		need(op, a.name, a.t)
		floating(op, a.name, a.t)
	}
	need(op, "labels", labels)
	if labels.DType().IsFloat() || labels.DType() == torch.Bool {
		torch.Fail(op, "labels must hold integer class indices, got %s", labels.DType())
	}
	if E < 0 {
		torch.Fail(op, "E (exocentric images per sample) must not be negative, got %d", E)
	}
	if !(tau > 0) {
		torch.Fail(op, "tau must be positive, got %g", tau)
	}
	shape(op, "rEgo", rEgo, "(B, C, h, w)", -1, -1, -1, -1)
	B, C, h, w := rEgo.Size(0), rEgo.Size(1), rEgo.Size(2), rEgo.Size(3)
	shape(op, "labels", labels, "(B)", B)
	shape(op, "rExo", rExo, "(B·E, C, h', w')", B*E, C, -1, -1)
	hx, wx := rExo.Size(2), rExo.Size(3)
	shape(op, "wEgo", wEgo, "(B, h, w)", B, h, w)
	shape(op, "bgEgo", bgEgo, "(B, h, w)", B, h, w)
	shape(op, "wExo", wExo, "(B·E, h', w')", B*E, hx, wx)
	shape(op, "bgExo", bgExo, "(B·E, h', w')", B*E, hx, wx)
	if objEgo != nil {
		floating(op, "objEgo", objEgo)
		shape(op, "objEgo", objEgo, "(B, h, w)", B, h, w)
	}

	s := torch.NewScope()
	defer s.Close()
	dev := rEgo.Device()

	var anchor *torch.Tensor
	if objEgo != nil {
		anchor = prototype(rEgo, objEgo)
	} else {
		anchor = rEgo.MeanDims([]int64{2, 3}, false).Normalize(2, 1, normEps)
	}
	bank := torch.Cat([]*torch.Tensor{
		prototype(rEgo, wEgo), prototype(rEgo, bgEgo), prototype(rExo, wExo), prototype(rExo, bgExo),
	}, 0)

	label := labels.Reshape(-1, 1)
	same := label.Eq(label.Transpose(0, 1)).ToDType(torch.Float32)                           // (B, B)
	sameExo := label.Eq(label.RepeatInterleave(E, 0).Transpose(0, 1)).ToDType(torch.Float32) // (B, B·E)
	notSelf := torch.Ones([]int64{B, B}, dev).Sub(torch.Eye(B, B, dev))
	zerosB, zerosBE := torch.Zeros([]int64{B, B}, dev), torch.Zeros([]int64{B, B * E}, dev)
	onesBE := torch.Ones([]int64{B, B * E}, dev)
	pos := torch.Cat([]*torch.Tensor{same.Mul(notSelf), zerosB, sameExo, zerosBE}, 1)
	denom := torch.Cat([]*torch.Tensor{notSelf, same, onesBE, sameExo}, 1)

	logits := anchor.Mm(bank.Transpose(0, 1)).DivScalar(tau)
	meanPos, hasPos := maskedMeanPositives(pos, logProbRows(logits, denom))
	rowLoss := meanPos.MulScalar(-(tau / BaseTemperature)) // (B)
	kept := hasPos.ToDType(rowLoss.DType())
	nKept := kept.Sum()
	loss = rowLoss.Mul(kept).Sum().Div(nKept.ClampMin(1))
	emptyRows = nKept.RSubScalar(float64(B)).ToDType(torch.Int64)
	s.Keep(loss, emptyRows)
	return loss, emptyRows
}

// prototype returns normalize_C(mean_hw(r ⊙ m)) for features r (N, C, h, w) and maps m (N, h, w):
// the released _build_proto.
func prototype(r, m *torch.Tensor) *torch.Tensor {
	return r.Mul(m.Unsqueeze(1)).MeanDims([]int64{2, 3}, false).Normalize(2, 1, normEps)
}
