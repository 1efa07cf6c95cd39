// Package train is the method's training step and inference (METHOD.md §4 and §6): the frozen
// backbones, the trainable head, selective part discovery and the losses, in the order the
// released code runs them, so that one step computes the same maps, losses, gradients and
// optimizer update.
package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/affgd/affgd/discovery"
	"github.com/affgd/affgd/losses"
	"github.com/affgd/affgd/models/clip"
	"github.com/affgd/affgd/models/dino"
	"github.com/affgd/affgd/models/head"
	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/optim"
)

// Gamma2 is γ2 of METHOD.md §9: the threshold on the min-max normalised CLIP ego map that selects
// the pixel loss's anchors.
const Gamma2 = 0.6

// Model is everything one step needs: the frozen backbones, the head, the tokenizer and the
// class names of the split (label = index).
type Model struct {
	DINO    *dino.ViT
	CLIP    *clip.Model
	Head    *head.Head
	Tok     *tokenizer.Tokenizer
	Classes []string

	// CacheText makes training steps take each prompt's CLIP text features from a per-prompt
	// cache (each computed once, alone) instead of encoding the batch's prompts every step as the
	// released code does. The frozen encoder makes this the same computation, but a prompt
	// encoded alone and inside a batch of 8 differ by float32 rounding (≤ 3e-6 measured, the
	// matrix kernels block differently), so it is off by default in the library (parity dumps,
	// tests) and on by default in `affgd train` (config key cache_text), where it saves two
	// text-encoder batches per step.
	CacheText bool

	// texts holds text features by prompt list (encodeOnce): the frozen encoder gives the same
	// features for the same list every time. Infer and CacheText steps ask for single prompts.
	texts map[string]*torch.Tensor
}

// Batch is one training batch: Exo (B, E, 3, H, W) and Ego (B, 3, H, W) normalised images, Label
// (B) int64. Ego alone (with Label) is enough for inference. Labels, when set, holds Label's values
// on the host (the loader has them), so that the step never reads the labels back from the device.
type Batch struct {
	Exo, Ego, Label *torch.Tensor
	Labels          []int64
}

// hostLabels returns the labels' values: b.Labels, or (one device read) Label's.
func (b Batch) hostLabels() []int64 {
	if b.Labels != nil {
		if int64(len(b.Labels)) != b.Label.Size(0) {
			torch.Fail("train", "%d host labels for a batch of %d", len(b.Labels), b.Label.Size(0))
		}
		return b.Labels
	}
	return b.Label.Int64s()
}

// Options control one step.
type Options struct {
	Epoch      int               // 0-based; gating (§4.6) and the masks of §4.8 start at epoch 1
	Discovery  discovery.Options // γ1, α, clusters, exo indexing (the released quirk by default)
	KMeansInit map[int][]int64   // injected initial centroids by sample (parity checks)
	Gen        *torch.Generator  // draws the K-means initialisations not injected
	Tau        float64           // contrastive temperature; 0 means losses.Tau
	Gamma2     float64           // pixel-loss anchor threshold γ2; 0 means Gamma2 (0.6)
	Weights    *LossWeights      // the losses' weights; nil means 1 each (released)
}

// Result holds what one forward computed, with the names of the parity dump (docs/PARITY.md).
// Every tensor lives in the caller's scope. A loss of weight 0 is nil, and so are the discovery
// results (Reliable, PScore, WEgo, WExo, NumCandidates) when the prototypical loss is off.
type Result struct {
	SEgo, SExo, DEgo, DExo, SamHard *torch.Tensor
	Reliable, PScore, WEgo, WExo    *torch.Tensor
	LogitsEgo, LogitsExo            *torch.Tensor
	LCeEgo, LCeExo, LPix, LProto    *torch.Tensor
	Loss                            *torch.Tensor // the weighted sum of the losses (carries the graph)

	// Counts on the device, 0-d int64 (nil with the loss off): samples whose pixel loss had no
	// anchor with a positive (METHOD §9.2), prototypical anchors without a positive.
	EmptyPixelSamples, EmptyProtoRows *torch.Tensor
	NumCandidates                     []int // part-discovery candidates per sample
	EmptyClusters                     []int // empty K-means clusters per sample, with Discovery.CountEmpty (analysis)
}

