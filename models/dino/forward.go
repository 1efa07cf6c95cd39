package dino

import (
	"fmt"
	"math"

	"github.com/affgd/affgd/torch"
)

// Output is what the method takes from the backbone for a batch of B images whose patch grid is
// H×W (N = H·W + 1 tokens with the cls token), all from the LAST block.
type Output struct {
	// Key is the key descriptor (B, H·W, C): the last block's keys k (B, heads, N, head_dim)
	// permuted to (B, N, head_dim, heads) and flattened, so channel d·heads + head holds
	// dimension d of head `head`; the cls token dropped; patches in row-major order.
	Key *torch.Tensor
	// Attn is the last block's attention softmax(q·kᵀ·head_dim^-0.5), (B, heads, N, N).
	Attn *torch.Tensor
	// SamHard is the binary saliency (B, H·W), float32 0/1; see [ViT.Features].
	SamHard *torch.Tensor
	// H and W are the patch grid: the input's height and width divided by the patch size.
	H, W int64
}

// checkInput validates an input batch (B, C_in, H, W) against the model.
func (m *ViT) checkInput(x *torch.Tensor) error {
	if x == nil {
		return fmt.Errorf("dino: nil input")
	}
	var (
		shape []int64
		dt    torch.DType
		dev   torch.Device
	)
	if err := torch.Try(func() { shape, dt, dev = x.Shape(), x.DType(), x.Device() }); err != nil {
		return fmt.Errorf("dino: input: %w", err)
	}
	p := m.Cfg.PatchSize
	switch {
	case len(shape) != 4:
		return fmt.Errorf("dino: input must be a batch of images (B, %d, H, W), got shape %v", m.Cfg.InChans, shape)
	case shape[1] != m.Cfg.InChans:
		return fmt.Errorf("dino: input has %d channels, the model takes %d (shape %v)", shape[1], m.Cfg.InChans, shape)
	case shape[0] == 0 || shape[2] == 0 || shape[3] == 0:
		return fmt.Errorf("dino: empty input, shape %v", shape)
	case shape[2]%p != 0 || shape[3]%p != 0:
		return fmt.Errorf("dino: input size %d×%d (H×W) is not a multiple of the patch size %d", shape[2], shape[3], p)
	case dt != torch.Float32:
		return fmt.Errorf("dino: input is %s, the model runs in float32", dt)
	case dev != m.Device():
		return fmt.Errorf("dino: input is on %s, the model on %s", dev, m.Device())
	}
	return nil
}

// posEmbed returns the positional embedding for an input of height×width pixels with npatch
// patches, as DINO's interpolate_pos_encoding: unchanged when npatch equals the trained grid's
// count and the input is square; otherwise the patch part is resampled bicubically with
// F.interpolate's scale_factor = ((height/P + 0.1)/√N, (width/P + 0.1)/√N) (DINO's +0.1 avoids a
// floor landing one short), and the scale, not the output size, drives the sampling positions.
func (m *ViT) posEmbed(height, width, npatch int64) *torch.Tensor {
	n := m.PosEmbed.Size(1) - 1
	if npatch == n && height == width {
		return m.PosEmbed
	}
	c := m.Cfg.EmbedDim
	side := math.Sqrt(float64(n))
	g := m.Cfg.Grid()
	gh := float64(height/m.Cfg.PatchSize) + 0.1
	gw := float64(width/m.Cfg.PatchSize) + 0.1
	grid := m.PosEmbed.Narrow(1, 1, n).Reshape(1, g, g, c).Permute(0, 3, 1, 2)
	grid = torch.Interpolate(grid, torch.InterpolateOptions{Scale: [2]float64{gh / side, gw / side}, Mode: torch.Bicubic})
	if s := grid.Shape(); s[2] != int64(gh) || s[3] != int64(gw) {
		torch.Fail("dino", "positional embedding resampled to %d×%d, expected %d×%d", s[2], s[3], int64(gh), int64(gw))
	}
	grid = grid.Permute(0, 2, 3, 1).Reshape(1, -1, c)
	return torch.Cat([]*torch.Tensor{m.PosEmbed.Narrow(1, 0, 1), grid}, 1)
}

