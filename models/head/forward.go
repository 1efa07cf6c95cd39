package head

import (
	"github.com/affgd/affgd/torch"
	"slices"
)

// Outputs are the head's outputs for one training batch of B samples with E exocentric views
// each, over a patch grid h×w and K classes (METHOD.md section 4 step 4).
type Outputs struct {
	// PEgo (B,384,h,w) and PExo (B·E,384,h,w) are the conv stacks' outputs. The released code
	// computes them twice (see [Head.Forward]); here they are computed once and feed both the
	// classifier and the contrastive projections.
	PEgo, PExo *torch.Tensor
	// AEgo (B,K,h,w) and AExo (B·E,K,h,w) are the class activation maps.
	AEgo, AExo *torch.Tensor
	// LogitsEgo (B,K) and LogitsExo (B,E,K) are the spatial means of the CAMs.
	LogitsEgo, LogitsExo *torch.Tensor
	// GEgo (B,h,w) is AEgo at each sample's label; GExo (B·E,h,w) is AExo at the label of the
	// sample each exocentric image belongs to (labels repeated E times, interleaved).
	GEgo, GExo *torch.Tensor
	// Q (B,384,h,w) is pixel_contrast_projection of PEgo.
	Q *torch.Tensor
	// REgo (B,384,h,w) and RExo (B·E,384,h,w) are K_contrast_projection of PEgo and PExo.
	REgo, RExo *torch.Tensor
}

// Project applies aff_proj to descriptor tokens desc (N, hgrid·wgrid, 384), patches in
// row-major order, and returns the feature maps (N, 384, hgrid, wgrid), as the released
// _reshape_transform lays them out (tokens to (N,h,w,C), then channels first, contiguous).
// The released transform hard-codes the 14×14 grid of a 224×224 input; here the grid is given.
// It runs under [torch.Try].
func (h *Head) Project(desc *torch.Tensor, hgrid, wgrid int64) *torch.Tensor {
	n := checkTokens("descriptors", desc, hgrid, wgrid)
	y := h.AffProj.Forward(desc)
	return y.Reshape(n, hgrid, wgrid, Dim).Transpose(2, 3).Transpose(1, 2).Contiguous()
}

// Forward runs the head on one training batch as the released Net.forward does: descEgo
// (B, h·w, 384) and descExo (B·E, h·w, 384) are the DINO key descriptors without the cls token
// (exo images of sample b at rows b·E .. b·E+E−1), labels (B) int64 class indices in [0, K).
//
// Both descriptor sets go through aff_proj, then through their conv stack. The released code
// calls each conv stack TWICE on the same input (ego, exo, ego, exo; METHOD.md §4 step 4): the
// first outputs feed the classifier, the second the contrastive projections. Both calls give
// the same values, so here each stack runs once and its output feeds both consumers; the
// gradient reaching the stack is then the sum of the two uses' gradients before the stack's
// backward rather than after it, equal up to float32 rounding, at half the stacks' cost. What
// the second call changes besides, the BatchNorm running statistics, is reproduced exactly:
// with training set every BatchNorm updates its running statistics twice per call and counts
// two batches, the second update from bitwise the same batch statistics as the first (see
// [ConvStack.repeatStats]). Without training the running statistics are used and left alone.
//
// The label range is checked on the host, which waits for the device. Forward panics with
// *torch.Error on bad shapes or labels; it runs under [torch.Try].
func (h *Head) Forward(descEgo, descExo *torch.Tensor, labels *torch.Tensor, E, hgrid, wgrid int64, training bool) *Outputs {
	return h.ForwardKnown(descEgo, descExo, labels, nil, E, hgrid, wgrid, training)
}

