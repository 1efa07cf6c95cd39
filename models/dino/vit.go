// Package dino is the frozen DINO vision transformer (Caron et al. 2021, the ViT of timm with
// pre-norm blocks) that Selective Contrastive Learning takes its patch descriptors and saliency
// from (METHOD.md section 2).
//
// Parameter names are those of DINO's published checkpoints (dino_deitsmall16_pretrain.pth and
// the other backbones): cls_token, pos_embed, patch_embed.proj.*, blocks.N.{norm1, attn.qkv,
// attn.proj, norm2, mlp.fc1, mlp.fc2}.*, norm.*; so [Load] reads those files, DINO's training
// checkpoints and the released SelectiveCL checkpoint, and [WriteRandom] writes files that
// DINO's code loads.
//
// [ViT.Features] is what the method needs: the last block's key descriptor, its attention and
// the saliency mask sam_hard, computed the way the released code does. [ViT.Forward] is the
// ordinary forward pass (every block, then the final LayerNorm).
//
// The backbone is frozen: every forward runs under [torch.NoGrad], batched, in float32, on the
// device the weights live on. Functions return errors; tensor failures are turned into errors
// with [torch.Try].
package dino

import (
	"fmt"
	"math"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// DefaultSaliencyHeads are the attention heads whose binarised cls attention the released code
// averages into the saliency (heads 0, 1 and 3 of ViT-S/16's six).
var DefaultSaliencyHeads = []int64{0, 1, 3}

// Config is the architecture of a DINO ViT. [Load] reads it from the weights: EmbedDim and
// PatchSize from patch_embed.proj.weight, Depth from the number of blocks, MLPRatio from
// mlp.fc1, ImgSize from pos_embed (side of its square patch grid × PatchSize), QKVBias from the
// presence of attn.qkv.bias. The head count is not in the weights: it defaults to EmbedDim/64,
// which holds for DINO's published models (ViT-tiny 192/3, ViT-S 384/6, ViT-B 768/12) and is
// overridden with [WithHeads].
type Config struct {
	EmbedDim  int64   // token width C
	Depth     int64   // number of blocks
	Heads     int64   // attention heads; EmbedDim must be a multiple
	PatchSize int64   // square patch side (the patch convolution's kernel and stride)
	ImgSize   int64   // training resolution; pos_embed holds (ImgSize/PatchSize)² + 1 rows
	InChans   int64   // input channels (3)
	MLPRatio  float64 // MLP hidden width = int(EmbedDim·MLPRatio)
	QKVBias   bool    // attn.qkv has a bias (true for every DINO model)
	Eps       float64 // LayerNorm epsilon (1e-6)
	// SaliencyHeads are the heads averaged into the saliency; nil means DefaultSaliencyHeads.
	SaliencyHeads []int64
}

// ViTS16 is the configuration of DINO ViT-S/16 (dino_deitsmall16_pretrain.pth), the backbone of
// the method.
func ViTS16() Config {
	return Config{EmbedDim: 384, Depth: 12, Heads: 6, PatchSize: 16, ImgSize: 224, InChans: 3,
		MLPRatio: 4, QKVBias: true, Eps: 1e-6}
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int64 { return c.EmbedDim / c.Heads }

// Hidden is the MLP hidden width, int(EmbedDim·MLPRatio) as DINO computes it.
func (c Config) Hidden() int64 { return int64(float64(c.EmbedDim) * c.MLPRatio) }

// Grid is the side of the positional embedding's square patch grid.
func (c Config) Grid() int64 { return c.ImgSize / c.PatchSize }

// saliencyHeads returns the configured heads or the default ones.
func (c Config) saliencyHeads() []int64 {
	if c.SaliencyHeads == nil {
		return DefaultSaliencyHeads
	}
	return c.SaliencyHeads
}

// Validate reports the first inconsistency in c's architecture (the saliency heads are checked
// by [ViT.Features]).
func (c Config) Validate() error {
	switch {
	case c.EmbedDim <= 0 || c.Depth <= 0 || c.Heads <= 0 || c.PatchSize <= 0 || c.InChans <= 0:
		return fmt.Errorf("dino: config %+v: EmbedDim, Depth, Heads, PatchSize and InChans must be positive", c)
	case c.EmbedDim%c.Heads != 0:
		return fmt.Errorf("dino: embedding width %d is not a multiple of the head count %d", c.EmbedDim, c.Heads)
	case c.ImgSize <= 0 || c.ImgSize%c.PatchSize != 0:
		return fmt.Errorf("dino: image size %d is not a positive multiple of the patch size %d", c.ImgSize, c.PatchSize)
	case c.MLPRatio <= 0 || c.Hidden() <= 0:
		return fmt.Errorf("dino: MLP ratio %g gives no hidden units", c.MLPRatio)
	case !(c.Eps > 0):
		return fmt.Errorf("dino: LayerNorm eps %g must be positive", c.Eps)
	}
	return nil
}

// checkSaliency reports whether the saliency heads exist in the model.
func (c Config) checkSaliency() error {
	if len(c.saliencyHeads()) == 0 {
		return fmt.Errorf("dino: no saliency heads")
	}
	for _, h := range c.saliencyHeads() {
		if h < 0 || h >= c.Heads {
			return fmt.Errorf("dino: saliency head %d does not exist in a model with %d heads (set Cfg.SaliencyHeads)", h, c.Heads)
		}
	}
	return nil
}

// Attention is a block's multi-head self-attention. Parameter names: qkv.*, proj.*.
type Attention struct {
	QKV, Proj *nn.Linear
	Heads     int64
}

// NamedTensors implements [nn.Module].
func (a *Attention) NamedTensors() []nn.Named {
	return append(nn.Prefixed("qkv", a.QKV), nn.Prefixed("proj", a.Proj)...)
}

// MLP is a block's feed-forward network fc2(GELU(fc1(x))) with exact GELU. Parameter names:
// fc1.*, fc2.*.
type MLP struct {
	FC1, FC2 *nn.Linear
}

// NamedTensors implements [nn.Module].
func (m *MLP) NamedTensors() []nn.Named {
	return append(nn.Prefixed("fc1", m.FC1), nn.Prefixed("fc2", m.FC2)...)
}

// Block is one pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)).
type Block struct {
	Norm1 *nn.LayerNorm
	Attn  *Attention
	Norm2 *nn.LayerNorm
	MLP   *MLP
}

// NamedTensors implements [nn.Module], in DINO's state-dict order.
func (b *Block) NamedTensors() []nn.Named {
	var out []nn.Named
	out = append(out, nn.Prefixed("norm1", b.Norm1)...)
	out = append(out, nn.Prefixed("attn", b.Attn)...)
	out = append(out, nn.Prefixed("norm2", b.Norm2)...)
	return append(out, nn.Prefixed("mlp", b.MLP)...)
}

// ViT is a DINO vision transformer without its projection head.
type ViT struct {
	Cfg        Config
	ClsToken   *torch.Tensor // (1, 1, C)
	PosEmbed   *torch.Tensor // (1, Grid²+1, C)
	PatchEmbed *nn.Conv2d    // patch_embed.proj: C_in → C, kernel and stride PatchSize
	Blocks     []*Block
	Norm       *nn.LayerNorm

	// compute, when set, is a copy of the weights in a lower precision that Forward and Features
	// run instead (SetComputeDType); the float32 weights above stay what is saved and loaded.
	compute *ViT
}

// NamedTensors implements [nn.Module], with DINO's names in DINO's state-dict order.
func (m *ViT) NamedTensors() []nn.Named {
	out := []nn.Named{{Name: "cls_token", Tensor: m.ClsToken}, {Name: "pos_embed", Tensor: m.PosEmbed}}
	out = append(out, nn.Prefixed("patch_embed.proj", m.PatchEmbed)...)
	for i, b := range m.Blocks {
		out = append(out, nn.Prefixed(fmt.Sprintf("blocks.%d", i), b)...)
	}
	return append(out, nn.Prefixed("norm", m.Norm)...)
}

// Device is the device the weights live on.
func (m *ViT) Device() torch.Device { return m.ClsToken.Device() }

// New returns a ViT of architecture cfg with random weights drawn from g (nil g: libtorch's
// global generator), for tests, demos and benchmarks: DINO's initialisation, i.e. normal with
// std 0.02 for cls_token, pos_embed and every Linear weight (DINO's trunc_normal_ truncates at
// ±2, a hundred standard deviations, so it never bites), zero Linear biases, LayerNorm weight 1
// and bias 0, and PyTorch's default initialisation of the patch convolution, U(±1/√fan_in) for
// weight and bias. opts place the weights (a [torch.Device]); they are float32 and do not record
// gradients.
func New(cfg Config, g *torch.Generator, opts ...torch.Option) (*ViT, error) {
	m, err := alloc(cfg, opts)
	if err != nil {
		return nil, err
	}
	err = torch.Try(func() {
		torch.NoGrad(func() {
			bound := 1 / math.Sqrt(float64(cfg.InChans*cfg.PatchSize*cfg.PatchSize))
			m.PatchEmbed.Weight.Uniform_(-bound, bound, g)
			m.PatchEmbed.Bias.Uniform_(-bound, bound, g)
			m.ClsToken.Normal_(0, 0.02, g)
			m.PosEmbed.Normal_(0, 0.02, g)
			for _, b := range m.Blocks {
				for _, l := range []*nn.Linear{b.Attn.QKV, b.Attn.Proj, b.MLP.FC1, b.MLP.FC2} {
					l.Weight.Normal_(0, 0.02, g)
				}
			}
		})
	})
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("dino: new model: %w", err)
	}
	return m, nil
}

// alloc returns a ViT of architecture cfg with zero weights (LayerNorm weights one), drawing no
// random numbers.
func alloc(cfg Config, opts []torch.Option) (*ViT, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var m *ViT
	err := torch.Try(func() {
		opts := append([]torch.Option{torch.Float32}, opts...)
		zeros := func(shape ...int64) *torch.Tensor { return torch.Escape(torch.Zeros(shape, opts...)) }
		linear := func(in, out int64, bias bool) *nn.Linear {
			l := &nn.Linear{Weight: zeros(out, in)}
			if bias {
				l.Bias = zeros(out)
			}
			return l
		}
		norm := func() *nn.LayerNorm {
			return &nn.LayerNorm{Weight: torch.Escape(torch.Ones([]int64{cfg.EmbedDim}, opts...)), Bias: zeros(cfg.EmbedDim), Eps: cfg.Eps}
		}
		c, p := cfg.EmbedDim, cfg.PatchSize
		m = &ViT{Cfg: cfg}
		m.PatchEmbed = &nn.Conv2d{Weight: zeros(c, cfg.InChans, p, p), Bias: zeros(c),
			Opts: torch.Conv2dOptions{Stride: [2]int64{p, p}}}
		m.ClsToken = zeros(1, 1, c)
		m.PosEmbed = zeros(1, cfg.Grid()*cfg.Grid()+1, c)
		for range cfg.Depth {
			m.Blocks = append(m.Blocks, &Block{
				Norm1: norm(),
				Attn:  &Attention{QKV: linear(c, 3*c, cfg.QKVBias), Proj: linear(c, c, true), Heads: cfg.Heads},
				Norm2: norm(),
				MLP:   &MLP{FC1: linear(c, cfg.Hidden(), true), FC2: linear(cfg.Hidden(), c, true)},
			})
		}
		m.Norm = norm()
	})
	if err != nil {
		return nil, fmt.Errorf("dino: new model: %w", err)
	}
	return m, nil
}

// headScale is head_dim^-0.5, the attention's logit scale.
func headScale(hd int64) float64 { return math.Pow(float64(hd), -0.5) }
