package clip

import (
	"fmt"
	"math"

	"github.com/affgd/affgd/models/tokenizer"
	"github.com/affgd/affgd/torch"
)

// quickGELU is x·sigmoid(1.702·x), the activation OpenAI's CLIP was trained with.
func quickGELU(x *torch.Tensor) *torch.Tensor { return x.Mul(x.MulScalar(1.702).Sigmoid()) }

// qkv projects x (B, L, width) with the packed in_proj and splits q, k, v into heads, each
// (B, heads, L, 64), as nn.MultiheadAttention does.
func (a *Attention) qkv(x *torch.Tensor) (q, k, v *torch.Tensor) {
	s := x.Shape()
	b, l, d := s[0], s[1], s[2]
	parts := torch.Linear(x, a.InProjWeight, a.InProjBias).Chunk(3, -1)
	heads := func(t *torch.Tensor) *torch.Tensor { return t.Reshape(b, l, a.Heads, d/a.Heads).Transpose(1, 2) }
	return heads(parts[0]), heads(parts[1]), heads(parts[2])
}

// merge joins the heads of o (B, heads, L, 64) back to (B, L, width) and applies out_proj.
func (a *Attention) merge(o *torch.Tensor) *torch.Tensor {
	s := o.Shape()
	return a.OutProj.Forward(o.Transpose(1, 2).Reshape(s[0], s[2], s[1]*s[3]))
}

// scale is head_dim^-0.5 (0.125 for CLIP's 64-wide heads).
func (a *Attention) scale(x *torch.Tensor) float64 {
	return 1 / math.Sqrt(float64(x.Size(2)/a.Heads))
}

// forward is self-attention softmax(q·kᵀ·scale + mask)·v then out_proj; mask is additive,
// broadcast to (B, heads, L, L), and may be nil. As nn.MultiheadAttention(need_weights=False)
// does, it calls PyTorch's scaled_dot_product_attention (default scale head_dim^-0.5) on q, k, v
// of shape (B, heads, L, head_dim) with the head dimension contiguous, which lets libtorch pick
// the same fused kernel as the released code.
func (a *Attention) forward(x, mask *torch.Tensor) *torch.Tensor {
	q, k, v := a.qkv(x)
	return a.merge(torch.ScaledDotProductAttention(q, k, v, mask, false, 0))
}

// queryQuery is ClearCLIP's attention: softmax(q·qᵀ·scale)·v then out_proj, with q and v from the
// block's in_proj (k is computed and unused, as in the released code). The scale multiplies the
// product q·qᵀ, exactly as the released custom_attn does.
func (a *Attention) queryQuery(x *torch.Tensor) *torch.Tensor {
	q, _, v := a.qkv(x)
	att := q.Matmul(q.Transpose(-2, -1)).MulScalar(a.scale(x))
	return a.merge(att.Softmax(-1).Matmul(v))
}

// fusedBlocks makes the full blocks of both towers run as one shim call each
// ([torch.CLIPBlock], the same libtorch ops in the same order, bitwise the same result); the
// op-by-op path stays for the tests that compare the two.
var fusedBlocks = true

// weights lists the block's tensors for [torch.CLIPBlock].
func (b *Block) weights() *torch.BlockWeights {
	return &torch.BlockWeights{
		Norm1W: b.Ln1.Weight, Norm1B: b.Ln1.Bias, QKVW: b.Attn.InProjWeight, QKVB: b.Attn.InProjBias,
		ProjW: b.Attn.OutProj.Weight, ProjB: b.Attn.OutProj.Bias, Norm2W: b.Ln2.Weight, Norm2B: b.Ln2.Bias,
		FC1W: b.CFc.Weight, FC1B: b.CFc.Bias, FC2W: b.CProj.Weight, FC2B: b.CProj.Bias,
		Eps1: b.Ln1.Eps, Eps2: b.Ln2.Eps, Heads: b.Attn.Heads,
	}
}

// forward is one pre-norm residual block: x + attn(ln_1(x)), then + c_proj(QuickGELU(c_fc(ln_2(x)))).
func (b *Block) forward(x, mask *torch.Tensor) *torch.Tensor {
	if fusedBlocks {
		return torch.CLIPBlock(x, mask, b.weights())
	}
	return b.forwardOps(x, mask)
}

// forwardOps is [Block.forward], one shim call per op.
func (b *Block) forwardOps(x, mask *torch.Tensor) *torch.Tensor {
	x = x.Add(b.Attn.forward(b.Ln1.Forward(x), mask))
	return x.Add(b.CProj.Forward(quickGELU(b.CFc.Forward(b.Ln2.Forward(x)))))
}

