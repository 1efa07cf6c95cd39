// Package clip is OpenAI's CLIP ViT (as open_clip builds it from OpenAI's weights) with the
// ClearCLIP change to the last image block that SelectiveCL uses for dense features.
//
// The image side returns one feature per patch ([Model.DenseFeatures]): the last residual block
// is replaced by its query-query attention alone (softmax(q·qᵀ·d^-0.5)·v, then out_proj), with no
// residual and no MLP; ln_post is applied to every token, the class token dropped and the rest
// projected with visual.proj. The text side is standard CLIP ([Model.EncodeText]): causal
// transformer, ln_final, the feature at the end-of-text token (the largest token id), projected
// with text_projection. Both run frozen (without gradients) in float32 on the device of the
// model, which must be the device of the input.
//
// Parameter names are OpenAI's and open_clip's (visual.conv1.weight, ...,
// transformer.resblocks.N.attn.in_proj_weight, ..., text_projection, logit_scale), so [Load]
// reads OpenAI's TorchScript release (ViT-B-16.pt), open_clip state dicts, and SelectiveCL's
// checkpoints (CLIP under "net."). Numerics follow the released SelectiveCL code (its vendored,
// modified open_clip); see METHOD.md section 2.
package clip

import (
	"fmt"
)

// HeadWidth is the width of one attention head: OpenAI's ViT CLIPs use width/64 heads in both
// towers, which is how open_clip derives the head counts from a state dict.
const HeadWidth = 64

// Config is the architecture of a ViT CLIP. Head counts are derived: width / [HeadWidth].
type Config struct {
	EmbedDim int64 // output dimension of both towers (visual.proj and text_projection columns)

	VisionWidth  int64 // visual transformer width (conv1 output channels)
	VisionLayers int64 // visual residual blocks (the last one is the ClearCLIP block)
	PatchSize    int64 // conv1 kernel and stride
	GridSize     int64 // patches per side of the training resolution (positional_embedding has GridSize²+1 rows)

	ContextLength int64 // text tokens per sequence (rows of positional_embedding)
	VocabSize     int64 // rows of token_embedding
	TextWidth     int64
	TextLayers    int64
}

// ViTB16 is the configuration of OpenAI's CLIP ViT-B/16, the backbone SelectiveCL uses.
func ViTB16() Config {
	return Config{
		EmbedDim:      512,
		VisionWidth:   768,
		VisionLayers:  12,
		PatchSize:     16,
		GridSize:      14,
		ContextLength: 77,
		VocabSize:     49408,
		TextWidth:     512,
		TextLayers:    12,
	}
}

// VisionHeads is the number of attention heads of the image tower.
func (c Config) VisionHeads() int64 { return c.VisionWidth / HeadWidth }

// TextHeads is the number of attention heads of the text tower.
func (c Config) TextHeads() int64 { return c.TextWidth / HeadWidth }

// ImageSize is the training resolution, PatchSize × GridSize (224 for ViT-B/16).
func (c Config) ImageSize() int64 { return c.PatchSize * c.GridSize }

// Validate reports a configuration that cannot be built.
func (c Config) Validate() error {
	if err := c.check(); err != nil {
		return fmt.Errorf("clip: config: %w", err)
	}
	return nil
}

func (c Config) check() error {
	pos := []struct {
		name string
		v    int64
	}{
		{"EmbedDim", c.EmbedDim}, {"VisionWidth", c.VisionWidth}, {"VisionLayers", c.VisionLayers},
		{"PatchSize", c.PatchSize}, {"GridSize", c.GridSize}, {"ContextLength", c.ContextLength},
		{"VocabSize", c.VocabSize}, {"TextWidth", c.TextWidth}, {"TextLayers", c.TextLayers},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("%s must be positive, got %d", p.name, p.v)
		}
	}
	if c.VisionWidth%HeadWidth != 0 {
		return fmt.Errorf("VisionWidth %d is not a multiple of the head width %d", c.VisionWidth, HeadWidth)
	}
	if c.TextWidth%HeadWidth != 0 {
		return fmt.Errorf("TextWidth %d is not a multiple of the head width %d", c.TextWidth, HeadWidth)
	}
	return nil
}

// String describes the architecture in one line.
func (c Config) String() string {
	return fmt.Sprintf("ViT CLIP: embed %d; image: width %d, %d layers, %d heads, patch %d, grid %d (%d px); text: width %d, %d layers, %d heads, context %d, vocab %d",
		c.EmbedDim, c.VisionWidth, c.VisionLayers, c.VisionHeads(), c.PatchSize, c.GridSize, c.ImageSize(),
		c.TextWidth, c.TextLayers, c.TextHeads(), c.ContextLength, c.VocabSize)
}