// prompts returns the affordance and exocentric prompts of the labels.
func (m *Model) prompts(labels []int64) (aff, exo []string) {
	for _, l := range labels {
		if l < 0 || int(l) >= len(m.Classes) {
			torch.Fail("train", "label %d outside the %d classes", l, len(m.Classes))
		}
		aff = append(aff, tokenizer.AffordancePrompt(m.Classes[l]))
		exo = append(exo, tokenizer.ExoPrompt(m.Classes[l]))
	}
	return aff, exo
}

// must returns v, or carries err (from another package's exported function) unchanged to the
// Try of the exported function running this code (torch.Raise): no layer is named twice.
func must[T any](v T, err error) T {
	torch.Raise(err)
	return v
}

// grid returns the feature grid of a (.., 3, H, W) image batch for patch size 16 backbones.
func (m *Model) grid(x *torch.Tensor) (h, w int64) {
	s := x.Shape()
	p := m.DINO.Cfg.PatchSize
	return s[len(s)-2] / p, s[len(s)-1] / p
}

// channelsFirst lays DINO's key tokens (N, h·w, C) out as maps (N, C, h, w).
func channelsFirst(tokens *torch.Tensor, h, w int64) *torch.Tensor {
	s := tokens.Shape()
	return tokens.Reshape(s[0], h, w, s[2]).Permute(0, 3, 1, 2).Contiguous()
}

// minMaxNoEps normalises each map of (B, h, w) to [0, 1] without an epsilon, as the released
// Net.normalize.
func minMaxNoEps(x *torch.Tensor) *torch.Tensor {
	s := x.Shape()
	flat := x.Reshape(s[0], -1)
	mn, _ := flat.MinDim(1, true)
	mx, _ := flat.MaxDim(1, true)
	return flat.Sub(mn).Div(mx.Sub(mn)).Reshape(s...)
}

// Features are the frozen backbones' outputs for one batch (METHOD §4 steps 1–3): CLIP text
// features of the labels' prompts, CLIP dense features, and DINO's last-block keys and saliency.
type Features struct {
	TAff, TExo *torch.Tensor // (B, D)
	FEgo, FExo *torch.Tensor // (B, h·w, D), (B·E, h·w, D)
	DEgo, DExo *dino.Output  // keys (B, h·w, C) and (B·E, h·w, C); DEgo.SamHard (B, h·w)
	E, H, W    int64
}

// Forward runs one training forward (METHOD §4 steps 1–11) in the caller's scope and returns the
// maps and losses; the head's BatchNorm running statistics are updated (twice, as the released
// code does). Call Loss.Backward() and the optimizer afterwards, or use [Model.DebugStep].
func (m *Model) Forward(b Batch, o Options) (*Result, error) {
	f, err := m.Backbones(b)
	if err != nil {
		return nil, err
	}
	return m.ForwardFeatures(b, f, o)
}

// Backbones runs the frozen backbones on a training batch (METHOD §4 steps 1–3), in the caller's
// scope.
func (m *Model) Backbones(b Batch) (*Features, error) {
	var f *Features
	err := torch.Try(func() { f = m.backbones(b) })
	if err != nil {
		return nil, fmt.Errorf("train: step: %w", err)
	}
	return f, nil
}

// ForwardFeatures is [Model.Forward] from precomputed backbone features (the head, part discovery
// and losses: steps 4–11).
func (m *Model) ForwardFeatures(b Batch, f *Features, o Options) (*Result, error) {
	var r *Result
	err := torch.Try(func() { r = m.rest(b, f, o) })
	if err != nil {
		return nil, fmt.Errorf("train: step: %w", err)
	}
	return r, nil
}

