// Package discovery computes the CLIP affinity maps and the part discovery of SelectiveCL
// (METHOD.md §4 step 2, §5, §7 and §9.1): which exocentric DINO descriptors are candidates for
// the affordance part, their K-means clusters, the reliability of each cluster against the
// egocentric saliency, and the part (or object-level fallback) maps W_ego and W_exo that the
// prototypical loss uses.
//
// Every function reproduces the released code (hynnsk/SelectiveCL, models/locate.py) to float32
// rounding, including its exocentric indexing quirk (METHOD.md §9.1), which is the default; the
// intended per-image indexing is available through [Options.PerImageExo].
//
// The functions without an error result ([LocalMean], [Affinity], [KMeans]) run under
// [torch.Try]: they panic with *torch.Error on bad input, as tensor operations do. [Discover]
// returns an error.
package discovery

import (
	"github.com/affgd/affgd/torch"
)

// normEps is the eps of F.normalize, used for every L2 normalisation here.
const normEps = 1e-12

// LocalMean returns, at every position (i, j) of the last two dimensions of x, the mean of x over
// the 3×3 neighbourhood of (i, j) clipped to the grid: border cells average fewer values (6 on an
// edge, 4 in a corner, fewer on grids narrower than 3). Leading dimensions are independent. This
// is the released code's _local_mean, computed with one average pooling instead of a loop over
// positions. x must have at least two dimensions and a floating dtype. It runs under [torch.Try].
func LocalMean(x *torch.Tensor) *torch.Tensor {
	if x.Dim() < 2 {
		torch.Fail("discovery.LocalMean", "input of shape %v: need at least 2 dimensions (…, h, w)", x.Shape())
	}
	shape := x.Shape()
	h, w := shape[len(shape)-2], shape[len(shape)-1]
	if x.Numel() == 0 {
		return x.Clone()
	}
	// count_include_pad=false divides each window sum by the number of in-grid cells, which is
	// exactly the clipped-window mean.
	m := torch.AvgPool2d(x.Reshape(-1, 1, h, w), torch.AvgPool2dOptions{
		Kernel:  [2]int64{3, 3},
		Stride:  [2]int64{1, 1},
		Padding: [2]int64{1, 1},
	})
	return m.Reshape(shape...)
}

// AffinityMaps are the CLIP affinity maps of one batch (METHOD.md §4 step 2). None of them
// carries autograd history.
type AffinityMaps struct {
	SEgo   *torch.Tensor // (B, h, w): cos(F_ego, T_aff), raw
	SExo   *torch.Tensor // (B·E, h, w): LocalMean(cos(F_exo, T_exo)) ⊙ cos(F_exo, T_aff)
	ExoAff *torch.Tensor // (B·E, h, w): cos(F_exo, T_aff), raw (the pixel loss uses its maximum)
}

// Affinity computes the CLIP affinity maps from the CLIP dense features fEgo (B, h·w, D) and
// fExo (B·E, h·w, D) (exo image n of sample b at row b·E+n, patch tokens row-major) and the text
// features tAff (B, D) (affordance prompt) and tExo (B, D) (exocentric object prompt). Features
// and texts are L2-normalised first. The cosines are computed as the released code computes them
// (one einsum over the B·E·h·w exo tokens of each sample), so SEgo and ExoAff are bit-for-bit the
// similarities that its pixel contrastive loss recomputes. It runs without gradient recording
// and under [torch.Try].
func Affinity(fEgo, fExo, tAff, tExo *torch.Tensor, E, h, w int64) *AffinityMaps {
	const op = "discovery.Affinity"
	for _, t := range []*torch.Tensor{fEgo, fExo, tAff, tExo} {
		if t == nil {
			torch.Fail(op, "nil input tensor")
		}
	}
	if E < 1 || h < 1 || w < 1 {
		torch.Fail(op, "E=%d, h=%d, w=%d: all must be positive", E, h, w)
	}
	if fEgo.Dim() != 3 {
		torch.Fail(op, "fEgo has shape %v, want (B, h·w, D)", fEgo.Shape())
	}
	B, hw, D := fEgo.Size(0), fEgo.Size(1), fEgo.Size(2)
	if hw != h*w {
		torch.Fail(op, "fEgo has %d tokens, but h×w = %d×%d = %d", hw, h, w, h*w)
	}
	checkShape(op, "fExo", fExo, B*E, hw, D)
	checkShape(op, "tAff", tAff, B, D)
	checkShape(op, "tExo", tExo, B, D)

	var out *AffinityMaps
	torch.NoGrad(func() {
		exo := fExo.Reshape(B, E*hw, D).Normalize(2, -1, normEps)
		ego := fEgo.Normalize(2, -1, normEps)
		aff := tAff.Normalize(2, -1, normEps)
		obj := tExo.Normalize(2, -1, normEps)

		exoObj := torch.Einsum("bnc,bc->bn", exo, obj).Reshape(B, E, h, w)
		exoAff := torch.Einsum("bnc,bc->bn", exo, aff).Reshape(B, E, h, w)
		sExo := LocalMean(exoObj).Mul(exoAff)
		sEgo := torch.Einsum("bnc,bc->bn", ego, aff).Reshape(B, h, w)
		out = &AffinityMaps{
			SEgo:   sEgo.Detach(),
			SExo:   sExo.Reshape(B*E, h, w).Detach(),
			ExoAff: exoAff.Reshape(B*E, h, w).Detach(),
		}
	})
	return out
}

// checkShape fails (under [torch.Try]) unless t has exactly the shape want.
func checkShape(op, name string, t *torch.Tensor, want ...int64) {
	got := t.Shape()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i] == want[i]
	}
	if !ok {
		torch.Fail(op, "%s has shape %v, want %v", name, got, want)
	}
}