// positionalEmbedding returns what the released code adds to the tokens of a gh×gw patch grid:
// the stored embedding when the token count equals the stored one (even for another grid shape
// of the same count, as the released code does), otherwise the class row and the patch rows
// resized with bicubic interpolation by scale factors ((g+0.1)/√N) per side, N the stored patch
// count, align_corners false, no antialias (its interpolate_pos_encoding).
func (m *Model) positionalEmbedding(gh, gw int64) *torch.Tensor {
	pos := m.visual().PositionalEmbedding
	rows, d := pos.Size(0), pos.Size(1)
	if gh*gw+1 == rows {
		return pos
	}
	n := rows - 1
	side := m.Config.GridSize
	patch := pos.Slice(0, 1, rows, 1).Reshape(1, side, side, d).Permute(0, 3, 1, 2)
	root := math.Sqrt(float64(n))
	out := torch.Interpolate(patch, torch.InterpolateOptions{
		Scale: [2]float64{(float64(gh) + 0.1) / root, (float64(gw) + 0.1) / root},
		Mode:  torch.Bicubic,
	})
	if s := out.Shape(); s[2] != gh || s[3] != gw {
		torch.Fail("clip", "positional embedding resized to %dx%d, want %dx%d", s[2], s[3], gh, gw)
	}
	out = out.Permute(0, 2, 3, 1).Reshape(1, gh*gw, d)
	return torch.Cat([]*torch.Tensor{pos.Slice(0, 0, 1, 1).Unsqueeze(0), out}, 1)
}

// checkImages reports an input DenseFeatures cannot take.
func (m *Model) checkImages(x *torch.Tensor) error {
	if x == nil {
		return fmt.Errorf("clip: DenseFeatures: nil input")
	}
	var shape []int64
	var dt torch.DType
	var dev, mdev torch.Device
	if err := torch.Try(func() { shape, dt, dev, mdev = x.Shape(), x.DType(), x.Device(), m.Device() }); err != nil {
		return fmt.Errorf("clip: DenseFeatures: %w", err)
	}
	p := m.Config.PatchSize
	switch {
	case len(shape) != 4:
		return fmt.Errorf("clip: DenseFeatures: images must be (B, 3, H, W), got shape %v", shape)
	case shape[1] != 3:
		return fmt.Errorf("clip: DenseFeatures: images must have 3 channels, got shape %v", shape)
	case shape[0] == 0:
		return fmt.Errorf("clip: DenseFeatures: empty batch, shape %v", shape)
	case shape[2] <= 0 || shape[3] <= 0 || shape[2]%p != 0 || shape[3]%p != 0:
		return fmt.Errorf("clip: DenseFeatures: image size %dx%d is not a positive multiple of the patch size %d", shape[2], shape[3], p)
	case dt != torch.Float32:
		return fmt.Errorf("clip: DenseFeatures: images must be float32, got %s", dt)
	case dev != mdev:
		return fmt.Errorf("clip: DenseFeatures: images are on %s and the model on %s (use Model.To)", dev, mdev)
	}
	return nil
}

// DenseFeatures returns the ClearCLIP patch features of images x (B, 3, H, W), float32, H and W
// multiples of the patch size, on the model's device: (B, (H/patch)·(W/patch), EmbedDim), patches
// in row-major order. As the released SelectiveCL code: conv1 → prepend class_embedding → add the
// positional embedding (resized when the token count differs) → ln_pre → every block but the last
// → the last block's query-query attention alone (out_proj(softmax(q·qᵀ·64^-½)·v) of its ln_1(x);
// no residual, no MLP) → ln_post → drop the class token → @ visual.proj. Images are used as given
// (SelectiveCL feeds ImageNet-normalised images). No gradients are recorded.
func (m *Model) DenseFeatures(x *torch.Tensor) (*torch.Tensor, error) {
	if err := m.checkImages(x); err != nil {
		return nil, err
	}
	var out *torch.Tensor
	err := torch.NoGradScope(func(s *torch.Scope) { out = s.Keep(m.denseFeatures(x)) })
	if err != nil {
		return nil, fmt.Errorf("clip: DenseFeatures: %w", err)
	}
	return out, nil
}

// visual is the image tower DenseFeatures runs: the lower-precision copy when one is set.
func (m *Model) visual() *Visual {
	if m.compute != nil {
		return m.compute.Visual
	}
	return m.Visual
}

func (m *Model) denseFeatures(x *torch.Tensor) *torch.Tensor {
	v, c := m.visual(), m.Config
	if m.compute != nil { // the lower-precision image tower (SetVisualDType)
		x = x.ToDType(v.Conv1.DType())
	}
	b, p, w := x.Size(0), c.PatchSize, c.VisionWidth
	gh, gw := x.Size(2)/p, x.Size(3)/p
	t := torch.Conv2d(x, v.Conv1, nil, torch.Conv2dOptions{Stride: [2]int64{p, p}})
	t = t.Reshape(b, w, gh*gw).Permute(0, 2, 1)
	cls := v.ClassEmbedding.View(1, 1, w).Expand(b, 1, w)
	t = torch.Cat([]*torch.Tensor{cls, t}, 1)
	t = t.Add(m.positionalEmbedding(gh, gw))
	t = v.LnPre.Forward(t)
	blocks := v.Transformer.Resblocks
	for _, blk := range blocks[:len(blocks)-1] {
		t = blk.forward(t, nil)
	}
	last := blocks[len(blocks)-1]
	t = last.Attn.queryQuery(last.Ln1.Forward(t))
	t = v.LnPost.Forward(t)
	return t.Slice(1, 1, gh*gw+1, 1).Matmul(v.Proj).ToDType(torch.Float32)
}

