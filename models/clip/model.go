package clip

import (
	"fmt"
	"math"
	"strings"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// layerNormEps is the LayerNorm epsilon of OpenAI's CLIP (PyTorch's default).
const layerNormEps = 1e-5

// Attention is nn.MultiheadAttention as CLIP uses it: a packed q/k/v projection and an output
// projection. Names: in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias.
type Attention struct {
	InProjWeight *torch.Tensor // (3·width, width)
	InProjBias   *torch.Tensor // (3·width)
	OutProj      *nn.Linear
	Heads        int64
}

// Block is open_clip's ResidualAttentionBlock: x + attn(ln_1(x)), then + mlp(ln_2(x)) with a
// QuickGELU MLP (mlp.c_fc, mlp.c_proj). Names: ln_1.*, attn.*, ln_2.*, mlp.c_fc.*, mlp.c_proj.*.
type Block struct {
	Ln1, Ln2   *nn.LayerNorm
	Attn       *Attention
	CFc, CProj *nn.Linear
}

// Transformer is a stack of residual blocks, named resblocks.0, resblocks.1, ...
type Transformer struct {
	Resblocks []*Block
}

// Visual is the image tower (open_clip's VisionTransformer for OpenAI weights), named visual.*.
type Visual struct {
	ClassEmbedding      *torch.Tensor // (width)
	PositionalEmbedding *torch.Tensor // (grid²+1, width)
	Proj                *torch.Tensor // (width, embed)
	Conv1               *torch.Tensor // conv1.weight (width, 3, patch, patch), no bias
	LnPre, LnPost       *nn.LayerNorm
	Transformer         *Transformer
}

// Model is a ViT CLIP: the image tower (visual.*) and the text tower, with OpenAI's parameter
// names. Its weights are frozen: they never record gradients.
type Model struct {
	Config Config

	Visual              *Visual
	PositionalEmbedding *torch.Tensor // text positional embedding (context, width)
	TextProjection      *torch.Tensor // (width, embed)
	LogitScale          *torch.Tensor // scalar; loaded and saved, unused by the features
	TokenEmbedding      *torch.Tensor // token_embedding.weight (vocab, width)
	Transformer         *Transformer  // text transformer
	LnFinal             *nn.LayerNorm

	// compute, when set, holds in its Visual a copy of the image tower in a lower precision that
	// DenseFeatures runs instead (SetVisualDType); its other tensors are released.
	compute *Model
}

// NamedTensors implements [nn.Module]: every weight under its OpenAI/open_clip name, in the
// order of open_clip's CLIP.state_dict().
func (m *Model) NamedTensors() []nn.Named {
	ps := m.pointers()
	out := make([]nn.Named, len(ps))
	for i, p := range ps {
		out[i] = nn.Named{Name: p.name, Tensor: *p.ptr}
	}
	return out
}

// Device is the device the model's weights are on.
func (m *Model) Device() torch.Device { return m.LogitScale.Device() }

// To moves every weight to device d in place.
func (m *Model) To(d torch.Device) error {
	if err := torch.CheckDevice(d); err != nil {
		return err
	}
	err := torch.Try(func() {
		torch.NoGrad(func() {
			for _, p := range m.pointers() {
				old := *p.ptr
				if old.Device() == d {
					continue
				}
				*p.ptr = torch.Escape(old.To(d))
				old.Free()
			}
		})
	})
	if err == nil && m.compute != nil && m.compute.Visual.Conv1.Device() != d {
		err = m.SetVisualDType(m.VisualDType()) // rebuilt from the moved weights
	}
	return err
}

// Free releases the storage of every weight now (the model is unusable afterwards). A model
// that is simply dropped is freed by the garbage collector eventually; ViT-B/16 holds ~600 MB.
func (m *Model) Free() {
	for _, n := range m.NamedTensors() {
		n.Tensor.Free()
	}
	if m.compute != nil {
		m.compute.Free()
	}
}

// SetVisualDType makes DenseFeatures run the image tower in dt (torch.BFloat16 or
// torch.Float16) on a converted copy of its weights, casting the float32 images to dt and the
// features back to float32; torch.Float32 (the default) drops the copy. The text tower, whose
// features are computed once per prompt, stays float32, and so do the model's own weights
// (NamedTensors, checkpoints). This is a speed option, not parity: the features differ from
// float32 by the rounding of dt.
func (m *Model) SetVisualDType(dt torch.DType) error {
	if m.compute != nil {
		m.compute.Free()
		m.compute = nil
	}
	switch dt {
	case torch.Float32:
		return nil
	case torch.BFloat16, torch.Float16:
	default:
		return fmt.Errorf("clip: image tower dtype %s: want float32, bfloat16 or float16", dt)
	}
	c := newEmpty(m.Config)
	src, dst := m.pointers(), c.pointers()
	err := torch.Try(func() {
		torch.NoGrad(func() {
			for i, p := range dst {
				old := *p.ptr
				if strings.HasPrefix(p.name, "visual.") {
					*p.ptr = torch.Escape((*src[i].ptr).ToDType(dt))
				}
				old.Free()
			}
		})
	})
	if err != nil {
		c.Free()
		return fmt.Errorf("clip: converting the image tower to %s: %w", dt, err)
	}
	m.compute = c
	return nil
}

// VisualDType is the dtype the image tower runs in (see SetVisualDType).
func (m *Model) VisualDType() torch.DType {
	if m.compute != nil {
		return m.compute.Visual.Conv1.DType()
	}
	return torch.Float32
}

type namedPtr struct {
	name string
	ptr  **torch.Tensor
}

// pointers lists the address of every weight field under its state-dict name, in the order of
// NamedTensors.
func (m *Model) pointers() []namedPtr {
	var out []namedPtr
	add := func(name string, p **torch.Tensor) { out = append(out, namedPtr{name, p}) }
	ln := func(prefix string, l *nn.LayerNorm) {
		add(prefix+".weight", &l.Weight)
		add(prefix+".bias", &l.Bias)
	}
	lin := func(prefix string, l *nn.Linear) {
		add(prefix+".weight", &l.Weight)
		add(prefix+".bias", &l.Bias)
	}
	blocks := func(prefix string, t *Transformer) {
		for i, b := range t.Resblocks {
			p := fmt.Sprintf("%s.resblocks.%d.", prefix, i)
			ln(p+"ln_1", b.Ln1)
			add(p+"attn.in_proj_weight", &b.Attn.InProjWeight)
			add(p+"attn.in_proj_bias", &b.Attn.InProjBias)
			lin(p+"attn.out_proj", b.Attn.OutProj)
			ln(p+"ln_2", b.Ln2)
			lin(p+"mlp.c_fc", b.CFc)
			lin(p+"mlp.c_proj", b.CProj)
		}
	}
	add("positional_embedding", &m.PositionalEmbedding)
	add("text_projection", &m.TextProjection)
	add("logit_scale", &m.LogitScale)
	v := m.Visual
	add("visual.class_embedding", &v.ClassEmbedding)
	add("visual.positional_embedding", &v.PositionalEmbedding)
	add("visual.proj", &v.Proj)
	add("visual.conv1.weight", &v.Conv1)
	ln("visual.ln_pre", v.LnPre)
	blocks("visual.transformer", v.Transformer)
	ln("visual.ln_post", v.LnPost)
	blocks("transformer", m.Transformer)
	add("token_embedding.weight", &m.TokenEmbedding)
	ln("ln_final", m.LnFinal)
	return out
}

// newEmpty allocates an uninitialised model of configuration c on the CPU, outside every scope.
func newEmpty(c Config) *Model {
	f32 := torch.Float32
	empty := func(shape ...int64) *torch.Tensor { return torch.Escape(torch.Empty(shape, f32, torch.CPU)) }
	ln := func(w int64) *nn.LayerNorm {
		return &nn.LayerNorm{Weight: empty(w), Bias: empty(w), Eps: layerNormEps}
	}
	lin := func(in, out int64) *nn.Linear { return &nn.Linear{Weight: empty(out, in), Bias: empty(out)} }
	stack := func(width, layers, heads int64) *Transformer {
		t := &Transformer{}
		for range layers {
			t.Resblocks = append(t.Resblocks, &Block{
				Ln1: ln(width),
				Attn: &Attention{
					InProjWeight: empty(3*width, width),
					InProjBias:   empty(3 * width),
					OutProj:      lin(width, width),
					Heads:        heads,
				},
				Ln2:   ln(width),
				CFc:   lin(width, 4*width),
				CProj: lin(4*width, width),
			})
		}
		return t
	}
	vw, tw := c.VisionWidth, c.TextWidth
	return &Model{
		Config: c,
		Visual: &Visual{
			ClassEmbedding:      empty(vw),
			PositionalEmbedding: empty(c.GridSize*c.GridSize+1, vw),
			Proj:                empty(vw, c.EmbedDim),
			Conv1:               empty(vw, 3, c.PatchSize, c.PatchSize),
			LnPre:               ln(vw),
			LnPost:              ln(vw),
			Transformer:         stack(vw, c.VisionLayers, c.VisionHeads()),
		},
		PositionalEmbedding: empty(c.ContextLength, tw),
		TextProjection:      empty(tw, c.EmbedDim),
		LogitScale:          empty(),
		TokenEmbedding:      empty(c.VocabSize, tw),
		Transformer:         stack(tw, c.TextLayers, c.TextHeads()),
		LnFinal:             ln(tw),
	}
}

// New returns a model of configuration c on the CPU with random weights drawn from g (nil: from
// libtorch's global generator). Each tensor, in state-dict order, is randn(shape)·std + mean
// in float32, with the mean and std of [InitSpec]; tests/clip/gen_clip.py draws the same numbers
// from a torch.Generator with the same seed, so Go and Python build identical random CLIPs.
func New(c Config, g *torch.Generator) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := newEmpty(c)
	err := torch.Try(func() {
		torch.NoGrad(func() {
			s := torch.NewScope()
			defer s.Close()
			for _, n := range m.NamedTensors() {
				mean, std := InitSpec(c, n.Name)
				n.Tensor.Copy_(torch.Randn(n.Tensor.Shape(), g, torch.Float32).MulScalar(std).AddScalar(mean))
			}
		})
	})
	if err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// InitSpec is the mean and standard deviation [New] draws parameter name from: LayerNorm weights
// 1 ± 0.1, biases and token embeddings 0.02, text positions 0.01, class and image positions and
// both projections width^-½, conv1 (3·patch²)^-½, in_proj width^-½, c_fc (2·width)^-½,
// out_proj and c_proj (2·layers·width)^-½, logit_scale the constant 4.6052 (≈ ln(1/0.07)).
// Standard deviations are 1/√n, which Go and Python both round exactly.
func InitSpec(c Config, name string) (mean, std float64) {
	inv := func(n int64) float64 { return 1 / math.Sqrt(float64(n)) }
	w, layers := c.TextWidth, c.TextLayers
	if strings.HasPrefix(name, "visual.") {
		w, layers = c.VisionWidth, c.VisionLayers
	}
	switch {
	case name == "logit_scale":
		return 4.6052, 0
	case name == "visual.class_embedding", name == "visual.positional_embedding", name == "visual.proj":
		return 0, inv(c.VisionWidth)
	case name == "visual.conv1.weight":
		return 0, inv(3 * c.PatchSize * c.PatchSize)
	case name == "text_projection":
		return 0, inv(c.TextWidth)
	case name == "positional_embedding":
		return 0, 0.01
	case name == "token_embedding.weight":
		return 0, 0.02
	case isLayerNorm(name) && strings.HasSuffix(name, ".weight"):
		return 1, 0.1
	case strings.HasSuffix(name, ".bias"), strings.HasSuffix(name, "in_proj_bias"):
		return 0, 0.02
	case strings.HasSuffix(name, "attn.in_proj_weight"):
		return 0, inv(w)
	case strings.HasSuffix(name, "mlp.c_fc.weight"):
		return 0, inv(2 * w)
	case strings.HasSuffix(name, "attn.out_proj.weight"), strings.HasSuffix(name, "mlp.c_proj.weight"):
		return 0, inv(2 * layers * w)
	}
	panic("clip: InitSpec: unknown parameter " + name)
}

func isLayerNorm(name string) bool {
	for _, s := range []string{"ln_1.", "ln_2.", "ln_pre.", "ln_post.", "ln_final."} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// storedAsFloat16 reports the tensors OpenAI's release stores in float16: exactly those that
// open_clip's convert_weights_to_fp16 converts (conv and linear weights and biases, the packed
// attention projection, visual.proj and text_projection). Class and positional embeddings,
// token embeddings, LayerNorms and logit_scale stay float32.
func storedAsFloat16(name string) bool {
	switch {
	case name == "visual.proj", name == "text_projection", name == "visual.conv1.weight":
		return true
	case strings.Contains(name, ".attn.in_proj_"), strings.Contains(name, ".attn.out_proj."),
		strings.Contains(name, ".mlp.c_fc."), strings.Contains(name, ".mlp.c_proj."):
		return true
	}
	return false
}