// ForwardKnown is [Head.Forward] with the labels' values also given on the host (host, the
// same values as labels): the range is checked there, without reading labels back from the
// device. host nil checks labels on the device as Forward does.
func (h *Head) ForwardKnown(descEgo, descExo *torch.Tensor, labels *torch.Tensor, host []int64, E, hgrid, wgrid int64, training bool) *Outputs {
	b := checkTokens("ego descriptors", descEgo, hgrid, wgrid)
	if E < 1 {
		torch.Fail("head", "the number of exocentric images per sample must be positive, got %d", E)
	}
	if n := checkTokens("exo descriptors", descExo, hgrid, wgrid); n != b*E {
		torch.Fail("head", "exo descriptors hold %d images, want B·E = %d·%d = %d", n, b, E, b*E)
	}
	h.checkLabelsOn(labels, host, b)

	pe := h.Project(descEgo, hgrid, wgrid)
	px := h.Project(descExo, hgrid, wgrid)
	o := &Outputs{}
	var egoIn1, egoIn4, exoIn1, exoIn4 *torch.Tensor
	o.PEgo, egoIn1, egoIn4 = h.EgoProj.forward(pe, training)
	o.PExo, exoIn1, exoIn4 = h.ExoProj.forward(px, training)
	if training { // the released second calls' running-statistics updates
		h.EgoProj.repeatStats(egoIn1, egoIn4)
		h.ExoProj.repeatStats(exoIn1, exoIn4)
	}

	o.REgo = h.KContrast.Forward(o.PEgo)
	o.RExo = h.KContrast.Forward(o.PExo)
	o.Q = h.PixelContrast.Forward(o.PEgo)

	o.AEgo = h.Classifier.Forward(o.PEgo)
	o.LogitsEgo = gap(o.AEgo).Reshape(b, h.K)
	o.AExo = h.Classifier.Forward(o.PExo)
	o.LogitsExo = gap(o.AExo).Reshape(b, E, h.K)

	o.GEgo = selectClass(o.AEgo, labels)
	o.GExo = selectClass(o.AExo, labels.RepeatInterleave(E, 0))
	return o
}

// gap is the released nn.AdaptiveAvgPool2d(1). Its CUDA backward has no deterministic kernel
// (libtorch refuses it under deterministic algorithms), so in deterministic mode on CUDA it is
// the same function as a mean over the map, whose backward is deterministic; the forward may then
// round differently by an ulp (docs/CONFIG.md, deterministic).
func gap(x *torch.Tensor) *torch.Tensor {
	if !x.Device().IsCPU() && torch.Deterministic() {
		return x.MeanDims([]int64{2, 3}, true)
	}
	return torch.AdaptiveAvgPool2d(x, 1, 1)
}

// TestForward computes the three inference maps of the released test_forward (METHOD.md
// section 6) for B images: descEgo (B, h·w, 384) DINO key descriptors without the cls token,
// sEgo (B, h, w) the raw CLIP ego map cos(F_ego, T_aff), labels (B) int64 in [0, K). With the
// BatchNorms in eval mode (running statistics, left unchanged) and without gradients:
//
//	cam = G = aff_classifier(aff_ego_proj(aff_proj(descEgo)))[b, label_b]   (B, h, w)
//	ree = S ⊙ G
//	rem = S ⊙ localmean(G)
//
// where S is sEgo min-max normalised per image without eps, (s − min)/(max − min) (a constant
// map gives NaN, as in the released code), and localmean averages the 3×3 neighbourhood clipped
// to the grid. It panics with *torch.Error on bad shapes or labels; it runs under [torch.Try].
func (h *Head) TestForward(descEgo, sEgo, labels *torch.Tensor, hgrid, wgrid int64) (cam, ree, rem *torch.Tensor) {
	b := checkTokens("ego descriptors", descEgo, hgrid, wgrid)
	if s := sEgo.Shape(); len(s) != 3 || s[0] != b || s[1] != hgrid || s[2] != wgrid {
		torch.Fail("head", "CLIP ego map has shape %v, want (B, h, w) = (%d, %d, %d)", s, b, hgrid, wgrid)
	}
	h.checkLabels(labels, b)
	torch.NoGrad(func() {
		a := h.Classifier.Forward(h.EgoProj.Forward(h.Project(descEgo, hgrid, wgrid), false))
		cam = selectClass(a, labels)
		s := minMaxNoEps(sEgo)
		ree = s.Mul(cam)
		rem = s.Mul(localMean(cam))
	})
	return cam, ree, rem
}

