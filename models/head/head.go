// Package head is the trainable part of SelectiveCL (METHOD.md section 3): the projection of the
// DINO key descriptors, the egocentric and exocentric conv stacks, the affordance classifier and
// the two contrastive projections, with the released code's parameter names, initialisation
// order, forward call pattern (section 4 step 4), inference maps (section 6) and optimizer
// parameter groups (section 4 step 12).
//
// The backbones and losses live elsewhere; this package only maps descriptors to the head's
// outputs. Its forward functions run under [torch.Try]: they panic with *torch.Error on bad
// input, which the caller's Try turns into an error.
package head

import (
	"strings"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
	"github.com/affgd/affgd/torch/optim"
)

// Dim is the width of the DINO ViT-S/16 key descriptors and of every feature map of the head.
const Dim = 384

// hidden is the width of aff_proj's hidden layer (int(384·4) in the released code).
const hidden = 4 * Dim

// Optimizer settings of the released training script (train.py defaults, utils/util.py
// get_optimizer): SGD with Nesterov momentum and weight decay on every group.
const (
	Momentum    = 0.9
	WeightDecay = 5e-4
)

// MLP is the released Mlp used as aff_proj: LayerNorm (eps 1e-5) → fc1 → exact GELU → fc2
// (dropout 0, so none). State-dict keys: norm.*, fc1.*, fc2.*.
type MLP struct {
	Norm     *nn.LayerNorm
	FC1, FC2 *nn.Linear
}

// Forward applies the MLP to the last dimension of x.
func (m *MLP) Forward(x *torch.Tensor) *torch.Tensor {
	return m.FC2.Forward(m.FC1.Forward(m.Norm.Forward(x)).Gelu())
}

// NamedTensors implements [nn.Module].
func (m *MLP) NamedTensors() []nn.Named {
	var out []nn.Named
	out = append(out, nn.Prefixed("norm", m.Norm)...)
	out = append(out, nn.Prefixed("fc1", m.FC1)...)
	return append(out, nn.Prefixed("fc2", m.FC2)...)
}

// ConvStack is aff_ego_proj / aff_exo_proj, the released nn.Sequential
// Conv3×3 → BatchNorm2d → ReLU → Conv3×3 → BatchNorm2d → ReLU. State-dict keys use the
// Sequential's indices: 0.* (conv), 1.* (BatchNorm, with running_mean, running_var and
// num_batches_tracked), 3.*, 4.*; the ReLUs (2, 5) hold nothing.
type ConvStack struct {
	Conv0 *nn.Conv2d
	BN1   *nn.BatchNorm2d
	Conv3 *nn.Conv2d
	BN4   *nn.BatchNorm2d
}

// newConvStack builds a stack drawing the two convolutions' weights from g in Sequential order.
func newConvStack(g *torch.Generator, opts ...torch.Option) *ConvStack {
	pad := torch.Conv2dOptions{Padding: [2]int64{1, 1}}
	s := &ConvStack{}
	s.Conv0 = nn.NewConv2d(Dim, Dim, 3, pad, true, g, opts...)
	s.BN1 = nn.NewBatchNorm2d(Dim, opts...)
	s.Conv3 = nn.NewConv2d(Dim, Dim, 3, pad, true, g, opts...)
	s.BN4 = nn.NewBatchNorm2d(Dim, opts...)
	return s
}

// Forward applies the stack to x (N, 384, h, w). With training set, the BatchNorms normalise
// with the batch statistics and update their running statistics in place (momentum 0.1,
// num_batches_tracked += 1), as the released model in train mode does on every call; otherwise
// they use the running statistics. It runs under [torch.Try].
func (s *ConvStack) Forward(x *torch.Tensor, training bool) *torch.Tensor {
	y, _, _ := s.forward(x, training)
	return y
}

// forward is [ConvStack.Forward] that also returns the inputs of the two BatchNorms (the
// convolutions' outputs), for [ConvStack.repeatStats].
func (s *ConvStack) forward(x *torch.Tensor, training bool) (y, in1, in4 *torch.Tensor) {
	in1 = s.Conv0.Forward(x)
	in4 = s.Conv3.Forward(s.BN1.Forward(in1, training).Relu())
	return s.BN4.Forward(in4, training).Relu(), in1, in4
}

// repeatStats applies to the running statistics the update that a second training-mode call
// of the stack on the same input would make, given the BatchNorm inputs in1 and in4 of the
// first call: a second call's convolutions see the same values (its first BatchNorm normalises
// with the same batch statistics), so its BatchNorms see bitwise the same inputs, and running
// each training-mode batch_norm once more on them, without gradient, moves the running mean
// and variance by the same momentum blend and counts the same batch. The normalised outputs
// are discarded.
func (s *ConvStack) repeatStats(in1, in4 *torch.Tensor) {
	torch.NoGrad(func() {
		s.BN1.Forward(in1, true).Free()
		s.BN4.Forward(in4, true).Free()
	})
}

// NamedTensors implements [nn.Module].
func (s *ConvStack) NamedTensors() []nn.Named {
	var out []nn.Named
	out = append(out, nn.Prefixed("0", s.Conv0)...)
	out = append(out, nn.Prefixed("1", s.BN1)...)
	out = append(out, nn.Prefixed("3", s.Conv3)...)
	return append(out, nn.Prefixed("4", s.BN4)...)
}