// checkTokens reports token ids EncodeText cannot take.
func (m *Model) checkTokens(tokens *torch.Tensor) error {
	if tokens == nil {
		return fmt.Errorf("clip: EncodeText: nil tokens")
	}
	var shape []int64
	var dt torch.DType
	var dev, mdev torch.Device
	if err := torch.Try(func() { shape, dt, dev, mdev = tokens.Shape(), tokens.DType(), tokens.Device(), m.Device() }); err != nil {
		return fmt.Errorf("clip: EncodeText: %w", err)
	}
	switch {
	case len(shape) != 2 || shape[1] != m.Config.ContextLength:
		return fmt.Errorf("clip: EncodeText: tokens must be (B, %d), got shape %v", m.Config.ContextLength, shape)
	case shape[0] == 0:
		return fmt.Errorf("clip: EncodeText: empty batch, shape %v", shape)
	case dt != torch.Int64:
		return fmt.Errorf("clip: EncodeText: tokens must be int64, got %s", dt)
	case dev != mdev:
		return fmt.Errorf("clip: EncodeText: tokens are on %s and the model on %s (use Model.To)", dev, mdev)
	}
	var lo, hi int64
	if err := torch.Try(func() { lo, hi = tokens.Min().ItemInt(), tokens.Max().ItemInt() }); err != nil {
		return fmt.Errorf("clip: EncodeText: %w", err)
	}
	if lo < 0 || hi >= m.Config.VocabSize {
		return fmt.Errorf("clip: EncodeText: token ids must lie in [0, %d), got values from %d to %d", m.Config.VocabSize, lo, hi)
	}
	return nil
}

// EncodeText returns the CLIP text features (B, EmbedDim) of token ids (B, ContextLength), int64,
// on the model's device: token embedding + positional embedding, the causal transformer,
// ln_final, the feature at the position of each row's largest id (the end-of-text token; the
// first such position on a tie), @ text_projection. No gradients are recorded.
func (m *Model) EncodeText(tokens *torch.Tensor) (*torch.Tensor, error) {
	if err := m.checkTokens(tokens); err != nil {
		return nil, err
	}
	var out *torch.Tensor
	err := torch.NoGradScope(func(s *torch.Scope) { out = s.Keep(m.encodeText(tokens)) })
	if err != nil {
		return nil, fmt.Errorf("clip: EncodeText: %w", err)
	}
	return out, nil
}

func (m *Model) encodeText(tokens *torch.Tensor) *torch.Tensor {
	b, l, w := tokens.Size(0), tokens.Size(1), m.Config.TextWidth
	dev := tokens.Device()
	x := m.TokenEmbedding.IndexSelect(0, tokens.Reshape(b*l)).Reshape(b, l, w)
	x = x.Add(m.PositionalEmbedding)
	// open_clip passes its additive causal mask (-inf above the diagonal) as attn_mask, not
	// is_causal; F.multi_head_attention_forward hands it to the attention as (1, 1, L, L).
	mask := torch.Full([]int64{l, l}, math.Inf(-1), torch.Float32, dev).Triu(1).Reshape(1, 1, l, l)
	for _, blk := range m.Transformer.Resblocks {
		x = blk.forward(x, mask)
	}
	x = m.LnFinal.Forward(x)
	eot := tokens.ArgmaxDim(1, false)
	x = x.Index(torch.Arange(0, float64(b), 1, torch.Int64, dev), eot)
	return x.Matmul(m.TextProjection)
}

// EncodePrompts tokenises texts with tok (context length of the model; a text that does not fit
// is an error, as in the released code) and returns their features (len(texts), EmbedDim) on the
// model's device, as [Model.EncodeText].
func (m *Model) EncodePrompts(tok *tokenizer.Tokenizer, texts []string) (*torch.Tensor, error) {
	if tok == nil {
		return nil, fmt.Errorf("clip: EncodePrompts: nil tokenizer")
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("clip: EncodePrompts: no texts")
	}
	rows, err := tok.Tokenize(texts, int(m.Config.ContextLength), false)
	if err != nil {
		return nil, fmt.Errorf("clip: EncodePrompts: %w", err)
	}
	flat := make([]int64, 0, len(rows)*int(m.Config.ContextLength))
	for _, r := range rows {
		flat = append(flat, r...)
	}
	var tokens *torch.Tensor
	if err := torch.Try(func() {
		tokens = torch.FromSliceOn(flat, m.Device(), int64(len(rows)), m.Config.ContextLength)
	}); err != nil {
		return nil, fmt.Errorf("clip: EncodePrompts: %w", err)
	}
	defer tokens.Free()
	return m.EncodeText(tokens)
}
