package clip

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/affgd/affgd/torch"
	"github.com/affgd/affgd/torch/nn"
)

// File formats [WriteRandom] writes.
const (
	// FormatTorchScript is OpenAI's release container (a TorchScript archive, like ViT-B-16.pt):
	// the tensors OpenAI stores in float16 are float16, the rest float32, plus the int64 scalars
	// input_resolution, context_length and vocab_size.
	FormatTorchScript = "torchscript"
	// FormatStateDict is an open_clip state dict saved with torch.save, all float32.
	FormatStateDict = "state_dict"
)

// openAIExtras are entries of OpenAI's TorchScript release that are not weights; open_clip
// drops them, and so does Load.
var openAIExtras = map[string]bool{"input_resolution": true, "context_length": true, "vocab_size": true}

// Load reads a ViT CLIP from any of the files users have, on the CPU in float32:
//
//   - OpenAI's TorchScript release (ViT-B-16.pt). As open_clip's build_model_from_openai_state_dict
//     does, the tensors OpenAI keeps in float16 (conv1, the attention and MLP weights and biases,
//     visual.proj, text_projection) are rounded to float16 before the cast to float32 (a no-op on
//     the real release, whose copies are float16 already); input_resolution, context_length and
//     vocab_size are ignored.
//   - an open_clip state dict (torch.save), loaded as stored.
//   - a SelectiveCL checkpoint, or any torch.save file holding the CLIP keys under one prefix
//     ("net." there; nested dicts count as dotted prefixes): only the keys under that prefix are
//     read, the rest (vit_model.*, the head) ignored.
//
// The architecture is read from the weights as open_clip does (widths from conv1 and ln_final,
// patch size from conv1's kernel, layers from the resblocks, heads width/64, grid from the
// positional embedding, context length, vocabulary and output dimension from their tensors).
// Every key and shape is checked; errors name the file and each missing, unexpected or
// mis-shaped key. Other architectures (ResNet CLIPs, non-CLIP checkpoints) are refused clearly.
func Load(path string) (*Model, error) {
	f, err := nn.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clip: reading %s: %w", path, err)
	}
	defer func() {
		for _, t := range f.Tensors {
			t.Free()
		}
	}()
	return LoadFile(f)
}