// Head is the trainable head over K affordance classes. Field names follow the released
// attributes: AffProj is aff_proj, EgoProj aff_ego_proj, ExoProj aff_exo_proj, Classifier
// aff_classifier (Conv1×1 384→K), KContrast K_contrast_projection and PixelContrast
// pixel_contrast_projection (Conv1×1 384→384 each).
type Head struct {
	K                                    int64
	AffProj                              *MLP
	EgoProj, ExoProj                     *ConvStack
	Classifier, KContrast, PixelContrast *nn.Conv2d
}

// New returns a head over numClasses classes with PyTorch's default initialisation (conv and
// linear weights kaiming-uniform then biases uniform, norms weight 1 bias 0, running mean 0 and
// var 1), drawing from g in the order the released Net.__init__ creates the modules:
// aff_proj (norm, fc1, fc2), aff_classifier, K_contrast_projection, pixel_contrast_projection,
// aff_ego_proj (0, 3), aff_exo_proj (0, 3). A nil g draws from libtorch's global generator.
//
// In the released code the DINO and CLIP models are built (and draw from the global generator)
// before the head; a caller that wants the released head bit for bit from a seed must draw what
// they draw first. New panics with *torch.Error when numClasses < 1; it runs under [torch.Try].
func New(numClasses int64, g *torch.Generator, opts ...torch.Option) *Head {
	if numClasses < 1 {
		torch.Fail("head", "the number of classes must be positive, got %d", numClasses)
	}
	h := &Head{K: numClasses}
	h.AffProj = &MLP{Norm: nn.NewLayerNorm(Dim, 1e-5, opts...)}
	h.AffProj.FC1 = nn.NewLinear(Dim, hidden, true, g, opts...)
	h.AffProj.FC2 = nn.NewLinear(hidden, Dim, true, g, opts...)
	h.Classifier = nn.NewConv2d(Dim, numClasses, 1, torch.Conv2dOptions{}, true, g, opts...)
	h.KContrast = nn.NewConv2d(Dim, Dim, 1, torch.Conv2dOptions{}, true, g, opts...)
	h.PixelContrast = nn.NewConv2d(Dim, Dim, 1, torch.Conv2dOptions{}, true, g, opts...)
	h.EgoProj = newConvStack(g, opts...)
	h.ExoProj = newConvStack(g, opts...)
	return h
}

// NamedTensors returns the head's parameters and buffers under the released state-dict keys,
// in the released order (aff_proj.norm.weight, ..., aff_classifier.*, K_contrast_projection.*,
// pixel_contrast_projection.*, aff_ego_proj.0.weight, ..., aff_exo_proj.4.num_batches_tracked).
// It implements [nn.Module].
func (h *Head) NamedTensors() []nn.Named {
	var out []nn.Named
	out = append(out, nn.Prefixed("aff_proj", h.AffProj)...)
	out = append(out, nn.Prefixed("aff_classifier", h.Classifier)...)
	out = append(out, nn.Prefixed("K_contrast_projection", h.KContrast)...)
	out = append(out, nn.Prefixed("pixel_contrast_projection", h.PixelContrast)...)
	out = append(out, nn.Prefixed("aff_ego_proj", h.EgoProj)...)
	return append(out, nn.Prefixed("aff_exo_proj", h.ExoProj)...)
}

// Parameter-group names of [Head.ParamGroups], in the released order.
const (
	GroupWeights   = "weights"    // lr
	GroupBiases    = "biases"     // 2·lr
	GroupFCWeights = "fc_weights" // 10·lr
	GroupFCBiases  = "fc_biases"  // 20·lr
)

// ParamGroups returns the released optimizer's four parameter groups for base learning rate
// lr, split by parameter name as utils/util.py get_optimizer does: a name containing "fc" and
// "weight" goes to the 10·lr group, "fc" and "bias" to 20·lr, any other name containing
// "weight" to lr and "bias" to 2·lr (a name with neither would be left out). Groups come in the
// released order (lr, 2·lr, 10·lr, 20·lr), parameters in state-dict order, all with momentum
// 0.9, Nesterov, dampening 0 and weight decay 5e-4. So aff_proj.fc1/fc2 form the fc groups and
// the LayerNorm and BatchNorm affine parameters fall in the plain ones.
//
// The released script hands every parameter of the whole model to SGD, the frozen DINO and CLIP
// ones included; those never get a gradient (they run under no_grad) and SGD skips parameters
// without one, so the head's parameters alone give the same updates.
func (h *Head) ParamGroups(lr float64) []optim.ParamGroup {
	groups := []optim.ParamGroup{
		{Name: GroupWeights, LR: lr},
		{Name: GroupBiases, LR: 2 * lr},
		{Name: GroupFCWeights, LR: 10 * lr},
		{Name: GroupFCBiases, LR: 20 * lr},
	}
	for _, p := range nn.Parameters(h) {
		i := groupOf(p.Name)
		if i >= 0 {
			groups[i].Params = append(groups[i].Params, p.Tensor)
		}
	}
	for i := range groups {
		groups[i].Momentum = Momentum
		groups[i].WeightDecay = WeightDecay
		groups[i].Nesterov = true
	}
	return groups
}

// groupOf returns the index in ParamGroups of the group a parameter name belongs to, or -1.
func groupOf(name string) int {
	fc := strings.Contains(name, "fc")
	switch {
	case fc && strings.Contains(name, "weight"):
		return 2
	case fc && strings.Contains(name, "bias"):
		return 3
	case strings.Contains(name, "weight"):
		return 0
	case strings.Contains(name, "bias"):
		return 1
	}
	return -1
}
