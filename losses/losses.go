// Package losses computes SelectiveCL's training losses exactly as the released code does
// (METHOD.md section 4 steps 5, 9 and 10): the classification losses of the egocentric and
// exocentric CAM logits, the pixel-level contrastive loss on the egocentric pixel features, and
// the prototypical contrastive loss between the egocentric anchor and the part/object prototypes.
//
// Every function mirrors one piece of the released code (models/locate.py Net.forward for the
// classification losses, loss/loss.py PixelContrastiveLoss and ContrastiveLoss for the other two)
// with the same normalisations, masks, detached row maxima and reductions, so values and
// gradients agree with PyTorch to float32 rounding. The one intended difference is METHOD.md
// 9.2: where the released code takes the mean of an empty set and produces NaN, these functions
// let that part contribute 0 and report how often it happened; every other number is the same
// (including the gradients, which the released code's NaN does not reach).
//
// # Errors
//
// The functions run under [torch.Try]: a bad shape, a nil input or a libtorch failure panics with
// a *torch.Error naming the loss and the offending argument. The model's training step, which
// calls them inside its own torch.Try, turns that into an ordinary error.
package losses

import (
	"github.com/affgd/affgd/torch"
)

// Tau is the contrastive temperature τ of both contrastive losses (the released code's
// --cont_temperature default).
const Tau = 0.5

// BaseTemperature is the released losses' base_temperature: every contrastive term is scaled by
// −(τ/BaseTemperature).
const BaseTemperature = 0.07

// normEps is F.normalize's default eps.
const normEps = 1e-12

// Classification returns the classification losses of step 5 for the egocentric logits
// logitsEgo (B, K), the exocentric logits logitsExo (B, E, K) and the labels y (B, int64):
//
//	ego = CE(logitsEgo, y)                       a 0-d tensor
//	exo = (0 + Σ_n CE(logitsExo[:, n], y)) / 3   a (1,)-shaped tensor
//
// CE is the mean cross-entropy. As in the released code, the exocentric sum starts from a
// float32 (1,)-shaped zero tensor, so exo has shape (1,), and it is divided by the constant 3
// whatever E is. It runs under [torch.Try].
func Classification(logitsEgo, logitsExo, y *torch.Tensor) (ego, exo *torch.Tensor) {
	const op = "losses.Classification"
	need(op, "logitsEgo", logitsEgo)
	need(op, "logitsExo", logitsExo)
	need(op, "y", y)
	shape(op, "logitsEgo", logitsEgo, "(B, K)", -1, -1)
	B, K := logitsEgo.Size(0), logitsEgo.Size(1)
	shape(op, "y", y, "(B)", B)
	if y.DType() != torch.Int64 {
		torch.Fail(op, "y must hold int64 class indices, got %s", y.DType())
	}
	shape(op, "logitsExo", logitsExo, "(B, E, K)", B, -1, K)
	return ClassificationEgo(logitsEgo, y), ClassificationExo(logitsExo, y)
}

// ClassificationEgo is the egocentric loss of [Classification] alone (for a run that disables
// the exocentric one): CE(logitsEgo, y), a 0-d tensor. It runs under [torch.Try].
func ClassificationEgo(logitsEgo, y *torch.Tensor) *torch.Tensor {
	const op = "losses.ClassificationEgo"
	need(op, "logitsEgo", logitsEgo)
	need(op, "y", y)
	shape(op, "logitsEgo", logitsEgo, "(B, K)", -1, -1)
	shape(op, "y", y, "(B)", logitsEgo.Size(0))
	if y.DType() != torch.Int64 {
		torch.Fail(op, "y must hold int64 class indices, got %s", y.DType())
	}
	return torch.CrossEntropy(logitsEgo, y, torch.ReduceMean)
}

// ClassificationExo is the exocentric loss of [Classification] alone (for a run that disables
// the egocentric one): (0 + Σ_n CE(logitsExo[:, n], y)) / 3, a (1,)-shaped tensor. It runs under
// [torch.Try].
func ClassificationExo(logitsExo, y *torch.Tensor) *torch.Tensor {
	const op = "losses.ClassificationExo"
	need(op, "logitsExo", logitsExo)
	need(op, "y", y)
	shape(op, "logitsExo", logitsExo, "(B, E, K)", -1, -1, -1)
	shape(op, "y", y, "(B)", logitsExo.Size(0))
	if y.DType() != torch.Int64 {
		torch.Fail(op, "y must hold int64 class indices, got %s", y.DType())
	}
	s := torch.NewScope()
	defer s.Close()
	exo := torch.Zeros([]int64{1}, torch.Float32, logitsExo.Device())
	for n := range logitsExo.Size(1) { // the exocentric views, one CE each, summed in order
		exo = exo.Add(torch.CrossEntropy(logitsExo.Select(1, n), y, torch.ReduceMean))
	}
	exo = exo.DivScalar(3)
	return s.Keep(exo)
}

// logProbRows returns, row by row, sim − max_row(sim) − log Σ_j denom_ij·exp(sim_ij − max_row),
// the released _compute_log_prob: the maximum runs over every column of the last dimension and
// carries no gradient; denom (0/1, broadcast against sim) selects the denominator set.
func logProbRows(sim, denom *torch.Tensor) *torch.Tensor {
	last := int64(sim.Dim() - 1)
	rowMax, _ := sim.MaxDim(last, true)
	shifted := sim.Sub(rowMax.Detach())
	return shifted.Sub(shifted.Exp().Mul(denom).SumDims([]int64{last}, true).Log())
}

// maskedMeanPositives returns, per row, Σ_j pos_ij·logProb_ij / Σ_j pos_ij (the released
// mean_log_prob_pos) and whether the row has a positive at all. Rows without positives, which the
// released code drops with torch.where before dividing, get 0 instead of 0/0, so no NaN enters
// the graph.
func maskedMeanPositives(pos, logProb *torch.Tensor) (mean, hasPos *torch.Tensor) {
	last := int64(pos.Dim() - 1)
	count := pos.SumDims([]int64{last}, false)
	hasPos = count.NeScalar(0)
	mean = pos.Mul(logProb).SumDims([]int64{last}, false).Div(count.ClampMin(1))
	return mean, hasPos
}

// need fails when t is nil.
func need(op, name string, t *torch.Tensor) {
	if t == nil {
		torch.Fail(op, "%s is nil", name)
	}
}

// shape fails unless t has len(want) dimensions with the sizes in want (−1: any size); layout
// names the expected shape in the message, e.g. "(B, C, h, w)".
func shape(op, name string, t *torch.Tensor, layout string, want ...int64) {
	got := t.Shape()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = want[i] < 0 || got[i] == want[i]
	}
	if !ok {
		torch.Fail(op, "%s must be %s = %v (-1: any), got shape %v", name, layout, want, got)
	}
}

// floating fails unless t holds floating-point values.
func floating(op, name string, t *torch.Tensor) {
	if !t.DType().IsFloat() {
		torch.Fail(op, "%s must be floating point, got %s", name, t.DType())
	}
}