// tokens embeds the patches, prepends the cls token and adds the positional embedding:
// (B, N, C).
func (m *ViT) tokens(x *torch.Tensor) *torch.Tensor {
	s := x.Shape()
	t := m.PatchEmbed.Forward(x).Flatten(2, -1).Transpose(1, 2)
	t = torch.Cat([]*torch.Tensor{m.ClsToken.Expand(s[0], -1, -1), t}, 1)
	return t.Add(m.posEmbed(s[2], s[3], t.Size(1)-1))
}

// weights returns the attention softmax(q·kᵀ·scale) (B, heads, N, N), the keys and the values
// (B, heads, N, head_dim) of x (B, N, C), the order of operations of DINO's Attention.
func (a *Attention) weights(x *torch.Tensor) (attn, k, v *torch.Tensor) {
	s := x.Shape()
	b, n, c := s[0], s[1], s[2]
	qkv := a.QKV.Forward(x).Reshape(b, n, 3, a.Heads, c/a.Heads).Permute(2, 0, 3, 1, 4)
	q, k, v := qkv.Select(0, 0), qkv.Select(0, 1), qkv.Select(0, 2)
	attn = q.Matmul(k.Transpose(-2, -1)).MulScalar(headScale(c / a.Heads)).Softmax(-1)
	return attn, k, v
}

// fusedBlocks makes the full blocks run as one shim call each ([torch.ViTBlock], the same
// libtorch ops in the same order, bitwise the same result); the op-by-op path stays for the
// tests that compare the two.
var fusedBlocks = true

// weights lists the block's tensors for [torch.ViTBlock].
func (b *Block) weights() *torch.BlockWeights {
	return &torch.BlockWeights{
		Norm1W: b.Norm1.Weight, Norm1B: b.Norm1.Bias, QKVW: b.Attn.QKV.Weight, QKVB: b.Attn.QKV.Bias,
		ProjW: b.Attn.Proj.Weight, ProjB: b.Attn.Proj.Bias, Norm2W: b.Norm2.Weight, Norm2B: b.Norm2.Bias,
		FC1W: b.MLP.FC1.Weight, FC1B: b.MLP.FC1.Bias, FC2W: b.MLP.FC2.Weight, FC2B: b.MLP.FC2.Bias,
		Eps1: b.Norm1.Eps, Eps2: b.Norm2.Eps, Heads: b.Attn.Heads,
	}
}

// forward is the full block; scale is the attention's logit scale, headScale(head_dim).
func (b *Block) forward(x *torch.Tensor, scale float64) *torch.Tensor {
	if fusedBlocks {
		return torch.ViTBlock(x, b.weights(), scale)
	}
	return b.forwardOps(x)
}

// forwardOps is the full block, one shim call per op.
func (b *Block) forwardOps(x *torch.Tensor) *torch.Tensor {
	s := x.Shape()
	attn, _, v := b.Attn.weights(b.Norm1.Forward(x))
	y := b.Attn.Proj.Forward(attn.Matmul(v).Transpose(1, 2).Reshape(s[0], s[1], s[2]))
	x = x.Add(y)
	h := b.MLP.FC2.Forward(b.MLP.FC1.Forward(b.Norm2.Forward(x)).Gelu())
	return x.Add(h)
}

// run runs fn under NoGrad inside a scope, converting tensor failures into an error that names
// what failed; fn keeps its results with the scope.
func run(what string, fn func(s *torch.Scope)) error {
	if err := torch.NoGradScope(fn); err != nil {
		return fmt.Errorf("dino: %s: %w", what, err)
	}
	return nil
}

// blocks runs the given blocks over x, one scope per block so that each block's intermediates
// are released as soon as it is done.
func blocks(bs []*Block, x *torch.Tensor) *torch.Tensor {
	if len(bs) == 0 {
		return x
	}
	c := x.Size(2) // blocks keep the width
	for _, b := range bs {
		func() {
			s := torch.NewScope()
			defer s.Close()
			x = s.Keep(b.forward(x, headScale(c/b.Attn.Heads)))
		}()
	}
	return x
}