func (m *Model) backbones(b Batch) *Features {
	xs := b.Exo.Shape()
	if len(xs) != 5 || xs[2] != 3 {
		torch.Fail("train", "exo images must be (B, E, 3, H, W), got %v", xs)
	}
	bsz, e := xs[0], xs[1]
	if es := b.Ego.Shape(); len(es) != 4 || es[0] != bsz || es[1] != 3 || es[2] != xs[3] || es[3] != xs[4] {
		torch.Fail("train", "ego images must be (B, 3, H, W) = (%d, 3, %d, %d), got %v", bsz, xs[3], xs[4], es)
	}
	if ls := b.Label.Shape(); len(ls) != 1 || ls[0] != bsz || b.Label.DType() != torch.Int64 {
		torch.Fail("train", "labels must be int64 (B) = (%d), got %s%v", bsz, b.Label.DType(), ls)
	}
	exo := b.Exo.Flatten(0, 1)
	h, w := m.grid(b.Ego)
	affPrompts, exoPrompts := m.prompts(b.hostLabels())
	encode := func(prompts []string) *torch.Tensor { return must(m.CLIP.EncodePrompts(m.Tok, prompts)) }
	if m.CacheText {
		encode = m.encodeEach
	}
	return &Features{
		TAff: encode(affPrompts),
		TExo: encode(exoPrompts),
		FEgo: must(m.CLIP.DenseFeatures(b.Ego)),
		FExo: must(m.CLIP.DenseFeatures(exo)),
		DEgo: must(m.DINO.Features(b.Ego)),
		DExo: must(m.DINO.Features(exo)),
		E:    e, H: h, W: w,
	}
}