// LoadFile is [Load] from a checkpoint already read with nn.ReadFile (so one file holding several
// models is read once); the weights are copied, the file's tensors stay the caller's.
func LoadFile(f *nn.File) (*Model, error) {
	path := f.Path
	prefix, err := findPrefix(f)
	if err != nil {
		return nil, err
	}
	sd := map[string]*torch.Tensor{}
	for _, name := range f.Names {
		if strings.HasPrefix(name, prefix) {
			sd[strings.TrimPrefix(name, prefix)] = f.Tensors[name]
		}
	}
	source := path
	if prefix != "" {
		source = fmt.Sprintf("%s (CLIP weights under %q)", path, prefix)
	}
	cfg, err := configFromWeights(sd, source)
	if err != nil {
		return nil, err
	}
	if f.Format == "torchscript" {
		var rounded []*torch.Tensor
		defer func() {
			for _, t := range rounded {
				t.Free()
			}
		}()
		err := torch.Try(func() {
			for name, t := range sd {
				if storedAsFloat16(name) && t.DType() != torch.Float16 && t.DType().IsFloat() {
					sd[name] = t.ToDType(torch.Float16)
					rounded = append(rounded, sd[name])
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("clip: %s: %w", source, err)
		}
	}
	m := newEmpty(cfg)
	if err := nn.Load(m, sd, source, nn.LoadOptions{Ignore: func(k string) bool { return openAIExtras[k] }}); err != nil {
		m.Free()
		return nil, fmt.Errorf("clip: %w", err)
	}
	return m, nil
}

// findPrefix returns the prefix under which f holds a ViT CLIP (the part of the key before
// "visual.conv1.weight"), or an error naming the file when it holds none or several.
func findPrefix(f *nn.File) (string, error) {
	const key = "visual.conv1.weight"
	var found []string
	resnet := false
	for _, name := range f.Names {
		if name == key || strings.HasSuffix(name, "."+key) {
			found = append(found, strings.TrimSuffix(name, key))
		}
		if strings.HasSuffix(name, "visual.layer1.0.conv1.weight") || strings.HasSuffix(name, "visual.attnpool.positional_embedding") {
			resnet = true
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return "", fmt.Errorf("clip: %s holds several CLIP image towers (under prefixes %q); expected one", f.Path, found)
	case resnet:
		return "", fmt.Errorf("clip: %s is a ResNet CLIP (visual.layer1..., visual.attnpool...); only ViT CLIPs are supported", f.Path)
	}
	show := f.Names
	if len(show) > 5 {
		show = show[:5]
	}
	return "", fmt.Errorf("clip: %s holds no ViT CLIP: no key %s (its %d keys begin %q)", f.Path, key, len(f.Names), show)
}

// configFromWeights derives the architecture from a CLIP state dict (keys without prefix), as
// open_clip's build_model_from_openai_state_dict does, with checks that name the source.
func configFromWeights(sd map[string]*torch.Tensor, source string) (Config, error) {
	var c Config
	shape := func(key string, dims int) ([]int64, error) {
		t, ok := sd[key]
		if !ok {
			return nil, fmt.Errorf("clip: %s: missing key %s", source, key)
		}
		var s []int64
		if err := torch.Try(func() { s = t.Shape() }); err != nil {
			return nil, fmt.Errorf("clip: %s: %s: %w", source, key, err)
		}
		if len(s) != dims {
			return nil, fmt.Errorf("clip: %s: %s has shape %v, expected %d dimensions", source, key, s, dims)
		}
		return s, nil
	}
	conv, err := shape("visual.conv1.weight", 4)
	if err != nil {
		return c, err
	}
	if conv[1] != 3 || conv[2] != conv[3] {
		return c, fmt.Errorf("clip: %s: visual.conv1.weight has shape %v; a ViT CLIP has (width, 3, patch, patch)", source, conv)
	}
	c.VisionWidth, c.PatchSize = conv[0], conv[3]
	vpos, err := shape("visual.positional_embedding", 2)
	if err != nil {
		return c, err
	}
	n := vpos[0] - 1
	c.GridSize = int64(math.Round(math.Sqrt(float64(n))))
	if n <= 0 || c.GridSize*c.GridSize != n {
		return c, fmt.Errorf("clip: %s: visual.positional_embedding has %d rows; expected a square patch grid plus the class token", source, vpos[0])
	}
	if c.VisionLayers, err = countBlocks(sd, "visual.transformer.resblocks.", source); err != nil {
		return c, err
	}
	tproj, err := shape("text_projection", 2)
	if err != nil {
		return c, err
	}
	c.EmbedDim = tproj[1]
	tpos, err := shape("positional_embedding", 2)
	if err != nil {
		return c, err
	}
	c.ContextLength = tpos[0]
	tok, err := shape("token_embedding.weight", 2)
	if err != nil {
		return c, err
	}
	c.VocabSize = tok[0]
	lnf, err := shape("ln_final.weight", 1)
	if err != nil {
		return c, err
	}
	c.TextWidth = lnf[0]
	if c.TextLayers, err = countBlocks(sd, "transformer.resblocks.", source); err != nil {
		return c, err
	}
	if err := c.check(); err != nil {
		return c, fmt.Errorf("clip: %s: unsupported architecture: %v", source, err)
	}
	return c, nil
}

// countBlocks returns the number of residual blocks under prefix ("…resblocks."), requiring the
// indices to be 0..n-1 and n ≥ 1.
func countBlocks(sd map[string]*torch.Tensor, prefix, source string) (int64, error) {
	seen := map[int]bool{}
	for k := range sd {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := strings.TrimPrefix(k, prefix)
		idx, _, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 {
			return 0, fmt.Errorf("clip: %s: unexpected key %s", source, k)
		}
		seen[i] = true
	}
	if len(seen) == 0 {
		return 0, fmt.Errorf("clip: %s: no %s* keys (a CLIP has at least one block)", source, prefix)
	}
	idx := make([]int, 0, len(seen))
	for i := range seen {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for want, i := range idx {
		if i != want {
			return 0, fmt.Errorf("clip: %s: %s%d is missing (blocks found: %v)", source, prefix, want, idx)
		}
	}
	return int64(len(idx)), nil
}

// WriteRandom writes a CLIP of configuration c with the random weights of [New] drawn from a
// generator seeded with seed, in format [FormatTorchScript] (OpenAI's release container: the
// float16 tensors rounded to float16, as the release stores them) or [FormatStateDict] (an
// open_clip state dict, float32 as drawn). [Load] reads either; so do Python's torch.jit.load
// with open_clip.load_openai_model, and torch.load.
func WriteRandom(path string, c Config, seed uint64, format string) error {
	if format != FormatTorchScript && format != FormatStateDict {
		return fmt.Errorf("clip: WriteRandom: unknown format %q (want %q or %q)", format, FormatTorchScript, FormatStateDict)
	}
	g, err := torch.NewGenerator(seed, torch.CPU)
	if err != nil {
		return err
	}
	m, err := New(c, g)
	if err != nil {
		return err
	}
	defer m.Free()
	if format == FormatStateDict {
		return nn.WriteFile(path, m.NamedTensors())
	}
	var names []string
	var tensors []*torch.Tensor
	var saveErr error
	err = torch.WithScope(func(s *torch.Scope) {
		for _, n := range m.NamedTensors() {
			t := n.Tensor
			if storedAsFloat16(n.Name) {
				t = t.ToDType(torch.Float16)
			}
			names = append(names, n.Name)
			tensors = append(tensors, t)
		}
		for _, e := range []struct {
			name string
			v    int64
		}{{"input_resolution", c.ImageSize()}, {"context_length", c.ContextLength}, {"vocab_size", c.VocabSize}} {
			names = append(names, e.name)
			tensors = append(tensors, torch.Scalar(float64(e.v), torch.Int64))
		}
		saveErr = torch.SaveTorchScript(path, names, tensors)
	})
	if err != nil {
		return fmt.Errorf("clip: WriteRandom: %w", err)
	}
	if saveErr != nil {
		return fmt.Errorf("clip: WriteRandom: %w", saveErr)
	}
	return nil
}