// selectClass returns a[i, labels[i]] for maps a (N, K, h, w): (N, h, w).
func selectClass(a, labels *torch.Tensor) *torch.Tensor {
	rows := torch.Arange(0, float64(a.Size(0)), 1, torch.Int64, a.Device())
	return a.Index(rows, labels)
}

// minMaxNoEps normalises each map of m (N, h, w) to (x − min)/(max − min), no eps (the released
// Net.normalize).
func minMaxNoEps(m *torch.Tensor) *torch.Tensor {
	n := m.Size(0)
	flat := m.Reshape(n, -1)
	lo, _ := flat.MinDim(1, false)
	hi, _ := flat.MaxDim(1, false)
	lo, hi = lo.Reshape(n, 1, 1), hi.Reshape(n, 1, 1)
	return m.Sub(lo).Div(hi.Sub(lo))
}

// localMean returns, for maps m (N, h, w), the mean over each position's 3×3 neighbourhood
// clipped to the grid (border positions average fewer values), as the released
// Net._local_mean: an average pool that leaves the padding out of the count.
func localMean(m *torch.Tensor) *torch.Tensor {
	o := torch.AvgPool2dOptions{Kernel: [2]int64{3, 3}, Stride: [2]int64{1, 1}, Padding: [2]int64{1, 1}}
	return torch.AvgPool2d(m.Unsqueeze(1), o).Squeeze(1)
}

// checkTokens checks that t is (N, hgrid·wgrid, 384) with N ≥ 1 and returns N.
func checkTokens(what string, t *torch.Tensor, hgrid, wgrid int64) int64 {
	if t == nil {
		torch.Fail("head", "%s: nil tensor", what)
	}
	if hgrid < 1 || wgrid < 1 {
		torch.Fail("head", "patch grid %d×%d is empty", hgrid, wgrid)
	}
	s := t.Shape()
	if len(s) != 3 || s[0] < 1 || s[1] != hgrid*wgrid || s[2] != Dim {
		torch.Fail("head", "%s have shape %v, want (N ≥ 1, h·w = %d·%d = %d, %d)", what, s, hgrid, wgrid, hgrid*wgrid, Dim)
	}
	return s[0]
}

// checkLabels checks that labels is a (b) int64 tensor of class indices in [0, K).
func (h *Head) checkLabels(labels *torch.Tensor, b int64) { h.checkLabelsOn(labels, nil, b) }

// checkLabelsOn is checkLabels reading the values from host when it is not nil (one per label).
func (h *Head) checkLabelsOn(labels *torch.Tensor, host []int64, b int64) {
	if labels == nil {
		torch.Fail("head", "labels: nil tensor")
	}
	if s := labels.Shape(); len(s) != 1 || s[0] != b {
		torch.Fail("head", "labels have shape %v, want (%d)", s, b)
	}
	if dt := labels.DType(); dt != torch.Int64 {
		torch.Fail("head", "labels are %s, want int64", dt)
	}
	var lo, hi int64
	if host != nil {
		if int64(len(host)) != b {
			torch.Fail("head", "%d host labels for %d samples", len(host), b)
		}
		lo, hi = slices.Min(host), slices.Max(host)
	} else {
		mm := torch.Stack([]*torch.Tensor{labels.Min(), labels.Max()}, 0).Int64s() // one read (the copy comes from any device)
		lo, hi = mm[0], mm[1]
	}
	if lo < 0 || hi >= h.K {
		torch.Fail("head", "labels range over [%d, %d], want class indices in [0, %d)", lo, hi, h.K)
	}
}