func (m *Model) rest(b Batch, f *Features, o Options) *Result {
	tau := o.Tau
	if tau == 0 {
		tau = losses.Tau
	}
	wt := AllLosses
	if o.Weights != nil {
		wt = *o.Weights
	}
	if err := wt.Check(); err != nil {
		torch.Fail("train", "%v", err)
	}
	r := &Result{}
	bsz, e, h, w := b.Label.Size(0), f.E, f.H, f.W
	tAff, fEgo, fExo, dEgo, dExo := f.TAff, f.FEgo, f.FExo, f.DEgo, f.DExo

	// 2. The CLIP affinity maps.
	aff := discovery.Affinity(fEgo, fExo, tAff, f.TExo, e, h, w)

	// 4–5. Head and classification losses.
	out := m.Head.ForwardKnown(dEgo.Key, dExo.Key, b.Label, b.Labels, e, h, w, true)
	if wt.CEEgo != 0 {
		r.LCeEgo = losses.ClassificationEgo(out.LogitsEgo, b.Label)
	}
	if wt.CEExo != 0 {
		r.LCeExo = losses.ClassificationExo(out.LogitsExo, b.Label)
	}

	// 6. Gating from epoch 1 on: negative CAM values are zeroed in place (gradients still flow
	// through the kept values) and the exo map is calibrated by the CAM.
	gEgo, gExo := out.GEgo, out.GExo
	mExo := aff.SExo
	if o.Epoch >= 1 {
		gEgo.MaskedFill_(gEgo.LtScalar(0), 0)
		gExo.MaskedFill_(gExo.LtScalar(0), 0)
		mExo = aff.SExo.ClampMin(0).Mul(gExo)
	}

	// 7. Selective part discovery; 8. masks and backgrounds (both only for the prototypical loss).
	// The K-means draws come from o.Gen, which must be on the model's device (a CUDA draw from a
	// CPU generator is an error deep inside libtorch).
	if o.Gen != nil && o.Gen.Device() != dEgo.Key.Device() {
		torch.Fail("train", "the K-means generator is on %s but the model on %s: create it on the model's device", o.Gen.Device(), dEgo.Key.Device())
	}
	dEgoMap, dExoMap := channelsFirst(dEgo.Key, h, w), channelsFirst(dExo.Key, h, w)
	var disc *discovery.Result
	var bgEgo, bgExo *torch.Tensor
	if wt.Proto != 0 {
		disc = must(discovery.Discover(discovery.Inputs{
			DEgo: dEgoMap, DExo: dExoMap, SEgo: aff.SEgo, SExo: aff.SExo, MExo: mExo, SamHard: dEgo.SamHard, E: e,
		}, o.Discovery, o.KMeansInit, o.Gen))
		r.Reliable, r.PScore, r.WEgo, r.WExo = disc.Reliable, disc.PScore, disc.WEgo, disc.WExo
		r.NumCandidates, r.EmptyClusters = disc.NumCandidates, disc.EmptyClusters

		kEgo, kExo := disc.WEgo, disc.WExo
		if o.Epoch >= 1 {
			kEgo, kExo = disc.WEgo.Mul(gEgo), disc.WExo.Mul(gExo)
		}
		bgEgo, bgExo = kEgo.RSubScalar(1), kExo.RSubScalar(1)
	}

	// 9. Pixel contrastive loss on the anchors of the binarised CLIP ego map.
	if wt.Pixel != 0 {
		gamma2 := o.Gamma2
		if gamma2 == 0 {
			gamma2 = Gamma2
		}
		bin := minMaxNoEps(aff.SEgo).GtScalar(gamma2).ToDType(torch.Float32)
		r.LPix, r.EmptyPixelSamples = losses.PixelContrastOnDevice(out.Q, bin, tAff, fEgo, fExo, e, tau)
	}

	// 10. Prototypical contrastive loss; reliable samples weight the anchor by the CLIP map.
	if wt.Proto != 0 {
		reliable := disc.Reliable.Reshape(bsz, 1, 1).GtScalar(0.5)
		objEgo := torch.Where(reliable, aff.SEgo, torch.Ones(aff.SEgo.Shape(), aff.SEgo.Device()))
		r.LProto, r.EmptyProtoRows = losses.ProtoContrastOnDevice(out.REgo, out.RExo, disc.WEgo, disc.WExo, bgEgo, bgExo, b.Label, e, objEgo, tau)
	}

	// 11. Total: the weighted sum of the terms computed, in the released order (a weight of 1
	// adds the term itself).
	for _, t := range []struct {
		loss   *torch.Tensor
		weight float64
	}{{r.LCeEgo, wt.CEEgo}, {r.LCeExo, wt.CEExo}, {r.LPix, wt.Pixel}, {r.LProto, wt.Proto}} {
		if t.loss == nil {
			continue
		}
		term := t.loss
		if t.weight != 1 {
			term = term.MulScalar(t.weight)
		}
		if r.Loss == nil {
			r.Loss = term
		} else {
			r.Loss = r.Loss.Add(term)
		}
	}
	r.SEgo, r.SExo, r.DEgo, r.DExo, r.SamHard = aff.SEgo, aff.SExo, dEgoMap, dExoMap, dEgo.SamHard
	r.LogitsEgo, r.LogitsExo = out.LogitsEgo, out.LogitsExo
	return r
}

// Maps are the three inference maps of METHOD §6, each (B, h, w).
type Maps struct {
	CAM, REE, REM *torch.Tensor
}