// Forward returns the final features (B, N, C) of x (B, C_in, H, W), normalised images with H
// and W multiples of the patch size: tokens through every block, then the final LayerNorm, as
// DINO's VisionTransformer.forward. Token 0 is the cls token, then the patches row-major.
func (m *ViT) Forward(x *torch.Tensor) (*torch.Tensor, error) {
	if err := m.checkInput(x); err != nil {
		return nil, err
	}
	var out *torch.Tensor
	net, x32 := m.net(), x
	err := run("forward", func(s *torch.Scope) {
		t := blocks(net.Blocks, net.tokens(m.in(x32)))
		out = s.Keep(m.out(net.Norm.Forward(t)))
	})
	return out, err
}

// Features returns what the method takes from the backbone for x (B, C_in, H, W), normalised
// images with H and W multiples of the patch size: blocks 0..Depth−2 in full, then from the last
// block only its attention and keys (q, k, v from attn.qkv of norm1(x); its residuals, MLP and
// the final norm are not computed, as the released code never uses them); see [Output].
//
// SamHard follows the released training step (models/locate.py, Net.forward) op for op: the cls
// row of the attention to the patches, attn[:, :, 0, 1:], reshaped (B, heads, H, W); per head,
// 1 where the value exceeds that head's mean over the H·W positions, else 0 (float); the mean over
// the saliency heads (0, 1, 3 by default); per sample min-max normalised as
// models/model_util.py's normalize_minmax (subtract the minimum, then divide by the new maximum
// + 1e-15); flattened to (B, H·W); 1 where above the sample's mean, else 0.
func (m *ViT) Features(x *torch.Tensor) (*Output, error) {
	if err := m.checkInput(x); err != nil {
		return nil, err
	}
	if err := m.Cfg.checkSaliency(); err != nil {
		return nil, err
	}
	out := &Output{H: x.Size(2) / m.Cfg.PatchSize, W: x.Size(3) / m.Cfg.PatchSize}
	net := m.net()
	err := run("features", func(s *torch.Scope) {
		last := net.Blocks[len(net.Blocks)-1]
		t := blocks(net.Blocks[:len(net.Blocks)-1], net.tokens(m.in(x)))
		attn, k, _ := last.Attn.weights(last.Norm1.Forward(t))
		key := k.Permute(0, 2, 3, 1).Flatten(-2, -1)
		out.Key = s.Keep(m.out(key.Narrow(1, 1, key.Size(1)-1).Contiguous()))
		attn = m.out(attn)
		out.Attn = s.Keep(attn)
		out.SamHard = s.Keep(samHard(attn, out.H, out.W, m.Cfg.saliencyHeads()))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// net is the module the forward runs: the lower-precision copy when one is set.
func (m *ViT) net() *ViT {
	if m.compute != nil {
		return m.compute
	}
	return m
}

// in casts the float32 input to the compute dtype; out casts a result back to float32.
func (m *ViT) in(x *torch.Tensor) *torch.Tensor {
	if m.compute == nil {
		return x
	}
	return x.ToDType(m.ComputeDType())
}

func (m *ViT) out(y *torch.Tensor) *torch.Tensor {
	if m.compute == nil {
		return y
	}
	return y.ToDType(torch.Float32)
}

// samHard is the saliency of [ViT.Features] from the attention (B, heads, N, N).
func samHard(attn *torch.Tensor, h, w int64, heads []int64) *torch.Tensor {
	b, nh, n := attn.Size(0), attn.Size(1), attn.Size(2)
	cls := attn.Select(2, 0).Narrow(-1, 1, n-1).Reshape(b, nh, h, w)
	headMean := cls.Flatten(-2, -1).MeanDims([]int64{-1}, true).Unsqueeze(-1)
	perHead := cls.Gt(headMean).ToDType(torch.Float32)
	idx := torch.FromSlice(heads, int64(len(heads))).To(attn.Device())
	sam := perHead.IndexSelect(1, idx).MeanDims([]int64{1}, false)
	lo, _ := sam.View(b, -1).MinDim(1, false)
	sam = sam.Sub(lo.View(b, 1, 1))
	hi, _ := sam.View(b, -1).MaxDim(1, false)
	sam = sam.Div(hi.View(b, 1, 1).AddScalar(1e-15))
	flat := sam.Flatten(-2, -1)
	return flat.Gt(flat.MeanDims([]int64{1}, true)).ToDType(torch.Float32)
}