// Infer runs the released test_forward on b.Ego and b.Label, with BatchNorm in eval mode, in the
// caller's scope.
func (m *Model) Infer(b Batch) (*Maps, error) {
	var mp *Maps
	err := torch.Try(func() {
		torch.NoGrad(func() {
			s := b.Ego.Shape()
			if len(s) != 4 || s[1] != 3 {
				torch.Fail("train", "images must be (B, 3, H, W), got %v", s)
			}
			labels := b.hostLabels()
			h, w := m.grid(b.Ego)
			affPrompts, _ := m.prompts(labels)
			// Each prompt encoded alone (and once), so an image's maps do not depend on the
			// other images of its batch: a batch of N gives batch 1's text features.
			tAff := m.encodeEach(affPrompts)
			fEgo := must(m.CLIP.DenseFeatures(b.Ego))
			sEgo := torch.Einsum("bnc,bc->bn", fEgo.Normalize(2, -1, 1e-12), tAff.Normalize(2, -1, 1e-12)).Reshape(s[0], h, w)
			d := must(m.DINO.Features(b.Ego))
			cam, ree, rem := m.Head.TestForward(d.Key, sEgo, b.Label, h, w)
			mp = &Maps{CAM: cam, REE: ree, REM: rem}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("train: infer: %w", err)
	}
	return mp, nil
}

// encodeOnce returns the CLIP text features of prompts, encoding each distinct prompt list once
// (the same batch, so the same numbers as encoding it again) and keeping it with the model.
func (m *Model) encodeOnce(prompts []string) *torch.Tensor {
	key := strings.Join(prompts, "\x00")
	if t, ok := m.texts[key]; ok {
		return t.Alias()
	}
	t := must(m.CLIP.EncodePrompts(m.Tok, prompts))
	if m.texts == nil {
		m.texts = map[string]*torch.Tensor{}
	}
	if len(m.texts) < 4096 { // bounded: arbitrary batches of labels could grow it forever
		m.texts[key] = torch.Escape(t.Alias())
	}
	return t
}

// encodeEach returns the text features of prompts with each prompt encoded alone, once (see
// Model.CacheText).
func (m *Model) encodeEach(prompts []string) *torch.Tensor {
	rows := make([]*torch.Tensor, len(prompts))
	for i, p := range prompts {
		rows[i] = m.encodeOnce([]string{p}).Select(0, 0)
	}
	return torch.Stack(rows, 0)
}

// LossTermNames are the four losses of [StepFigures.Terms], in the released order.
var LossTermNames = [4]string{"L_ce_ego", "L_ce_exo", "L_pix", "L_proto"}

// StepFigures are one training step's figures, computed on the device and read in one copy.
type StepFigures struct {
	Loss                   float64    // the weighted total
	Terms                  [4]float64 // LossTermNames' values; NaN for a term of weight 0 (not computed)
	CorrectEgo, CorrectExo int        // samples whose ego / mean exo logits' argmax is the label
	Samples                int
	Discovered             bool // part discovery ran (the prototypical loss is on)
	PartLevel              int  // samples part level (with Discovered)
	EmptyPixel, EmptyProto int  // Result.EmptyPixelSamples, EmptyProtoRows (0 with the loss off)
	// PScore counts each clustered sample's best reliability p in StepOptions.PScoreBins equal
	// bins of [0, 1] (the last includes 1; p·bins truncated and clamped); Unclustered counts the
	// samples without a p. Nil without part discovery or bins.
	PScore      []int
	Unclustered int
}

// StepOptions are what the callers of [Model.Step] differ in.
type StepOptions struct {
	PScoreBins int       // bins of StepFigures.PScore (0: none)
	Features   *Features // the backbones' features, computed beforehand (bench step); nil: computed
	// AfterBackward, when set, runs after the backward pass and before the update (the debug
	// step's gradient dump).
	AfterBackward func(*Result)
}

// Step is one training step — METHOD §4 steps 1–11 ([Model.Forward]), the step's figures, and
// step 12: zero_grad, backward, the SGD update — in the caller's scope. The trainer, `affgd debug
// step` and `affgd bench step` all run it. The figures are read from the device once, after the
// backward pass is queued; a non-finite loss fails the step before the update, so nothing is
// applied (only the head's BatchNorm running statistics, which the forward updates, have moved).
func (m *Model) Step(b Batch, opt *optim.SGD, o Options, so StepOptions) (*Result, StepFigures, error) {
	var r *Result
	var fig StepFigures
	err := torch.Try(func() {
		// 1–3. The frozen backbones; 4–11. head, part discovery, losses.
		f := so.Features
		if f == nil {
			f = m.backbones(b)
		}
		r = m.rest(b, f, o)

		// The step's figures, on the device.
		stats := m.figures(b, r, so.PScoreBins)

		// 12. zero_grad, backward; the figures' one read; the SGD update.
		opt.ZeroGrad()
		r.Loss.Backward()
		if so.AfterBackward != nil {
			so.AfterBackward(r)
		}
		fig = readFigures(stats.Float64s(), r, b.Label.Size(0), so.PScoreBins)
		if math.IsNaN(fig.Loss) || math.IsInf(fig.Loss, 0) {
			t := fig.Terms
			torch.Fail("train", "the loss is %v (%s %v, %s %v, %s %v, %s %v; NaN: weight 0, not computed); the step was not applied",
				fig.Loss, LossTermNames[0], t[0], LossTermNames[1], t[1], LossTermNames[2], t[2], LossTermNames[3], t[3])
		}
		opt.Step()
	})
	if err != nil {
		return nil, fig, fmt.Errorf("train: step: %w", err)
	}
	return r, fig, nil
}

// figures lays the step's figures out in one float64 vector on the device: the total, the four
// terms (NaN when not computed), correct ego and exo predictions, part-level samples, the two
// empty counts, and the p histogram's bins and unclustered count.
func (m *Model) figures(b Batch, r *Result, bins int) *torch.Tensor {
	dev := r.Loss.Device()
	one := func(t *torch.Tensor) *torch.Tensor { return t.Detach().ToDType(torch.Float64).Reshape(1) }
	nan := torch.Full([]int64{1}, math.NaN(), torch.Float64, dev)
	zero := torch.Zeros([]int64{1}, torch.Float64, dev)
	or := func(t, def *torch.Tensor) *torch.Tensor {
		if t == nil {
			return def
		}
		return one(t)
	}
	predEgo := r.LogitsEgo.ArgmaxDim(1, false)
	predExo := r.LogitsExo.MeanDims([]int64{1}, false).ArgmaxDim(1, false)
	parts := []*torch.Tensor{
		one(r.Loss), or(r.LCeEgo, nan), or(r.LCeExo, nan), or(r.LPix, nan), or(r.LProto, nan),
		one(predEgo.Eq(b.Label).Sum()), one(predExo.Eq(b.Label).Sum()),
		zero, or(r.EmptyPixelSamples, zero), or(r.EmptyProtoRows, zero),
	}
	if r.Reliable != nil {
		parts[7] = one(r.Reliable.Sum())
	}
	if r.PScore != nil && bins > 0 {
		best, _ := r.PScore.MaxDim(1, false)
		none := best.IsNaN()
		v := best.MaskedFill(none, 0).ToDType(torch.Float64).MulScalar(float64(bins)).Clamp(0, float64(bins-1)).ToDType(torch.Int64)
		hit := v.Unsqueeze(1).Eq(torch.Arange(0, float64(bins), 1, torch.Int64, dev).Unsqueeze(0)).
			LogicalAnd(none.LogicalNot().Unsqueeze(1))
		parts = append(parts, hit.ToDType(torch.Float64).SumDims([]int64{0}, false), one(none.Sum()))
	}
	return torch.Cat(parts, 0)
}

// readFigures decodes the vector of [Model.figures].
func readFigures(v []float64, r *Result, samples int64, bins int) StepFigures {
	f := StepFigures{Loss: v[0], Terms: [4]float64{v[1], v[2], v[3], v[4]}, Samples: int(samples)}
	f.CorrectEgo, f.CorrectExo = int(v[5]), int(v[6])
	f.EmptyPixel, f.EmptyProto = int(v[8]), int(v[9])
	if r.Reliable != nil {
		f.Discovered, f.PartLevel = true, int(v[7])
	}
	if r.PScore != nil && bins > 0 {
		f.PScore = make([]int, bins)
		for i := range bins {
			f.PScore[i] = int(v[10+i])
		}
		f.Unclustered = int(v[10+bins])
	}
	return f
}
